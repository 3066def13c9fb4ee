//! Raw configuration → plan: defaults applied in one place, every value checked, names resolved
//! into shared references, files read. Each error carries the field path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use url::Url;

use super::raw::{self, RawCheck, RawConfig};
use super::ConfigError;
use crate::plan::{
    parse_duration, AlertSettings, AlertmanagerAuth, AlertmanagerSettings, App, CheckSettings,
    Cloud, DiagnosisSettings, MetricsSettings, NetClients, Plan, ProbeSettings, Schedule,
    SchedulerSettings, Settings,
};
use crate::secret::Secret;

/// Built-in default of each check kind: (schedule, timeout).
pub(super) const TOKEN_DEFAULT: (&str, &str) = ("5m", "15s");
pub(super) const SMTP_DEFAULT: (&str, &str) = ("5m", "30s");
pub(super) const GRAPH_DEFAULT: (&str, &str) = ("6h", "30s");
/// Service health every 5 minutes (Microsoft posts updates about every 30 minutes).
pub(super) const HEALTH_DEFAULT: (&str, &str) = ("5m", "30s");
/// Message trace every 15 minutes: at most 100 requests per 5 minutes per tenant, and the
/// trace lags a few minutes behind anyway.
pub(super) const TRAFFIC_DEFAULT: (&str, &str) = ("15m", "60s");
/// The inventory every 6 hours, as the credential reads (credentials change slowly; each
/// discovered app costs two Graph reads).
pub(super) const DISCOVERY_DEFAULT: (&str, &str) = ("6h", "60s");
/// Credential sign-in activity every hour (Entra ID updates the report within hours).
pub(super) const ACTIVITY_DEFAULT: (&str, &str) = ("1h", "30s");
/// The canary every 15 minutes, and 5 minutes for the message to arrive.
pub(super) const CANARY_DEFAULT: (&str, &str) = ("15m", "5m");
/// The canary never runs more often: Exchange Online allows a mailbox 30 messages a minute and
/// 10,000 recipients a day, and the canary must not eat into what the application sends.
pub(super) const CANARY_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// By tenant (lower case): the tenant's name as its first app with traffic watched writes it,
/// and that app.
pub(super) type TrafficTenants = HashMap<String, (String, Arc<App>)>;

pub struct Validator<'a> {
    pub(super) file: &'a str,
    base: &'a Path,
    pub(super) warnings: Vec<String>,
    /// Apps with their client secret inline in the file.
    pub(super) inline_secrets: usize,
    /// Network clients by CA file, shared by the apps that name the same one.
    pub(super) clients: HashMap<Option<PathBuf>, Arc<NetClients>>,
}

impl<'a> Validator<'a> {
    pub fn new(file: &'a str, base: &'a Path) -> Self {
        Self {
            file,
            base,
            warnings: Vec::new(),
            inline_secrets: 0,
            clients: HashMap::new(),
        }
    }

    pub(super) fn err(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: None,
            column: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// A warning when a file holding a secret may be read by other users of the host.
    pub(super) fn warn_if_others_read(&mut self, field: &str, path: &Path) {
        if let Some(mode) = crate::input::others_may_read(path) {
            self.warnings.push(format!(
                "{}: {field}: {} holds a secret and is readable by group or others (mode {mode:o}): chmod 600 {}",
                self.file,
                path.display(),
                path.display()
            ));
        }
    }

    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub fn validate(mut self, raw: RawConfig) -> Result<Plan, ConfigError> {
        let mut scheduler = SchedulerSettings::default();
        if let Some(n) = raw.scheduler.max_concurrent_checks {
            if n == 0 {
                return Err(self.err("scheduler.max_concurrent_checks", "must be at least 1"));
            }
            scheduler.max_concurrent_checks = n;
        }
        if let Some(n) = raw.scheduler.max_concurrent_probes {
            if n == 0 {
                return Err(self.err("scheduler.max_concurrent_probes", "must be at least 1"));
            }
            scheduler.max_concurrent_probes = n;
        }
        if let Some(s) = &raw.scheduler.startup_spread {
            scheduler.startup_spread =
                parse_duration(s).map_err(|m| self.err("scheduler.startup_spread", m))?;
        }
        let mut probe = ProbeSettings::default();
        if let Some(s) = &raw.probe.freshness {
            probe.freshness = Some(parse_duration(s).map_err(|m| self.err("probe.freshness", m))?);
        }
        for (field, value, into) in [
            ("rate_limit", raw.probe.rate_limit, &mut probe.rate_limit),
            (
                "client_rate_limit",
                raw.probe.client_rate_limit,
                &mut probe.client_rate_limit,
            ),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(self.err(
                        format!("probe.{field}"),
                        "must be a number of runs per second, 0 or more (0: no limit)",
                    ));
                }
                *into = v;
            }
        }
        let mut diagnosis = DiagnosisSettings::default();
        for (field, value, into) in [
            (
                "expiry_warning",
                &raw.diagnosis.expiry_warning,
                &mut diagnosis.expiry_warning,
            ),
            (
                "credential_used_within",
                &raw.diagnosis.credential_used_within,
                &mut diagnosis.credential_used_within,
            ),
            (
                "credential_stale_after",
                &raw.diagnosis.credential_stale_after,
                &mut diagnosis.credential_stale_after,
            ),
        ] {
            if let Some(v) = value {
                *into = parse_duration(v).map_err(|m| self.err(format!("diagnosis.{field}"), m))?;
            }
        }
        if let Some(share) = raw.diagnosis.traffic_failed_share {
            if !(0.0..=1.0).contains(&share) || share.is_nan() {
                return Err(self.err(
                    "diagnosis.traffic_failed_share",
                    format!("{share} is not a share: expected a number from 0 to 1, such as 0.1 for 10%"),
                ));
            }
            diagnosis.traffic_failed_share = share;
        }
        let default_cloud = match &raw.defaults.cloud {
            Some(c) => c
                .parse::<Cloud>()
                .map_err(|m| self.err("defaults.cloud", m))?,
            None => Cloud::Global,
        };
        let defaults = raw.defaults.checks;
        for (kind, c, built_in) in [
            ("token", &defaults.token, TOKEN_DEFAULT),
            ("smtp", &defaults.smtp, SMTP_DEFAULT),
            ("graph", &defaults.graph, GRAPH_DEFAULT),
            ("health", &defaults.health, HEALTH_DEFAULT),
            ("activity", &defaults.activity, ACTIVITY_DEFAULT),
            ("traffic", &defaults.traffic, TRAFFIC_DEFAULT),
            ("discovery", &defaults.discovery, DISCOVERY_DEFAULT),
        ] {
            self.check_settings(
                &format!("defaults.checks.{kind}"),
                c.as_ref(),
                None,
                built_in,
            )?;
        }

        if raw.apps.is_empty() && raw.mailboxes.is_empty() {
            if raw.allow_empty != Some(true) {
                return Err(self.err(
                    "",
                    "no apps and no mailboxes: nothing would be checked and every alert would resolve (an empty or truncated file?); set allow_empty: true to run without targets",
                ));
            }
            self.warnings.push(
                "the configuration has no apps and no mailboxes (allow_empty: true): nothing will be checked".into(),
            );
        }

        // Apps first, without their readers; then each reader becomes a shared reference.
        let mut apps: Vec<(App, Option<String>)> = Vec::new();
        let mut names = HashSet::new();
        for (i, a) in raw.apps.into_iter().enumerate() {
            let p = format!("apps[{i}]");
            let (app, reader) = self.app(&p, a, default_cloud, &defaults)?;
            if !names.insert(app.name.clone()) {
                return Err(self.err(
                    format!("{p}.name"),
                    format!(
                        "duplicate app name {:?}: app names must be unique",
                        app.name
                    ),
                ));
            }
            apps.push((app, reader));
        }
        let base: HashMap<String, Arc<App>> = apps
            .iter()
            .map(|(a, _)| (a.name.clone(), Arc::new(a.clone())))
            .collect();
        let mut final_apps = Vec::with_capacity(apps.len());
        for (i, (mut app, reader)) in apps.into_iter().enumerate() {
            if let Some(r) = reader {
                let Some(reader) = base.get(&r) else {
                    return Err(self.err(
                        format!("apps[{i}].graph_reader"),
                        format!("no app is named {r:?}"),
                    ));
                };
                // A reader's Graph token is for its own cloud's Graph: it cannot read another.
                if reader.cloud != app.cloud || reader.graph_url != app.graph_url {
                    return Err(self.err(
                        format!("apps[{i}].graph_reader"),
                        format!(
                            "the reader app {r:?} uses cloud {} and Graph {}, but this app uses cloud {} and Graph {}",
                            reader.cloud, reader.graph_url, app.cloud, app.graph_url
                        ),
                    ));
                }
                app.graph_reader = Some(reader.clone());
            }
            final_apps.push(Arc::new(app));
        }
        let by_name: HashMap<&str, &Arc<App>> =
            final_apps.iter().map(|a| (a.name.as_str(), a)).collect();
        // One message trace read per tenant: its first app with traffic watched reads it, with
        // its settings, which the others of the tenant must share.
        let mut traffic: TrafficTenants = HashMap::new();
        for (i, a) in final_apps.iter().enumerate() {
            if !a.traffic_check.enabled {
                continue;
            }
            match traffic.get(&a.tenant.to_ascii_lowercase()) {
                Some((_, first)) if first.traffic_check != a.traffic_check => {
                    return Err(self.err(
                        format!("apps[{i}].checks.traffic"),
                        format!(
                            "tenant {}'s message trace is read once for all its apps, with the settings of app {:?} (its first with traffic): give app {:?} the same schedule and timeout",
                            a.tenant, first.name, a.name
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    traffic.insert(a.tenant.to_ascii_lowercase(), (a.tenant.clone(), a.clone()));
                }
            }
        }

        let mut mailboxes = Vec::new();
        let mut mnames = HashSet::new();
        for (i, m) in raw.mailboxes.into_iter().enumerate() {
            let p = format!("mailboxes[{i}]");
            let mb = self.mailbox(&p, m, &by_name, &defaults, &traffic)?;
            if !mnames.insert(mb.name.clone()) {
                return Err(self.err(
                    format!("{p}.name"),
                    format!(
                        "duplicate mailbox name {:?}: mailbox names must be unique",
                        mb.name
                    ),
                ));
            }
            // One name, one target: `/probe?target=`, `check NAME` and the verdict's `target`
            // label must not have to guess between an app and a mailbox.
            if names.contains(&mb.name) {
                return Err(self.err(
                    format!("{p}.name"),
                    format!(
                        "mailbox name {:?} is also an app's name: names must be unique across apps and mailboxes",
                        mb.name
                    ),
                ));
            }
            mailboxes.push(Arc::new(mb));
        }
        // One inventory per tenant, likewise.
        let mut discovery: TrafficTenants = HashMap::new();
        for (i, a) in final_apps.iter().enumerate() {
            if !a.discovery_check.enabled {
                continue;
            }
            match discovery.get(&a.tenant.to_ascii_lowercase()) {
                Some((_, first)) if first.discovery_check != a.discovery_check => {
                    return Err(self.err(
                        format!("apps[{i}].checks.discovery"),
                        format!(
                            "tenant {}'s apps are inventoried once, with the settings of app {:?} (its first with discovery): give app {:?} the same schedule and timeout",
                            a.tenant, first.name, a.name
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    discovery.insert(a.tenant.to_ascii_lowercase(), (a.tenant.clone(), a.clone()));
                }
            }
        }
        // A tenant target's name is a `target` label too.
        for (tenant, _) in traffic.values().chain(discovery.values()) {
            if names.contains(tenant) || mnames.contains(tenant) {
                return Err(self.err(
                    "apps",
                    format!("tenant {tenant:?} watches its traffic under its own name, which an app or mailbox also has: rename that one"),
                ));
            }
        }
        let metrics = MetricsSettings {
            detail: raw.metrics.detail.unwrap_or(false),
        };
        let mut alerts = AlertSettings {
            credential_warning: diagnosis.expiry_warning,
            credential_used_within: diagnosis.credential_used_within,
            credential_stale_after: diagnosis.credential_stale_after,
            traffic_failed_share: diagnosis.traffic_failed_share,
            ..Default::default()
        };
        let a = &raw.alerts;
        for (field, value, into) in [
            (
                "credential_critical",
                &a.credential_critical,
                &mut alerts.credential_critical,
            ),
            (
                "server_certificate_warning",
                &a.server_certificate_warning,
                &mut alerts.server_certificate_warning,
            ),
            ("failing_for", &a.failing_for, &mut alerts.failing_for),
            ("canary_slow", &a.canary_slow, &mut alerts.canary_slow),
        ] {
            if let Some(v) = value {
                *into = parse_duration(v).map_err(|m| self.err(format!("alerts.{field}"), m))?;
            }
        }
        if let Some(u) = &a.runbook_base_url {
            let parsed = url::Url::parse(u).map_err(|e| {
                self.err(
                    "alerts.runbook_base_url",
                    format!(
                        "{e}: expected an http(s) URL such as https://wiki.example/runbooks.html"
                    ),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(self.err("alerts.runbook_base_url", "expected an http or https URL"));
            }
            alerts.runbook_base_url = Some(u.trim_end_matches('/').to_string());
        }
        if let Some(n) = a.stale_intervals {
            if n == 0 {
                return Err(self.err("alerts.stale_intervals", "must be at least 1"));
            }
            alerts.stale_intervals = n;
        }
        let alert_evaluation_interval =
            match &a.evaluation_interval {
                Some(v) => positive(
                    parse_duration(v).map_err(|m| self.err("alerts.evaluation_interval", m))?,
                )
                .ok_or_else(|| self.err("alerts.evaluation_interval", "must be greater than 0s"))?,
                None => std::time::Duration::from_secs(15),
            };
        let alertmanager = match raw.alertmanager {
            Some(am) => Some(self.alertmanager(am)?),
            None => None,
        };
        let inline_secrets = self.inline_secrets;
        let mut plan = Plan::new(
            Settings {
                scheduler,
                probe,
                diagnosis,
                metrics,
                alerts,
                alert_evaluation_interval,
                alertmanager,
            },
            final_apps,
            mailboxes,
            self.warnings,
        );
        plan.inline_secrets = inline_secrets;
        Ok(plan)
    }

    /// The `alertmanager:` block: URLs, timeouts, and credentials read from their files.
    fn alertmanager(
        &mut self,
        am: raw::RawAlertmanager,
    ) -> Result<AlertmanagerSettings, ConfigError> {
        if am.urls.is_empty() {
            return Err(self.err(
                "alertmanager.urls",
                "name at least one Alertmanager, such as http://alertmanager:9093",
            ));
        }
        let mut urls = Vec::new();
        for (i, u) in am.urls.iter().enumerate() {
            // A URL with user information is never echoed: it may hold a password.
            let shown = if u.contains('@') {
                "(not shown: it contains '@')".to_string()
            } else {
                format!("{u:?}")
            };
            let url = Url::parse(u).map_err(|e| {
                self.err(
                    format!("alertmanager.urls[{i}]"),
                    format!("invalid URL {shown}: {e}; expected a base URL such as http://alertmanager:9093"),
                )
            })?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(self.err(
                    format!("alertmanager.urls[{i}]"),
                    "credentials in the URL are not accepted (they would show in logs): use alertmanager.basic_auth with a password_file",
                ));
            }
            if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
                return Err(self.err(
                    format!("alertmanager.urls[{i}]"),
                    format!("invalid URL {u:?}: expected http or https, without query"),
                ));
            }
            urls.push(url);
        }
        let duration = |field: &str, v: &Option<String>, default: u64| match v {
            Some(v) => parse_duration(v).ok().and_then(positive).ok_or_else(|| {
                self.err(
                    format!("alertmanager.{field}"),
                    format!("invalid duration {v:?}: expected a positive duration such as 10s"),
                )
            }),
            None => Ok(std::time::Duration::from_secs(default)),
        };
        let mut readable = Vec::new();
        let mut read = |field: &str, f: &str| -> Result<Secret, ConfigError> {
            let path = self.resolve(f);
            let mut text = crate::input::read_to_string_capped(&path, crate::input::MAX_FILE_BYTES)
                .map_err(|e| {
                    self.err(
                        format!("alertmanager.{field}"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
            readable.push((format!("alertmanager.{field}"), path));
            let secret = Secret::new(text.trim());
            zeroize::Zeroize::zeroize(&mut text);
            Ok(secret)
        };
        let auth = match (am.basic_auth, am.bearer_token_file) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "alertmanager",
                    "basic_auth and bearer_token_file exclude each other",
                ))
            }
            (Some(b), None) => Some(AlertmanagerAuth::Basic {
                username: self.required("alertmanager.basic_auth.username", b.username)?,
                password: read(
                    "basic_auth.password_file",
                    &self.required("alertmanager.basic_auth.password_file", b.password_file)?,
                )?,
            }),
            (None, Some(f)) => Some(AlertmanagerAuth::Bearer(read("bearer_token_file", &f)?)),
            (None, None) => None,
        };
        let timeout = duration("timeout", &am.timeout, 10)?;
        let resend_interval = duration("resend_interval", &am.resend_interval, 60)?;
        for (field, path) in readable {
            self.warn_if_others_read(&field, &path);
        }
        Ok(AlertmanagerSettings {
            urls,
            timeout,
            resend_interval,
            auth,
        })
    }

    /// Resolves one check's settings: target override, then `defaults.checks`, then built-in.
    pub(super) fn check_settings(
        &self,
        path: &str,
        own: Option<&RawCheck>,
        default: Option<&RawCheck>,
        built_in: (&str, &str),
    ) -> Result<CheckSettings, ConfigError> {
        let pick =
            |f: fn(&RawCheck) -> Option<String>| own.and_then(f).or_else(|| default.and_then(f));
        let enabled = own
            .and_then(|c| c.enabled)
            .or_else(|| default.and_then(|c| c.enabled))
            .unwrap_or(true);
        let schedule_text = pick(|c| c.schedule.clone()).unwrap_or_else(|| built_in.0.to_string());
        let schedule = schedule_text
            .parse::<Schedule>()
            .map_err(|m| self.err(format!("{path}.schedule"), m))?;
        let timeout_text = pick(|c| c.timeout.clone()).unwrap_or_else(|| built_in.1.to_string());
        let timeout =
            parse_duration(&timeout_text).map_err(|m| self.err(format!("{path}.timeout"), m))?;
        if timeout.is_zero() {
            return Err(self.err(format!("{path}.timeout"), "must be greater than 0s"));
        }
        Ok(CheckSettings {
            enabled,
            schedule,
            timeout,
        })
    }

    pub(super) fn required(&self, path: &str, v: Option<String>) -> Result<String, ConfigError> {
        match v {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(self.err(path, "required field is missing or empty")),
        }
    }

    pub(super) fn url(
        &self,
        path: &str,
        v: Option<String>,
        default: &str,
    ) -> Result<Url, ConfigError> {
        let text = v.unwrap_or_else(|| default.to_string());
        let u = Url::parse(&text).map_err(|e| {
            self.err(
                path,
                format!("invalid URL {text:?}: {e}; expected an absolute URL such as {default}"),
            )
        })?;
        // The client secret and tokens travel in these requests: TLS only. Plain http is
        // allowed to a loopback host alone (a local test endpoint or proxy on the same machine).
        let loopback = matches!(u.host(), Some(url::Host::Domain("localhost")))
            || matches!(u.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
        if u.scheme() != "https" && !(u.scheme() == "http" && loopback) {
            return Err(self.err(
                path,
                format!("invalid URL {text:?}: the scheme must be https (credentials and tokens travel in these requests)"),
            ));
        }
        if !u.username().is_empty()
            || u.password().is_some()
            || u.query().is_some()
            || u.fragment().is_some()
        {
            return Err(self.err(
                path,
                format!(
                    "invalid URL {text:?}: expected a base URL without user, query or fragment"
                ),
            ));
        }
        Ok(u)
    }
}

/// `Some` for a duration greater than zero.
pub(super) fn positive(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}
