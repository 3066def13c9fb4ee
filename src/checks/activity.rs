//! Which credential really signs in (opt-in per app, global cloud): the last sign-in of each
//! secret and certificate of the app and of its service principal, from Graph **beta**'s
//! `GET {graph}/beta/reports/appCredentialSignInActivities?$filter=appId eq '…'`
//! (`AuditLog.Read.All`; the tenant needs Entra ID P1). A refusal (403, or the licence missing)
//! makes the activity "not available": a fact the check reports, never a failure. Microsoft
//! warns the report may count partial or failed sign-ins: a hint of use, never proof of health.
//! Facts: `shared/reference/microsoft-365.md`, "What the application itself does".

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::graph::{CredentialOrigin, CredentialType};
use super::graph_call::{CallFailure, Graph, GraphError, PageError};
use super::{Context, Details, Failure, Outcome};
use crate::plan::Target;
use crate::reasons::{ActivityReason, Reason};

/// A report of one app lists its credentials once per resource they signed in to: a few pages
/// at most.
const MAX_PAGES: usize = 20;
/// More keys than any app has: the rest of a longer reply is not read.
const MAX_KEYS: usize = 500;

/// Graph's error code when the tenant lacks the licence the sign-in reports need.
const NO_LICENCE: &str = "Authentication_RequestFromNonPremiumTenantOrB2CTenant";

/// The last sign-in of one credential.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyActivity {
    /// Graph's `keyId`, as the credential check lists it.
    pub key_id: String,
    /// Secret or certificate.
    pub kind: CredentialType,
    /// On the app registration or its service principal.
    pub origin: CredentialOrigin,
    /// `expirationDateTime` (older examples: `expirationDate`).
    pub expires: Option<DateTime<Utc>>,
    /// `signInActivity.lastSignInDateTime`: `None` when the report has no sign-in for it.
    pub last_sign_in: Option<DateTime<Utc>>,
}

/// What an activity read learned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActivityDetails {
    /// The app whose Graph token read the report: the app itself or its `graph_reader`.
    pub reader: String,
    pub http_status: Option<u16>,
    /// Every credential the report lists, by key ID (the latest sign-in of its entries).
    pub keys: Vec<KeyActivity>,
    /// Why the report is not available (a refusal or no licence): then `keys` is empty and the
    /// check succeeded all the same.
    pub unavailable: Option<String>,
}

impl ActivityDetails {
    /// The last sign-in of a key, when the report has one.
    pub fn last_sign_in(&self, key_id: &str) -> Option<DateTime<Utc>> {
        self.keys
            .iter()
            .find(|k| k.key_id.eq_ignore_ascii_case(key_id))
            .and_then(|k| k.last_sign_in)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawActivity {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    credential_origin: Option<String>,
    #[serde(default)]
    expiration_date_time: Option<String>,
    #[serde(default)]
    expiration_date: Option<String>,
    #[serde(default)]
    sign_in_activity: Option<RawSignIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSignIn {
    #[serde(default)]
    last_sign_in_date_time: Option<String>,
}

fn time(field: &str, s: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| Some(t.and_utc()))
        })
        .map_err(|_| {
            format!(
                "{field} {:?} is not an ISO 8601 time",
                super::graph_call::clean(s)
            )
        })
}

/// The report's entries of `app_id` (all entries when `None`), one per key: the latest sign-in
/// of the key's entries, checked (a key ID that is a GUID, a known type and origin, times in
/// ISO 8601). The entry point of the discovery too, which reads every app's at once.
pub(crate) fn read_keys(
    entries: Vec<RawActivity>,
    app_id: Option<&str>,
) -> Result<BTreeMap<String, Vec<KeyActivity>>, String> {
    let mut by_app: BTreeMap<String, BTreeMap<String, KeyActivity>> = BTreeMap::new();
    for e in entries {
        let app = e.app_id.unwrap_or_default().to_ascii_lowercase();
        if app_id.is_some_and(|want| !want.eq_ignore_ascii_case(&app)) {
            // Not the app asked about (a filter Graph did not apply): not its credentials.
            continue;
        }
        let key_id = e.key_id.unwrap_or_default().to_ascii_lowercase();
        if !crate::plan::is_guid(&key_id) {
            return Err(format!(
                "an entry whose keyId is not a GUID: {:?}",
                super::graph_call::clean(&key_id)
            ));
        }
        let kind = match e
            .key_type
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("clientsecret") | Some("password") => CredentialType::Password,
            Some("certificate") => CredentialType::Certificate,
            other => {
                return Err(format!(
                    "key {key_id} has keyType {:?}, not clientSecret or certificate",
                    other.map(super::graph_call::clean)
                ))
            }
        };
        let origin = match e
            .credential_origin
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("serviceprincipal") => CredentialOrigin::ServicePrincipal,
            // `application`, or absent (older examples): on the registration.
            _ => CredentialOrigin::Application,
        };
        let expires = time(
            "expirationDateTime",
            e.expiration_date_time
                .as_deref()
                .or(e.expiration_date.as_deref()),
        )?;
        let last_sign_in = time(
            "lastSignInDateTime",
            e.sign_in_activity
                .as_ref()
                .and_then(|s| s.last_sign_in_date_time.as_deref()),
        )?;
        let keys = by_app.entry(app).or_default();
        if keys.len() >= MAX_KEYS && !keys.contains_key(&key_id) {
            continue;
        }
        let k = keys.entry(key_id.clone()).or_insert(KeyActivity {
            key_id,
            kind,
            origin,
            expires,
            last_sign_in: None,
        });
        // One entry per resource signed in to: the latest counts.
        k.last_sign_in = k.last_sign_in.max(last_sign_in);
        k.expires = k.expires.or(expires);
    }
    Ok(by_app
        .into_iter()
        .map(|(app, keys)| (app, keys.into_values().collect()))
        .collect())
}

/// `{graph}/beta/reports/appCredentialSignInActivities`, with `$filter=appId eq '…'` for one
/// app (`None`: every app of the tenant, for the discovery).
pub(crate) fn report_url(graph: &Graph<'_>, app_id: Option<&str>) -> url::Url {
    let mut url = graph.url("beta", &["reports", "appCredentialSignInActivities"]);
    if let Some(id) = app_id {
        url.query_pairs_mut()
            .append_pair("$filter", &format!("appId eq '{id}'"));
    }
    url
}

/// What a refusal of the report means, when it means "not available" (403: no permission, or
/// no licence; `None` for any other failure).
pub(crate) fn unavailable(e: &GraphError, reader: &str) -> Option<String> {
    (e.status() == Some(403)).then(|| {
        if e.code.as_deref() == Some(NO_LICENCE) {
            "the tenant has no Microsoft Entra ID P1 or P2 licence, which the sign-in activity report needs".to_string()
        } else {
            format!("Graph refused the report (403): grant AuditLog.Read.All (application permission, admin consent) to app {reader:?}")
        }
    })
}

/// Reads the app's credential sign-in activity.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let app = target.app();
    let reader = app.graph_reader_or_self();
    let mut d = ActivityDetails {
        reader: reader.name.clone(),
        ..ActivityDetails::default()
    };
    let graph = match Graph::connect(&reader, &ctx.tokens, deadline).await {
        Ok(g) => g,
        Err(e) => return error_outcome(&e, d),
    };
    let url = report_url(&graph, Some(&app.client_id));
    let entries: Vec<RawActivity> = match graph.get_pages(url, MAX_PAGES).await {
        Ok(v) => v,
        Err(PageError::Call(e)) => {
            d.http_status = e.status();
            if let Some(why) = unavailable(&e, &reader.name) {
                d.unavailable = Some(why);
                return Outcome::success(Details::Activity(d));
            }
            return error_outcome(&e, d);
        }
        Err(PageError::Invalid(m)) => {
            return Outcome::failure(
                Failure::new(ActivityReason::InvalidResponse, m),
                Details::Activity(d),
            )
        }
    };
    d.http_status = Some(200);
    match read_keys(entries, Some(&app.client_id)) {
        Ok(mut by_app) => {
            d.keys = by_app
                .remove(&app.client_id.to_ascii_lowercase())
                .unwrap_or_default();
            Outcome::success(Details::Activity(d))
        }
        Err(m) => Outcome::failure(
            Failure::new(ActivityReason::InvalidResponse, m),
            Details::Activity(d),
        ),
    }
}

/// A failed Graph call in the activity check's reasons.
fn error_outcome(e: &GraphError, d: ActivityDetails) -> Outcome {
    let reason: Reason = match e.failure {
        CallFailure::Token(_) => ActivityReason::TokenUnavailable.into(),
        CallFailure::TooLarge => ActivityReason::InvalidResponse.into(),
        _ if e.throttled() => ActivityReason::Throttled.into(),
        _ => e
            .common_reason()
            .unwrap_or(ActivityReason::HttpError.into()),
    };
    Outcome {
        failure: Some(e.failure(reason)),
        details: Details::Activity(d),
        retry_after: e.retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(json: &str) -> Vec<RawActivity> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn keys_take_their_latest_sign_in_over_resources_and_both_date_spellings() {
        let app = "00000000-0000-4000-8000-000000000001";
        let k1 = "11111111-1111-4111-8111-111111111111";
        let k2 = "22222222-2222-4222-8222-222222222222";
        let json = format!(
            r#"[
            {{"keyId":"{k1}","appId":"{app}","keyType":"clientSecret","credentialOrigin":"application","expirationDateTime":"2026-03-01T00:00:00Z","signInActivity":{{"lastSignInDateTime":"2026-01-01T10:00:00Z"}}}},
            {{"keyId":"{k1}","appId":"{app}","keyType":"clientSecret","credentialOrigin":"application","expirationDateTime":"2026-03-01T00:00:00Z","signInActivity":{{"lastSignInDateTime":"2026-01-02T10:00:00Z"}}}},
            {{"keyId":"{k2}","appId":"{app}","keyType":"certificate","credentialOrigin":"servicePrincipal","expirationDate":"2027-01-01T00:00:00","signInActivity":{{"lastSignInDateTime":null}}}},
            {{"keyId":"33333333-3333-4333-8333-333333333333","appId":"00000000-0000-4000-8000-000000000002","keyType":"clientSecret"}}
        ]"#
        );
        let by_app = read_keys(entries(&json), Some(app)).unwrap();
        let keys = &by_app[app];
        assert_eq!(keys.len(), 2, "the other app's entry is left out");
        let a = keys.iter().find(|k| k.key_id == k1).unwrap();
        assert_eq!(
            a.last_sign_in.unwrap().to_rfc3339(),
            "2026-01-02T10:00:00+00:00"
        );
        assert_eq!(a.kind, CredentialType::Password);
        let b = keys.iter().find(|k| k.key_id == k2).unwrap();
        assert_eq!(b.last_sign_in, None);
        assert_eq!(b.origin, CredentialOrigin::ServicePrincipal);
        assert_eq!(b.expires.unwrap().to_rfc3339(), "2027-01-01T00:00:00+00:00");
        // Every app's at once (the discovery's read).
        assert_eq!(read_keys(entries(&json), None).unwrap().len(), 2);
        // A key ID that is not one, an unknown type: not the report promised.
        assert!(read_keys(
            entries(r#"[{"keyId":"x\"}","appId":"a","keyType":"clientSecret"}]"#),
            None
        )
        .is_err());
        assert!(read_keys(
            entries(&format!(
                r#"[{{"keyId":"{k1}","appId":"a","keyType":"password2"}}]"#
            )),
            None
        )
        .is_err());
    }
}
