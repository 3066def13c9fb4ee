//! The alerts, one table: each with its Prometheus rule (expression, `for`, severity, summary
//! and description templates, runbook anchor), from which `alerts/smtp-oauth-exporter.rules.yml`
//! is generated (a test keeps the shipped file equal), and the same conditions evaluated by the
//! agent itself for `GET /alerts` and the optional push to Alertmanager, with the same
//! thresholds, for sites without Prometheus rules. This file names the alerts; the rules, the
//! evaluation, the `for:` tracking and the push each have a file.

mod evaluate;
pub mod push;
mod rules;
mod tracker;

use std::fmt;

pub use evaluate::{evaluate, Alert, Candidate};
pub use rules::{rules, rules_yaml, Rule, BLIND_HOLD, RUNBOOKS_PATH};
pub use tracker::{Tracker, Update};

/// Every alert the project ships: the rule table and the agent's evaluator both match on this,
/// so a name cannot be mistyped in one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertName {
    TokenFailing,
    SmtpAuthFailing,
    SmtpUnreachable,
    StartTlsMissing,
    CanaryFailing,
    CanarySlow,
    CanaryJunk,
    CanaryReaderDenied,
    TrafficSilent,
    TrafficFailing,
    CredentialExpiringSoon,
    CredentialExpiring,
    CredentialExpired,
    AppCredentialExpiring,
    ActiveCredentialExpiringSoon,
    ActiveCredentialExpiring,
    CredentialStale,
    SendAsAppMissing,
    CredentialNotFound,
    ServerCertificateExpiring,
    CheckStale,
    GraphPermissionMissing,
    TlsVerificationOff,
    MicrosoftIncident,
    ConfigReloadFailing,
    ExporterDown,
    ExporterAbsent,
}

impl AlertName {
    /// Every alert, in the order of the rules file.
    pub const ALL: [AlertName; 27] = [
        AlertName::TokenFailing,
        AlertName::SmtpAuthFailing,
        AlertName::SmtpUnreachable,
        AlertName::StartTlsMissing,
        AlertName::CanaryFailing,
        AlertName::CanarySlow,
        AlertName::CanaryJunk,
        AlertName::CanaryReaderDenied,
        AlertName::TrafficSilent,
        AlertName::TrafficFailing,
        AlertName::CredentialExpiringSoon,
        AlertName::CredentialExpiring,
        AlertName::CredentialExpired,
        AlertName::AppCredentialExpiring,
        AlertName::ActiveCredentialExpiringSoon,
        AlertName::ActiveCredentialExpiring,
        AlertName::CredentialStale,
        AlertName::SendAsAppMissing,
        AlertName::CredentialNotFound,
        AlertName::ServerCertificateExpiring,
        AlertName::CheckStale,
        AlertName::GraphPermissionMissing,
        AlertName::TlsVerificationOff,
        AlertName::MicrosoftIncident,
        AlertName::ConfigReloadFailing,
        AlertName::ExporterDown,
        AlertName::ExporterAbsent,
    ];

    /// The `alertname` label.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::TokenFailing => "SmtpOAuthTokenFailing",
            AlertName::SmtpAuthFailing => "SmtpOAuthSmtpAuthFailing",
            AlertName::SmtpUnreachable => "SmtpOAuthSmtpUnreachable",
            AlertName::StartTlsMissing => "SmtpOAuthStartTlsMissing",
            AlertName::CanaryFailing => "SmtpOAuthCanaryFailing",
            AlertName::CanarySlow => "SmtpOAuthCanarySlow",
            AlertName::CanaryJunk => "SmtpOAuthCanaryJunk",
            AlertName::CanaryReaderDenied => "SmtpOAuthCanaryReaderDenied",
            AlertName::TrafficSilent => "SmtpOAuthTrafficSilent",
            AlertName::TrafficFailing => "SmtpOAuthTrafficFailing",
            AlertName::CredentialExpiringSoon => "SmtpOAuthCredentialExpiringSoon",
            AlertName::CredentialExpiring => "SmtpOAuthCredentialExpiring",
            AlertName::CredentialExpired => "SmtpOAuthCredentialExpired",
            AlertName::AppCredentialExpiring => "SmtpOAuthAppCredentialExpiring",
            AlertName::ActiveCredentialExpiringSoon => "SmtpOAuthActiveCredentialExpiringSoon",
            AlertName::ActiveCredentialExpiring => "SmtpOAuthActiveCredentialExpiring",
            AlertName::CredentialStale => "SmtpOAuthCredentialStale",
            AlertName::SendAsAppMissing => "SmtpOAuthSendAsAppMissing",
            AlertName::CredentialNotFound => "SmtpOAuthCredentialNotFound",
            AlertName::ServerCertificateExpiring => "SmtpOAuthServerCertificateExpiring",
            AlertName::CheckStale => "SmtpOAuthCheckStale",
            AlertName::GraphPermissionMissing => "SmtpOAuthGraphPermissionMissing",
            AlertName::TlsVerificationOff => "SmtpOAuthTlsVerificationOff",
            AlertName::MicrosoftIncident => "SmtpOAuthMicrosoftIncident",
            AlertName::ConfigReloadFailing => "SmtpOAuthConfigReloadFailing",
            AlertName::ExporterDown => "SmtpOAuthExporterDown",
            AlertName::ExporterAbsent => "SmtpOAuthExporterAbsent",
        }
    }

    /// Its section in `docs/runbooks.md`: the heading's anchor.
    pub fn anchor(self) -> String {
        self.as_str().to_lowercase()
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loud an alert is (its `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}
