//! The status document's checks: each check's latest result, with what its kind reports (the
//! token's expiry, the SMTP phases, the Graph credential facts, the canary's delivery).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::{smtp::Phase, Report};
use crate::state::TargetState;

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

pub(super) fn check_status(
    plan_enabled: bool,
    target: &str,
    st: Option<&TargetState>,
) -> CheckStatus {
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
