//! Log set-up (`--log.level`, `--log.format=logfmt|json`, to stderr) and the one line each check
//! run writes: target, check, outcome, duration, reason, and Microsoft's trace/correlation ids.

use std::str::FromStr;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::checks::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Installs the global subscriber. Our crate logs at `level`; dependencies only from `warn` up,
/// so no library can print a request (and the credential in it) at debug level.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::from_str(&format!("warn,smtp_oauth_exporter={}", level.as_str()))
        .expect("static filter");
    let layer = match format {
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_target(false)
            .with_span_name(false)
            .with_span_path(false)
            .layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A second init (tests start several agents in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

/// Logs one finished run.
pub fn log_report(r: &Report) {
    let duration = format!("{:.3}", r.duration.as_secs_f64());
    match &r.failure {
        None => tracing::info!(
            target: "smtp_oauth_exporter::check",
            check = r.kind.as_str(),
            target = r.target.as_str(),
            outcome = "success",
            duration_seconds = duration.as_str(),
            "check succeeded"
        ),
        Some(f) => tracing::warn!(
            target: "smtp_oauth_exporter::check",
            check = r.kind.as_str(),
            target = r.target.as_str(),
            outcome = "failure",
            duration_seconds = duration.as_str(),
            reason = f.reason,
            aadsts = f.aadsts.map(|c| c.to_string()).unwrap_or_default().as_str(),
            trace_id = f.trace_id.as_deref().unwrap_or(""),
            correlation_id = f.correlation_id.as_deref().unwrap_or(""),
            detail = f.message.as_str(),
            "check failed"
        ),
    }
}
