//! The only writer of metric series: turns per-target state, per-endpoint state, token cache
//! counters and agent facts into the Prometheus text exposition at scrape time, so no series
//! outlives its target. Written a family at a time into one buffer (see [`text`]).
//!
//! The cardinality budget: a healthy mailbox costs five series by default (success, duration,
//! last run, last success, verdict); what is the same for every mailbox of one SMTP endpoint
//! (TLS facts, the per-phase latency distribution) is exported once per endpoint. Per-mailbox
//! phase detail is on `/probe`, and on `/metrics` with `metrics.detail: true`.

mod facts;
pub mod text;

use crate::plan::CheckKind;
use chrono::{DateTime, Utc};

use crate::auth::cache::EntryStats;
use crate::checks::{Details, Report};
use crate::diagnosis::Verdict;
use crate::state::View;
pub use facts::write_endpoints;
use facts::{write_facts, Facts, Naming};
pub use text::{Exposition, Histogram, Kind};

mod probe;
mod tenant;
pub use probe::render_probe;
use tenant::{discovered_facts, write_discovery, write_health, write_traffic};

/// Metric name prefix.
pub const NAMESPACE: &str = "smtp_oauth";

/// Facts about the agent itself.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub config_reload_successful: bool,
    pub config_reload_success_at: Option<DateTime<Utc>>,
}

fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// Seconds rounded to the microsecond: no reader needs more, and it keeps the page small.
fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// What the page shows beyond the state.
#[derive(Debug, Clone, Copy)]
pub struct PageSettings {
    /// `metrics.detail`.
    pub detail: bool,
    /// `alerts.stale_intervals`: a check that has not succeeded for this many intervals is
    /// overdue.
    pub stale_intervals: u32,
    pub now: DateTime<Utc>,
}

/// The whole `/metrics` page.
pub fn render(
    agent: &AgentInfo,
    view: &View,
    tokens: &[EntryStats],
    page: PageSettings,
    capacity: usize,
) -> String {
    let detail = page.detail;
    let mut f = Exposition::new(NAMESPACE, capacity);
    write_agent(&mut f, agent);
    write_pending(&mut f, view);
    write_verdicts(&mut f, view);
    write_authorization(&mut f, view);
    write_checks(&mut f, view, page);
    write_traffic(&mut f, view, page.now);
    write_endpoints(&mut f, view);
    write_scheduler(&mut f, view);
    write_token_cache(&mut f, tokens, detail);
    f.encode()
}

/// Build and configuration facts.
pub fn write_agent(f: &mut Exposition, info: &AgentInfo) {
    f.one(
        "build_info",
        "Build facts of the running agent; always 1.",
        Kind::Gauge,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", crate::version::REVISION),
            ("rustversion", crate::version::RUSTC),
        ],
        1.0,
    );
    f.one(
        "config_last_reload_successful",
        "Whether the last configuration (re)load succeeded.",
        Kind::Gauge,
        &[],
        b(info.config_reload_successful),
    );
    if let Some(t) = info.config_reload_success_at {
        f.one(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            Kind::Gauge,
            &[],
            ts(t),
        );
    }
}

/// The checks that have not reported since the agent started, or since the reload that added
/// them: until they do, a failure series that is absent only means "not checked yet", and the
/// rules hold their alerts meanwhile (see `alerts::BLIND_HOLD`). None at steady state.
pub fn write_pending(f: &mut Exposition, view: &View) {
    f.family(
        "check_pending",
        "Present (1) for a check that has not reported since the agent started or since the reload that added it (none at steady state); the rules hold the alerts about it meanwhile.",
        Kind::Gauge,
    );
    for (k, st) in view.jobs {
        if st.last.is_none() {
            f.sample(
                &[("check", k.kind.as_str()), ("target", k.target.as_str())],
                1.0,
            );
        }
    }
}

/// Per app: its `authorization` setting and the model its mailboxes' SMTP runs show.
pub fn write_authorization(f: &mut Exposition, view: &View) {
    f.family(
        "app_authorization_info",
        "An app's authorization setting (auto, classic, app_rbac) and the model Exchange let it in by the last time one of its mailboxes got past AUTH (classic: SMTP.SendAsApp in the token, FullAccess decides; app_rbac: no role in the token, RBAC for Applications; unknown: never seen); always 1.",
        Kind::Gauge,
    );
    for (app, setting) in view.authorization {
        f.sample(
            &[
                ("target", app.as_str()),
                ("setting", setting.as_str()),
                (
                    "model",
                    view.seen_model.get(app).map_or("unknown", |m| m.as_str()),
                ),
            ],
            1.0,
        );
    }
}

const VERDICT_HELP: &str = "The diagnosis of a mailbox (or of an app without one): the broken setup step (1-5, policy, network, transient, unknown, ok), the cause and its severity; always 1.";

fn verdict_labels(v: &Verdict) -> [(&'static str, &str); 3] {
    [
        ("step", v.step().as_str()),
        ("cause", v.cause.label()),
        ("severity", v.severity().as_str()),
    ]
}

/// One series per target that has a verdict: its app, step, cause and severity (fixed sets).
pub fn write_verdicts(f: &mut Exposition, view: &View) {
    f.family("verdict", VERDICT_HELP, Kind::Gauge);
    for (target, v) in view.verdicts {
        f.sample_with(
            &[("target", target), ("app", &v.app)],
            &verdict_labels(v),
            1.0,
        );
    }
    f.family(
        "verdict_incident_info",
        "The Microsoft 365 incident a verdict names (cause microsoft_incident): its id and service; present while it does; always 1.",
        Kind::Gauge,
    );
    for (target, v) in view.verdicts {
        if let Some((id, service)) = &v.incident {
            f.sample(
                &[
                    ("target", target.as_str()),
                    ("id", id.as_str()),
                    ("service", service.as_str()),
                ],
                1.0,
            );
        }
    }
}

/// One job's figures, read off its state in one pass so that each family below walks a
/// compact list in order rather than the job table again: at 10,000 apps the table holds
/// 50,000 jobs, and reading each job's state once per family was most of a scrape's time (cache
/// misses, not writing).
struct Row<'a> {
    /// Its labels (`check`, `target`), escaped, in the rows' shared buffer.
    labels: std::ops::Range<usize>,
    kind: CheckKind,
    st: &'a crate::state::TargetState,
    /// The last run: whether it succeeded, its duration and start.
    last: Option<(bool, f64, f64)>,
    last_success: Option<f64>,
    overdue: bool,
    failures_by_reason: bool,
    /// Runs that succeeded, runs that failed.
    runs: (u64, u64),
}

/// The details of a job's report whose facts `/metrics` shows. Facts that a failed run could
/// not re-read stay as the last successful run saw them (Graph runs every few hours; one 429
/// must not resolve an expiry alert).
fn facts_of(st: &crate::state::TargetState) -> Option<&Details> {
    let r = st.last.as_ref()?;
    Some(match (&r.details, &st.last_ok) {
        (Details::Graph(g), Some(ok)) if g.registration.is_none() => &ok.details,
        // The last sign-ins of the last read that worked stay true through a failure; a read
        // that never worked says nothing.
        (Details::Activity(_), Some(ok)) if r.failure.is_some() => &ok.details,
        (Details::Activity(_), None) if r.failure.is_some() => return None,
        _ => &r.details,
    })
}

/// The series of every (check, target), then the check-specific facts.
fn write_checks(f: &mut Exposition, view: &View, page: PageSettings) {
    let detail = page.detail;
    let jobs = view.jobs;
    // Every job's labels, escaped once, first (the rows below borrow them)...
    let mut labels = String::with_capacity(jobs.len() * 48);
    let spans: Vec<_> = jobs
        .keys()
        .map(|k| {
            let from = labels.len();
            text::escaped_labels(&mut labels, &[("check", k.kind.as_str())]);
            labels.push(',');
            let target = labels.len();
            text::escaped_labels(&mut labels, &[("target", k.target.as_str())]);
            (from..labels.len(), target..labels.len())
        })
        .collect();
    // ... then, in one pass over the states and their last reports, each job's row and the
    // facts of its report. The apps the inventory discovered (not configured) follow: their
    // credentials and last sign-ins in the same families, with their client ID as the target,
    // from its last successful run.
    let discovered: Vec<(String, Details)> = discovered_facts(view)
        .into_iter()
        .map(|(app_id, details)| {
            let mut base = String::new();
            text::escaped_labels(&mut base, &[("target", app_id.as_str())]);
            (base, details)
        })
        .collect();
    let mut facts = Facts::default();
    let mut rows = Vec::with_capacity(jobs.len());
    for ((k, st), (all, target)) in jobs.iter().zip(spans) {
        if let Some(details) = facts_of(st) {
            facts.push(&labels[target], details, false);
        }
        rows.push(Row {
            labels: all,
            kind: k.kind,
            st,
            last: st
                .last
                .as_ref()
                .map(|r| (r.success(), secs(r.duration), ts(r.started_at))),
            last_success: st.last_success.map(ts),
            overdue: st.overdue(page.stale_intervals, page.now),
            failures_by_reason: !st.failures_by_reason.is_empty(),
            runs: (st.runs_success, st.runs_failure),
        });
    }
    for (base, details) in &discovered {
        facts.push(base, details, true);
    }
    let label = |r: &Row| &labels[r.labels.clone()];
    f.family(
        "check_success",
        "Whether the last run of the check succeeded (1) or failed (0).",
        Kind::Gauge,
    );
    for r in &rows {
        if let Some((ok, _, _)) = r.last {
            f.sample_escaped(label(r), &[], b(ok));
        }
    }
    // A canary's duration and start say little beyond its delivery latency and last success:
    // within the cardinality budget (8 series for a mailbox with a canary) they wait for
    // metrics.detail.
    let in_budget = |r: &&Row| detail || r.kind != CheckKind::Canary;
    f.family(
        "check_duration_seconds",
        "How long the last run took.",
        Kind::Gauge,
    );
    for r in rows.iter().filter(in_budget) {
        if let Some((_, duration, _)) = r.last {
            f.sample_escaped(label(r), &[], duration);
        }
    }
    f.family(
        "check_last_run_timestamp_seconds",
        "When the last run started.",
        Kind::Gauge,
    );
    for r in rows.iter().filter(in_budget) {
        if let Some((_, _, started)) = r.last {
            f.sample_escaped(label(r), &[], started);
        }
    }
    f.family(
        "check_last_success_timestamp_seconds",
        "When the check last succeeded (start of the run).",
        Kind::Gauge,
    );
    for r in &rows {
        if let Some(t) = r.last_success {
            f.sample_escaped(label(r), &[], t);
        }
    }
    f.family(
        "check_failure_info",
        "Present (1) while the last run failed: the reason from the check's fixed set and the AADSTS code when it is a known one.",
        Kind::Gauge,
    );
    for r in rows.iter().filter(|r| matches!(r.last, Some((false, ..)))) {
        if let Some(fail) = r.st.last.as_ref().and_then(|r| r.failure.as_ref()) {
            let aadsts = fail.aadsts.map(|c| c.to_string()).unwrap_or_default();
            f.sample_escaped(
                label(r),
                &[("reason", fail.reason.as_str()), ("aadsts", &aadsts)],
                1.0,
            );
        }
    }
    f.family(
        "check_failures_total",
        "Failed runs of a check on a target, by reason (from the first failure of each).",
        Kind::Counter,
    );
    for r in rows.iter().filter(|r| r.failures_by_reason) {
        for (reason, n) in &r.st.failures_by_reason {
            f.sample_escaped(label(r), &[("reason", reason.as_str())], *n as f64);
        }
    }
    f.family(
        "check_overdue",
        "Present (1) while a check has not succeeded for alerts.stale_intervals (3) of its intervals.",
        Kind::Gauge,
    );
    for r in rows.iter().filter(|r| r.overdue) {
        f.sample_escaped(label(r), &[], 1.0);
    }
    f.family(
        "check_runs_total",
        "Runs of a check on a target, by result (apps; mailboxes too with metrics.detail).",
        Kind::Counter,
    );
    for r in rows.iter().filter(|r| r.kind.is_per_app() || detail) {
        for (result, n) in [("success", r.runs.0), ("failure", r.runs.1)] {
            f.sample_escaped(label(r), &[("result", result)], n as f64);
        }
    }
    write_facts(f, &facts, detail, Naming::Agent);
    write_discovery(f, view);
    write_canary(f, view);
    write_health(f, view);
}

/// The canary's last delivery: its latency, and whether it landed in Junk Email (from the last
/// run that found its message).
fn write_canary(f: &mut Exposition, view: &View) {
    let found = || {
        view.jobs
            .iter()
            .filter(|(k, _)| k.kind == CheckKind::Canary)
            .filter_map(|(k, st)| {
                fn found(
                    r: &crate::checks::Report,
                ) -> Option<&crate::checks::canary::CanaryDetails> {
                    r.canary().filter(|c| c.found.is_some())
                }
                let c = st.last_found.as_deref().and_then(found)?;
                Some((k.target.as_str(), c))
            })
    };
    f.family(
        "canary_last_delivery_seconds",
        "The canary's last delivery: seconds from the server accepting it (after DATA) to Graph's receivedDateTime.",
        Kind::Gauge,
    );
    for (target, c) in found() {
        if let Some(s) = c.delivery_seconds() {
            f.sample(&[("target", target)], s);
        }
    }
    f.family(
        "canary_in_junk",
        "Present (1) while the canary's last found message was in Junk Email.",
        Kind::Gauge,
    );
    for (target, c) in found() {
        if c.found.as_ref().is_some_and(|x| x.junk) {
            f.sample(&[("target", target)], 1.0);
        }
    }
}

/// The scheduler: runs by check kind and result, and how late runs start.
pub fn write_scheduler(f: &mut Exposition, view: &View) {
    f.family(
        "scheduler_runs_total",
        "Runs of every target's check, by check kind and result.",
        Kind::Counter,
    );
    for (kind, (ok, failed)) in &view.scheduler.runs {
        for (result, n) in [("success", ok), ("failure", failed)] {
            f.sample(&[("check", kind.as_str()), ("result", result)], *n as f64);
        }
    }
    f.family(
        "scheduler_delay_seconds",
        "How late runs start after their planned time (a slot, the concurrency bound, a busy runtime), by check kind.",
        Kind::Histogram,
    );
    for (kind, h) in &view.scheduler.delay {
        f.histogram(&[("check", kind.as_str())], h);
    }
    f.one(
        "verdict_evaluations_total",
        "Verdicts computed: each report re-diagnoses its target, an app's run its mailboxes, and a mailbox's run its siblings only when it changes what they read of it.",
        Kind::Counter,
        &[],
        view.scheduler.verdict_evaluations as f64,
    );
}

/// Token requests the cache made (token checks and cache refreshes alike): in total by
/// resource and result, and per app with `detail`.
pub fn write_token_cache(f: &mut Exposition, stats: &[EntryStats], detail: bool) {
    let mut totals: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for s in stats {
        for (result, n) in [("success", s.requests_ok), ("failure", s.requests_failed)] {
            *totals.entry((s.resource.as_str(), result)).or_default() += n;
        }
    }
    f.family(
        "token_requests_total",
        "Requests sent to the token endpoint by every app, by resource and result.",
        Kind::Counter,
    );
    for ((resource, result), n) in totals {
        f.sample(&[("resource", resource), ("result", result)], n as f64);
    }
    if detail {
        f.family(
            "token_requests_by_app_total",
            "Requests sent to the token endpoint, per app and resource, by result (with metrics.detail).",
            Kind::Counter,
        );
        // Apps no longer configured (app "") count in the totals only.
        for s in stats.iter().filter(|s| !s.app.is_empty()) {
            for (result, n) in [("success", s.requests_ok), ("failure", s.requests_failed)] {
                f.sample(
                    &[
                        ("target", &s.app),
                        ("resource", s.resource.as_str()),
                        ("result", result),
                    ],
                    n as f64,
                );
            }
        }
    }
}
