//! Log set-up (`--log.level`, `--log.format=logfmt|json`, to stderr) and the lines the agent
//! writes: one per check run (target, check, outcome, duration, reason, Microsoft's ids) and one
//! per verdict change. Both formats carry the same keys (`ts`, `level`, `msg`, then the fields),
//! the same lower-case level names, and numbers as numbers.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::checks::Report;
use crate::diagnosis::{Severity, Verdict};

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
    // A second init (tests start several agents in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(Lines { format }.with_filter(filter))
        .try_init();
}

/// A field value as the line shows it.
enum Value {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
}

#[derive(Default)]
struct Fields(Vec<(&'static str, Value)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), Value::Str(value.to_string())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), Value::Int(value.into())));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), Value::Int(value.into())));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), Value::Float(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::Bool(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // The message arrives as format arguments, whose Debug is the text itself.
        self.0
            .push((field.name(), Value::Str(format!("{value:?}"))));
    }
}

/// The layer that writes one line per event, logfmt or JSON, to stderr.
struct Lines {
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            tracing::Level::DEBUG => "debug",
            tracing::Level::TRACE => "trace",
        };
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut all = vec![
            ("ts", Value::Str(ts)),
            ("level", Value::Str(level.to_string())),
        ];
        for (k, v) in fields.0 {
            all.push((if k == "message" { "msg" } else { k }, v));
        }
        let line = match self.format {
            LogFormat::Logfmt => logfmt(&all),
            LogFormat::Json => json(&all),
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

fn logfmt(fields: &[(&str, Value)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push('=');
        match v {
            Value::Str(s) => logfmt_string(&mut out, s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(x) => {
                let _ = write!(out, "{x}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
        }
    }
    out.push('\n');
    out
}

/// A logfmt value: bare when it can be, else double-quoted with `\"`, `\\` and control
/// characters escaped (as go-logfmt writes them); nothing else is escaped.
fn logfmt_string(out: &mut String, s: &str) {
    let bare = !s.is_empty()
        && s.chars()
            .all(|c| c > ' ' && c != '=' && c != '"' && c != '\\' && !c.is_control());
    if bare {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One JSON object per line, keys in the order logfmt writes them (`ts`, `level`, `msg` first).
fn json(fields: &[(&str, Value)]) -> String {
    let mut line = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let v = match v {
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Int(n) => serde_json::Value::from(i64::try_from(*n).unwrap_or(i64::MAX)),
            Value::Float(x) => serde_json::Number::from_f64(*x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Bool(b) => serde_json::Value::Bool(*b),
        };
        let _ = write!(
            line,
            "{}:{}",
            serde_json::Value::String((*k).to_string()),
            v
        );
    }
    line.push_str("}\n");
    line
}

/// Seconds rounded to the millisecond, for the log.
fn seconds(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Logs one finished run: successes at info, failures at warn.
pub fn log_report(r: &Report) {
    let duration = seconds(r.duration);
    match &r.failure {
        None => tracing::info!(
            target: "smtp_oauth_exporter::check",
            check = r.kind.as_str(),
            target = r.target.as_str(),
            outcome = "success",
            duration_seconds = duration,
            "check succeeded"
        ),
        Some(f) => tracing::warn!(
            target: "smtp_oauth_exporter::check",
            check = r.kind.as_str(),
            target = r.target.as_str(),
            outcome = "failure",
            duration_seconds = duration,
            reason = f.reason.as_str(),
            aadsts = f.aadsts.map(|c| c.to_string()).unwrap_or_default().as_str(),
            trace_id = f.trace_id.as_deref().unwrap_or(""),
            correlation_id = f.correlation_id.as_deref().unwrap_or(""),
            detail = f.message.as_str(),
            "check failed"
        ),
    }
}

/// Logs the service health issues that opened or closed since the last read of a tenant.
pub fn log_health_changes(
    tenant: &str,
    before: &[crate::checks::health::Issue],
    after: &[crate::checks::health::Issue],
) {
    for x in after
        .iter()
        .filter(|x| !before.iter().any(|b| b.id == x.id))
    {
        tracing::warn!(
            target: "smtp_oauth_exporter::health",
            tenant = tenant,
            id = x.id.as_str(),
            service = x.service.as_str(),
            classification = x.classification(),
            status = x.status.as_str(),
            title = x.title.as_str(),
            impact = x.impact.as_str(),
            "Microsoft 365 service health issue open"
        );
    }
    for x in before
        .iter()
        .filter(|b| !after.iter().any(|x| x.id == b.id))
    {
        tracing::info!(
            target: "smtp_oauth_exporter::health",
            tenant = tenant,
            id = x.id.as_str(),
            service = x.service.as_str(),
            "Microsoft 365 service health issue no longer open"
        );
    }
}

/// Logs a verdict that changed: at info when it is `ok` or `pending`, else at warn.
pub fn log_verdict(target: &str, v: &Verdict, old: Option<&Verdict>) {
    let was = old.map(|o| o.cause.label()).unwrap_or("none");
    if matches!(v.severity(), Severity::Ok | Severity::Pending) {
        tracing::info!(
            target: "smtp_oauth_exporter::verdict",
            target = target,
            step = v.step().as_str(),
            cause = v.cause.label(),
            severity = v.severity().as_str(),
            was = was,
            summary = v.summary.as_str(),
            "verdict changed"
        );
    } else {
        tracing::warn!(
            target: "smtp_oauth_exporter::verdict",
            target = target,
            step = v.step().as_str(),
            cause = v.cause.label(),
            severity = v.severity().as_str(),
            was = was,
            summary = v.summary.as_str(),
            remediation = v.remediation.as_str(),
            "verdict changed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_what_needs_it_and_escapes_no_apostrophe() {
        let line = logfmt(&[
            ("msg", Value::Str("check failed".into())),
            ("reason", Value::Str("secret_expired".into())),
            ("duration_seconds", Value::Float(0.048)),
            ("runs", Value::Int(3)),
            (
                "detail",
                Value::Str("app 'x' said \"no\"\nnext\u{1b}".into()),
            ),
            ("empty", Value::Str(String::new())),
        ]);
        assert_eq!(
            line,
            "msg=\"check failed\" reason=secret_expired duration_seconds=0.048 runs=3 detail=\"app 'x' said \\\"no\\\"\\nnext\\u001b\" empty=\"\"\n"
        );
    }

    #[test]
    fn json_has_numbers_as_numbers() {
        let line = json(&[
            ("level", Value::Str("info".into())),
            ("duration_seconds", Value::Float(0.048)),
            ("ok", Value::Bool(true)),
        ]);
        assert!(line.starts_with("{\"level\":\"info\","), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["duration_seconds"], serde_json::json!(0.048));
        assert_eq!(v["ok"], serde_json::json!(true));
        assert_eq!(v["level"], "info");
    }
}
