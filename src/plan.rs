//! The plan: what configuration validation produces and everything else reads. Apps, mailboxes
//! holding their app (not its name), the jobs, and each app's network set-up, immutable; a
//! reload builds a new plan and swaps it whole, while per-target state lives outside it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;
use url::Url;

pub use crate::config::{Cloud, Schedule};
use crate::secret::Secret;

/// Every kind of check the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// Client-credentials token for SMTP from Entra ID (per app).
    Token,
    /// Authenticated SMTP handshake: STARTTLS + AUTH XOAUTH2 (per mailbox).
    Smtp,
    /// Expiry of the app's secrets and certificates, read from Microsoft Graph (per app).
    Graph,
    /// Delivery canary: a message sent over the SMTP session, found with Graph (per mailbox,
    /// opt-in).
    Canary,
    /// Microsoft 365 service health of the app's tenant, read from Graph (per app, opt-in).
    Health,
}

impl CheckKind {
    pub const ALL: [CheckKind; 5] = [
        CheckKind::Token,
        CheckKind::Smtp,
        CheckKind::Graph,
        CheckKind::Canary,
        CheckKind::Health,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Token => "token",
            CheckKind::Smtp => "smtp",
            CheckKind::Graph => "graph",
            CheckKind::Canary => "canary",
            CheckKind::Health => "health",
        }
    }

    /// Whether the kind checks apps (token, graph, health) rather than mailboxes (smtp, canary).
    pub fn is_per_app(self) -> bool {
        !matches!(self, CheckKind::Smtp | CheckKind::Canary)
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CheckKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        CheckKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown check {s:?}, expected token, smtp, graph, canary or health")
            })
    }
}

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

/// How results become verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosisSettings {
    /// An in-use secret or certificate expiring within this long gives a warning verdict.
    pub expiry_warning: Duration,
}

impl Default for DiagnosisSettings {
    fn default() -> Self {
        Self {
            expiry_warning: Duration::from_secs(30 * 86_400),
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

/// An app's network set-up, built once per plan: apps with the same CA file share one (and its
/// connection pool), so 1,000 apps do not load the system roots 1,000 times.
#[derive(Clone)]
pub struct NetClients {
    /// For the token endpoint and Graph.
    pub http: reqwest::Client,
    /// The verifying TLS configuration for SMTP (system roots + CA file).
    pub smtp_tls: Arc<rustls::ClientConfig>,
    /// SHA-256 of the CA file's content (zero without one): a changed CA file changes the
    /// set-up of its apps on reload.
    pub ca_digest: [u8; 32],
}

impl fmt::Debug for NetClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetClients")
    }
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
    /// Another app whose Graph token reads this app's credentials.
    pub graph_reader: Option<Arc<App>>,
    pub token_check: CheckSettings,
    pub graph_check: CheckSettings,
    /// Microsoft 365 service health of the app's tenant (`enabled: false` unless configured).
    pub health_check: CheckSettings,
    pub net: Arc<NetClients>,
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

    /// The app whose Graph token reads this app's registration: its reader, or itself.
    pub fn graph_reader_or_self(self: &Arc<Self>) -> Arc<App> {
        self.graph_reader.clone().unwrap_or_else(|| self.clone())
    }

    /// What the app's checks depend on, hashed: every setting, the credential (by its
    /// fingerprint), the CA file's content and the Graph reader's digest. Equal digests across
    /// a reload mean its checks keep running as they were.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        let settings = format!(
            "{}\0{}\0{}\0{:?}\0{}\0{}\0{:?}\0{:?}\0{:?}\0{:?}\0{}",
            self.name,
            self.tenant,
            self.client_id,
            self.cloud,
            self.login_url,
            self.graph_url,
            self.ca_file,
            self.token_check,
            self.graph_check,
            self.health_check,
            match &self.credential {
                Credential::ClientSecret(_) => "secret".to_string(),
                Credential::Certificate(c) => format!("{:?}", c.algorithm),
            },
        );
        h.update(settings.as_bytes());
        h.update(self.credential.fingerprint());
        h.update(self.net.ca_digest);
        if let Some(r) = &self.graph_reader {
            h.update(r.digest());
        }
        h.finalize().into()
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

    /// `password` or `certificate`, as Graph's credential kinds are labelled.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret(_) => "password",
            Credential::Certificate(_) => "certificate",
        }
    }
}

/// Signing algorithm of the client assertion (RFC 7523).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    Ps256,
    Rs256,
}

/// An RSA private key, parsed once at load time, that signs client assertions. It cannot be
/// printed.
#[derive(Clone)]
pub struct SigningKey(pub(crate) jsonwebtoken::EncodingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A certificate credential: the certificate registered on the app and its private key.
#[derive(Debug, Clone)]
pub struct CertificateCredential {
    pub cert_der: Vec<u8>,
    pub key: SigningKey,
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
    /// The app whose token is used.
    pub app: Arc<App>,
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
    /// The delivery canary, when configured.
    pub canary: Option<Canary>,
}

/// A mailbox's delivery canary: a message sent over its SMTP session to `to`, then found in
/// `to` (and deleted) with `reader`'s Graph token.
#[derive(Debug, Clone)]
pub struct Canary {
    pub to: String,
    /// The app with `Mail.ReadWrite` (scoped to the canary mailbox) that finds the message.
    pub reader: Arc<App>,
    pub check: CheckSettings,
}

impl Mailbox {
    /// What the mailbox's check depends on, hashed: its settings and its app's digest.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(
            format!(
                "{}\0{}\0{}\0{}\0{}\0{}\0{}\0{:?}",
                self.name,
                self.address,
                self.smtp_host,
                self.smtp_port,
                self.ehlo_name,
                self.mail_from,
                self.tls_insecure_skip_verify,
                self.smtp_check
            )
            .as_bytes(),
        );
        if let Some(c) = &self.canary {
            h.update(format!("canary\0{}\0{:?}", c.to, c.check).as_bytes());
            h.update(c.reader.digest());
        }
        h.update(self.app.digest());
        h.finalize().into()
    }
}

/// What a check runs against.
#[derive(Debug, Clone)]
pub enum Target {
    App(Arc<App>),
    Mailbox(Arc<Mailbox>),
}

impl Target {
    /// The configured name: the `target` label.
    pub fn name(&self) -> &str {
        match self {
            Target::App(a) => &a.name,
            Target::Mailbox(m) => &m.name,
        }
    }

    /// The app itself, or the mailbox's app.
    pub fn app(&self) -> &Arc<App> {
        match self {
            Target::App(a) => a,
            Target::Mailbox(m) => &m.app,
        }
    }

    pub fn mailbox(&self) -> Option<&Arc<Mailbox>> {
        match self {
            Target::App(_) => None,
            Target::Mailbox(m) => Some(m),
        }
    }

    /// The target's digest (see [`App::digest`], [`Mailbox::digest`]).
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Target::App(a) => a.digest(),
            Target::Mailbox(m) => m.digest(),
        }
    }

    /// The check kinds that apply to this target.
    pub fn kinds(&self) -> &'static [CheckKind] {
        match self {
            Target::App(_) => &[CheckKind::Token, CheckKind::Graph, CheckKind::Health],
            Target::Mailbox(_) => &[CheckKind::Smtp, CheckKind::Canary],
        }
    }

    /// This target's settings for a check kind, when the kind applies to it.
    pub fn settings(&self, kind: CheckKind) -> Option<&CheckSettings> {
        match (self, kind) {
            (Target::App(a), CheckKind::Token) => Some(&a.token_check),
            (Target::App(a), CheckKind::Graph) => Some(&a.graph_check),
            (Target::App(a), CheckKind::Health) => Some(&a.health_check),
            (Target::Mailbox(m), CheckKind::Smtp) => Some(&m.smtp_check),
            (Target::Mailbox(m), CheckKind::Canary) => m.canary.as_ref().map(|c| &c.check),
            _ => None,
        }
    }
}

/// One (check kind, target) pair with its schedule and timeout.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: CheckKind,
    pub target: Target,
    pub settings: CheckSettings,
    /// The target's digest when the job was made: a reload keeps a running job whose new
    /// version has the same key and digest.
    pub digest: [u8; 32],
}

impl Job {
    /// The job of a kind on a target, with the target's settings (enabled or not); `None` when
    /// the kind does not apply to the target.
    pub fn new(kind: CheckKind, target: Target) -> Option<Job> {
        let settings = target.settings(kind)?.clone();
        Some(Job {
            kind,
            digest: target.digest(),
            target,
            settings,
        })
    }

    /// Stable identity of the job, for state that survives a reload.
    pub fn key(&self) -> JobKey {
        JobKey {
            kind: self.kind,
            target: self.target.name().to_string(),
        }
    }
}

/// The identity of a job: check kind and target name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub kind: CheckKind,
    pub target: String,
}

/// The agent-wide settings of a plan.
#[derive(Debug, Clone)]
pub struct Settings {
    pub scheduler: SchedulerSettings,
    pub diagnosis: DiagnosisSettings,
    pub metrics: MetricsSettings,
    /// The alert thresholds (the agent's own `/alerts` and push).
    pub alerts: crate::alerts::AlertSettings,
    /// How often the agent evaluates its alerts.
    pub alert_evaluation_interval: Duration,
    pub alertmanager: Option<AlertmanagerSettings>,
}

/// Which part of the fleet this replica checks (`--shard.count`, `--shard.index`, `--shard.by`):
/// each target belongs to exactly one of `count` replicas, by a stable hash of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub count: u32,
    pub index: u32,
    pub by: ShardBy,
}

/// What the shard hash splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShardBy {
    /// By app: an app, its mailboxes, its token cache and its token and Graph checks live on
    /// one replica (the default).
    App,
    /// By mailbox, for fleets dominated by one app: the app's token and Graph checks live on the
    /// replica its name hashes to, each mailbox on the replica its own name hashes to (which
    /// fetches a token for its mailboxes only).
    Mailbox,
}

impl Shard {
    /// FNV-1a of the name, modulo the replica count: stable across builds, runs and machines.
    fn owner(&self, name: &str) -> u32 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
        (h % u64::from(self.count.max(1))) as u32
    }

    /// Whether this replica checks the app (its token and Graph checks).
    pub fn owns_app(&self, app: &App) -> bool {
        self.owner(&app.name) == self.index
    }

    /// Whether this replica checks the mailbox.
    pub fn owns_mailbox(&self, m: &Mailbox) -> bool {
        match self.by {
            ShardBy::App => self.owner(&m.app.name) == self.index,
            ShardBy::Mailbox => self.owner(&m.name) == self.index,
        }
    }
}

/// The plan in force, shared by the scheduler's sink, the HTTP endpoint and the alerts; a
/// reload swaps it whole.
#[derive(Debug)]
pub struct CurrentPlan(std::sync::RwLock<Arc<Plan>>);

impl CurrentPlan {
    pub fn new(plan: Arc<Plan>) -> Self {
        Self(std::sync::RwLock::new(plan))
    }

    pub fn get(&self) -> Arc<Plan> {
        self.0.read().expect("plan lock").clone()
    }

    pub fn set(&self, plan: Arc<Plan>) {
        *self.0.write().expect("plan lock") = plan;
    }
}

/// The validated configuration the agent runs on.
#[derive(Debug)]
pub struct Plan {
    /// The agent-wide settings.
    pub settings: Settings,
    pub apps: Vec<Arc<App>>,
    pub mailboxes: Vec<Arc<Mailbox>>,
    /// Every enabled job, apps first, in configuration order.
    pub jobs: Vec<Job>,
    /// Things that are allowed but worth a warning in the log (such as inline secrets).
    pub warnings: Vec<String>,
    /// How many apps have their client secret inline in the configuration file.
    pub inline_secrets: usize,
    targets: HashMap<String, Target>,
    mailboxes_by_app: HashMap<String, Vec<Arc<Mailbox>>>,
    jobs_by_key: HashMap<JobKey, usize>,
}

impl Plan {
    /// Builds the plan's indexes and jobs from validated apps and mailboxes. Names are unique
    /// across apps and mailboxes (validation checks it).
    pub fn new(
        settings: Settings,
        apps: Vec<Arc<App>>,
        mailboxes: Vec<Arc<Mailbox>>,
        warnings: Vec<String>,
    ) -> Plan {
        let mut jobs = Vec::new();
        let mut targets = HashMap::new();
        let mut mailboxes_by_app: HashMap<String, Vec<Arc<Mailbox>>> = HashMap::new();
        for app in &apps {
            targets.insert(app.name.clone(), Target::App(app.clone()));
            mailboxes_by_app.entry(app.name.clone()).or_default();
            for kind in [CheckKind::Token, CheckKind::Graph, CheckKind::Health] {
                if let Some(j) = Job::new(kind, Target::App(app.clone())) {
                    if j.settings.enabled {
                        jobs.push(j);
                    }
                }
            }
        }
        for m in &mailboxes {
            targets.insert(m.name.clone(), Target::Mailbox(m.clone()));
            mailboxes_by_app
                .entry(m.app.name.clone())
                .or_default()
                .push(m.clone());
            for kind in [CheckKind::Smtp, CheckKind::Canary] {
                if let Some(j) = Job::new(kind, Target::Mailbox(m.clone())) {
                    if j.settings.enabled {
                        jobs.push(j);
                    }
                }
            }
        }
        let jobs_by_key = jobs.iter().enumerate().map(|(i, j)| (j.key(), i)).collect();
        Plan {
            settings,
            jobs_by_key,
            apps,
            mailboxes,
            jobs,
            warnings,
            inline_secrets: 0,
            targets,
            mailboxes_by_app,
        }
    }

    /// This replica's part of the plan: the apps and mailboxes it owns (`None`: all of them).
    /// A mailbox keeps its app (its token comes from it) whether or not the app is owned here.
    pub fn sharded(self, shard: Option<Shard>) -> Plan {
        let Some(shard) = shard.filter(|s| s.count > 1) else {
            return self;
        };
        let apps = self
            .apps
            .iter()
            .filter(|a| shard.owns_app(a))
            .cloned()
            .collect();
        let mailboxes = self
            .mailboxes
            .iter()
            .filter(|m| shard.owns_mailbox(m))
            .cloned()
            .collect();
        let inline_secrets = self.inline_secrets;
        let mut plan = Plan::new(self.settings, apps, mailboxes, self.warnings);
        plan.inline_secrets = inline_secrets;
        plan
    }

    /// The job of a key, if the plan has it (enabled).
    pub fn job(&self, key: &JobKey) -> Option<&Job> {
        self.jobs_by_key.get(key).map(|&i| &self.jobs[i])
    }

    /// An app or mailbox by name.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.get(name)
    }

    /// The mailboxes that log in with an app's token.
    pub fn mailboxes_of(&self, app: &str) -> &[Arc<Mailbox>] {
        self.mailboxes_by_app
            .get(app)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The targets that get a verdict: every mailbox, and every app without a mailbox.
    pub fn verdict_targets(&self) -> impl Iterator<Item = Target> + '_ {
        self.mailboxes
            .iter()
            .map(|m| Target::Mailbox(m.clone()))
            .chain(
                self.apps
                    .iter()
                    .filter(|a| self.mailboxes_of(&a.name).is_empty())
                    .map(|a| Target::App(a.clone())),
            )
    }

    /// The verdict targets a finished job's report can change: a mailbox alone (and its
    /// siblings, whose verdict reads it), or an app and all its mailboxes.
    pub fn affected_by(&self, job: &Job) -> Vec<Target> {
        let app = job.target.app();
        if job.kind == CheckKind::Health {
            // Service health speaks for every target of the tenant.
            return self
                .verdict_targets()
                .filter(|t| t.app().tenant == app.tenant)
                .collect();
        }
        let mailboxes = self.mailboxes_of(&app.name);
        if mailboxes.is_empty() {
            vec![Target::App(app.clone())]
        } else {
            mailboxes
                .iter()
                .map(|m| Target::Mailbox(m.clone()))
                .collect()
        }
    }
}
