//! The status document: every app and mailbox with the latest result of each check, the
//! credential in use and its days left, the verdict and its fix. `/status` serves pages of it
//! as JSON (filtered by app and severity, the worst first, `limit` targets at a time), `/`
//! renders them as HTML, and the `check` command prints the whole of it (text, JSON or Nagios).
//! The schema is documented in the README ("Status document") and kept stable.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::{smtp::Phase, Report};
use crate::diagnosis::{self, Severity, StepStatus, Verdict};
use crate::plan::{App, CheckKind, JobKey, Mailbox, Plan, Target};
use crate::state::{StateStore, TargetState, View};

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

/// A tenant's apps that hold `SMTP.SendAsApp`, from its last successful inventory.
#[derive(Debug, Clone, Serialize)]
pub struct TenantDiscovery {
    pub tenant: String,
    /// When it was read.
    pub read_at: DateTime<Utc>,
    /// "14 apps can send SMTP (2 configured); 3 credentials in use expire this month".
    pub summary: String,
    pub apps_can_send: usize,
    pub configured: usize,
    /// Credentials of the discovered apps expiring within 30 days: those signed in with lately
    /// when the activity is read, else all.
    pub credentials_expiring: usize,
    /// Whether the counts above know which credentials are in use (credential activity read).
    pub activity: bool,
    pub activity_unavailable: Option<String>,
    pub apps: Vec<DiscoveredAppStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredAppStatus {
    pub app_id: String,
    pub display_name: String,
    /// The configured app (watched by its own checks); `null`: discovered, watched by the
    /// inventory alone.
    pub configured: Option<String>,
    pub discovered: bool,
    /// A discovered app's credentials with their last sign-ins.
    pub credentials: Vec<CredentialActivity>,
    pub next_expiry: Option<DateTime<Utc>>,
    /// What could not be read of it.
    pub note: Option<String>,
}

fn discovery_status(
    d: &crate::checks::discovery::DiscoveryDetails,
    read_at: DateTime<Utc>,
    settings: &crate::plan::DiagnosisSettings,
    now: DateTime<Utc>,
) -> TenantDiscovery {
    let window =
        |x: std::time::Duration| chrono::Duration::from_std(x).unwrap_or(chrono::Duration::MAX);
    let activity = d.activity_read && d.activity_unavailable.is_none();
    let expiring = crate::checks::discovery::expiring(
        d,
        now,
        chrono::Duration::days(30),
        window(settings.credential_used_within),
    );
    let configured = d.apps.iter().filter(|a| a.configured.is_some()).count();
    let state = |last: Option<DateTime<Utc>>| match last {
        _ if !activity => "unknown",
        None => "unused",
        Some(t) if now - t < window(settings.credential_used_within) => "active",
        Some(t) if now - t > window(settings.credential_stale_after) => "stale",
        Some(_) => "idle",
    };
    let apps = d
        .apps
        .iter()
        .map(|a| {
            let reg = a.credentials.as_ref();
            DiscoveredAppStatus {
                app_id: a.app_id.clone(),
                display_name: a.display_name.clone(),
                configured: a.configured.clone(),
                discovered: a.configured.is_none(),
                credentials: reg
                    .map(|r| r.credentials.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        let last = a
                            .activity
                            .iter()
                            .find(|k| k.key_id.eq_ignore_ascii_case(&c.key_id))
                            .and_then(|k| k.last_sign_in);
                        CredentialActivity {
                            key_id: c.key_id.clone(),
                            kind: c.kind.as_str(),
                            origin: c.origin.as_str(),
                            display_name: c.display_name.clone(),
                            expires_at: c.end,
                            last_sign_in: last,
                            agent: false,
                            state: state(last),
                        }
                    })
                    .collect(),
                next_expiry: reg.and_then(|r| r.next_expiry),
                note: a.note.clone(),
            }
        })
        .collect();
    TenantDiscovery {
        tenant: d.tenant.clone(),
        read_at,
        summary: format!(
            "{} app{} can send SMTP ({configured} configured); {expiring} credential{} {}expire{} this month",
            d.apps.len(),
            if d.apps.len() == 1 { "" } else { "s" },
            if expiring == 1 { "" } else { "s" },
            if activity { "in use " } else { "" },
            if expiring == 1 { "s" } else { "" },
        ),
        apps_can_send: d.apps.len(),
        configured,
        credentials_expiring: expiring,
        activity,
        activity_unavailable: d.activity_unavailable.clone(),
        apps,
    }
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

/// One run in a target's heartbeat bar: when, and the verdict after it.
#[derive(Debug, Clone, Serialize)]
pub struct RunMark {
    pub at: DateTime<Utc>,
    pub severity: &'static str,
    pub cause: &'static str,
}

fn recent_runs(h: &crate::history::History, name: &str) -> Vec<RunMark> {
    h.beats
        .get(name)
        .map(|b| {
            b.iter()
                .map(|m| RunMark {
                    at: m.at(),
                    severity: m.cause.severity().as_str(),
                    cause: m.cause.label(),
                })
                .collect()
        })
        .unwrap_or_default()
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

/// The credential the app signs in with, as the last successful Graph read saw it.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialStatus {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub key_id: String,
    pub display_name: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Whole days until expiry, rounded down (negative once expired).
    pub days_left: Option<i64>,
}

/// What a watched mailbox sent, from message trace.
#[derive(Debug, Clone, Serialize)]
pub struct TrafficStatus {
    /// The tenant target whose trace read it.
    pub tenant: String,
    /// Messages of the last 24 hours, in all and by status (one per recipient).
    pub last_24h: u64,
    pub last_24h_by_status: BTreeMap<&'static str, u64>,
    /// Since the agent started watching, by status.
    pub totals: BTreeMap<&'static str, u64>,
    /// The newest message seen.
    pub last_message: Option<DateTime<Utc>>,
    /// The start of the first window read (no message since, when `last_message` is `null`).
    pub watched_since: Option<DateTime<Utc>>,
    pub expect_within_seconds: Option<u64>,
    /// Sent nothing for longer than its `expect_traffic_within`.
    pub silent: bool,
    /// Failed and quarantined share of the last 24 h (from 10 messages on).
    pub failed_share: Option<f64>,
    /// The last 24 hours by the hour, oldest first: `{hour, messages, failed}` (failed counts
    /// failed and quarantined ones).
    pub hourly: Vec<HourTraffic>,
    /// In words: "sent 312 in 24 h, 3 quarantined".
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HourTraffic {
    pub hour: DateTime<Utc>,
    pub messages: u64,
    pub failed: u64,
}

/// A watched mailbox's traffic, from the state's history.
fn traffic_status(
    m: &crate::plan::Mailbox,
    t: Option<&crate::history::MailboxTraffic>,
    now: DateTime<Utc>,
) -> Option<TrafficStatus> {
    use crate::checks::traffic::TraceStatus;
    let watch = m.traffic.as_ref()?;
    let t = t.cloned().unwrap_or_default();
    let day = t.last_day(now);
    let by = |counts: &[u64; 7]| -> BTreeMap<&'static str, u64> {
        TraceStatus::ALL
            .iter()
            .filter(|s| counts[s.index()] > 0)
            .map(|s| (s.as_str(), counts[s.index()]))
            .collect()
    };
    let last_24h: u64 = day.iter().sum();
    let mut summary = format!("sent {last_24h} in 24 h");
    for s in TraceStatus::ALL
        .iter()
        .filter(|s| **s != TraceStatus::Delivered)
    {
        let n = day[s.index()];
        if n > 0 {
            summary += &format!(", {n} {}", s.as_str().replace('_', " "));
        }
    }
    let hourly = t
        .hourly(now)
        .into_iter()
        .map(|(h, c)| HourTraffic {
            hour: DateTime::from_timestamp(h, 0).unwrap_or(now),
            messages: c.iter().map(|n| u64::from(*n)).sum(),
            failed: u64::from(c[TraceStatus::Failed.index()])
                + u64::from(c[TraceStatus::Quarantined.index()]),
        })
        .collect();
    Some(TrafficStatus {
        tenant: watch.tenant.clone(),
        last_24h,
        last_24h_by_status: by(&day),
        totals: by(&t.totals),
        last_message: t.last_message,
        watched_since: t.since,
        expect_within_seconds: watch.expect_within.map(|d| d.as_secs()),
        silent: t.silent(now),
        failed_share: t.failed_share(now),
        hourly,
        summary,
    })
}

/// Which credentials sign in, from the last successful credential activity read.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityStatus {
    /// Why the report is not available (a 403: no `AuditLog.Read.All`, or no Entra ID P1
    /// licence); `null` when it was read.
    pub unavailable: Option<String>,
    pub credentials: Vec<CredentialActivity>,
}

/// One credential and its last sign-in.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialActivity {
    pub key_id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub origin: &'static str,
    pub display_name: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_sign_in: Option<DateTime<Utc>>,
    /// Whether the agent signs in with it.
    pub agent: bool,
    /// `active` (signed in within `diagnosis.credential_used_within`), `idle` (signed in
    /// before), `stale` (not for `diagnosis.credential_stale_after`), `unused` (no sign-in
    /// reported) or `unknown` (an inventoried app whose activity is not read).
    pub state: &'static str,
}

/// The latest run of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    /// The target the check runs on (the app, for a mailbox's token and Graph checks).
    pub target: String,
    pub enabled: bool,
    pub last_run: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub success: Option<bool>,
    pub reason: Option<&'static str>,
    pub aadsts: Option<u32>,
    /// What went wrong, for people (never a secret or a token).
    pub detail: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    pub last_success: Option<DateTime<Utc>>,
    pub runs_success: u64,
    pub runs_failure: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
}

/// The canary's last run: where it sent, and where and how fast the message arrived.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryStatus {
    pub to: String,
    pub reader: String,
    pub message_id: Option<String>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub received_at: Option<DateTime<Utc>>,
    pub delivery_seconds: Option<f64>,
    pub seen_seconds: Option<f64>,
    /// `inbox` or `junkemail`, once found.
    pub folder: Option<&'static str>,
    pub deleted: Option<bool>,
    pub searches: u32,
    /// Messages of earlier runs found late and deleted in this run.
    pub cleaned_up: u32,
    /// The SMTP session's failure, when it failed there.
    pub failed_phase: Option<&'static str>,
    pub reply: Option<crate::checks::smtp::ReplyFacts>,
}

/// What the last token said about itself (decoded claims; never the token).
#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    pub audience: Option<String>,
    pub roles: Vec<String>,
    pub smtp_role: Option<bool>,
    /// `secret` or `certificate`, from `appidacr`/`azpacr`.
    pub credential: Option<&'static str>,
    pub tenant_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub lifetime_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SmtpStatus {
    pub host: String,
    pub port: u16,
    pub phases: Vec<PhaseTime>,
    pub failed_phase: Option<&'static str>,
    pub reply: Option<crate::checks::smtp::ReplyFacts>,
    pub tls_version: Option<String>,
    pub server_certificate_expires_at: Option<DateTime<Utc>>,
    pub token_has_smtp_role: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<crate::checks::smtp::SentMessage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    pub phase: &'static str,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphStatus {
    pub reader: String,
    pub http_status: Option<u16>,
    pub credentials: Option<usize>,
    pub in_use_found: Option<bool>,
    pub in_use_ambiguous: Option<bool>,
    pub next_expiry: Option<DateTime<Utc>>,
    /// With `app_management_policy`: what the tenant's policies allow for the app's next
    /// secret, in words (`null`: not read).
    pub secret_policy: Option<String>,
}

fn check_status(plan_enabled: bool, target: &str, st: Option<&TargetState>) -> CheckStatus {
    let last = st.and_then(|s| s.last.as_deref());
    let f = last.and_then(|r| r.failure.as_ref());
    CheckStatus {
        target: target.to_string(),
        enabled: plan_enabled,
        last_run: last.map(|r| r.started_at),
        duration_seconds: last.map(|r| r.duration.as_secs_f64()),
        success: last.map(Report::success),
        reason: f.map(|f| f.reason.as_str()),
        aadsts: f.and_then(|f| f.aadsts),
        detail: f.map(|f| f.message.clone()),
        trace_id: f.and_then(|f| f.trace_id.clone()),
        correlation_id: f.and_then(|f| f.correlation_id.clone()),
        last_success: st.and_then(|s| s.last_success),
        runs_success: st.map_or(0, |s| s.runs_success),
        runs_failure: st.map_or(0, |s| s.runs_failure),
        token: last.and_then(Report::token).map(|t| TokenStatus {
            audience: t.claims.as_ref().and_then(|c| c.aud.clone()),
            roles: t
                .claims
                .as_ref()
                .map(|c| c.roles.clone())
                .unwrap_or_default(),
            smtp_role: t.smtp_role,
            credential: t.claims.as_ref().and_then(|c| c.credential_kind()),
            tenant_id: t.claims.as_ref().and_then(|c| c.tid.clone()),
            expires_at: t.expires_at,
            lifetime_seconds: t.lifetime_seconds,
        }),
        smtp: last.and_then(Report::smtp).map(|d| SmtpStatus {
            host: d.host.clone(),
            port: d.port,
            phases: d
                .phases
                .iter()
                .map(|(p, t)| PhaseTime {
                    phase: p.as_str(),
                    seconds: t.as_secs_f64(),
                })
                .collect(),
            failed_phase: d.failed_phase.map(Phase::as_str),
            reply: d.failed_reply.clone(),
            tls_version: d.tls.as_ref().map(|t| t.version.clone()),
            server_certificate_expires_at: d.tls.as_ref().and_then(|t| t.earliest_expiry()),
            token_has_smtp_role: d.token_has_role,
            sent: d.sent.clone(),
        }),
        canary: last.and_then(Report::canary).map(|c| CanaryStatus {
            to: c.to.clone(),
            reader: c.reader.clone(),
            message_id: c.message_id.clone(),
            accepted_at: c.accepted_at,
            received_at: c.found.as_ref().map(|f| f.received),
            delivery_seconds: c.delivery_seconds(),
            seen_seconds: c.seen_seconds(),
            folder: c
                .found
                .as_ref()
                .map(|f| if f.junk { "junkemail" } else { "inbox" }),
            deleted: c.found.as_ref().map(|f| f.deleted),
            searches: c.polls,
            cleaned_up: c.cleaned_up,
            failed_phase: c.smtp.failed_phase.map(Phase::as_str),
            reply: c.smtp.failed_reply.clone(),
        }),
        graph: last.and_then(Report::graph).map(|g| {
            // A failed read keeps the facts of the last successful one.
            let reg = g.registration.as_ref().or_else(|| {
                st.and_then(|s| s.last_ok.as_deref())
                    .and_then(Report::graph)
                    .and_then(|g| g.registration.as_ref())
            });
            GraphStatus {
                reader: g.reader.clone(),
                http_status: g.http_status,
                credentials: reg.map(|r| r.credentials.len()),
                in_use_found: reg.map(|r| r.in_use_matches > 0),
                in_use_ambiguous: reg.map(|r| r.hint_ambiguous),
                next_expiry: reg.and_then(|r| r.next_expiry),
                secret_policy: g
                    .secret_policy
                    .as_ref()
                    .map(|p| match (&p.known, &p.unknown) {
                        (Some(r), _) if r.addition_blocked => {
                            "new client secrets are forbidden".into()
                        }
                        (Some(r), _) => match r.max_lifetime {
                            Some(m) => format!(
                                "new client secrets live at most {}",
                                crate::plan::format_duration(m)
                            ),
                            None => "new client secrets allowed".into(),
                        },
                        (None, Some(why)) => format!("unknown: {why}"),
                        (None, None) => "unknown".into(),
                    }),
            }
        }),
    }
}

/// Every credential of the app (the Graph read's, and any other the report lists) with its
/// last sign-in, from the last successful reads.
fn credential_activity(
    graph: Option<&TargetState>,
    activity: Option<&TargetState>,
    settings: &crate::plan::DiagnosisSettings,
    now: DateTime<Utc>,
) -> Option<ActivityStatus> {
    let a = activity?.last_ok.as_deref()?.activity()?;
    let reg = graph
        .and_then(|g| g.last_ok.as_deref())
        .and_then(Report::graph)
        .and_then(|g| g.registration.as_ref());
    let window =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    let state = |last: Option<DateTime<Utc>>| match last {
        None => "unused",
        Some(t) if now - t < window(settings.credential_used_within) => "active",
        Some(t) if now - t > window(settings.credential_stale_after) => "stale",
        Some(_) => "idle",
    };
    let mut credentials: Vec<CredentialActivity> = reg
        .map(|r| r.credentials.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let last = a.last_sign_in(&c.key_id);
            CredentialActivity {
                key_id: c.key_id.clone(),
                kind: c.kind.as_str(),
                origin: c.origin.as_str(),
                display_name: c.display_name.clone(),
                expires_at: c.end,
                last_sign_in: last,
                agent: c.in_use,
                state: state(last),
            }
        })
        .collect();
    for k in &a.keys {
        if !credentials
            .iter()
            .any(|c| c.key_id.eq_ignore_ascii_case(&k.key_id))
        {
            credentials.push(CredentialActivity {
                key_id: k.key_id.clone(),
                kind: k.kind.as_str(),
                origin: k.origin.as_str(),
                display_name: None,
                expires_at: k.expires,
                last_sign_in: k.last_sign_in,
                agent: false,
                state: state(k.last_sign_in),
            });
        }
    }
    Some(ActivityStatus {
        unavailable: a.unavailable.clone(),
        credentials,
    })
}

fn credential_in_use(graph: Option<&TargetState>, now: DateTime<Utc>) -> Option<CredentialStatus> {
    let reg = graph?.last_ok.as_deref()?.graph()?.registration.as_ref()?;
    let c = reg.in_use()?;
    Some(CredentialStatus {
        kind: c.kind.as_str(),
        key_id: c.key_id.clone(),
        display_name: c.display_name.clone(),
        expires_at: c.end,
        days_left: c.end.map(|e| crate::plan::days_until(e, now)),
    })
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
