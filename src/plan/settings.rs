//! The agent-wide settings a plan carries (scheduler, probes, diagnosis, metrics, alert
//! thresholds, Alertmanager push) and the per-check settings (enabled, schedule, timeout).

use std::time::Duration;

use url::Url;

use super::Schedule;
use crate::secret::Secret;

/// Agent-wide scheduling settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    /// At most this many checks of one kind run at the same time; the others wait for a slot.
    pub max_concurrent_checks: usize,
    /// First runs after start are spread over at most this long.
    pub startup_spread: Duration,
    /// At most this many `/probe` requests run at the same time.
    pub max_concurrent_probes: usize,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            max_concurrent_checks: 100,
            startup_spread: Duration::from_secs(60),
            max_concurrent_probes: 20,
        }
    }
}

/// What `/probe` may cost (`probe:`): how fresh a result it answers with instead of running the
/// check again, and how many runs it starts per second.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// A probe answers with the target's last run (the scheduler's or another probe's) when it
    /// is younger than this; `None`: half the check's interval; zero: every probe runs.
    pub freshness: Option<Duration>,
    /// Runs that probes start per second, all clients together (a burst of twice as many);
    /// zero: no limit.
    pub rate_limit: f64,
    /// Runs that one client address starts per second (a burst of twice as many); zero: no
    /// limit.
    pub client_rate_limit: f64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            freshness: None,
            rate_limit: 10.0,
            client_rate_limit: 5.0,
        }
    }
}

impl ProbeSettings {
    /// How young a result of a check on this schedule must be to answer a probe.
    pub fn window(&self, schedule: &super::Schedule) -> Duration {
        self.freshness
            .unwrap_or_else(|| schedule.typical_interval() / 2)
    }
}

/// How results become verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosisSettings {
    /// An in-use secret or certificate expiring within this long gives a warning verdict.
    pub expiry_warning: Duration,
    /// A credential that signed in within this long is in use by the application, whether or
    /// not the agent uses it: its expiry counts as the in-use credential's (credential activity).
    pub credential_used_within: Duration,
    /// A credential whose last sign-in is older than this is stale (credential activity).
    pub credential_stale_after: Duration,
    /// The share of a watched mailbox's messages of the last 24 h that failed or were
    /// quarantined above which it is a finding (traffic).
    pub traffic_failed_share: f64,
}

impl Default for DiagnosisSettings {
    fn default() -> Self {
        Self {
            expiry_warning: Duration::from_secs(30 * 86_400),
            credential_used_within: Duration::from_secs(7 * 86_400),
            credential_stale_after: Duration::from_secs(90 * 86_400),
            traffic_failed_share: 0.1,
        }
    }
}

/// What `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSettings {
    /// Beyond the cardinality budget: per-mailbox SMTP phases, run counters and mailbox info,
    /// per-app token lifetime and token requests, credential start dates.
    pub detail: bool,
}

/// How the agent pushes its own alerts to Alertmanager (`alertmanager:`), when configured.
#[derive(Debug, Clone)]
pub struct AlertmanagerSettings {
    /// Alertmanagers (each gets every alert), base URLs: `{url}/api/v2/alerts`.
    pub urls: Vec<Url>,
    pub timeout: Duration,
    /// Active alerts are sent again this often (and at once when the set changes).
    pub resend_interval: Duration,
    pub auth: Option<AlertmanagerAuth>,
}

/// Credentials for Alertmanager, read from files at load time.
#[derive(Debug, Clone)]
pub enum AlertmanagerAuth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// When and how long one check kind runs for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    pub enabled: bool,
    pub schedule: Schedule,
    pub timeout: Duration,
}

/// The agent-wide settings of a plan.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scheduler: SchedulerSettings,
    /// What `/probe` may cost.
    pub probe: ProbeSettings,
    pub diagnosis: DiagnosisSettings,
    pub metrics: MetricsSettings,
    /// The alert thresholds (the agent's own `/alerts` and push).
    pub alerts: AlertSettings,
    /// How often the agent evaluates its alerts.
    pub alert_evaluation_interval: Duration,
    pub alertmanager: Option<AlertmanagerSettings>,
}

/// The alert thresholds, configurable (`alerts:`); the shipped rules use the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSettings {
    /// The in-use credential expiring within this long: warning (`diagnosis.expiry_warning`).
    pub credential_warning: Duration,
    /// ... within this long: critical.
    pub credential_critical: Duration,
    /// The SMTP server's certificate expiring within this long: warning.
    pub server_certificate_warning: Duration,
    /// How long a failure lasts before it alerts (Prometheus' `for:`): longer than one run, so
    /// that a single transient failure never pages.
    pub failing_for: Duration,
    /// A check that has not succeeded for this many of its intervals.
    pub stale_intervals: u32,
    /// The canary's delivery taking longer than this: warning.
    pub canary_slow: Duration,
    /// A credential that signed in within this long counts as used by the application
    /// (`diagnosis.credential_used_within`): its expiry alerts as the in-use one's.
    pub credential_used_within: Duration,
    /// A credential whose last sign-in is older than this is stale
    /// (`diagnosis.credential_stale_after`): an info alert.
    pub credential_stale_after: Duration,
    /// A watched mailbox whose failed and quarantined messages are more than this share of
    /// the last 24 h's (`diagnosis.traffic_failed_share`).
    pub traffic_failed_share: f64,
    /// Where the alerts' `runbook_url` links point (`alerts.runbook_base_url`, such as an
    /// internal copy of `docs/runbooks.md`); `None`: the agent's own `/runbooks`.
    pub runbook_base_url: Option<String>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            credential_warning: Duration::from_secs(30 * 86_400),
            credential_critical: Duration::from_secs(7 * 86_400),
            server_certificate_warning: Duration::from_secs(14 * 86_400),
            failing_for: Duration::from_secs(600),
            stale_intervals: 3,
            canary_slow: Duration::from_secs(600),
            credential_used_within: Duration::from_secs(7 * 86_400),
            credential_stale_after: Duration::from_secs(90 * 86_400),
            traffic_failed_share: 0.1,
            runbook_base_url: None,
        }
    }
}
