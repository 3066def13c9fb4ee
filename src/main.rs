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
    // As Go raises it for every exporter: the soft limit on open files up to the hard one, so
    // that --web.max-connections and a large fleet's sockets fit (1,024 is a common default).
    #[cfg(unix)]
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(error = %e, "cannot raise the open file limit");
    }
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
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let nagios = matches!(&command, Command::Check(a) if a.output == Output::Nagios);
    match runtime.block_on(run(&cli, &command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if nagios {
                // The plugin convention: a check that cannot run is UNKNOWN, on stdout.
                println!("SMTP-OAUTH UNKNOWN - {e:#}");
                ExitCode::from(3)
            } else if command.is_check_config() || matches!(command, Command::Check(_)) {
                eprintln!("error: {e:#}");
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
                eprintln!("warning: {w}");
            }
            println!(
                "{}: configuration is valid ({} apps, {} mailboxes)",
                cli.config_file.display(),
                plan.apps.len(),
                plan.mailboxes.len()
            );
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
            let plan = config::load_async(cli.config_file.clone()).await?;
            let agent = agent::Agent::start(plan, &opts).await?;
            serve(agent).await;
            Ok(0)
        }
        Command::Demo => {
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
            serve(agent).await;
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
                traffic_share: args.traffic_share,
                traffic_schedule: args.traffic_schedule.clone(),
                ..Default::default()
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
                eprintln!("warning: {w}");
            }
            let out = check_command::run(Arc::new(plan), &req).await;
            print!("{}", out.stdout);
            Ok(out.exit_code)
        }
    }
}

/// Runs the agent until SIGTERM or ctrl-c; each SIGHUP reloads the configuration (the outcome
/// is logged, and `smtp_oauth_config_last_reload_successful` says it).
async fn serve(agent: agent::Agent) {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let reload = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let reload = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = reload => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = agent.reload().await;
            }
        }
    }
    tracing::info!("shutting down");
    agent.stop().await;
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
