//! What every route of the simulated HTTPS endpoint shares: its state (the directory, the
//! token signing key), the reply type and its builders, and Graph's reply shapes (request ids,
//! the error body, Retry-After, RFC 3339 times). Routes import this; nothing here imports a route.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::Directory;

#[derive(Clone)]
pub struct HttpsState {
    pub directory: Arc<Mutex<Directory>>,
    pub signing_key: Arc<Vec<u8>>,
}

pub type SimResponse = Response<Full<Bytes>>;

pub fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> SimResponse {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .expect("response parts")
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> SimResponse {
    respond(status, "application/json; charset=utf-8", value.to_string())
}

/// The ids Graph puts in every reply (headers, and `innerError` of error bodies).
pub struct Ids {
    pub request_id: String,
    pub client_request_id: String,
}

pub fn with_ids(mut r: SimResponse, ids: &Ids) -> SimResponse {
    let h = r.headers_mut();
    for (k, v) in [
        ("request-id", &ids.request_id),
        ("client-request-id", &ids.client_request_id),
    ] {
        if let Ok(v) = v.parse() {
            h.insert(k, v);
        }
    }
    r
}

/// An error in Graph's shape: `{"error":{"code","message","innerError":{date, request-id, ...}}}`.
pub fn graph_error(status: StatusCode, code: &str, message: &str, ids: &Ids) -> SimResponse {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                "request-id": ids.request_id,
                "client-request-id": ids.client_request_id,
            }
        }
    });
    with_ids(json(status, &body), ids)
}

/// Graph's 403 for a directory object (an application, a service principal, a policy, a
/// report) read without the permission it needs.
pub fn directory_forbidden(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        ids,
    )
}

/// Graph's 404 for a directory object that does not exist.
pub fn directory_not_found(ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        "Resource does not exist or one of its queried reference-property objects are not present.",
        ids,
    )
}

pub fn with_retry_after(mut r: SimResponse, seconds: u64) -> SimResponse {
    r.headers_mut().insert(
        "retry-after",
        seconds.to_string().parse().expect("numeric header"),
    );
    r
}

pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn unauthenticated(message: &str, ids: &Ids) -> SimResponse {
    graph_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        message,
        ids,
    )
}
