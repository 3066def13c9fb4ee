//! The status document: every app and mailbox with the latest result of each check, the
//! credential in use and its days left, the verdict and its fix. `/status` serves pages of it
//! as JSON (filtered by app and severity, the worst first, `limit` targets at a time), `/`
//! renders them as HTML, and the `check` command prints the whole of it (text, JSON or Nagios).
//! The schema is documented in the README ("Status document") and kept stable.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::diagnosis::{self, Severity, StepStatus, Verdict};
use crate::plan::{App, CheckKind, JobKey, Mailbox, Plan, Target};
use crate::state::{StateStore, TargetState, View};

mod checks;
mod credentials;
mod discovery;
mod history;

use checks::check_status;
pub use checks::{CanaryStatus, CheckStatus, GraphStatus, PhaseTime, SmtpStatus, TokenStatus};
use credentials::{credential_activity, credential_in_use};
pub use credentials::{ActivityStatus, CredentialActivity, CredentialStatus};
use discovery::discovery_status;
pub use discovery::{DiscoveredAppStatus, TenantDiscovery};
use history::{recent_runs, traffic_status};
pub use history::{HourTraffic, RunMark, TrafficStatus};

/// Version of the document's shape; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub schema_version: u32,
    pub generated_at: DateTime<Utc>,
    pub version: &'static str,
    pub summary: Summary,
    /// Which targets this document holds: the filters and the page of them.
    pub page: PageInfo,
    pub apps: Vec<AppStatus>,
    pub mailboxes: Vec<MailboxStatus>,
    /// Open Microsoft 365 service health issues of the tenants watched (`checks.health`).
    pub service_health: Vec<TenantHealth>,
    /// The inventory of the apps that can send SMTP, per tenant (`checks.discovery`).
    pub discovery: Vec<TenantDiscovery>,
}

/// A watched tenant's open issues, as its last successful read saw them.
#[derive(Debug, Clone, Serialize)]
pub struct TenantHealth {
    pub tenant: String,
    pub issues: Vec<IssueStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IssueStatus {
    pub id: String,
    pub service: &'static str,
    pub classification: &'static str,
    pub status: String,
    pub title: String,
    pub impact: String,
    pub start: Option<DateTime<Utc>>,
}

/// Which targets a page of the document shows: `/status` and `/` take these from their query
/// (`app`, `severity`, `offset`, `limit`), so that a page costs the same at any fleet size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    /// Only this app and its mailboxes.
    pub app: Option<String>,
    /// Only targets whose verdict has one of these severities (empty: every target; an app
    /// with mailboxes carries no verdict of its own and shows only then).
    pub severities: Vec<Severity>,
    /// Targets skipped, in the page's order (worst first).
    pub offset: usize,
    /// Targets shown at most.
    pub limit: usize,
}

/// Targets a page shows unless asked for fewer.
pub const DEFAULT_LIMIT: usize = 100;
/// Targets a page shows at most, whatever it is asked for: a page of 500 targets is about
/// 1.4 MB of JSON.
pub const MAX_LIMIT: usize = 500;
/// Mailbox names an app lists on a page (`mailbox_count` counts them all): one app may have
/// 10,000.
pub const APP_MAILBOX_NAMES: usize = 20;

impl Default for Query {
    fn default() -> Self {
        Self {
            app: None,
            severities: Vec::new(),
            offset: 0,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// The part of the fleet a document holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageInfo {
    /// The app filter, if any.
    pub app: Option<String>,
    /// The severity filter (empty: none).
    pub severity: Vec<&'static str>,
    pub offset: usize,
    pub limit: usize,
    /// Targets that pass the filters.
    pub matched: usize,
    /// Targets in this document.
    pub returned: usize,
    /// The offset of the next page, when there is one.
    pub next_offset: Option<usize>,
}

/// How many verdicts of each severity.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub targets: usize,
    pub ok: usize,
    pub pending: usize,
    pub warning: usize,
    pub critical: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    pub name: String,
    pub tenant: String,
    pub client_id: String,
    pub cloud: &'static str,
    /// `password` (client secret) or `certificate`.
    pub credential_type: &'static str,
    pub graph_reader: Option<String>,
    /// Its mailboxes' names (on a page of `/status`, the first [`APP_MAILBOX_NAMES`]).
    pub mailboxes: Vec<String>,
    /// How many mailboxes it has.
    pub mailbox_count: usize,
    pub credential_in_use: Option<CredentialStatus>,
    /// With `checks.activity`: every credential of the app with its last sign-in.
    pub credential_activity: Option<ActivityStatus>,
    pub checks: BTreeMap<CheckKind, CheckStatus>,
    /// For an app without mailboxes (otherwise its mailboxes carry the verdict); `check`
    /// gives every app it names one.
    pub verdict: Option<VerdictStatus>,
    /// Its recent runs (an app without mailboxes: its token checks), oldest first.
    pub recent_runs: Vec<RunMark>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MailboxStatus {
    pub name: String,
    pub app: String,
    pub address: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub tls_insecure_skip_verify: bool,
    /// The app's credential in use (the mailbox signs in with it).
    pub credential_in_use: Option<CredentialStatus>,
    /// Its app's credential activity.
    pub credential_activity: Option<ActivityStatus>,
    /// What it sent, from message trace, when its app watches traffic.
    pub traffic: Option<TrafficStatus>,
    pub checks: BTreeMap<CheckKind, CheckStatus>,
    pub verdict: Option<VerdictStatus>,
    /// Its recent runs (SMTP checks and canaries), oldest first: the heartbeat bar.
    pub recent_runs: Vec<RunMark>,
}

/// The verdict with the five setup steps as the evidence shows them.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictStatus {
    pub step: &'static str,
    pub step_title: &'static str,
    pub cause: &'static str,
    pub severity: &'static str,
    pub summary: String,
    pub remediation: String,
    /// The check the verdict rests on, if any.
    pub from: Option<CheckKind>,
    pub steps: Vec<StepEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepEntry {
    pub step: &'static str,
    pub title: &'static str,
    pub status: StepStatus,
}

fn verdict_status(
    plan: &Plan,
    view: &View,
    target: &Target,
    v: &Verdict,
    now: DateTime<Utc>,
) -> VerdictStatus {
    let evidence = view.evidence(target);
    let steps = diagnosis::setup_steps(&evidence.inputs(target, plan, now), v);
    VerdictStatus {
        step: v.step().as_str(),
        step_title: v.step().title(),
        cause: v.cause.label(),
        severity: v.severity().as_str(),
        summary: v.summary.clone(),
        remediation: v.remediation.clone(),
        from: v.from,
        steps: steps
            .iter()
            .map(|(s, st)| StepEntry {
                step: s.as_str(),
                title: s.title(),
                status: *st,
            })
            .collect(),
    }
}

/// A target of the document.
#[derive(Clone, Copy)]
enum Entry<'p> {
    App(&'p Arc<App>),
    Mailbox(&'p Arc<Mailbox>),
}

impl<'p> Entry<'p> {
    fn name(&self) -> &'p str {
        match self {
            Entry::App(a) => &a.name,
            Entry::Mailbox(m) => &m.name,
        }
    }
}

/// Sort rank of a severity on a page: the worst first; targets without a verdict last.
fn rank(s: Option<Severity>) -> u8 {
    match s {
        Some(Severity::Critical) => 0,
        Some(Severity::Warning) => 1,
        Some(Severity::Pending) => 2,
        Some(Severity::Ok) => 3,
        None => 4,
    }
}

/// The document for the given targets of the plan (all when `only` is `None`), in the plan's
/// order, from the state: what the `check` command prints.
pub fn document(plan: &Plan, state: &StateStore, only: Option<&[String]>) -> Document {
    let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|n| n == name));
    let entries: Vec<Entry> = plan
        .apps
        .iter()
        .filter(|a| wanted(&a.name))
        .map(Entry::App)
        .chain(
            plan.mailboxes
                .iter()
                .filter(|m| wanted(&m.name))
                .map(Entry::Mailbox),
        )
        .collect();
    let page = PageInfo {
        limit: entries.len(),
        matched: entries.len(),
        returned: entries.len(),
        ..PageInfo::default()
    };
    state.with_view(|view| build(plan, view, &entries, page, usize::MAX, true))
}

/// One page of the document: the targets that pass the query's filters, the worst first (by
/// name within a severity), `limit` of them from `offset`; the summary counts the whole fleet.
/// What it holds and costs does not grow with the fleet beyond a sort key per target.
pub fn page(plan: &Plan, state: &StateStore, q: &Query) -> Document {
    let limit = q.limit.min(MAX_LIMIT);
    state.with_view(|view| {
        let severity = |name: &str| view.verdicts.get(name).map(|v| v.severity());
        let of_app = |app: &str| q.app.as_deref().is_none_or(|want| want == app);
        let shown = |s: Option<Severity>| {
            q.severities.is_empty() || s.is_some_and(|s| q.severities.contains(&s))
        };
        let mut keys: Vec<(u8, &str, Entry)> = plan
            .apps
            .iter()
            .filter(|a| of_app(&a.name))
            .map(Entry::App)
            .chain(
                plan.mailboxes
                    .iter()
                    .filter(|m| of_app(&m.app.name))
                    .map(Entry::Mailbox),
            )
            .filter_map(|e| {
                let s = severity(e.name());
                shown(s).then_some((rank(s), e.name(), e))
            })
            .collect();
        let matched = keys.len();
        let end = (q.offset.saturating_add(limit)).min(matched);
        // The first `end` in order, without sorting the rest.
        if end > q.offset {
            keys.select_nth_unstable_by(end - 1, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            keys.truncate(end);
            keys.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        } else {
            keys.clear();
        }
        let entries: Vec<Entry> = keys.into_iter().skip(q.offset).map(|(_, _, e)| e).collect();
        let page = PageInfo {
            app: q.app.clone(),
            severity: q.severities.iter().map(|s| s.as_str()).collect(),
            offset: q.offset,
            limit,
            matched,
            returned: entries.len(),
            next_offset: (end < matched).then_some(end),
        };
        build(plan, view, &entries, page, APP_MAILBOX_NAMES, false)
    })
}

/// An app's token and Graph checks (a mailbox shows its app's too).
fn app_checks<'v>(
    app: &App,
    get: impl Fn(CheckKind, &str) -> Option<&'v TargetState>,
) -> BTreeMap<CheckKind, CheckStatus> {
    [
        (CheckKind::Token, app.token_check.enabled),
        (CheckKind::Graph, app.graph_check.enabled),
    ]
    .into_iter()
    .map(|(kind, enabled)| (kind, check_status(enabled, &app.name, get(kind, &app.name))))
    .collect()
}

/// The document of `entries`, in their order; `summary_of_entries`: the summary counts them
/// (else the whole fleet's verdicts).
fn build(
    plan: &Plan,
    view: &View,
    entries: &[Entry],
    page: PageInfo,
    app_mailbox_names: usize,
    summary_of_entries: bool,
) -> Document {
    let now = Utc::now();
    let get = |kind: CheckKind, name: &str| {
        view.jobs.get(&JobKey {
            kind,
            target: name.to_string(),
        })
    };
    let mut summary = Summary::default();
    let mut count = |s: Severity| {
        summary.targets += 1;
        match s {
            Severity::Ok => summary.ok += 1,
            Severity::Pending => summary.pending += 1,
            Severity::Warning => summary.warning += 1,
            Severity::Critical => summary.critical += 1,
        }
    };
    if summary_of_entries {
        for e in entries {
            if let Some(v) = view.verdicts.get(e.name()) {
                count(v.severity());
            }
        }
    } else {
        for v in view.verdicts.values() {
            count(v.severity());
        }
    }
    let mut apps = Vec::new();
    let mut mailboxes = Vec::new();
    for e in entries {
        match *e {
            Entry::App(app) => {
                let mut checks = app_checks(app, get);
                for (kind, on) in [
                    (CheckKind::Health, app.health_check.enabled),
                    (CheckKind::Activity, app.activity_check.enabled),
                ] {
                    if on {
                        checks.insert(kind, check_status(true, &app.name, get(kind, &app.name)));
                    }
                }
                let of_app = plan.mailboxes_of(&app.name);
                let target = Target::App(app.clone());
                // The agent diagnoses apps without mailboxes only; `check NAME` also a named app.
                let verdict = view
                    .verdicts
                    .get(&app.name)
                    .map(|v| verdict_status(plan, view, &target, v, now));
                apps.push(AppStatus {
                    name: app.name.clone(),
                    tenant: app.tenant.clone(),
                    client_id: app.client_id.clone(),
                    cloud: app.cloud.as_str(),
                    credential_type: app.credential.kind(),
                    graph_reader: app.graph_reader.as_ref().map(|r| r.name.clone()),
                    mailboxes: of_app
                        .iter()
                        .take(app_mailbox_names)
                        .map(|m| m.name.clone())
                        .collect(),
                    mailbox_count: of_app.len(),
                    credential_in_use: credential_in_use(get(CheckKind::Graph, &app.name), now),
                    credential_activity: credential_activity(
                        get(CheckKind::Graph, &app.name),
                        get(CheckKind::Activity, &app.name),
                        &plan.settings.diagnosis,
                        now,
                    ),
                    checks,
                    verdict,
                    recent_runs: recent_runs(view.history, &app.name),
                });
            }
            Entry::Mailbox(m) => {
                // Its own SMTP check, and its app's token and Graph checks.
                let mut checks = app_checks(&m.app, get);
                checks.insert(
                    CheckKind::Smtp,
                    check_status(m.smtp_check.enabled, &m.name, get(CheckKind::Smtp, &m.name)),
                );
                if m.canary.is_some() {
                    checks.insert(
                        CheckKind::Canary,
                        check_status(true, &m.name, get(CheckKind::Canary, &m.name)),
                    );
                }
                if m.app.activity_check.enabled {
                    checks.insert(
                        CheckKind::Activity,
                        check_status(true, &m.app.name, get(CheckKind::Activity, &m.app.name)),
                    );
                }
                if let Some(w) = &m.traffic {
                    checks.insert(
                        CheckKind::Traffic,
                        check_status(true, &w.tenant, get(CheckKind::Traffic, &w.tenant)),
                    );
                }
                let target = Target::Mailbox(m.clone());
                let verdict = view
                    .verdicts
                    .get(&m.name)
                    .map(|v| verdict_status(plan, view, &target, v, now));
                mailboxes.push(MailboxStatus {
                    name: m.name.clone(),
                    app: m.app.name.clone(),
                    address: m.address.to_string(),
                    smtp_host: m.smtp_host.clone(),
                    smtp_port: m.smtp_port,
                    tls_insecure_skip_verify: m.tls_insecure_skip_verify,
                    credential_in_use: credential_in_use(get(CheckKind::Graph, &m.app.name), now),
                    credential_activity: credential_activity(
                        get(CheckKind::Graph, &m.app.name),
                        get(CheckKind::Activity, &m.app.name),
                        &plan.settings.diagnosis,
                        now,
                    ),
                    traffic: traffic_status(m, view.history.traffic.get(&m.name), now),
                    checks,
                    verdict,
                    recent_runs: recent_runs(view.history, &m.name),
                });
            }
        }
    }
    Document {
        schema_version: SCHEMA_VERSION,
        generated_at: now,
        version: env!("CARGO_PKG_VERSION"),
        summary,
        page,
        apps,
        mailboxes,
        service_health: view
            .health
            .iter()
            .map(|(tenant, issues)| TenantHealth {
                tenant: tenant.clone(),
                issues: issues
                    .iter()
                    .map(|x| IssueStatus {
                        id: x.id.clone(),
                        service: x.service.as_str(),
                        classification: x.classification(),
                        status: x.status.clone(),
                        title: x.title.clone(),
                        impact: x.impact.clone(),
                        start: x.start,
                    })
                    .collect(),
            })
            .collect(),
        discovery: view
            .jobs
            .iter()
            .filter(|(k, _)| k.kind == CheckKind::Discovery)
            .filter_map(|(_, st)| {
                let r = st.last_ok.as_deref()?;
                Some(discovery_status(
                    r.discovery()?,
                    r.started_at,
                    &plan.settings.diagnosis,
                    now,
                ))
            })
            .collect(),
    }
}
