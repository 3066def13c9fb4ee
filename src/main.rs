//! The `smtp-oauth-exporter` binary: parse the command line, set up logging, run, map errors to
//! exit codes (0 fine, 1 failure, 2 usage).
#![forbid(unsafe_code)]

use clap::Parser;
use smtp_oauth_exporter::cli::{self, Cli, Command};
use smtp_oauth_exporter::{agent, config, demo, logging};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);
    let command = if cli.config_check {
        Command::CheckConfig
    } else {
        cli.command.unwrap_or(Command::Serve)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if command == Command::CheckConfig {
                eprintln!("error: {e:#}");
            } else {
                tracing::error!("{e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, command: Command) -> anyhow::Result<()> {
    let listen =
        cli::normalize_listen_address(cli.listen_address.as_deref().unwrap_or(match command {
            Command::Demo => "127.0.0.1:9587",
            _ => cli::DEFAULT_LISTEN_ADDRESS,
        }));
    let opts = agent::ServeOptions {
        listen_address: listen,
        telemetry_path: cli.telemetry_path.clone(),
    };
    match command {
        Command::CheckConfig => {
            let c = config::Config::load(&cli.config_file)?;
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: configuration is valid ({} apps, {} mailboxes)",
                cli.config_file.display(),
                c.apps.len(),
                c.mailboxes.len()
            );
            Ok(())
        }
        Command::Serve => {
            let c = config::Config::load(&cli.config_file)?;
            let agent = agent::Agent::start(c, &opts).await?;
            agent.run_until(shutdown_signal()).await;
            Ok(())
        }
        Command::Demo => {
            let demo = demo::Demo::start().await?;
            let agent = agent::Agent::start(demo.config.clone(), &opts).await?;
            eprintln!(
                "demo: simulator on {}; agent on http://{}{} (ctrl-c to stop)",
                demo.sim.addr_summary(),
                agent.local_addr(),
                cli.telemetry_path
            );
            agent.run_until(shutdown_signal()).await;
            drop(demo);
            Ok(())
        }
    }
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
