//! The configuration file exactly as written: serde structs that reject unknown fields.
//! Nothing here is trusted; `config::validate` turns it into the plan.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub scheduler: RawScheduler,
    #[serde(default)]
    pub probe: RawProbe,
    #[serde(default)]
    pub diagnosis: RawDiagnosis,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub alerts: RawAlerts,
    pub alertmanager: Option<RawAlertmanager>,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub apps: Vec<RawApp>,
    #[serde(default)]
    pub mailboxes: Vec<RawMailbox>,
    /// Run with no apps and no mailboxes (otherwise such a file is refused: an empty file that
    /// replaced the real one would silently stop every check and resolve every alert).
    pub allow_empty: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScheduler {
    pub max_concurrent_checks: Option<usize>,
    pub max_concurrent_probes: Option<usize>,
    pub startup_spread: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub freshness: Option<String>,
    pub rate_limit: Option<f64>,
    pub client_rate_limit: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    pub credential_critical: Option<String>,
    pub server_certificate_warning: Option<String>,
    pub failing_for: Option<String>,
    pub stale_intervals: Option<u32>,
    pub evaluation_interval: Option<String>,
    pub canary_slow: Option<String>,
    pub runbook_base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertmanager {
    #[serde(default)]
    pub urls: Vec<String>,
    pub timeout: Option<String>,
    pub resend_interval: Option<String>,
    pub basic_auth: Option<RawBasicAuth>,
    pub bearer_token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub detail: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiagnosis {
    pub expiry_warning: Option<String>,
    pub traffic_failed_share: Option<f64>,
    pub credential_used_within: Option<String>,
    pub credential_stale_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub cloud: Option<String>,
    #[serde(default)]
    pub checks: RawChecks,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawChecks {
    pub token: Option<RawCheck>,
    pub smtp: Option<RawCheck>,
    pub graph: Option<RawCheck>,
    /// Service health of the app's tenant (off unless enabled).
    pub health: Option<RawCheck>,
    /// The last sign-in of each of the app's credentials (off unless enabled).
    pub activity: Option<RawCheck>,
    /// Its mailboxes' traffic in message trace (off unless enabled).
    pub traffic: Option<RawCheck>,
    /// The inventory of its tenant's apps that can send SMTP (off unless enabled).
    pub discovery: Option<RawCheck>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub enabled: Option<bool>,
    pub schedule: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub name: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub cloud: Option<String>,
    pub client_secret: Option<crate::secret::Secret>,
    pub client_secret_file: Option<String>,
    pub client_secret_env: Option<String>,
    pub certificate: Option<RawCertificate>,
    pub login_url: Option<String>,
    pub graph_url: Option<String>,
    pub ca_file: Option<String>,
    pub graph_reader: Option<String>,
    pub authorization: Option<String>,
    pub app_management_policy: Option<bool>,
    #[serde(default)]
    pub checks: RawChecks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub algorithm: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMailbox {
    pub name: Option<String>,
    pub app: Option<String>,
    pub address: Option<String>,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub ehlo_name: Option<String>,
    pub mail_from: Option<bool>,
    pub tls_insecure_skip_verify: Option<bool>,
    /// With its app's traffic watched: the longest silence that is normal.
    pub expect_traffic_within: Option<String>,
    #[serde(default)]
    pub checks: RawChecks,
    /// The delivery canary (off without this block).
    pub canary: Option<RawCanary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub enabled: Option<bool>,
    pub to: Option<String>,
    pub reader: Option<String>,
    pub schedule: Option<String>,
    pub timeout: Option<String>,
}
