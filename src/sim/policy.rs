//! The simulated app management policies: `GET /v1.0/policies/defaultAppManagementPolicy` (the
//! tenant's default, which always exists and ships disabled) and
//! `GET /v1.0/applications/{id}/appManagementPolicies` (the policies assigned to one app), for a
//! token with `Policy.Read.All`, in Graph's shapes (`tenantAppManagementPolicy`,
//! `appManagementPolicy`).

use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::graph_call::{begin, FaultReplies};
use super::reply::{
    directory_forbidden, directory_not_found, json, time, with_ids, HttpsState, SimResponse,
};
use super::{SimAppPolicy, ROLE_POLICY_READ_ALL};

/// The least privileged application permission that reads app management policies, beside
/// `Policy.Read.All`.
const POLICY_READ_APPLICATION_CONFIGURATION: &str = "Policy.Read.ApplicationConfiguration";

/// An `appManagementConfiguration` with the secret restrictions of a policy.
fn restrictions(p: &SimAppPolicy) -> Value {
    let after = p
        .restrict_for_apps_created_after
        .map(time)
        .unwrap_or_else(|| "2019-01-01T00:00:00Z".into());
    let mut passwords = Vec::new();
    if p.password_addition_blocked {
        passwords.push(json!({
            "restrictionType": "passwordAddition",
            "state": "enabled",
            "maxLifetime": null,
            "restrictForAppsCreatedAfterDateTime": after,
        }));
    }
    if let Some(max) = &p.password_max_lifetime {
        passwords.push(json!({
            "restrictionType": "passwordLifetime",
            "state": "enabled",
            "maxLifetime": max,
            "restrictForAppsCreatedAfterDateTime": after,
        }));
    }
    json!({ "passwordCredentials": passwords, "keyCredentials": [] })
}

/// Answers the tenant's default policy (`app_object_id` `None`) or the policies assigned to the
/// application object with that ID.
pub async fn handle(
    state: &HttpsState,
    app_object_id: Option<&str>,
    headers: &HeaderMap,
) -> SimResponse {
    let call = match begin(
        state,
        headers,
        FaultReplies {
            forbidden: &directory_forbidden,
            not_found: &directory_not_found,
            malformed: "{\"value\":[{\"restrictions\":",
        },
        |_, _| {},
    )
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !call.has_role(&[ROLE_POLICY_READ_ALL, POLICY_READ_APPLICATION_CONFIGURATION]) {
        return directory_forbidden(&call.ids);
    }
    let d = state.directory.lock().expect("sim lock");
    let body = match app_object_id {
        None => {
            let Some(tenant) = d.tenant(&call.claims.tid) else {
                return directory_not_found(&call.ids);
            };
            let policy = tenant.default_policy.clone().unwrap_or_default();
            json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#policies/defaultAppManagementPolicy/$entity",
                "id": "00000000-0000-0000-0000-000000000000",
                "displayName": "Default app management tenant policy",
                "description": "Default tenant policy that enforces app management restrictions on applications and service principals.",
                "isEnabled": policy.enabled,
                "applicationRestrictions": restrictions(&policy),
                "servicePrincipalRestrictions": { "passwordCredentials": [], "keyCredentials": [] },
            })
        }
        Some(id) => {
            let Some(app) = d
                .apps
                .values()
                .find(|a| a.object_id.eq_ignore_ascii_case(id) && a.tenant_id == call.claims.tid)
            else {
                return directory_not_found(&call.ids);
            };
            let value: Vec<Value> = app
                .policy
                .iter()
                .map(|p| {
                    json!({
                        "id": format!("policy-{}", app.object_id),
                        "displayName": "Credential management policy",
                        "description": "Restrictions on the app's secrets.",
                        "isEnabled": p.enabled,
                        "restrictions": restrictions(p),
                    })
                })
                .collect();
            json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#appManagementPolicies",
                "value": value,
            })
        }
    };
    drop(d);
    with_ids(json(StatusCode::OK, &body), &call.ids)
}
