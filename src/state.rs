//! Per-target state that outlives a single run and a reload: the last report, the last success,
//! run counters, and each target's verdict. Keyed by target name, outside the plan, so that a
//! new plan keeps it. The scheduler's sink writes it; metrics, `/status` and `/` read it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::checks::smtp::Phase;
use crate::checks::{Details, Report};
use crate::diagnosis::{self, Inputs, Verdict};
use crate::histogram::{Buckets, Histogram};
use crate::plan::{Authorization, CheckKind, JobKey, Plan, Target};
use crate::reasons::Reason;

/// What the agent remembers of one (check, target).
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    pub last: Option<Arc<Report>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The last successful run, whose facts (such as credential expiry) stay true after a
    /// failed run: a throttled Graph read must not make expiry series vanish.
    pub last_ok: Option<Arc<Report>>,
    /// The canary's last run that found its message (a run in Junk Email fails, so it is not
    /// `last_ok`): the latency and the folder stay until another run finds one.
    pub last_found: Option<Arc<Report>>,
    pub runs_success: u64,
    pub runs_failure: u64,
    /// Failed runs by reason (a counter per reason seen).
    pub failures_by_reason: BTreeMap<Reason, u64>,
    /// When the current run of failures began (the start of its first failed run); `None`
    /// while the last run succeeded. Alerts wait this long, as Prometheus' `for:` does.
    pub failing_since: Option<DateTime<Utc>>,
    /// The job's typical interval (for "has not succeeded for three intervals").
    pub interval: std::time::Duration,
    /// When the job entered the plan: the start of the wait for its first success.
    pub since: Option<DateTime<Utc>>,
}

impl TargetState {
    /// Whether the check has not succeeded for `intervals` of its intervals (counted from the
    /// job's start when it never succeeded).
    pub fn overdue(&self, intervals: u32, now: DateTime<Utc>) -> bool {
        let Some(from) = self.last_success.or(self.since) else {
            return false;
        };
        let limit =
            chrono::Duration::from_std(self.interval * intervals).unwrap_or(chrono::Duration::MAX);
        !self.interval.is_zero() && now - from > limit
    }
}

/// What every mailbox checked at one SMTP endpoint (host:port) shares.
#[derive(Debug, Clone, Default)]
pub struct EndpointState {
    /// Time per phase over every run to the endpoint.
    pub phases: BTreeMap<Phase, Histogram>,
    /// The TLS facts of the last run; reports that saw the same facts share this one copy.
    pub tls: Option<Arc<crate::checks::smtp::TlsFacts>>,
    /// Delivery latency of the canaries sent through the endpoint (accepted → received).
    pub canary_delivery: Option<Histogram>,
}

/// The scheduler's aggregates.
#[derive(Debug, Clone, Default)]
pub struct SchedulerStats {
    /// Runs by check kind: (succeeded, failed).
    pub runs: BTreeMap<CheckKind, (u64, u64)>,
    /// How late runs started, by check kind.
    pub delay: BTreeMap<CheckKind, Histogram>,
    /// Verdicts computed since the start (each report re-diagnoses its target, an app's run
    /// its mailboxes, and rarely a mailbox's run its siblings).
    pub verdict_evaluations: u64,
}

#[derive(Default)]
struct Inner {
    jobs: BTreeMap<JobKey, TargetState>,
    endpoints: BTreeMap<String, EndpointState>,
    scheduler: SchedulerStats,
    verdicts: BTreeMap<String, Verdict>,
    /// By app: its mailboxes whose latest SMTP run got past AUTH (the verdict of a sibling
    /// reads it: then the Exchange service principal exists).
    authenticated: HashMap<String, HashSet<String>>,
    /// By app: its mailboxes whose latest SMTP run got past AUTH with a token without
    /// `SMTP.SendAsApp`: RBAC for Applications lets the app in.
    rbac_authenticated: HashMap<String, HashSet<String>>,
    /// By app: its `authorization` setting (from the plan in force).
    authorization: BTreeMap<String, Authorization>,
    /// By app: the model of its latest SMTP run that got past AUTH with a readable token
    /// (kept through failures: what the app was last seen working with).
    seen_model: HashMap<String, Authorization>,
    /// By tenant (as configured): the open service health issues of the last successful read.
    health: BTreeMap<String, Arc<Vec<crate::checks::health::Issue>>>,
    /// What is kept over time: watched mailboxes' traffic.
    history: crate::history::History,
}

/// The state as the metrics writer reads it, under the lock (nothing is copied).
pub struct View<'a> {
    pub jobs: &'a BTreeMap<JobKey, TargetState>,
    pub verdicts: &'a BTreeMap<String, Verdict>,
    pub endpoints: &'a BTreeMap<String, EndpointState>,
    pub scheduler: &'a SchedulerStats,
    /// Open service health issues by tenant.
    pub health: &'a BTreeMap<String, Arc<Vec<crate::checks::health::Issue>>>,
    /// By app: its `authorization` setting.
    pub authorization: &'a BTreeMap<String, Authorization>,
    /// By app: the model Exchange let it in by, the last time one of its mailboxes got past
    /// AUTH (classic: the token carried `SMTP.SendAsApp`; app_rbac: it did not).
    pub seen_model: &'a HashMap<String, Authorization>,
    /// What is kept over time: watched mailboxes' traffic.
    pub history: &'a crate::history::History,
    /// By app: its mailboxes whose latest SMTP run got past AUTH.
    pub authenticated: &'a HashMap<String, HashSet<String>>,
    /// By app: its mailboxes whose latest SMTP run got past AUTH without `SMTP.SendAsApp`.
    pub rbac_authenticated: &'a HashMap<String, HashSet<String>>,
}

impl View<'_> {
    /// The latest reports behind a target's verdict (Arcs cloned, nothing else).
    pub fn evidence(&self, target: &Target) -> Evidence {
        let get = |kind: CheckKind, name: &str| {
            self.jobs.get(&JobKey {
                kind,
                target: name.to_string(),
            })
        };
        let app = target.app();
        let watched = target.mailbox().and_then(|m| m.traffic.as_ref());
        let graph = get(CheckKind::Graph, &app.name);
        let other = |sets: &HashMap<String, HashSet<String>>| match target {
            Target::Mailbox(m) => sets
                .get(&app.name)
                .is_some_and(|set| set.len() > usize::from(set.contains(&m.name))),
            Target::App(_) | Target::Tenant(_) => false,
        };
        Evidence {
            token: get(CheckKind::Token, &app.name).and_then(|s| s.last.clone()),
            smtp: target
                .mailbox()
                .and_then(|m| get(CheckKind::Smtp, &m.name))
                .and_then(|s| s.last.clone()),
            graph: graph.and_then(|s| s.last.clone()),
            graph_ok: graph.and_then(|s| s.last_ok.clone()),
            canary: target
                .mailbox()
                .and_then(|m| get(CheckKind::Canary, &m.name))
                .and_then(|s| s.last.clone()),
            activity: get(CheckKind::Activity, &app.name).and_then(|s| s.last_ok.clone()),
            traffic: watched
                .and(target.mailbox())
                .and_then(|m| self.history.traffic.get(&m.name).cloned()),
            traffic_check: watched
                .and_then(|w| get(CheckKind::Traffic, &w.tenant))
                .and_then(|s| s.last.clone()),
            issues: self.health.get(&app.tenant).cloned(),
            sibling_authenticated: other(self.authenticated),
            sibling_rbac_authenticated: other(self.rbac_authenticated),
            seen_model: self.seen_model.get(&app.name).copied(),
        }
    }
}

/// All targets' state.
#[derive(Default)]
pub struct StateStore {
    inner: Mutex<Inner>,
}

/// The latest reports a verdict is made from (cloned out of the lock).
#[derive(Default)]
pub struct Evidence {
    pub token: Option<Arc<Report>>,
    pub smtp: Option<Arc<Report>>,
    pub graph: Option<Arc<Report>>,
    pub graph_ok: Option<Arc<Report>>,
    pub canary: Option<Arc<Report>>,
    /// The app's last successful credential activity read.
    pub activity: Option<Arc<Report>>,
    /// The mailbox's traffic, when watched, and its tenant's latest trace read.
    pub traffic: Option<crate::history::MailboxTraffic>,
    pub traffic_check: Option<Arc<Report>>,
    /// Open service health issues of the target's tenant.
    pub issues: Option<Arc<Vec<crate::checks::health::Issue>>>,
    pub sibling_authenticated: bool,
    /// Another mailbox of the app got past AUTH with a token without `SMTP.SendAsApp`.
    pub sibling_rbac_authenticated: bool,
    /// The model the app was last seen working with.
    pub seen_model: Option<Authorization>,
}

impl Evidence {
    /// The diagnosis inputs over these reports.
    pub fn inputs<'a>(
        &'a self,
        target: &'a Target,
        plan: &'a Plan,
        now: DateTime<Utc>,
    ) -> Inputs<'a> {
        Inputs {
            target,
            token: self.token.as_deref(),
            smtp: self.smtp.as_deref(),
            graph: self.graph.as_deref(),
            graph_ok: self.graph_ok.as_deref(),
            canary: self.canary.as_deref(),
            activity: self.activity.as_deref(),
            traffic: self.traffic.as_ref(),
            traffic_check: self.traffic_check.as_deref(),
            issues: self.issues.as_deref().map_or(&[], Vec::as_slice),
            sibling_authenticated: self.sibling_authenticated,
            sibling_rbac_authenticated: self.sibling_rbac_authenticated,
            seen_model: self.seen_model,
            now,
            settings: &plan.settings.diagnosis,
        }
    }
}

/// The other mailboxes of an app whose verdict a run changed (see [`StateStore::record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Siblings {
    None,
    /// This one (the only other member of a set that a mailbox joined or left).
    One(String),
    All,
}

impl Siblings {
    fn and(self, other: Siblings) -> Siblings {
        match (self, other) {
            (Siblings::All, _) | (_, Siblings::All) => Siblings::All,
            (Siblings::One(a), Siblings::One(b)) if a != b => Siblings::All,
            (Siblings::One(a), _) | (_, Siblings::One(a)) => Siblings::One(a),
            (Siblings::None, Siblings::None) => Siblings::None,
        }
    }
}

/// Puts `target` in or out of an app's set of mailboxes past AUTH, and says whose answer to
/// "does another mailbox of the app get past AUTH" that flips: everyone's when the set was or
/// becomes empty, the one other member's when it held that one alone, nobody's otherwise.
fn flipped(set: &mut HashSet<String>, target: &str, member: bool) -> Siblings {
    let changed = if member {
        set.insert(target.to_string())
    } else {
        set.remove(target)
    };
    if !changed {
        return Siblings::None;
    }
    // The set without `target`: what every other mailbox reads after the change as before.
    let others = set.len() - usize::from(member);
    match others {
        0 => Siblings::All,
        1 => set
            .iter()
            .find(|m| m.as_str() != target)
            .map_or(Siblings::None, |m| Siblings::One(m.clone())),
        _ => Siblings::None,
    }
}

/// Whether an SMTP run got past AUTH (it succeeded, or failed only after AUTH).
pub fn authenticated(r: &Report) -> bool {
    use crate::checks::smtp::Phase;
    r.success()
        || r.smtp()
            .and_then(|d| d.failed_phase)
            .is_some_and(|p| matches!(p, Phase::MailFrom | Phase::Send | Phase::Quit))
}

/// The view of locked state.
fn view(inner: &Inner) -> View<'_> {
    View {
        jobs: &inner.jobs,
        verdicts: &inner.verdicts,
        endpoints: &inner.endpoints,
        scheduler: &inner.scheduler,
        health: &inner.health,
        authorization: &inner.authorization,
        seen_model: &inner.seen_model,
        authenticated: &inner.authenticated,
        rbac_authenticated: &inner.rbac_authenticated,
        history: &inner.history,
    }
}

impl StateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("state lock")
    }

    /// Records a finished run. Returns which other mailboxes of its app now read a different
    /// answer to what their verdicts ask of their siblings ("does another mailbox of the app get
    /// past AUTH", with or without the role; the model the app was last seen working with):
    /// almost always none, so a first round of an app's N mailboxes re-diagnoses O(N) verdicts,
    /// not O(N²).
    pub fn record(&self, mut report: Report) -> Siblings {
        let key = JobKey {
            kind: report.kind,
            target: report.target.clone(),
        };
        let mut inner = self.lock();
        let runs = inner.scheduler.runs.entry(report.kind).or_default();
        if report.success() {
            runs.0 += 1;
        } else {
            runs.1 += 1;
        }
        if let Details::Smtp(d) = &mut report.details {
            let e = inner
                .endpoints
                .entry(format!("{}:{}", d.host, d.port))
                .or_default();
            for (phase, t) in &d.phases {
                e.phases
                    .entry(*phase)
                    .or_insert_with(|| Histogram::new(Buckets::Latency))
                    .observe(t.as_secs_f64());
            }
            // One copy of an endpoint's TLS facts, however many mailboxes saw them.
            if let Some(tls) = &mut d.tls {
                match &e.tls {
                    Some(known) if **known == **tls => *tls = known.clone(),
                    _ => e.tls = Some(tls.clone()),
                }
            }
        }
        if let Details::Canary(c) = &report.details {
            if let Some(s) = c.delivery_seconds() {
                inner
                    .endpoints
                    .entry(format!("{}:{}", c.smtp.host, c.smtp.port))
                    .or_default()
                    .canary_delivery
                    .get_or_insert_with(|| Histogram::new(Buckets::Delivery))
                    .observe(s);
            }
        }
        if let (Details::Traffic(t), None) = (&report.details, &report.failure) {
            inner.history.record_traffic(t, report.started_at);
        }
        if let (Details::Health(h), None) = (&report.details, &report.failure) {
            inner
                .health
                .insert(h.tenant.clone(), Arc::new(h.issues.clone()));
        }
        let stale_health = match (&report.details, &report.failure) {
            (Details::Health(h), Some(f)) => Some((h.tenant.clone(), f.reason.is_transient())),
            _ => None,
        };
        let report = Arc::new(report);
        let mut siblings = Siblings::None;
        if let Some(d) = report.smtp() {
            let past_auth = authenticated(&report);
            let rbac = past_auth && d.token_has_role == Some(false);
            let inner = &mut *inner;
            if let (true, Some(role)) = (past_auth, d.token_has_role) {
                let model = if role {
                    Authorization::Classic
                } else {
                    Authorization::AppRbac
                };
                if inner.seen_model.insert(d.app.clone(), model) != Some(model) {
                    siblings = Siblings::All;
                }
            }
            for (sets, member) in [
                (&mut inner.authenticated, past_auth),
                (&mut inner.rbac_authenticated, rbac),
            ] {
                let set = sets.entry(d.app.clone()).or_default();
                siblings = siblings.and(flipped(set, &report.target, member));
            }
        }
        let st = inner.jobs.entry(key).or_default();
        match &report.failure {
            None => {
                st.runs_success += 1;
                st.last_success = Some(report.started_at);
                st.last_ok = Some(report.clone());
                st.failing_since = None;
            }
            Some(f) => {
                st.runs_failure += 1;
                *st.failures_by_reason.entry(f.reason).or_default() += 1;
                st.failing_since.get_or_insert(report.started_at);
            }
        }
        if report.canary().is_some_and(|c| c.found.is_some()) {
            st.last_found = Some(report.clone());
        }
        // Issues Microsoft may have resolved since: gone at once when the read is refused (the
        // permission was revoked), and after three intervals of transient failures.
        let forget =
            stale_health.filter(|(_, transient)| !transient || st.overdue(3, report.started_at));
        st.last = Some(report);
        if let Some((tenant, _)) = forget {
            inner.health.remove(&tenant);
        }
        siblings
    }

    /// Records how late a scheduled run started.
    pub fn record_delay(&self, kind: CheckKind, delay: std::time::Duration) {
        self.lock()
            .scheduler
            .delay
            .entry(kind)
            .or_insert_with(|| Histogram::new(Buckets::Delay))
            .observe(delay.as_secs_f64());
    }

    /// Runs `f` over the whole state, under the lock: for the metrics writer, which reads
    /// everything once per scrape and must not copy 10,000 targets' state to do it.
    pub fn with_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        let inner = self.lock();
        f(&view(&inner))
    }

    /// Keeps the state of the plan's jobs and verdict targets only, and makes sure every job
    /// has an entry (so it shows as "not run yet").
    pub fn retain(&self, plan: &Plan) {
        self.retain_at(plan, Utc::now());
    }

    /// [`StateStore::retain`] with the time new jobs count from (for tests).
    pub fn retain_at(&self, plan: &Plan, now: DateTime<Utc>) {
        let keep: HashSet<JobKey> = plan.jobs.iter().map(|j| j.key()).collect();
        let targets: HashSet<String> = plan
            .verdict_targets()
            .map(|t| t.name().to_string())
            .collect();
        let mailboxes: HashSet<&str> = plan.mailboxes.iter().map(|m| m.name.as_str()).collect();
        let mut inner = self.lock();
        inner.jobs.retain(|k, _| keep.contains(k));
        let tenants: HashSet<&str> = plan
            .jobs
            .iter()
            .filter(|j| j.kind == CheckKind::Health)
            .map(|j| j.target.app().tenant.as_str())
            .collect();
        inner.health.retain(|t, _| tenants.contains(t.as_str()));
        for j in &plan.jobs {
            let st = inner.jobs.entry(j.key()).or_default();
            st.interval = j.settings.schedule.typical_interval();
            st.since.get_or_insert(now);
        }
        inner.verdicts.retain(|k, _| targets.contains(k));
        inner.history.retain(plan);
        let inner = &mut *inner;
        for set in inner
            .authenticated
            .values_mut()
            .chain(inner.rbac_authenticated.values_mut())
        {
            set.retain(|m| mailboxes.contains(m.as_str()));
        }
        inner.authorization = plan
            .apps
            .iter()
            .map(|a| (a.name.clone(), a.authorization))
            .collect();
        let authorization = &inner.authorization;
        inner
            .seen_model
            .retain(|app, _| authorization.contains_key(app));
        let endpoints: HashSet<String> = plan
            .mailboxes
            .iter()
            .map(|m| format!("{}:{}", m.smtp_host, m.smtp_port))
            .collect();
        inner.endpoints.retain(|e, _| endpoints.contains(e));
    }

    pub fn snapshot(&self) -> Vec<(JobKey, TargetState)> {
        self.lock()
            .jobs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One job's latest report (an Arc, nothing else copied).
    pub fn last_report(&self, key: &JobKey) -> Option<Arc<Report>> {
        self.lock().jobs.get(key).and_then(|s| s.last.clone())
    }

    /// One job's state.
    pub fn get(&self, key: &JobKey) -> Option<TargetState> {
        self.lock().jobs.get(key).cloned()
    }

    /// The latest reports behind a target's verdict.
    pub fn evidence(&self, target: &Target) -> Evidence {
        view(&self.lock()).evidence(target)
    }

    /// Diagnoses a target from the state and stores the verdict, under one lock (so that two
    /// reports finishing together cannot store a verdict made from older evidence last).
    /// Returns the verdict, and the one it replaces when the cause changed.
    pub fn update_verdict(
        &self,
        plan: &Plan,
        target: &Target,
        now: DateTime<Utc>,
    ) -> (Verdict, Option<Option<Verdict>>) {
        let mut inner = self.lock();
        inner.scheduler.verdict_evaluations += 1;
        let evidence = view(&inner).evidence(target);
        let verdict = diagnosis::diagnose(&evidence.inputs(target, plan, now));
        // The target's own run (its SMTP check or canary; an app's token check) gets a mark in
        // its heartbeat bar, with the verdict after it.
        let own = match target {
            Target::Mailbox(_) => [evidence.smtp.as_ref(), evidence.canary.as_ref()],
            _ => [evidence.token.as_ref(), None],
        };
        let run = own.into_iter().flatten().map(|r| r.started_at).max();
        inner.history.beat(target.name(), run, verdict.cause);
        let old = inner
            .verdicts
            .insert(target.name().to_string(), verdict.clone());
        drop(inner);
        let changed = match &old {
            Some(o) => o.cause != verdict.cause,
            None => true,
        };
        (verdict, changed.then_some(old))
    }

    /// The open service health issues of a watched tenant (`None`: not read yet).
    pub fn health_of(&self, tenant: &str) -> Option<Arc<Vec<crate::checks::health::Issue>>> {
        self.lock().health.get(tenant).cloned()
    }

    /// Every stored verdict, by target name.
    pub fn verdicts(&self) -> BTreeMap<String, Verdict> {
        self.lock().verdicts.clone()
    }
}
