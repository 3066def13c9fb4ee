//! The `smtp-oauth-exporter` binary: parse the command line, set up logging, run, map errors to
//! exit codes (0 fine, 1 failure, 2 usage; `check --output nagios` uses 0 to 3).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use smtp_oauth_exporter::check_command::{self, Output};
use smtp_oauth_exporter::cli::{self, Cli, Command};
use smtp_oauth_exporter::{agent, config, demo, logging};

/// With `--features dhat-heap`, every allocation is tracked and `dhat-heap.json` is written
/// when the process exits (bench/heap.sh reads it).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);
    let serving = matches!(cli.command, None | Some(Command::Serve | Command::Demo));
    raise_open_file_limit(serving && !cli.config_check);
    let command = if cli.config_check {
        Command::CheckConfig
    } else {
        cli.command.clone().unwrap_or(Command::Serve)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            to_stderr(&format!("cannot start the runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    let nagios = matches!(&command, Command::Check(a) if a.output == Output::Nagios);
    match runtime.block_on(run(&cli, &command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if nagios {
                // The plugin convention: a check that cannot run is UNKNOWN, on stdout.
                to_stdout(&format!("SMTP-OAUTH UNKNOWN - {e:#}\n"));
                ExitCode::from(3)
            } else if command.is_check_config() || matches!(command, Command::Check(_)) {
                to_stderr(&format!("error: {e:#}\n"));
                ExitCode::FAILURE
            } else {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: &Cli, command: &Command) -> anyhow::Result<u8> {
    let listen =
        cli::normalize_listen_address(cli.listen_address.as_deref().unwrap_or(match command {
            Command::Demo => cli::DEMO_LISTEN_ADDRESS,
            _ => cli::DEFAULT_LISTEN_ADDRESS,
        }));
    let mut opts = agent::ServeOptions {
        listen_address: listen,
        telemetry_path: cli.telemetry_path.clone(),
        config_file: Some(cli.config_file.clone()),
        enable_lifecycle: cli.enable_lifecycle,
        web_config_file: cli.web_config_file.clone(),
        max_connections: cli.max_connections,
        shard: cli
            .shard(hostname().as_deref())
            .map_err(|e| anyhow::anyhow!(e))?,
    };
    match command {
        Command::CheckConfig => {
            let plan = config::load_async(cli.config_file.clone()).await?;
            for w in &plan.warnings {
                to_stderr(&format!("warning: {w}\n"));
            }
            to_stdout(&format!(
                "{}: configuration is valid ({} apps, {} mailboxes)\n",
                cli.config_file.display(),
                plan.apps.len(),
                plan.mailboxes.len()
            ));
            Ok(0)
        }
        Command::Rules(args) => {
            let settings = if args.defaults {
                smtp_oauth_exporter::plan::AlertSettings::default()
            } else {
                config::load_async(cli.config_file.clone())
                    .await?
                    .settings
                    .alerts
                    .clone()
            };
            print!("{}", smtp_oauth_exporter::alerts::rules_yaml(&settings));
            Ok(0)
        }
        Command::Serve => {
            // Before anything is read: a SIGHUP while the agent starts (a reload racing a
            // restart) is kept for later, not the signal's default death.
            let hangup = Hangup::install();
            let plan = config::load_async(cli.config_file.clone()).await?;
            let agent = agent::Agent::start(plan, &opts).await?;
            serve(agent, hangup).await;
            Ok(0)
        }
        Command::Demo => {
            let hangup = Hangup::install();
            let demo = demo::Demo::start().await?;
            // The demo's configuration is a file too, so that a reload works on it.
            let file = demo.config_file()?;
            let plan = config::load_async(file.clone()).await?;
            opts.config_file = Some(file);
            let agent = agent::Agent::start(plan, &opts).await?;
            tracing::info!(
                simulator = demo.sim.addr_summary().as_str(),
                status_page = format!("http://{}/", agent.local_addr()).as_str(),
                metrics = format!("http://{}{}", agent.local_addr(), cli.telemetry_path).as_str(),
                "demo: the agent runs against the built-in Microsoft 365 simulator, one mailbox per failure mode (ctrl-c to stop)"
            );
            serve(agent, hangup).await;
            drop(demo);
            Ok(0)
        }
        Command::Simulate(args) => {
            let sim = Arc::new(smtp_oauth_exporter::sim::Simulator::start().await?);
            // Hours of runs must not grow its memory: nothing is kept for tests here.
            sim.stop_recording();
            std::fs::create_dir_all(&args.config_out)?;
            let opts = smtp_oauth_exporter::sim::fleet::FleetOptions {
                mailboxes: args.mailboxes,
                smtp_schedule: args.smtp_schedule.clone(),
                token_schedule: args.token_schedule.clone(),
                graph_schedule: args.graph_schedule.clone(),
                startup_spread: args.startup_spread.clone(),
                max_concurrent_checks: args.max_concurrent_checks,
                no_schedule: args.no_schedule,
                faults: args.faults_every.is_some(),
                per_app: args.per_app.max(1),
                tenant_per_app: args.tenant_per_app,
                canary_percent: args.canary_percent,
                canary_schedule: args.canary_schedule.clone(),
                health_schedule: args.health_schedule.clone(),
                traffic_share: args.traffic_share,
                traffic_schedule: args.traffic_schedule.clone(),
            };
            let path = smtp_oauth_exporter::sim::fleet::generate(&sim, &opts, &args.config_out)?;
            if let Some(every) = &args.faults_every {
                let every = smtp_oauth_exporter::plan::parse_duration(every)
                    .map_err(|e| anyhow::anyhow!("--faults-every: {e}"))?;
                let sim = sim.clone();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    for round in 0.. {
                        tick.tick().await;
                        smtp_oauth_exporter::sim::fleet::apply_faults(&sim, &opts, round);
                        tracing::info!(round, "fault mix moved");
                    }
                });
            }
            tracing::info!(
                mailboxes = args.mailboxes,
                config = %path.display(),
                https = sim.base_url().as_str(),
                smtp = %sim.smtp_addr,
                stats = format!("{}/sim/stats", sim.base_url()).as_str(),
                "simulator ready (ctrl-c to stop)"
            );
            shutdown_signal().await;
            Ok(0)
        }
        Command::Check(args) => {
            let req = check_command::Request {
                names: args.names.clone(),
                output: args.output,
                send_test_to: args.send_test_to.clone(),
                canary: !args.no_canary,
            };
            // The demo's simulator must live while the checks run against it.
            let (plan, _demo) = if args.demo {
                let demo = demo::Demo::start().await?;
                (demo.plan().await?, Some(demo))
            } else {
                (config::load_async(cli.config_file.clone()).await?, None)
            };
            for w in &plan.warnings {
                to_stderr(&format!("warning: {w}\n"));
            }
            let out = check_command::run(Arc::new(plan), &req).await;
            to_stdout(&out.stdout);
            Ok(out.exit_code)
        }
    }
}

/// Writes to standard output. A reader that went away (`check | head -1`) is no error of the
/// command's: the exit code still says what the checks found (`print!` would panic, exit 101).
fn to_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// [`to_stdout`] for standard error.
fn to_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// SIGHUP, listened for from the start of the agent's start-up.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Takes SIGHUP over from its default (ending the process): from here on one is kept until
    /// [`Hangup::recv`] takes it.
    fn install() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP"))
                .ok(),
        }
    }

    /// The next SIGHUP (one that came before the call included).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            if s.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }

    /// Whether a SIGHUP came and has not been taken yet.
    fn pending(&mut self) -> bool {
        use futures::FutureExt;
        self.recv().now_or_never().is_some()
    }
}

/// Runs the agent until SIGTERM or ctrl-c; each SIGHUP reloads the configuration (the outcome
/// is logged, and `smtp_oauth_config_last_reload_successful` says it), one that came while the
/// agent started included.
async fn serve(agent: agent::Agent, mut hangup: Hangup) {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    if hangup.pending() {
        tracing::info!(
            "SIGHUP during start-up: reloading the configuration now that the agent runs"
        );
        let _ = agent.reload().await;
    }
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            () = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = agent.reload().await;
            }
        }
    }
    tracing::info!("shutting down");
    agent.stop().await;
}

/// As Go raises it for every exporter: the soft limit on open files up to the hard one, so
/// that --web.max-connections and a large fleet's sockets fit (1,024 is a common soft default,
/// and a check that finds no descriptor fails with `local_resources`). Both limits are logged:
/// they are the first thing to look at when that reason shows (at info for the agent, at debug
/// for the one-shot commands, whose output is for people and scripts).
fn raise_open_file_limit(agent: bool) {
    #[cfg(unix)]
    {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE);
        match (before, rlimit::increase_nofile_limit(u64::MAX)) {
            (Ok((soft, hard)), Ok(now)) if agent => {
                tracing::info!(soft_before = soft, soft = now, hard, "open file limit")
            }
            (Ok((soft, hard)), Ok(now)) => {
                tracing::debug!(soft_before = soft, soft = now, hard, "open file limit")
            }
            (_, Err(e)) | (Err(e), _) => {
                tracing::warn!(error = %e, "cannot read or raise the open file limit")
            }
        }
    }
    #[cfg(not(unix))]
    let _ = agent;
}

/// The host name (a Kubernetes pod's name): `$HOSTNAME`, else the kernel's.
fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
