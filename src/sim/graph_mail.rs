//! The simulated Microsoft Graph mail endpoints an app reads a mailbox with (application
//! permissions `Mail.Read`, `Mail.ReadWrite`):
//!
//! - `GET /v1.0/users/{address}/messages?$filter=internetMessageId eq '<...>'` (with `$select`
//!   and `$top`): the only list the simulator serves; without that filter it answers 400, so
//!   that a test proves a client never lists a mailbox;
//! - `GET /v1.0/users/{address}/messages/{id}`, `DELETE` of it and `POST .../permanentDelete`
//!   (`Mail.ReadWrite`). `DELETE` moves a message to Deleted Items, where it gets a new id
//!   (its immutable id stays), and a message already there to Recoverable Items, out of Graph's
//!   sight; `permanentDelete` puts it there at once, and only the global cloud's Graph has it
//!   (a national cloud's token gets 400, as Microsoft documents the action for the global
//!   service only);
//! - `GET /v1.0/users/{address}/mailFolders/{inbox|junkemail|deleteditems|folder id}`.
//!
//! With `Prefer: IdType="ImmutableId"` the ids in replies are immutable ones; a message is found
//! by either id.
//!
//! Every request under `/v1.0/users/` is recorded (path and query) for the tests.

use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use super::graph_call::{begin, eq_clauses, percent_decode, query_params, FaultReplies, Literal};
use super::mailbox::{
    folder_display_name, folder_id, message_item_id, Stored, FOLDER_DELETED, FOLDER_INBOX,
    FOLDER_JUNK,
};
use super::reply::{graph_error, json, respond, time, with_ids, HttpsState, Ids, SimResponse};
use super::{ROLE_MAIL_READ, ROLE_MAIL_READ_WRITE};

/// How many requests the simulator keeps for `graph_mail_requests` (a long run stays bounded).
const REQUESTS_KEPT: usize = 100_000;

const READ_ROLES: [&str; 2] = [ROLE_MAIL_READ, ROLE_MAIL_READ_WRITE];
const WRITE_ROLES: [&str; 1] = [ROLE_MAIL_READ_WRITE];

fn access_denied(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::FORBIDDEN,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
        ids,
    )
}

fn item_not_found(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::NOT_FOUND,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
        ids,
    )
}

fn invalid_user(user: &str, ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::NOT_FOUND,
        "ErrorInvalidUser",
        &format!("The requested user '{user}' is invalid."),
        ids,
    )
}

fn bad_filter(message: &str, ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::BAD_REQUEST,
        "ErrorInvalidUrlQueryFilter",
        message,
        ids,
    )
}

fn bad_request(message: &str, ids: &Ids) -> SimResponse {
    graph_error(StatusCode::BAD_REQUEST, "BadRequest", message, ids)
}

fn ok_json(value: Value, ids: &Ids) -> SimResponse {
    let mut r = json(StatusCode::OK, &value);
    r.headers_mut().insert(
        "content-type",
        "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
            .parse()
            .expect("static header"),
    );
    with_ids(r, ids)
}

/// A message as Graph returns it, restricted to `$select` (plus `id`) when given.
fn message_json(mailbox: &str, s: &Stored, select: Option<&[String]>, immutable: bool) -> Value {
    let m = &s.message;
    let mut o = Map::new();
    o.insert(
        "id".into(),
        json!(if immutable { &m.immutable_id } else { &m.id }),
    );
    o.insert("internetMessageId".into(), json!(m.internet_message_id));
    o.insert("receivedDateTime".into(), json!(time(m.received)));
    o.insert("parentFolderId".into(), json!(folder_id(mailbox, m.folder)));
    o.insert("subject".into(), json!(m.subject));
    if let Some(fields) = select {
        o.retain(|k, _| k == "id" || fields.iter().any(|f| f.eq_ignore_ascii_case(k)));
    }
    Value::Object(o)
}

/// Answers a request under `/v1.0/users/`; `rest` is the path after `users/`, still encoded.
pub async fn handle(
    state: &HttpsState,
    method: &str,
    rest: &[&str],
    path_and_query: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> SimResponse {
    let recorded = (method.to_string(), path_and_query.to_string());
    let call = match begin(
        state,
        headers,
        FaultReplies {
            forbidden: &access_denied,
            not_found: &item_not_found,
            malformed: "{\"value\":[{\"id\":\"AAMkAD",
        },
        |d, _| {
            if d.record && d.graph_mail_requests.len() < REQUESTS_KEPT {
                d.graph_mail_requests.push(recorded);
            }
        },
    )
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ids = &call.ids;
    let Some(segments) = rest
        .iter()
        .map(|s| percent_decode(s))
        .collect::<Option<Vec<String>>>()
    else {
        return bad_request("Invalid percent-encoding in the request URL.", ids);
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (user, route) = match segments.as_slice() {
        [user, route @ ..] if !user.is_empty() => (user.to_string(), route.to_vec()),
        _ => return bad_request("Resource not found for the segment 'users'.", ids),
    };
    let lower = |s: &str| s.to_ascii_lowercase();
    let route_lower: Vec<String> = route.iter().map(|s| lower(s)).collect();
    let route_lower: Vec<&str> = route_lower.iter().map(String::as_str).collect();
    let write = method == "DELETE" || method == "POST";
    let supported = matches!(
        (method, route_lower.as_slice()),
        ("GET", ["messages"])
            | ("GET" | "DELETE", ["messages", _])
            | ("POST", ["messages", _, "permanentdelete"])
            | ("GET", ["mailfolders", _])
    );
    if !supported {
        return bad_request(
            &format!(
                "The simulator does not serve {method} /users/{{user}}/{}.",
                route.join("/")
            ),
            ids,
        );
    }
    if !call.has_role(if write { &WRITE_ROLES } else { &READ_ROLES }) {
        return access_denied(ids);
    }

    let mut d = state.directory.lock().expect("sim lock");
    let key = lower(&user);
    let Some(mailbox) = d.mailboxes.get(&key).map(|m| m.address.clone()) else {
        return invalid_user(&user, ids);
    };
    let params = query_params(query);
    let immutable = headers.get_all("prefer").iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("IdType=\"ImmutableId\""))
        })
    });
    let is_id = |s: &Stored, id: &str| s.message.id == id || s.message.immutable_id == id;
    match (method, route_lower.as_slice()) {
        ("GET", ["messages"]) => {
            let allowed = ["$filter", "$select", "$top"];
            if let Some((k, _)) = params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
                return bad_request(
                    &format!("The query parameter '{k}' is not supported by the simulator."),
                    ids,
                );
            }
            let Some((_, filter)) = params.iter().find(|(k, _)| k == "$filter") else {
                return bad_filter(
                    "The simulator does not list a mailbox: give $filter=internetMessageId eq '<...>'.",
                    ids,
                );
            };
            let wanted = match eq_clauses(filter).as_deref() {
                Some([(prop, Literal::Str(v))]) if prop.eq_ignore_ascii_case("internetMessageId") => {
                    v.clone()
                }
                _ => {
                    return bad_filter(
                        &format!("Invalid filter clause: the simulator supports only internetMessageId eq '<...>', not {filter:?}."),
                        ids,
                    )
                }
            };
            let top = match super::graph_call::top(&params) {
                Ok(t) => t.unwrap_or(10),
                Err(m) => return bad_request(&m, ids),
            };
            let select = super::graph_call::select(&params);
            let mut found: Vec<&Stored> = d
                .stores
                .get(&key)
                .map(|v| {
                    v.iter()
                        .filter(|s| s.visible() && s.message.internet_message_id == wanted)
                        .collect()
                })
                .unwrap_or_default();
            found.sort_by_key(|s| std::cmp::Reverse(s.message.received));
            let value: Vec<Value> = found
                .iter()
                .take(top)
                .map(|s| message_json(&mailbox, s, select.as_deref(), immutable))
                .collect();
            ok_json(
                json!({
                    "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{key}')/messages"),
                    "value": value,
                }),
                ids,
            )
        }
        ("GET", ["messages", _]) => {
            let id = route[1];
            let select = super::graph_call::select(&params);
            match d
                .stores
                .get(&key)
                .and_then(|v| v.iter().find(|s| s.visible() && is_id(s, id)))
            {
                Some(s) => {
                    let mut v = message_json(&mailbox, s, select.as_deref(), immutable);
                    v["@odata.context"] = json!(format!(
                        "https://graph.microsoft.com/v1.0/$metadata#users('{key}')/messages/$entity"
                    ));
                    ok_json(v, ids)
                }
                None => item_not_found(ids),
            }
        }
        ("POST", ["messages", _, "permanentdelete"])
            if call.claims.aud != "https://graph.microsoft.com" =>
        {
            bad_request("Resource not found for the segment 'permanentDelete'.", ids)
        }
        ("DELETE", ["messages", _]) | ("POST", ["messages", _, "permanentdelete"]) => {
            let id = route[1];
            let store = d.stores.entry(key).or_default();
            match store.iter().position(|s| s.visible() && is_id(s, id)) {
                Some(i) if method == "DELETE" && store[i].message.folder != FOLDER_DELETED => {
                    let m = &mut store[i].message;
                    m.folder = FOLDER_DELETED;
                    m.id = message_item_id();
                    with_ids(respond(StatusCode::NO_CONTENT, "text/plain", ""), ids)
                }
                Some(i) => {
                    store.remove(i);
                    with_ids(respond(StatusCode::NO_CONTENT, "text/plain", ""), ids)
                }
                None => item_not_found(ids),
            }
        }
        ("GET", ["mailfolders", folder]) => {
            let folder = [FOLDER_INBOX, FOLDER_JUNK, FOLDER_DELETED]
                .into_iter()
                .find(|f| folder == f || *folder == lower(&folder_id(&mailbox, f)));
            let Some(folder) = folder else {
                return item_not_found(ids);
            };
            let visible: Vec<&Stored> = d
                .stores
                .get(&key)
                .map(|v| {
                    v.iter()
                        .filter(|s| s.visible() && s.message.folder == folder)
                        .collect()
                })
                .unwrap_or_default();
            ok_json(
                json!({
                    "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{key}')/mailFolders/$entity"),
                    "id": folder_id(&mailbox, folder),
                    "displayName": folder_display_name(folder),
                    "parentFolderId": folder_id(&mailbox, "msgfolderroot"),
                    "childFolderCount": 0,
                    "unreadItemCount": visible.len(),
                    "totalItemCount": visible.len(),
                    "isHidden": false,
                }),
                ids,
            )
        }
        _ => bad_request("Unsupported request.", ids),
    }
}
