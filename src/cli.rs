//! Command line in the Prometheus exporter style: `--config.file`, `--web.listen-address`,
//! `--log.level`, and the subcommands `serve` (default), `demo` and `check-config`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::{LogFormat, LogLevel};

/// Default port: 9587 ("SMTP submission 587" in the exporter range). No widely deployed exporter
/// uses it; see the README.
pub const DEFAULT_LISTEN_ADDRESS: &str = ":9587";

#[derive(Debug, Parser)]
#[command(
    name = "smtp-oauth-exporter",
    about = "Watches Microsoft 365 SMTP with OAuth 2.0 client credentials (token, SMTP AUTH XOAUTH2, credential expiry) and exports Prometheus metrics.",
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

    /// Address to listen on for the web endpoint (host:port, or :port for all interfaces).
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

    /// Only log messages at or above this level.
    #[arg(long = "log.level", global = true, value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log format.
    #[arg(
        long = "log.format",
        global = true,
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Run the agent with the configuration file (the default).
    Serve,
    /// Start the embedded Microsoft 365 simulator on loopback and run the agent against it.
    Demo,
    /// Validate the configuration file and exit.
    CheckConfig,
}

/// `:9587` means every interface, as in Go exporters.
pub fn normalize_listen_address(a: &str) -> String {
    if let Some(port) = a.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        a.to_string()
    }
}
