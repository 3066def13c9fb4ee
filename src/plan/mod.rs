//! The plan: what configuration validation produces and everything else reads. Apps, mailboxes
//! holding their app (not its name), the jobs, and each app's network set-up, immutable; a
//! reload builds a new plan and swaps it whole, while per-target state lives outside it.
//! The ground floor of the crate: it imports nothing of the agent but `secret`.

mod app;
mod cloud;
mod mailbox;
mod schedule;
mod settings;
mod tenant;

pub use app::{
    is_guid, App, AssertionAlgorithm, Authorization, CertificateCredential, Credential, NetClients,
    SigningKey,
};
pub use cloud::Cloud;
pub use mailbox::{Canary, MailAddress, Mailbox, TrafficWatch};
pub use schedule::{days_until, format_duration, parse_duration, parse_iso8601_duration, Schedule};
pub use settings::{
    AlertSettings, AlertmanagerAuth, AlertmanagerSettings, CheckSettings, DiagnosisSettings,
    MetricsSettings, ProbeSettings, SchedulerSettings, Settings,
};
pub use tenant::{Configured, Tenant, TenantRead};

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

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
    /// The last sign-in of each of the app's credentials, from Graph beta's
    /// `reports/appCredentialSignInActivities` (per app, opt-in, global cloud).
    Activity,
    /// What the watched mailboxes sent, from message trace (per tenant, opt-in per app,
    /// global cloud).
    Traffic,
    /// The apps of the tenant that hold `SMTP.SendAsApp`, and their credentials (per tenant,
    /// opt-in per app).
    Discovery,
}

impl CheckKind {
    pub const ALL: [CheckKind; 8] = [
        CheckKind::Token,
        CheckKind::Smtp,
        CheckKind::Graph,
        CheckKind::Canary,
        CheckKind::Health,
        CheckKind::Activity,
        CheckKind::Traffic,
        CheckKind::Discovery,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Token => "token",
            CheckKind::Smtp => "smtp",
            CheckKind::Graph => "graph",
            CheckKind::Canary => "canary",
            CheckKind::Health => "health",
            CheckKind::Activity => "activity",
            CheckKind::Traffic => "traffic",
            CheckKind::Discovery => "discovery",
        }
    }

    /// Whether the kind checks apps (token, graph, health, activity) or tenants (traffic)
    /// rather than mailboxes (smtp, canary).
    pub fn is_per_app(self) -> bool {
        !matches!(self, CheckKind::Smtp | CheckKind::Canary)
    }

    /// Whether the kind checks tenants (traffic, discovery).
    pub fn is_per_tenant(self) -> bool {
        matches!(self, CheckKind::Traffic | CheckKind::Discovery)
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
                format!(
                    "unknown check {s:?}, expected token, smtp, graph, canary, health, activity, traffic or discovery"
                )
            })
    }
}

/// The check kinds of an app, in the order its jobs are made.
pub const APP_KINDS: [CheckKind; 4] = [
    CheckKind::Token,
    CheckKind::Graph,
    CheckKind::Health,
    CheckKind::Activity,
];

/// What a check runs against.
#[derive(Debug, Clone)]
pub enum Target {
    App(Arc<App>),
    Mailbox(Arc<Mailbox>),
    /// A tenant whose message trace is read (its first traffic app's reader reads it).
    Tenant(Arc<Tenant>),
}

impl Target {
    /// The configured name: the `target` label.
    pub fn name(&self) -> &str {
        match self {
            Target::App(a) => &a.name,
            Target::Mailbox(m) => &m.name,
            Target::Tenant(t) => &t.name,
        }
    }

    /// The app itself, the mailbox's app, or the app that reads the tenant.
    pub fn app(&self) -> &Arc<App> {
        match self {
            Target::App(a) => a,
            Target::Mailbox(m) => &m.app,
            Target::Tenant(t) => t.reader(),
        }
    }

    pub fn mailbox(&self) -> Option<&Arc<Mailbox>> {
        match self {
            Target::Mailbox(m) => Some(m),
            Target::App(_) | Target::Tenant(_) => None,
        }
    }

    pub fn tenant(&self) -> Option<&Arc<Tenant>> {
        match self {
            Target::Tenant(t) => Some(t),
            Target::App(_) | Target::Mailbox(_) => None,
        }
    }

    /// The `app` label of its alerts: the app's name, or for a tenant its own name.
    pub fn app_label(&self) -> &str {
        match self {
            Target::Tenant(t) => &t.name,
            _ => &self.app().name,
        }
    }

    /// The target's digest (see [`App::digest`], [`Mailbox::digest`], [`Tenant::digest`]).
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Target::App(a) => a.digest(),
            Target::Mailbox(m) => m.digest(),
            Target::Tenant(t) => t.digest(),
        }
    }

    /// The check kinds that apply to this target.
    pub fn kinds(&self) -> &'static [CheckKind] {
        match self {
            Target::App(_) => &[
                CheckKind::Token,
                CheckKind::Graph,
                CheckKind::Health,
                CheckKind::Activity,
            ],
            Target::Mailbox(_) => &[CheckKind::Smtp, CheckKind::Canary],
            Target::Tenant(_) => &[CheckKind::Traffic, CheckKind::Discovery],
        }
    }

    /// This target's settings for a check kind, when the kind applies to it.
    pub fn settings(&self, kind: CheckKind) -> Option<&CheckSettings> {
        match (self, kind) {
            (Target::App(a), CheckKind::Token) => Some(&a.token_check),
            (Target::App(a), CheckKind::Graph) => Some(&a.graph_check),
            (Target::App(a), CheckKind::Health) => Some(&a.health_check),
            (Target::App(a), CheckKind::Activity) => Some(&a.activity_check),
            (Target::Mailbox(m), CheckKind::Smtp) => Some(&m.smtp_check),
            (Target::Mailbox(m), CheckKind::Canary) => m.canary.as_ref().map(|c| &c.check),
            (Target::Tenant(t), CheckKind::Traffic) => t.traffic.as_ref().map(|r| &r.check),
            (Target::Tenant(t), CheckKind::Discovery) => t.discovery.as_ref().map(|r| &r.check),
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
    /// The tenants whose message trace is read (made from the mailboxes whose app watches
    /// traffic).
    pub tenants: Vec<Arc<Tenant>>,
    /// Every enabled job, apps first, then mailboxes and tenants, in configuration order.
    pub jobs: Vec<Job>,
    /// Things that are allowed but worth a warning in the log (such as inline secrets).
    pub warnings: Vec<String>,
    /// How many apps have their client secret inline in the configuration file.
    pub inline_secrets: usize,
    targets: HashMap<String, Target>,
    mailboxes_by_app: HashMap<String, Vec<Arc<Mailbox>>>,
    /// Apps by tenant (as configured): what a tenant's service health run speaks for.
    apps_by_tenant: HashMap<String, Vec<Arc<App>>>,
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
        let mut apps_by_tenant: HashMap<String, Vec<Arc<App>>> = HashMap::new();
        for app in &apps {
            targets.insert(app.name.clone(), Target::App(app.clone()));
            apps_by_tenant
                .entry(app.tenant.clone())
                .or_default()
                .push(app.clone());
            mailboxes_by_app.entry(app.name.clone()).or_default();
            for kind in APP_KINDS {
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
        // One tenant target per tenant read once for all its apps: its message trace (for the
        // mailboxes whose app watches traffic) and its inventory (`discovery`), each by the
        // first app that enables it, with that app's settings.
        let mut tenants: Vec<Tenant> = Vec::new();
        let read = |app: &Arc<App>, check: &CheckSettings| TenantRead {
            reader: app.graph_reader_or_self(),
            by: app.clone(),
            check: check.clone(),
        };
        // Tenants by name in lower case (as Entra ID compares them): their index in `tenants`.
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut tenant_of = |tenants: &mut Vec<Tenant>, name: &str| -> usize {
            *index.entry(name.to_ascii_lowercase()).or_insert_with(|| {
                tenants.push(Tenant {
                    name: name.to_string(),
                    traffic: None,
                    senders: Vec::new(),
                    discovery: None,
                    configured: Arc::default(),
                });
                tenants.len() - 1
            })
        };
        for m in &mailboxes {
            let Some(t) = &m.traffic else { continue };
            let i = tenant_of(&mut tenants, &t.tenant);
            let x = &mut tenants[i];
            x.traffic
                .get_or_insert_with(|| read(&m.app, &m.app.traffic_check));
            x.senders.push(m.clone());
        }
        for a in apps.iter().filter(|a| a.discovery_check.enabled) {
            let i = tenant_of(&mut tenants, &a.tenant);
            tenants[i]
                .discovery
                .get_or_insert_with(|| read(a, &a.discovery_check));
        }
        // The inventory's list of configured apps: made once, shared by the tenants that read
        // an inventory (a list per tenant was O(tenants × apps): 147 MiB at 10,000 apps each in
        // a tenant of its own).
        if tenants.iter().any(|t| t.discovery.is_some()) {
            let configured = Arc::new(Configured::new(
                apps.iter().chain(mailboxes.iter().map(|m| &m.app)),
            ));
            for t in tenants.iter_mut().filter(|t| t.discovery.is_some()) {
                t.configured = configured.clone();
            }
        }
        let tenants: Vec<Arc<Tenant>> = tenants.into_iter().map(Arc::new).collect();
        for t in &tenants {
            targets.insert(t.name.clone(), Target::Tenant(t.clone()));
            for kind in [CheckKind::Traffic, CheckKind::Discovery] {
                if let Some(j) = Job::new(kind, Target::Tenant(t.clone())) {
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
            tenants,
            jobs,
            warnings,
            inline_secrets: 0,
            targets,
            mailboxes_by_app,
            apps_by_tenant,
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
        if let Target::Tenant(t) = &job.target {
            // The traffic of its mailboxes; the inventory changes no verdict.
            if job.kind != CheckKind::Traffic {
                return Vec::new();
            }
            return t
                .senders
                .iter()
                .map(|m| Target::Mailbox(m.clone()))
                .collect();
        }
        let app = job.target.app();
        if job.kind == CheckKind::Health {
            // Service health speaks for every target of the tenant (by index: a fleet of one
            // app per tenant must not scan every target for each tenant's run).
            return self
                .apps_by_tenant
                .get(&app.tenant)
                .into_iter()
                .flatten()
                .flat_map(|a| self.verdict_targets_of(a))
                .collect();
        }
        self.verdict_targets_of(app)
    }

    /// An app's verdict targets: its mailboxes, or the app itself when it has none.
    fn verdict_targets_of(&self, app: &Arc<App>) -> Vec<Target> {
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
