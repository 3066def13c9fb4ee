//! The simulated Graph beta report of credential sign-ins:
//! `GET /beta/reports/appCredentialSignInActivities[?$filter=appId eq '…']` for a token with
//! `AuditLog.Read.All` in a tenant with the Entra ID P1 licence (otherwise 403, each as Graph
//! words it). One entry per credential of each app of the token's tenant (registration and
//! service principal), with the last sign-in the token endpoint recorded for its key (or one
//! scripted), paged by `$skiptoken`.

use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::graph_call::{begin, eq_clauses, query_params, FaultReplies, Literal};
use super::reply::{
    directory_forbidden, graph_error, json, time, with_ids, HttpsState, Ids, SimResponse,
};
use super::ROLE_AUDIT_LOG_READ_ALL;

/// Entries per page.
const PAGE: usize = 50;

fn unlicensed(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::FORBIDDEN,
        "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
        "Neither tenant is B2C or tenant doesn't have premium license",
        ids,
    )
}

/// Answers the report.
pub async fn handle(state: &HttpsState, query: Option<&str>, headers: &HeaderMap) -> SimResponse {
    let replies = FaultReplies {
        forbidden: &directory_forbidden,
        not_found: &|ids: &Ids| {
            graph_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "Resource not found.",
                ids,
            )
        },
        malformed: "{\"value\":[{\"keyId\":",
    };
    let call = match begin(state, headers, replies, |d, _| d.activity_requests += 1).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if !call.has_role(&[ROLE_AUDIT_LOG_READ_ALL]) {
        return directory_forbidden(&call.ids);
    }
    let params = query_params(query);
    let mut app_filter = None;
    if let Some((_, f)) = params.iter().find(|(k, _)| k == "$filter") {
        match eq_clauses(f).as_deref() {
            Some([(prop, Literal::Str(v))]) if prop == "appId" => {
                app_filter = Some(v.to_ascii_lowercase())
            }
            _ => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Invalid filter clause.",
                    &call.ids,
                )
            }
        }
    }
    let skip: usize = params
        .iter()
        .find(|(k, _)| k == "$skiptoken")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let d = state.directory.lock().expect("sim lock");
    if d.activity_unlicensed.contains(&call.claims.tid) {
        return unlicensed(&call.ids);
    }
    let mut apps: Vec<&super::SimApp> = d
        .apps
        .values()
        .filter(|a| a.tenant_id == call.claims.tid)
        .filter(|a| app_filter.as_deref().is_none_or(|f| a.client_id == f))
        .collect();
    apps.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let mut entries: Vec<Value> = Vec::new();
    for a in apps {
        let keys = a
            .secrets
            .iter()
            .map(|s| (&s.key_id, "clientSecret", s.on_service_principal, s.end))
            .chain(
                a.certificates
                    .iter()
                    .map(|c| (&c.key_id, "certificate", c.on_service_principal, c.end)),
            );
        for (key_id, key_type, on_sp, end) in keys {
            let last = d.sign_ins.get(key_id).copied();
            entries.push(json!({
                "id": format!("{}_{key_id}", a.client_id),
                "keyId": key_id,
                "keyType": key_type,
                "keyUsage": if key_type == "certificate" { "verify" } else { "sign" },
                "appId": a.client_id,
                "appObjectId": a.object_id,
                "servicePrincipalObjectId": a.sp_object_id,
                "resourceId": null,
                "credentialOrigin": if on_sp { "servicePrincipal" } else { "application" },
                "expirationDateTime": time(end),
                "signInActivity": {
                    "lastSignInDateTime": last.map(time),
                    "lastSignInRequestId": last.map(|_| uuid::Uuid::new_v4().to_string()),
                },
            }));
        }
    }
    drop(d);
    let total = entries.len();
    let page: Vec<Value> = entries.into_iter().skip(skip).take(PAGE).collect();
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#reports/appCredentialSignInActivities",
        "value": page,
    });
    if skip + PAGE < total {
        let mut link = url::Url::parse(
            "https://graph.microsoft.com/beta/reports/appCredentialSignInActivities",
        )
        .expect("a static URL");
        {
            let mut q = link.query_pairs_mut();
            for (k, v) in params.iter().filter(|(k, _)| k != "$skiptoken") {
                q.append_pair(k, v);
            }
            q.append_pair("$skiptoken", &(skip + PAGE).to_string());
        }
        body["@odata.nextLink"] = json!(link.to_string());
    }
    with_ids(json(StatusCode::OK, &body), &call.ids)
}
