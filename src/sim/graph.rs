//! The simulated Microsoft Graph endpoint for app objects: `GET /v1.0/applications(appId='…')`
//! serves an app registration's password and key credentials, and
//! `GET /v1.0/servicePrincipals(appId='…')` those of its service principal, to a bearer token
//! with `Application.Read.All`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use sha1::Digest;

use super::reply::{
    directory_forbidden, graph_error, json, time, unauthenticated, with_ids, HttpsState, Ids,
    SimResponse,
};
use super::token::{verify, GRAPH_RESOURCES};
use super::SimApp;

/// Application roles that may read app registrations (least privileged first).
pub(super) const READ_ROLES: [&str; 3] = [
    super::ROLE_APPLICATION_READ_ALL,
    "Application.ReadWrite.All",
    "Directory.Read.All",
];

/// Which object of an app a request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Object {
    /// The app registration (`applications`).
    Application,
    /// Its service principal in the tenant, the Enterprise application (`servicePrincipals`).
    ServicePrincipal,
}

/// `applications(appId='X')` or `servicePrincipals(appId='X')` (also with the quotes
/// percent-encoded) → the object and `X`.
fn app_id_of(object: &str) -> Option<(Object, String)> {
    let (kind, rest) = if let Some(r) = object.strip_prefix("applications(appId=") {
        (Object::Application, r)
    } else {
        (
            Object::ServicePrincipal,
            object.strip_prefix("servicePrincipals(appId=")?,
        )
    };
    let inner = rest.strip_suffix(')')?.replace("%27", "'");
    let id = inner.strip_prefix('\'')?.strip_suffix('\'')?;
    (!id.is_empty() && !id.contains('\'')).then(|| (kind, id.to_ascii_lowercase()))
}

/// The application object, or its service principal, as Graph v1.0 returns it: each lists
/// only the credentials added to it.
pub(super) fn object_json(app: &SimApp, object: Object) -> Map<String, Value> {
    let on_sp = object == Object::ServicePrincipal;
    let passwords: Vec<Value> = app
        .secrets
        .iter()
        .filter(|s| s.on_service_principal == on_sp)
        .map(|s| {
            json!({
                "customKeyIdentifier": null,
                "displayName": s.display_name,
                "endDateTime": time(s.end),
                "hint": s.hint,
                "keyId": s.key_id,
                "secretText": null,
                "startDateTime": time(s.start),
            })
        })
        .collect();
    let keys: Vec<Value> = app
        .certificates
        .iter()
        .filter(|c| c.on_service_principal == on_sp)
        .map(|c| {
            // Graph's customKeyIdentifier is Edm.Binary: JSON carries it base64-encoded; for an
            // uploaded certificate it holds the SHA-1 thumbprint.
            let ski = c
                .custom_key_identifier
                .clone()
                .unwrap_or_else(|| STANDARD.encode(sha1::Sha1::digest(&c.der)));
            json!({
                "customKeyIdentifier": ski,
                "displayName": c.display_name,
                "endDateTime": time(c.end),
                "key": null,
                "keyId": c.key_id,
                "startDateTime": time(c.start),
                "type": "AsymmetricX509Cert",
                "usage": "Verify",
            })
        })
        .collect();
    let mut m = Map::new();
    let id = match object {
        Object::Application => app.object_id.clone(),
        Object::ServicePrincipal => app.sp_object_id.clone(),
    };
    m.insert("id".into(), json!(id));
    m.insert("appId".into(), json!(app.client_id));
    m.insert("displayName".into(), json!(app.display_name));
    if object == Object::Application {
        m.insert("createdDateTime".into(), json!(time(app.created)));
    }
    m.insert("passwordCredentials".into(), Value::Array(passwords));
    m.insert("keyCredentials".into(), Value::Array(keys));
    m
}

/// Answers `GET /v1.0/{object}`: scripted fault first, then the bearer token (signature,
/// expiry, Graph audience, a read role), then the app registration in the token's tenant.
pub async fn handle(
    state: &HttpsState,
    object: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> SimResponse {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ids = Ids {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: header("client-request-id")
            .filter(|v| v.len() <= 64)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    };
    let Some((kind, app_id)) = app_id_of(object) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid object identifier.",
            &ids,
        );
    };

    let fault = {
        let mut d = state.directory.lock().expect("sim lock");
        *d.graph_requests.entry(app_id.clone()).or_default() += 1;
        let times = d.graph_request_times.entry(app_id.clone()).or_default();
        if times.len() == super::GRAPH_TIMES_KEPT {
            times.pop_front();
        }
        times.push_back(tokio::time::Instant::now());
        d.graph_faults.get(&app_id).cloned()
    };
    let replies = super::graph_call::FaultReplies {
        forbidden: &directory_forbidden,
        not_found: &|ids: &Ids| not_found(&app_id, ids),
        malformed: "{\"id\":\"00000000\",\"passwordCredentials\":[{\"keyId\":",
    };
    let authorization = header("authorization");
    if let Some(r) =
        super::graph_call::fault_reply(fault, &ids, authorization.as_deref(), &replies).await
    {
        return r;
    }

    // The bearer token must be one this simulator issued, unexpired, for Graph.
    let token = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        .unwrap_or_default();
    if token.is_empty() {
        return unauthenticated("Access token is empty.", &ids);
    }
    let now = state.directory.lock().expect("sim lock").now();
    let claims = match verify(&state.signing_key, &token, now) {
        Ok(c) => c,
        Err(m) => return unauthenticated(&format!("Access token validation failure: {m}."), &ids),
    };
    if !GRAPH_RESOURCES.contains(&claims.aud.as_str()) {
        return unauthenticated("Access token validation failure. Invalid audience.", &ids);
    }
    if !claims
        .roles
        .iter()
        .any(|r| READ_ROLES.contains(&r.as_str()))
    {
        return directory_forbidden(&ids);
    }

    // A token reads its own tenant only: an app of another tenant is not found.
    let app = {
        let d = state.directory.lock().expect("sim lock");
        d.apps
            .get(&app_id)
            .filter(|a| a.tenant_id == claims.tid)
            .cloned()
    };
    // An app without a service principal in the tenant (AADSTS7000229) has none to read.
    let Some(app) = app.filter(|a| kind == Object::Application || a.entra_service_principal) else {
        return not_found(&app_id, &ids);
    };
    let mut obj = object_json(&app, kind);
    let select: Option<Vec<String>> = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "$select")
            .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect())
    });
    if let Some(fields) = &select {
        obj.retain(|k, _| fields.iter().any(|f| f == k));
    }
    let context = format!(
        "https://graph.microsoft.com/v1.0/$metadata#{}({})/$entity",
        match kind {
            Object::Application => "applications",
            Object::ServicePrincipal => "servicePrincipals",
        },
        select.map(|f| f.join(",")).unwrap_or_default()
    );
    obj.insert("@odata.context".into(), json!(context));
    let mut r = json(StatusCode::OK, &Value::Object(obj));
    r.headers_mut().insert(
        "content-type",
        "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
            .parse()
            .expect("static header"),
    );
    with_ids(r, &ids)
}

fn not_found(app_id: &str, ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!("Resource '{app_id}' does not exist or one of its queried reference-property objects are not present."),
        ids,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_app_id_in_both_spellings() {
        let id = "00000000-0000-4000-8000-000000000001";
        let app = Some((Object::Application, id.to_string()));
        assert_eq!(app_id_of(&format!("applications(appId='{id}')")), app);
        assert_eq!(app_id_of(&format!("applications(appId=%27{id}%27)")), app);
        assert_eq!(
            app_id_of(&format!("servicePrincipals(appId='{id}')")),
            Some((Object::ServicePrincipal, id.to_string()))
        );
        assert_eq!(app_id_of("applications(appId=)"), None);
        assert_eq!(app_id_of("applications(appId='a'b')"), None);
    }
}
