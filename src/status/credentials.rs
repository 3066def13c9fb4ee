//! The status document's credentials: the one the agent signs in with and its days left, and
//! with credential activity, each credential's last sign-in and state.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::checks::Report;
use crate::state::TargetState;

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

impl CredentialActivity {
    /// The row of a credential the Graph read lists, with its last sign-in.
    pub(super) fn of(
        c: &crate::checks::graph::CredentialInfo,
        last_sign_in: Option<DateTime<Utc>>,
        agent: bool,
        state: &'static str,
    ) -> Self {
        CredentialActivity {
            key_id: c.key_id.clone(),
            kind: c.kind.as_str(),
            origin: c.origin.as_str(),
            display_name: c.display_name.clone(),
            expires_at: c.end,
            last_sign_in,
            agent,
            state,
        }
    }
}

/// A credential's state from its last sign-in: `active`, `idle`, `stale` or `unused`.
pub(super) fn activity_state(
    last: Option<DateTime<Utc>>,
    settings: &crate::plan::DiagnosisSettings,
    now: DateTime<Utc>,
) -> &'static str {
    let window =
        |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    match last {
        None => "unused",
        Some(t) if now - t < window(settings.credential_used_within) => "active",
        Some(t) if now - t > window(settings.credential_stale_after) => "stale",
        Some(_) => "idle",
    }
}

/// Every credential of the app (the Graph read's, and any other the report lists) with its
/// last sign-in, from the last successful reads.
pub(super) fn credential_activity(
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
    let state = |last| activity_state(last, settings, now);
    let mut credentials: Vec<CredentialActivity> = reg
        .map(|r| r.credentials.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let last = a.last_sign_in(&c.key_id);
            CredentialActivity::of(c, last, c.in_use, state(last))
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

pub(super) fn credential_in_use(
    graph: Option<&TargetState>,
    now: DateTime<Utc>,
) -> Option<CredentialStatus> {
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
