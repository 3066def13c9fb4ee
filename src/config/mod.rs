//! Configuration: the YAML file is parsed into raw structs, then validated into typed settings.
//! Every error names the file, the line and column when the parser has them, and the field path.

mod cloud;
mod duration;
mod raw;

pub use cloud::Cloud;
pub use duration::{format_duration, parse_duration, Schedule};

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use raw::{RawCheck, RawChecks, RawConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::Digest;
use url::Url;

use crate::secret::Secret;

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
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The validated configuration the agent runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub scheduler: SchedulerSettings,
    pub apps: Vec<Arc<App>>,
    pub mailboxes: Vec<Arc<Mailbox>>,
    /// Things that are allowed but worth a warning in the log (such as inline secrets).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerSettings {
    /// At most this many checks run at the same time; the others wait for a slot.
    pub max_concurrent_checks: usize,
    /// First runs after start are spread over at most this long.
    pub startup_spread: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            max_concurrent_checks: 100,
            startup_spread: Duration::from_secs(60),
        }
    }
}

/// When and how long one check kind runs for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    pub enabled: bool,
    pub schedule: Schedule,
    pub timeout: Duration,
}

/// An Entra ID app registration (a client of the token endpoint).
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub tenant: String,
    pub client_id: String,
    pub cloud: Cloud,
    pub credential: Credential,
    /// Base of the token endpoint: `{login_url}/{tenant}/oauth2/v2.0/token`.
    pub login_url: Url,
    /// Base of Microsoft Graph: `{graph_url}/v1.0/...`.
    pub graph_url: Url,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Another app (by name) whose Graph token reads this app's credentials.
    pub graph_reader: Option<String>,
    pub token_check: CheckSettings,
    pub graph_check: CheckSettings,
}

impl App {
    /// The v2 token endpoint of this app's tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.login_url.as_str().trim_end_matches('/'),
            self.tenant
        )
    }

    pub fn exchange_scope(&self) -> &'static str {
        self.cloud.exchange_scope()
    }

    pub fn graph_scope(&self) -> String {
        self.cloud.graph_scope()
    }
}

/// How an app proves who it is to the token endpoint.
#[derive(Debug, Clone)]
pub enum Credential {
    ClientSecret(Secret),
    Certificate(Arc<CertificateCredential>),
}

impl Credential {
    /// SHA-256 identifying the credential without revealing it (a token cache key part: two
    /// apps with the same client ID but different secrets must not share tokens or failures).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        match self {
            Credential::ClientSecret(s) => {
                h.update(b"secret\0");
                h.update(s.expose().as_bytes());
            }
            Credential::Certificate(c) => {
                h.update(b"certificate\0");
                h.update(c.thumbprint_sha256);
            }
        }
        h.finalize().into()
    }
}

/// Signing algorithm of the client assertion (RFC 7523).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    Ps256,
    Rs256,
}

/// A certificate credential: the certificate registered on the app and its private key.
#[derive(Debug, Clone)]
pub struct CertificateCredential {
    pub cert_der: Vec<u8>,
    pub private_key_pem: Secret,
    pub algorithm: AssertionAlgorithm,
    /// SHA-1 of the certificate DER (the thumbprint Entra ID shows).
    pub thumbprint_sha1: [u8; 20],
    /// SHA-256 of the certificate DER (the `x5t#S256` header).
    pub thumbprint_sha256: [u8; 32],
}

/// A mailbox the agent logs in to over SMTP with its app's token.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub name: String,
    /// Name of the app whose token is used.
    pub app: String,
    pub address: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// Name sent in EHLO.
    pub ehlo_name: String,
    /// Send `MAIL FROM:<address>` + `RSET` after AUTH to prove the mailbox may send as itself.
    pub mail_from: bool,
    /// Skip server certificate verification. Dangerous; exported as a metric.
    pub tls_insecure_skip_verify: bool,
    pub smtp_check: CheckSettings,
}

/// Built-in default of each check kind: (schedule, timeout).
const TOKEN_DEFAULT: (&str, &str) = ("5m", "15s");
const SMTP_DEFAULT: (&str, &str) = ("5m", "30s");
const GRAPH_DEFAULT: (&str, &str) = ("6h", "30s");

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::from_yaml(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates YAML text; `file` names it in errors, relative paths resolve from `base`.
    pub fn from_yaml(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let de = yaml_serde::Deserializer::from_str(text);
        let raw: RawConfig = match serde_path_to_error::deserialize(de) {
            Ok(raw) => raw,
            Err(e) => {
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
                        "a mapping with scheduler, defaults, apps and mailboxes",
                    ),
                    (
                        "struct RawScheduler",
                        "a mapping with max_concurrent_checks and startup_spread",
                    ),
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
                return Err(ConfigError {
                    file: file.to_string(),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                    path,
                    message,
                });
            }
        };
        Validator {
            file,
            base,
            warnings: Vec::new(),
        }
        .validate(raw)
    }
}

struct Validator<'a> {
    file: &'a str,
    base: &'a Path,
    warnings: Vec<String>,
}

impl Validator<'_> {
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

    fn validate(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut scheduler = SchedulerSettings::default();
        if let Some(n) = raw.scheduler.max_concurrent_checks {
            if n == 0 {
                return Err(self.err("scheduler.max_concurrent_checks", "must be at least 1"));
            }
            scheduler.max_concurrent_checks = n;
        }
        if let Some(s) = &raw.scheduler.startup_spread {
            scheduler.startup_spread =
                parse_duration(s).map_err(|m| self.err("scheduler.startup_spread", m))?;
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

        let mut apps = Vec::new();
        let mut names = HashSet::new();
        for (i, a) in raw.apps.into_iter().enumerate() {
            let p = format!("apps[{i}]");
            let app = self.app(&p, a, default_cloud, &defaults)?;
            if !names.insert(app.name.clone()) {
                return Err(self.err(
                    format!("{p}.name"),
                    format!(
                        "duplicate app name {:?}: app names must be unique",
                        app.name
                    ),
                ));
            }
            apps.push(app);
        }
        let by_name: HashMap<&str, &App> = apps.iter().map(|a| (a.name.as_str(), a)).collect();
        for (i, app) in apps.iter().enumerate() {
            if let Some(r) = &app.graph_reader {
                let Some(reader) = by_name.get(r.as_str()) else {
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
            }
        }

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
            mailboxes.push(Arc::new(mb));
        }
        Ok(Config {
            scheduler,
            apps: apps.into_iter().map(Arc::new).collect(),
            mailboxes,
            warnings: self.warnings,
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

    fn app(
        &mut self,
        p: &str,
        a: raw::RawApp,
        default_cloud: Cloud,
        defaults: &RawChecks,
    ) -> Result<App, ConfigError> {
        let name = self.required(&format!("{p}.name"), a.name)?;
        let tenant = self.required(&format!("{p}.tenant"), a.tenant)?;
        let is_domain = tenant.contains('.')
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !is_guid(&tenant) && !is_domain {
            return Err(self.err(
                format!("{p}.tenant"),
                format!("invalid tenant {tenant:?}: expected the directory (tenant) ID, a GUID, or a verified domain such as contoso.onmicrosoft.com"),
            ));
        }
        let client_id = self.required(&format!("{p}.client_id"), a.client_id)?;
        if !is_guid(&client_id) {
            return Err(self.err(
                format!("{p}.client_id"),
                format!("invalid client_id {client_id:?}: expected the application (client) ID, a GUID such as 00000000-0000-0000-0000-000000000000"),
            ));
        }
        let cloud = match a.cloud {
            Some(c) => c
                .parse::<Cloud>()
                .map_err(|m| self.err(format!("{p}.cloud"), m))?,
            None => default_cloud,
        };

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
            self.warnings.push(format!(
                "{}: {p}.client_secret: app {name:?} has its client secret inline in the configuration file; prefer client_secret_file or client_secret_env",
                self.file
            ));
            self.secret_value(&format!("{p}.client_secret"), s.expose().to_string())?
        } else if let Some(f) = a.client_secret_file {
            let path = self.resolve(&f);
            let s = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    format!("{p}.client_secret_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            self.secret_value(&format!("{p}.client_secret_file"), s)?
        } else if let Some(var) = a.client_secret_env {
            let s = std::env::var(&var).map_err(|_| {
                self.err(
                    format!("{p}.client_secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            self.secret_value(&format!("{p}.client_secret_env"), s)?
        } else {
            let c = a.certificate.unwrap_or_default();
            Credential::Certificate(Arc::new(self.certificate(&format!("{p}.certificate"), c)?))
        };

        let ca_file = match a.ca_file {
            Some(f) => {
                let path = self.resolve(&f);
                let pem = std::fs::read(&path).map_err(|e| {
                    self.err(
                        format!("{p}.ca_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let n = CertificateDer::pem_slice_iter(&pem)
                    .filter(|c| c.is_ok())
                    .count();
                if n == 0 {
                    return Err(self.err(
                        format!("{p}.ca_file"),
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                Some(path)
            }
            None => None,
        };

        Ok(App {
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
            name,
            tenant,
            client_id,
            cloud,
            credential,
            ca_file,
            graph_reader: a.graph_reader,
        })
        .and_then(|app| {
            if a.checks.smtp.is_some() {
                return Err(self.err(
                    format!("{p}.checks.smtp"),
                    "the smtp check belongs to mailboxes; apps take token and graph",
                ));
            }
            Ok(app)
        })
    }

    fn secret_value(&self, path: &str, s: String) -> Result<Credential, ConfigError> {
        let s = s.trim().to_string();
        if s.is_empty() {
            return Err(self.err(path, "the client secret is empty"));
        }
        Ok(Credential::ClientSecret(Secret::new(s)))
    }

    fn certificate(
        &self,
        p: &str,
        c: raw::RawCertificate,
    ) -> Result<CertificateCredential, ConfigError> {
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
        let cert_path = self.resolve(&cert_file);
        let pem = std::fs::read(&cert_path).map_err(|e| {
            self.err(
                format!("{p}.cert_file"),
                format!("cannot read {}: {e}", cert_path.display()),
            )
        })?;
        let cert_der = CertificateDer::pem_slice_iter(&pem)
            .next()
            .and_then(|r| r.ok())
            .ok_or_else(|| {
                self.err(
                    format!("{p}.cert_file"),
                    format!("{} holds no PEM certificate", cert_path.display()),
                )
            })?
            .to_vec();
        let key_path = self.resolve(&key_file);
        let key = std::fs::read_to_string(&key_path).map_err(|e| {
            self.err(
                format!("{p}.key_file"),
                format!("cannot read {}: {e}", key_path.display()),
            )
        })?;
        // Fail at load time, not at the first check, when the key is unusable.
        jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).map_err(|_| {
            self.err(
                format!("{p}.key_file"),
                format!(
                    "{} holds no RSA private key in PEM (PKCS#1 or PKCS#8)",
                    key_path.display()
                ),
            )
        })?;
        // A key that does not belong to the certificate would fail every run with AADSTS700027.
        if !key_matches_certificate(&key, &cert_der) {
            return Err(self.err(
                format!("{p}.key_file"),
                format!(
                    "the private key in {} does not belong to the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
            ));
        }
        Ok(CertificateCredential {
            thumbprint_sha1: sha1::Sha1::digest(&cert_der).into(),
            thumbprint_sha256: sha2::Sha256::digest(&cert_der).into(),
            cert_der,
            private_key_pem: Secret::new(key),
            algorithm,
        })
    }

    fn mailbox(
        &mut self,
        p: &str,
        m: raw::RawMailbox,
        apps: &HashMap<&str, &App>,
        defaults: &RawChecks,
    ) -> Result<Mailbox, ConfigError> {
        let name = self.required(&format!("{p}.name"), m.name)?;
        let app_name = self.required(&format!("{p}.app"), m.app)?;
        let app = apps.get(app_name.as_str()).ok_or_else(|| {
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
        if address.matches('@').count() != 1
            || address.starts_with('@')
            || address.ends_with('@')
            || address.contains(char::is_whitespace)
            || address.contains(['<', '>'])
        {
            return Err(self.err(
                format!("{p}.address"),
                format!("invalid mailbox address {address:?}: expected user@domain"),
            ));
        }
        let cloud = app.cloud;
        if m.checks.token.is_some() || m.checks.graph.is_some() {
            return Err(self.err(
                format!("{p}.checks"),
                "mailboxes take only the smtp check; token and graph belong to apps",
            ));
        }
        Ok(Mailbox {
            smtp_host: match m.smtp_host {
                Some(h) if !is_host(&h) => {
                    return Err(self.err(
                        format!("{p}.smtp_host"),
                        format!("invalid host {h:?}: expected a host name or IP address, without port (use smtp_port)"),
                    ))
                }
                Some(h) => h,
                None => cloud.smtp_host().to_string(),
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
            app: app_name,
            address,
        })
    }
}

/// Whether the RSA private key (PKCS#8 or PKCS#1 PEM) is the certificate's key pair.
fn key_matches_certificate(key_pem: &str, cert_der: &[u8]) -> bool {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::DecodePrivateKey;
    let key = match rsa::RsaPrivateKey::from_pkcs8_pem(key_pem) {
        Ok(k) => k,
        Err(_) => match rsa::RsaPrivateKey::from_pkcs1_pem(key_pem) {
            Ok(k) => k,
            Err(_) => return false,
        },
    };
    let Ok(public) = key.to_public_key().to_pkcs1_der() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert_der) else {
        return false;
    };
    cert.public_key().subject_public_key.data.as_ref() == public.as_bytes()
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

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}
