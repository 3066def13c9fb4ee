//! Configuration: the YAML file is parsed into raw structs, then validated into the [`Plan`].
//! Every error names the file, the line and column when the parser has them, and the field path.

mod apps;
mod credentials;
mod raw;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use raw::RawConfig;

use crate::input::{clip_quoted, MAX_QUOTED_CHARS};
use crate::plan::Plan;

/// A configuration error: where it is and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path such as `apps[0].client_id`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(l), Some(c)) = (self.line, self.column) {
            write!(f, ":{l}:{c}")?;
        }
        if !self.path.is_empty() && self.path != "." {
            // A field path holds the file's own keys: a huge one is named, not repeated.
            let mut path: String = self.path.chars().take(MAX_QUOTED_CHARS).collect();
            if path.len() < self.path.len() {
                path.push('…');
            }
            write!(f, ": {path}")?;
        }
        write!(f, ": {}", clip_quoted(&self.message))
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates a configuration file. It reads files (the configuration, secrets,
/// certificates, CA files): call it off the async workers, or use [`load_async`].
pub fn load(path: &Path) -> Result<Plan, ConfigError> {
    let file = path.display().to_string();
    let text =
        crate::input::read_to_string_capped(path, crate::input::MAX_CONFIG_BYTES).map_err(|e| {
            ConfigError {
                file: file.clone(),
                line: None,
                column: None,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }
        })?;
    let mut plan = from_yaml(&text, &file, path.parent().unwrap_or(Path::new(".")))?;
    if let Some(mode) = crate::input::others_may_read(path).filter(|_| plan.inline_secrets > 0) {
        plan.warnings.push(format!(
            "{file}: holds {} client secret(s) inline and is readable by group or others (mode {mode:o}): chmod 600 {file}, or move the secrets to client_secret_file",
            plan.inline_secrets
        ));
    }
    Ok(plan)
}

/// [`load`] on tokio's blocking pool, so that no file read holds an async worker.
pub async fn load_async(path: PathBuf) -> Result<Plan, ConfigError> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || load(&path))
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError {
                file: shown,
                line: None,
                column: None,
                path: String::new(),
                message: format!("loading the configuration failed: {e}"),
            })
        })
}

/// Parses and validates YAML text; `file` names it in errors, relative paths resolve from `base`.
/// Like [`load`], it reads the files the configuration names.
pub fn from_yaml(text: &str, file: &str, base: &Path) -> Result<Plan, ConfigError> {
    if let Err(deep) = crate::input::yaml_nesting(text, crate::input::MAX_YAML_NESTING) {
        return Err(ConfigError {
            file: file.to_string(),
            line: Some(deep.line),
            column: Some(deep.column),
            path: String::new(),
            message: deep.message(),
        });
    }
    let de = yaml_serde::Deserializer::from_str(text);
    let raw: RawConfig = match serde_path_to_error::deserialize(de) {
        Ok(raw) => raw,
        Err(e) => return Err(parse_error(e, file)),
    };
    validate::Validator::new(file, base).validate(raw)
}

/// A YAML or shape error, in the file's words.
fn parse_error(e: serde_path_to_error::Error<yaml_serde::Error>, file: &str) -> ConfigError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    let loc = inner.location();
    let mut message = inner.to_string();
    // The YAML error appends its own position; we print it in front instead.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    // ... and may start with its own copy of the field path.
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.[]".contains(c))
        {
            message = rest.to_string();
        }
    }
    // Name the expected shape in the file's words, not our type names.
    for (internal, shown) in [
        (
            "struct RawConfig",
            "a mapping with scheduler, probe, diagnosis, metrics, alerts, alertmanager, defaults, apps, mailboxes and allow_empty",
        ),
        (
            "struct RawScheduler",
            "a mapping with max_concurrent_checks, max_concurrent_probes and startup_spread",
        ),
        (
            "struct RawProbe",
            "a mapping with freshness, rate_limit and client_rate_limit",
        ),
        ("f64", "a number"),
        ("struct RawDiagnosis", "a mapping with expiry_warning"),
        ("struct RawMetrics", "a mapping with detail"),
        (
            "struct RawAlerts",
            "a mapping with credential_critical, server_certificate_warning, failing_for, stale_intervals and evaluation_interval",
        ),
        (
            "struct RawAlertmanager",
            "a mapping with urls, timeout, resend_interval, basic_auth and bearer_token_file",
        ),
        ("struct RawBasicAuth", "a mapping with username and password_file"),
        ("u32", "a whole number"),
        ("struct RawDefaults", "a mapping with cloud and checks"),
        ("struct RawChecks", "a mapping with token, smtp and graph"),
        (
            "struct RawCheck",
            "a mapping with enabled, schedule and timeout",
        ),
        (
            "struct RawApp",
            "an app (a mapping with name, tenant, client_id, ...)",
        ),
        (
            "struct RawCertificate",
            "a mapping with cert_file, key_file and algorithm",
        ),
        (
            "struct RawMailbox",
            "a mailbox (a mapping with name, app, address, ...)",
        ),
        ("u16", "a port number (1-65535)"),
        ("usize", "a whole number"),
    ] {
        message = message.replace(
            &format!("expected {internal}"),
            &format!("expected {shown}"),
        );
    }
    ConfigError {
        file: file.to_string(),
        line: loc.as_ref().map(|l| l.line()),
        column: loc.as_ref().map(|l| l.column()),
        path,
        message,
    }
}
