//! Raw configuration → plan: defaults applied in one place, every value checked, names resolved
//! into shared references, files read. Each error carries the field path.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use url::Url;

use super::credentials::{self, CertificateError};
use super::raw::{self, RawCheck, RawChecks, RawConfig};
use super::ConfigError;
use crate::plan::{
    is_guid, parse_duration, AlertSettings, AlertmanagerAuth, AlertmanagerSettings, App,
    AssertionAlgorithm, Canary, CheckSettings, Cloud, Credential, DiagnosisSettings, MailAddress,
    Mailbox, MetricsSettings, NetClients, Plan, Schedule, SchedulerSettings, Settings,
};
use crate::secret::Secret;

/// Built-in default of each check kind: (schedule, timeout).
const TOKEN_DEFAULT: (&str, &str) = ("5m", "15s");
const SMTP_DEFAULT: (&str, &str) = ("5m", "30s");
const GRAPH_DEFAULT: (&str, &str) = ("6h", "30s");
/// Service health every 5 minutes (Microsoft posts updates about every 30 minutes).
const HEALTH_DEFAULT: (&str, &str) = ("5m", "30s");
/// The canary every 15 minutes, and 5 minutes for the message to arrive.
const CANARY_DEFAULT: (&str, &str) = ("15m", "5m");
/// The canary never runs more often: Exchange Online allows a mailbox 30 messages a minute and
/// 10,000 recipients a day, and the canary must not eat into what the application sends.
const CANARY_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Validator<'a> {
    file: &'a str,
    base: &'a Path,
    warnings: Vec<String>,
    /// Apps with their client secret inline in the file.
    inline_secrets: usize,
    /// Network clients by CA file, shared by the apps that name the same one.
    clients: HashMap<Option<PathBuf>, Arc<NetClients>>,
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

    fn err(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: None,
            column: None,
            path: path.into(),
            message: message.into(),
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
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
        let mut diagnosis = DiagnosisSettings::default();
        if let Some(s) = &raw.diagnosis.expiry_warning {
            diagnosis.expiry_warning =
                parse_duration(s).map_err(|m| self.err("diagnosis.expiry_warning", m))?;
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
        ] {
            self.check_settings(
                &format!("defaults.checks.{kind}"),
                c.as_ref(),
                None,
                built_in,
            )?;
        }

        if raw.apps.is_empty() && raw.mailboxes.is_empty() {
            self.warnings.push(
                "the configuration has no apps and no mailboxes: nothing will be checked".into(),
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

        let mut mailboxes = Vec::new();
        let mut mnames = HashSet::new();
        for (i, m) in raw.mailboxes.into_iter().enumerate() {
            let p = format!("mailboxes[{i}]");
            let mb = self.mailbox(&p, m, &by_name, &defaults)?;
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
        let metrics = MetricsSettings {
            detail: raw.metrics.detail.unwrap_or(false),
        };
        let mut alerts = AlertSettings {
            credential_warning: diagnosis.expiry_warning,
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
    fn alertmanager(&self, am: raw::RawAlertmanager) -> Result<AlertmanagerSettings, ConfigError> {
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
        let read = |field: &str, f: &str| -> Result<Secret, ConfigError> {
            let path = self.resolve(f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    format!("alertmanager.{field}"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Ok(Secret::new(text.trim()))
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
        Ok(AlertmanagerSettings {
            urls,
            timeout: duration("timeout", &am.timeout, 10)?,
            resend_interval: duration("resend_interval", &am.resend_interval, 60)?,
            auth,
        })
    }

    /// Resolves one check's settings: target override, then `defaults.checks`, then built-in.
    fn check_settings(
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

    fn required(&self, path: &str, v: Option<String>) -> Result<String, ConfigError> {
        match v {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(self.err(path, "required field is missing or empty")),
        }
    }

    fn url(&self, path: &str, v: Option<String>, default: &str) -> Result<Url, ConfigError> {
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

    /// One app, and the name of its Graph reader (resolved once every app is known).
    fn app(
        &mut self,
        p: &str,
        a: raw::RawApp,
        default_cloud: Cloud,
        defaults: &RawChecks,
    ) -> Result<(App, Option<String>), ConfigError> {
        let name = self.required(&format!("{p}.name"), a.name)?;
        let tenant = self.required(&format!("{p}.tenant"), a.tenant)?;
        let is_domain = tenant.contains('.')
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !is_guid(&tenant) && !is_domain {
            return Err(self.err(
                format!("{p}.tenant"),
                format!("invalid tenant {}: expected the directory (tenant) ID, a GUID, or a verified domain such as contoso.onmicrosoft.com", shown(&tenant)),
            ));
        }
        let client_id = self.required(&format!("{p}.client_id"), a.client_id)?;
        if !is_guid(&client_id) {
            return Err(self.err(
                format!("{p}.client_id"),
                format!("invalid client_id {}: expected the application (client) ID, a GUID such as 00000000-0000-0000-0000-000000000000", shown(&client_id)),
            ));
        }
        let cloud = match a.cloud {
            Some(c) => c
                .parse::<Cloud>()
                .map_err(|m| self.err(format!("{p}.cloud"), m))?,
            None => default_cloud,
        };
        if a.checks.smtp.is_some() {
            return Err(self.err(
                format!("{p}.checks.smtp"),
                "the smtp check belongs to mailboxes; apps take token and graph",
            ));
        }

        let sources = [
            a.client_secret.is_some(),
            a.client_secret_file.is_some(),
            a.client_secret_env.is_some(),
            a.certificate.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if sources != 1 {
            return Err(self.err(
                p,
                format!(
                    "app {name:?} needs exactly one credential: client_secret_file, client_secret_env, client_secret or certificate (found {sources})"
                ),
            ));
        }
        let credential = if let Some(s) = a.client_secret {
            self.inline_secrets += 1;
            self.warnings.push(format!(
                "{}: {p}.client_secret: app {name:?} has its client secret inline in the configuration file; prefer client_secret_file or client_secret_env",
                self.file
            ));
            credentials::secret(s.expose().to_string())
                .map_err(|m| self.err(format!("{p}.client_secret"), m))?
        } else if let Some(f) = a.client_secret_file {
            let path = self.resolve(&f);
            let s = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    format!("{p}.client_secret_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            credentials::secret(s).map_err(|m| self.err(format!("{p}.client_secret_file"), m))?
        } else if let Some(var) = a.client_secret_env {
            let s = std::env::var(&var).map_err(|_| {
                self.err(
                    format!("{p}.client_secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            credentials::secret(s).map_err(|m| self.err(format!("{p}.client_secret_env"), m))?
        } else {
            let c = a.certificate.unwrap_or_default();
            Credential::Certificate(Arc::new(self.certificate(&format!("{p}.certificate"), c)?))
        };

        let ca_file = a.ca_file.map(|f| self.resolve(&f));
        let net = match self.clients.get(&ca_file) {
            Some(c) => c.clone(),
            None => {
                let c = credentials::net_clients(ca_file.as_deref())
                    .map_err(|m| self.err(format!("{p}.ca_file"), m))?;
                self.clients.insert(ca_file.clone(), c.clone());
                c
            }
        };

        let app = App {
            login_url: self.url(&format!("{p}.login_url"), a.login_url, cloud.login_url())?,
            graph_url: self.url(&format!("{p}.graph_url"), a.graph_url, cloud.graph_url())?,
            token_check: self.check_settings(
                &format!("{p}.checks.token"),
                a.checks.token.as_ref(),
                defaults.token.as_ref(),
                TOKEN_DEFAULT,
            )?,
            graph_check: self.check_settings(
                &format!("{p}.checks.graph"),
                a.checks.graph.as_ref(),
                defaults.graph.as_ref(),
                GRAPH_DEFAULT,
            )?,
            health_check: {
                let mut c = self.check_settings(
                    &format!("{p}.checks.health"),
                    a.checks.health.as_ref(),
                    defaults.health.as_ref(),
                    HEALTH_DEFAULT,
                )?;
                // Opt-in: the app needs ServiceHealth.Read.All, which it usually lacks.
                c.enabled = a
                    .checks
                    .health
                    .as_ref()
                    .and_then(|h| h.enabled)
                    .or_else(|| defaults.health.as_ref().and_then(|h| h.enabled))
                    .unwrap_or(false);
                c
            },
            name,
            tenant,
            client_id,
            cloud,
            credential,
            ca_file,
            graph_reader: None,
            net,
        };
        Ok((app, a.graph_reader))
    }

    fn certificate(
        &self,
        p: &str,
        c: raw::RawCertificate,
    ) -> Result<crate::plan::CertificateCredential, ConfigError> {
        let cert_file = self.required(&format!("{p}.cert_file"), c.cert_file)?;
        let key_file = self.required(&format!("{p}.key_file"), c.key_file)?;
        let algorithm = match c.algorithm.as_deref() {
            None | Some("PS256") => AssertionAlgorithm::Ps256,
            Some("RS256") => AssertionAlgorithm::Rs256,
            Some(o) => {
                return Err(self.err(
                    format!("{p}.algorithm"),
                    format!("unknown algorithm {o:?}, expected PS256 or RS256"),
                ))
            }
        };
        credentials::certificate(
            &self.resolve(&cert_file),
            &self.resolve(&key_file),
            algorithm,
        )
        .map_err(|e| match e {
            CertificateError::Cert(m) => self.err(format!("{p}.cert_file"), m),
            CertificateError::Key(m) => self.err(format!("{p}.key_file"), m),
        })
    }

    fn mailbox(
        &mut self,
        p: &str,
        m: raw::RawMailbox,
        apps: &HashMap<&str, &Arc<App>>,
        defaults: &RawChecks,
    ) -> Result<Mailbox, ConfigError> {
        let name = self.required(&format!("{p}.name"), m.name)?;
        let app_name = self.required(&format!("{p}.app"), m.app)?;
        let app = apps.get(app_name.as_str()).copied().ok_or_else(|| {
            let mut known: Vec<&str> = apps.keys().copied().collect();
            known.sort_unstable();
            self.err(
                format!("{p}.app"),
                format!(
                    "no app is named {app_name:?} (known apps: {})",
                    known.join(", ")
                ),
            )
        })?;
        let address = self.required(&format!("{p}.address"), m.address)?;
        let address = MailAddress::parse(&address).ok_or_else(|| {
            self.err(
                format!("{p}.address"),
                format!("invalid mailbox address {address:?}: expected user@domain"),
            )
        })?;
        if m.checks.token.is_some() || m.checks.graph.is_some() || m.checks.health.is_some() {
            return Err(self.err(
                format!("{p}.checks"),
                "mailboxes take only the smtp check; token, graph and health belong to apps (the canary has its own block)",
            ));
        }
        let canary = match m.canary {
            None => None,
            Some(c) => self.canary(&format!("{p}.canary"), c, app, &address, apps)?,
        };
        Ok(Mailbox {
            smtp_host: match m.smtp_host {
                Some(h) if !is_host(&h) => {
                    return Err(self.err(
                        format!("{p}.smtp_host"),
                        format!("invalid host {h:?}: expected a host name or IP address, without port (use smtp_port)"),
                    ))
                }
                Some(h) => h,
                None => app.cloud.smtp_host().to_string(),
            },
            smtp_port: match m.smtp_port {
                Some(0) => {
                    return Err(self.err(
                        format!("{p}.smtp_port"),
                        "must be a port number from 1 to 65535",
                    ))
                }
                Some(port) => port,
                None => 587,
            },
            ehlo_name: match m.ehlo_name {
                // It goes on the wire before TLS: no spaces or line breaks (RFC 5321 section 4.1.1.1).
                Some(n) if !(is_host(&n) || is_address_literal(&n)) => {
                    return Err(self.err(
                        format!("{p}.ehlo_name"),
                        format!("invalid EHLO name {n:?}: expected a domain name such as monitoring.contoso.com or an address literal such as [192.0.2.1]"),
                    ))
                }
                Some(n) => n,
                None => "smtp-oauth-exporter.localhost".to_string(),
            },
            mail_from: m.mail_from.unwrap_or(true),
            tls_insecure_skip_verify: if m.tls_insecure_skip_verify == Some(true) {
                self.warnings.push(format!(
                    "{}: {p}.tls_insecure_skip_verify: server certificate verification is OFF for mailbox {name:?}: anyone in the path can read its token",
                    self.file
                ));
                true
            } else {
                false
            },
            smtp_check: self.check_settings(
                &format!("{p}.checks.smtp"),
                m.checks.smtp.as_ref(),
                defaults.smtp.as_ref(),
                SMTP_DEFAULT,
            )?,
            name,
            app: app.clone(),
            address,
            canary,
        })
    }

    /// A mailbox's `canary:` block: the recipient (the mailbox itself by default), the reader
    /// app (the mailbox's own by default) and a schedule no faster than once a minute.
    fn canary(
        &self,
        p: &str,
        c: raw::RawCanary,
        app: &Arc<App>,
        address: &MailAddress,
        apps: &HashMap<&str, &Arc<App>>,
    ) -> Result<Option<Canary>, ConfigError> {
        let to = match c.to {
            None => address.clone(),
            Some(to) => MailAddress::parse(&to).ok_or_else(|| {
                self.err(
                    format!("{p}.to"),
                    format!("invalid address {to:?}: expected user@domain"),
                )
            })?,
        };
        let reader = match c.reader {
            None => app.clone(),
            Some(r) => (*apps.get(r.as_str()).ok_or_else(|| {
                self.err(format!("{p}.reader"), format!("no app is named {r:?}"))
            })?)
            .clone(),
        };
        let raw = raw::RawCheck {
            enabled: c.enabled,
            schedule: c.schedule,
            timeout: c.timeout,
        };
        let check = self.check_settings(p, Some(&raw), None, CANARY_DEFAULT)?;
        if check.schedule.typical_interval() < CANARY_MIN_INTERVAL {
            return Err(self.err(
                format!("{p}.schedule"),
                "the canary sends a message each run: at most once a minute (Exchange Online allows a mailbox 30 messages a minute, and they are the application's)",
            ));
        }
        Ok(check.enabled.then_some(Canary { to, reader, check }))
    }
}

/// `Some` for a duration greater than zero.
fn positive(d: std::time::Duration) -> Option<std::time::Duration> {
    (!d.is_zero()).then_some(d)
}

/// A DNS name (letters, digits, `-`, `.`) or an IP address.
fn is_host(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (!s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 section 4.1.3).
fn is_address_literal(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| {
            inner.parse::<std::net::Ipv4Addr>().is_ok()
                || inner
                    .strip_prefix("IPv6:")
                    .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
        })
}

/// A wrong ID as an error shows it: quoted when it looks like a mistyped ID or name, withheld
/// when it could be a secret pasted into the wrong field (Entra secret values carry `~`, older
/// ones `+`, `/`, `=` and the like, and are long).
fn shown(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ' '));
    if plain && value.chars().count() <= 40 {
        format!("{value:?}")
    } else {
        format!(
            "({} characters, not shown: it may be a secret pasted into the wrong field)",
            value.chars().count()
        )
    }
}
