//! The simulated Graph reads of the inventory: the Office 365 Exchange Online service principal
//! of the token's tenant (`servicePrincipals(appId='00000002-0000-0ff1-ce00-000000000000')`, with
//! its app roles), who holds its roles (`servicePrincipals/{id}/appRoleAssignedTo`: every app of
//! the tenant with admin consent for `SMTP.SendAsApp` and a service principal, paged), and a
//! service principal by its object ID. For a token with `Application.Read.All`.

use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};
use sha2::Digest;

use super::graph::{object_json, Object, READ_ROLES};
use super::graph_call::{begin, query_params, FaultReplies};
use super::reply::{
    directory_forbidden, directory_not_found, json, time, with_ids, HttpsState, SimResponse,
};
use super::ROLE_SMTP;

/// Office 365 Exchange Online's application ID.
pub const EXCHANGE_ONLINE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// The simulator's ID of Exchange Online's `SMTP.SendAsApp` app role.
const SEND_AS_APP_ROLE_ID: &str = "7a3b9e2c-5d1f-4e8a-9c6b-2f4d8e1a3c5b";
/// Another of its roles, which the inventory must not mistake for it.
const FULL_ACCESS_ROLE_ID: &str = "dc890d15-9560-4a4c-9b7f-a736ec74ec40";
const PAGE: usize = 100;

/// The object ID of Exchange Online's service principal in a tenant (stable per tenant).
fn exchange_object_id(tenant: &str) -> String {
    let h = sha2::Sha256::digest(format!("exchange-online/{tenant}"));
    let x: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn select(obj: &mut Map<String, Value>, query: Option<&str>) {
    let params = query_params(query);
    if let Some((_, v)) = params.iter().find(|(k, _)| k == "$select") {
        let fields: Vec<&str> = v.split(',').map(str::trim).collect();
        obj.retain(|k, _| fields.contains(&k.as_str()));
    }
}

/// Which of the inventory's reads a request is.
pub enum Read<'a> {
    /// `servicePrincipals(appId='00000002-…')`.
    Exchange,
    /// `servicePrincipals/{id}`.
    ByObjectId(&'a str),
    /// `servicePrincipals/{id}/appRoleAssignedTo`.
    AssignedTo(&'a str),
}

/// Answers one of the inventory's reads.
pub async fn handle(
    state: &HttpsState,
    read: Read<'_>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> SimResponse {
    let replies = FaultReplies {
        forbidden: &directory_forbidden,
        not_found: &directory_not_found,
        malformed: "{\"id\":\"00000000\",\"appRoles\":[{",
    };
    let call = match begin(state, headers, replies, |d, _| d.discovery_requests += 1).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ids = &call.ids;
    if !call.has_role(&READ_ROLES) {
        return directory_forbidden(ids);
    }
    let tenant = call.claims.tid.clone();
    let exo = exchange_object_id(&tenant);
    let d = state.directory.lock().expect("sim lock");
    let mut holders: Vec<&super::SimApp> = d
        .apps
        .values()
        .filter(|a| a.tenant_id == tenant && a.entra_service_principal)
        .collect();
    holders.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let body = match read {
        Read::Exchange => {
            let mut o = Map::new();
            o.insert("id".into(), json!(exo));
            o.insert("appId".into(), json!(EXCHANGE_ONLINE_APP_ID));
            o.insert("displayName".into(), json!("Office 365 Exchange Online"));
            o.insert(
                "appRoles".into(),
                json!([
                    {"id": FULL_ACCESS_ROLE_ID, "value": "full_access_as_app", "allowedMemberTypes": ["Application"], "isEnabled": true},
                    {"id": SEND_AS_APP_ROLE_ID, "value": ROLE_SMTP, "allowedMemberTypes": ["Application"], "isEnabled": true},
                ]),
            );
            select(&mut o, query);
            Value::Object(o)
        }
        Read::ByObjectId(id) => {
            let Some(app) = holders.iter().find(|a| a.sp_object_id == id) else {
                return directory_not_found(ids);
            };
            let mut o = object_json(app, Object::ServicePrincipal);
            select(&mut o, query);
            Value::Object(o)
        }
        Read::AssignedTo(id) => {
            if id != exo {
                return directory_not_found(ids);
            }
            let params = query_params(query);
            let top = params
                .iter()
                .find(|(k, _)| k == "$top")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(PAGE)
                .clamp(1, 999)
                .min(d.discovery_page_cap.max(1));
            let skip: usize = params
                .iter()
                .find(|(k, _)| k == "$skiptoken")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            // Every consented role of every app: SMTP.SendAsApp, and full_access_as_app for
            // the apps that have that one too.
            let all: Vec<Value> = holders
                .iter()
                .flat_map(|a| {
                    a.exchange_roles.iter().filter_map(|r| {
                        let role = match r.as_str() {
                            ROLE_SMTP => SEND_AS_APP_ROLE_ID,
                            "full_access_as_app" => FULL_ACCESS_ROLE_ID,
                            _ => return None,
                        };
                        Some(json!({
                            "id": format!("{}-{role}", a.sp_object_id),
                            "appRoleId": role,
                            "createdDateTime": time(a.created),
                            "principalDisplayName": a.display_name,
                            "principalId": a.sp_object_id,
                            "principalType": "ServicePrincipal",
                            "resourceDisplayName": "Office 365 Exchange Online",
                            "resourceId": exo,
                        }))
                    })
                })
                .collect();
            let page: Vec<Value> = all.iter().skip(skip).take(top).cloned().collect();
            let mut body = json!({ "value": page });
            if skip + top < all.len() {
                body["@odata.nextLink"] = json!(format!(
                    "https://graph.microsoft.com/v1.0/servicePrincipals/{exo}/appRoleAssignedTo?$top={top}&$skiptoken={}",
                    skip + top
                ));
            }
            body
        }
    };
    drop(d);
    with_ids(json(StatusCode::OK, &body), ids)
}
