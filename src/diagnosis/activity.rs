//! Which credential the application itself signs in with, from the credential activity report
//! beside the credential list: a credential that signed in within
//! `diagnosis.credential_used_within` and is not the agent's is in use by the application, so
//! its expiry counts as much as the agent's own; and a newest credential no sign-in has used
//! since it was added, while an older one still signs in, is a rotation the application has not
//! taken.

use chrono::{DateTime, Utc};

use super::{Cause, Finding, Inputs};
use crate::checks::graph::CredentialInfo;
use crate::plan::CheckKind;

/// A credential added this recently may not be in use yet: no "rotation not taken" before.
const ROTATION_GRACE: chrono::Duration = chrono::Duration::days(1);

/// The findings about the credentials the application signs in with.
pub(super) fn findings<'a>(i: &Inputs<'a>) -> Vec<Finding<'a>> {
    let mut out = Vec::new();
    let Some(act) = i.activity.and_then(|r| r.activity()) else {
        return out;
    };
    if act.unavailable.is_some() {
        return out;
    }
    let Some(reg) = i
        .graph_ok
        .and_then(|r| r.graph())
        .and_then(|g| g.registration.as_ref())
    else {
        return out;
    };
    let used_within = chrono::Duration::from_std(i.settings.credential_used_within)
        .unwrap_or(chrono::Duration::MAX);
    let window = chrono::Duration::from_std(i.settings.expiry_warning).unwrap_or_default();
    // The application's credentials besides the agent's: signed in recently, expiring soonest.
    let active = reg
        .credentials
        .iter()
        .filter(|c| !c.in_use)
        .filter_map(|c| {
            let last = act.last_sign_in(&c.key_id)?;
            (i.now - last < used_within).then_some((c, last, c.end?))
        })
        .filter(|(_, _, end)| *end - i.now <= window)
        .min_by_key(|(_, _, end)| *end);
    if let Some((c, last, end)) = active {
        let cause = if end <= i.now {
            Cause::ActiveCredentialExpired
        } else {
            Cause::ActiveCredentialExpiring
        };
        out.push(Finding {
            days: Some(crate::plan::days_until(end, i.now)),
            date: Some(end),
            credential: Some(c),
            last_sign_in: Some(last),
            ..Finding::new(cause, Some(CheckKind::Activity), None)
        });
    }
    if let Some(f) = rotation_not_taken(i, &reg.credentials, |k| act.last_sign_in(k)) {
        out.push(f);
    }
    out
}

/// The newest credential (not expired, added over a day ago) without a sign-in since it was
/// added, while an older one has signed in since: the application still uses the old one.
fn rotation_not_taken<'a>(
    i: &Inputs<'a>,
    credentials: &'a [CredentialInfo],
    last: impl Fn(&str) -> Option<DateTime<Utc>>,
) -> Option<Finding<'a>> {
    let newest = credentials
        .iter()
        .filter(|c| c.end.is_none_or(|e| e > i.now))
        .filter(|c| c.start.is_some())
        .max_by_key(|c| c.start)?;
    let added = newest.start?;
    if i.now - added < ROTATION_GRACE || last(&newest.key_id).is_some_and(|t| t >= added) {
        return None;
    }
    let (old, old_last) = credentials
        .iter()
        .filter(|c| c.key_id != newest.key_id)
        .filter_map(|c| Some((c, last(&c.key_id)?)))
        .filter(|(_, t)| *t > added)
        .max_by_key(|(_, t)| *t)?;
    Some(Finding {
        date: Some(added),
        credential: Some(newest),
        other: Some(old),
        last_sign_in: Some(old_last),
        days: old.end.map(|e| crate::plan::days_until(e, i.now)),
        ..Finding::new(Cause::RotationNotTaken, Some(CheckKind::Activity), None)
    })
}

/// A credential as a person finds it in the portal: its display name and the start of its key
/// ID (display names repeat).
pub(super) fn name(c: &CredentialInfo) -> String {
    let id: String = c.key_id.chars().take(8).collect();
    match c.display_name.as_deref().filter(|n| !n.trim().is_empty()) {
        Some(n) => format!("\"{}\" (key ID {id}…)", crate::checks::graph_call::clean(n)),
        None => format!("key ID {}", c.key_id),
    }
}
