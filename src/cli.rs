//! Command line in the Prometheus exporter style: `--config.file`, `--web.listen-address`,
//! `--log.level`, and the subcommands `serve` (default), `demo`, `check` and `check-config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::check_command::Output;
use crate::logging::{LogFormat, LogLevel};

/// Default port: 9587 ("SMTP submission 587" in the exporter range). No widely deployed exporter
/// uses it; see the README.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9587";
/// Where `demo` listens unless told otherwise: loopback only.
pub const DEMO_LISTEN_ADDRESS: &str = "127.0.0.1:9587";

#[derive(Debug, Parser)]
#[command(
    name = "smtp-oauth-exporter",
    about = "Watches Microsoft 365 SMTP with OAuth 2.0 client credentials (token, SMTP AUTH XOAUTH2, credential expiry), says which setup step broke and how to fix it, and exports Prometheus metrics.",
    version = crate::version::long(),
    disable_version_flag = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (YAML).
    #[arg(
        long = "config.file",
        global = true,
        default_value = "smtp-oauth-exporter.yml",
        value_name = "PATH"
    )]
    pub config_file: PathBuf,

    /// Validate the configuration file and exit (same as the check-config command).
    #[arg(long = "config.check", global = true)]
    pub config_check: bool,

    /// Address to listen on for the web endpoint (host:port, or :port for all interfaces)
    /// [default: :9587; 127.0.0.1:9587 for demo].
    #[arg(long = "web.listen-address", global = true, value_name = "ADDR")]
    pub listen_address: Option<String>,

    /// Path under which metrics are exposed.
    #[arg(
        long = "web.telemetry-path",
        global = true,
        default_value = "/metrics",
        value_name = "PATH"
    )]
    pub telemetry_path: String,

    /// Web configuration file (exporter-toolkit format): TLS, client certificates, basic auth.
    #[arg(long = "web.config.file", global = true, value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Connections the endpoint keeps open at once; when all are, the one idle longest (no
    /// request in progress) is closed to make room for a new one.
    #[arg(long = "web.max-connections", global = true, default_value_t = crate::agent::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,

    /// Split the fleet across this many replicas (each checks its share, by a stable hash).
    #[arg(
        long = "shard.count",
        global = true,
        default_value_t = 1,
        value_name = "N"
    )]
    pub shard_count: u32,

    /// This replica's index, 0 to shard.count-1 [default: the ordinal at the end of the host
    /// name, as a StatefulSet names its pods (smtp-oauth-exporter-2 is 2)].
    #[arg(long = "shard.index", global = true, value_name = "I")]
    pub shard_index: Option<u32>,

    /// What the shard hash splits: by app (an app with its mailboxes on one replica) or by
    /// mailbox (for fleets dominated by one app).
    #[arg(long = "shard.by", global = true, value_enum, default_value = "app")]
    pub shard_by: crate::plan::ShardBy,

    /// Enable shutdown-free reload over HTTP: `POST /-/reload` re-reads the configuration, as
    /// SIGHUP does (the Prometheus flag).
    #[arg(long = "web.enable-lifecycle", global = true)]
    pub enable_lifecycle: bool,

    /// Only log messages at or above this level.
    #[arg(long = "log.level", global = true, value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log format (both write to stderr, with the same keys).
    #[arg(
        long = "log.format",
        global = true,
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
}

impl Cli {
    /// The shard from the flags (`None` for one replica); the index falls back to the host
    /// name's ordinal.
    pub fn shard(&self, hostname: Option<&str>) -> Result<Option<crate::plan::Shard>, String> {
        if self.shard_count <= 1 {
            if self.shard_count == 0 {
                return Err("--shard.count must be at least 1".into());
            }
            return Ok(None);
        }
        let index = match self.shard_index {
            Some(i) => i,
            None => hostname
                .and_then(|h| h.rsplit_once('-'))
                .and_then(|(_, n)| n.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "--shard.index is not given and the host name {:?} does not end in -N (a StatefulSet pod's ordinal)",
                        hostname.unwrap_or("")
                    )
                })?,
        };
        if index >= self.shard_count {
            return Err(format!(
                "--shard.index {index} is not below --shard.count {}",
                self.shard_count
            ));
        }
        Ok(Some(crate::plan::Shard {
            count: self.shard_count,
            index,
            by: self.shard_by,
        }))
    }
}

#[derive(Debug, Subcommand, Clone)]
pub enum Command {
    /// Run the agent with the configuration file (the default).
    Serve,
    /// Start the embedded Microsoft 365 simulator on loopback and run the agent against it: one
    /// mailbox per failure mode, each named after it.
    Demo,
    /// Run the checks of the named mailboxes and apps now and print what works, what is broken
    /// and how to fix it (exit 0 when every check passes, 1 when one fails).
    Check(CheckArgs),
    /// Validate the configuration file and exit.
    CheckConfig,
    /// Print the Prometheus alerting rules for the configuration file's thresholds and
    /// `alerts.runbook_base_url` (with --defaults: the shipped rules file).
    Rules(RulesArgs),
    /// Serve a generated tenant of N healthy mailboxes over N/10 apps on loopback (the
    /// simulator alone) and write the agent configuration that checks it, for measuring the
    /// agent in its own process.
    Simulate(Box<SimulateArgs>),
}

#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// How many mailboxes (over mailboxes/per-app apps).
    #[arg(long, default_value_t = 1000)]
    pub mailboxes: usize,
    /// Mailboxes per app (1 for one app per mailbox; the mailbox count for one app).
    #[arg(long = "per-app", default_value_t = 10)]
    pub per_app: usize,
    /// Each app in a tenant of its own (a managed service's customers), not all in one.
    #[arg(long = "tenant-per-app")]
    pub tenant_per_app: bool,
    /// A delivery canary on this share of the mailboxes, in percent.
    #[arg(long = "canary-percent", default_value_t = 0.0)]
    pub canary_percent: f64,
    /// The canaries' schedule.
    #[arg(long = "canary-schedule", default_value = "15m")]
    pub canary_schedule: String,
    /// Read every tenant's service health on this schedule (off without it).
    #[arg(long = "health-schedule", value_name = "DURATION")]
    pub health_schedule: Option<String>,
    /// Where to write the agent configuration (and its CA and secret files, beside it).
    #[arg(long = "config-out", value_name = "DIR", default_value = "simulated")]
    pub config_out: PathBuf,
    /// The SMTP check's schedule in the generated configuration.
    #[arg(long = "smtp-schedule", default_value = "5m")]
    pub smtp_schedule: String,
    /// The token check's schedule in the generated configuration.
    #[arg(long = "token-schedule", default_value = "5m")]
    pub token_schedule: String,
    /// The Graph check's schedule in the generated configuration.
    #[arg(long = "graph-schedule", default_value = "6h")]
    pub graph_schedule: String,
    /// scheduler.startup_spread in the generated configuration.
    #[arg(long = "startup-spread", default_value = "60s")]
    pub startup_spread: String,
    /// scheduler.max_concurrent_checks in the generated configuration.
    #[arg(long = "max-concurrent-checks", default_value_t = 100)]
    pub max_concurrent_checks: usize,
    /// Switch every scheduled check off in the generated configuration (for `/probe` alone).
    #[arg(long = "no-schedule")]
    pub no_schedule: bool,
    /// The share of the mailboxes whose traffic is watched in message trace (0.01: 1%).
    #[arg(long = "traffic-share", default_value_t = 0.0)]
    pub traffic_share: f64,
    /// The traffic check's schedule in the generated configuration.
    #[arg(long = "traffic-schedule", default_value = "15m")]
    pub traffic_schedule: String,
    /// A mix of faults on a third of the fleet, moved to other apps and mailboxes every this
    /// long (for the soak test); none when absent.
    #[arg(long = "faults-every", value_name = "DURATION")]
    pub faults_every: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RulesArgs {
    /// The default thresholds and runbook links, without reading a configuration file.
    #[arg(long)]
    pub defaults: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Mailboxes and apps to check, by name [default: all].
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,

    /// How to print the result: text for people, json (the /status schema), nagios (one
    /// status line with perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,

    /// Send one real test message from the (one) named mailbox to ADDRESS through the
    /// authenticated session, and print the server's reply; with a canary on the mailbox, wait
    /// for the message with its reader and print the delivery latency. Nothing else is sent,
    /// except the delivery canaries the configuration enables (see --no-canary).
    #[arg(long = "send-test-to", value_name = "ADDRESS")]
    pub send_test_to: Option<String>,

    /// Do not run the delivery canaries (no message is sent, none is searched for).
    #[arg(long = "no-canary")]
    pub no_canary: bool,

    /// Check the built-in demo's scenarios (its simulator runs in this process) instead of the
    /// configuration file.
    #[arg(long)]
    pub demo: bool,
}

impl Command {
    pub fn is_check_config(&self) -> bool {
        matches!(self, Command::CheckConfig)
    }
}

/// `:9587` means every interface, as in Go exporters.
pub fn normalize_listen_address(a: &str) -> String {
    if let Some(port) = a.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        a.to_string()
    }
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    fn shard(args: &[&str], host: Option<&str>) -> Result<Option<crate::plan::Shard>, String> {
        let mut all = vec!["smtp-oauth-exporter"];
        all.extend(args);
        Cli::parse_from(all).shard(host)
    }

    #[test]
    fn the_index_comes_from_the_flag_or_the_statefulset_ordinal() {
        assert_eq!(shard(&[], Some("host-3")), Ok(None));
        let s = shard(&["--shard.count", "4", "--shard.index", "1"], None)
            .unwrap()
            .unwrap();
        assert_eq!((s.count, s.index), (4, 1));
        let s = shard(&["--shard.count", "4"], Some("smtp-oauth-exporter-3"))
            .unwrap()
            .unwrap();
        assert_eq!(s.index, 3);
        assert_eq!(s.by, crate::plan::ShardBy::App);
        let e = shard(&["--shard.count", "4"], Some("smtp-oauth-exporter")).unwrap_err();
        assert!(e.contains("does not end in -N"), "{e}");
        let e = shard(&["--shard.count", "2"], Some("pod-2")).unwrap_err();
        assert!(e.contains("not below"), "{e}");
        let s = shard(
            &[
                "--shard.count",
                "2",
                "--shard.by",
                "mailbox",
                "--shard.index",
                "0",
            ],
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.by, crate::plan::ShardBy::Mailbox);
    }
}
