//! The simulator's HTTPS server (hyper over rustls): routes the login and Graph endpoints
//! (app registrations, mail, service health, credential sign-in activity, message trace).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio_util::sync::CancellationToken;

use super::reply::{json, respond, HttpsState, SimResponse};

async fn route(state: HttpsState, req: Request<Incoming>) -> Result<SimResponse, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                "too large",
            ))
        }
    };
    let path = parts.uri.path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match (parts.method.as_str(), segments.as_slice()) {
        ("POST", [tenant, "oauth2", "v2.0", "token"]) => {
            let host = parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_string();
            super::token::handle(&state, tenant, &host, &path, &body).await
        }
        // Counters for benchmarks (not Microsoft's API).
        ("GET", ["sim", "stats"]) => {
            let d = state.directory.lock().expect("sim lock");
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "token_requests": d.token_requests.values().sum::<u64>(),
                    "token_requests_by_resource": d.token_requests_by_resource,
                    "graph_requests": d.graph_requests.values().sum::<u64>(),
                    "smtp_sessions": d.smtp_connections.values().map(|c| c.accepted).sum::<u64>(),
                    // The most connections one SMTP listener held at once (the main listener
                    // serves every mailbox: per mailbox, give each its own listener).
                    "smtp_peak_connections": d.smtp_connections.values().map(|c| c.peak).max().unwrap_or(0),
                    "apps": d.apps.len(),
                    "mailboxes": d.mailboxes.len(),
                }),
            )
        }
        ("GET", ["v1.0", object])
            if object.replace("%27", "'")
                == format!(
                    "servicePrincipals(appId='{}')",
                    super::discovery::EXCHANGE_ONLINE_APP_ID
                ) =>
        {
            super::discovery::handle(
                &state,
                super::discovery::Read::Exchange,
                parts.uri.query(),
                &parts.headers,
            )
            .await
        }
        ("GET", ["v1.0", "servicePrincipals", id]) => {
            super::discovery::handle(
                &state,
                super::discovery::Read::ByObjectId(id),
                parts.uri.query(),
                &parts.headers,
            )
            .await
        }
        ("GET", ["v1.0", "servicePrincipals", id, "appRoleAssignedTo"]) => {
            super::discovery::handle(
                &state,
                super::discovery::Read::AssignedTo(id),
                parts.uri.query(),
                &parts.headers,
            )
            .await
        }
        ("GET", ["v1.0", object])
            if object.starts_with("applications(") || object.starts_with("servicePrincipals(") =>
        {
            super::graph::handle(&state, object, parts.uri.query(), &parts.headers).await
        }
        ("GET", ["v1.0", "policies", "defaultAppManagementPolicy"]) => {
            super::policy::handle(&state, None, &parts.headers).await
        }
        ("GET", ["v1.0", "applications", id, "appManagementPolicies"]) => {
            super::policy::handle(&state, Some(id), &parts.headers).await
        }
        // Every method, so that whatever a client asks of a mailbox is recorded (and refused
        // unless served).
        (method, ["v1.0", "users", rest @ ..]) => {
            let path_and_query = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or(&path);
            super::graph_mail::handle(
                &state,
                method,
                rest,
                path_and_query,
                parts.uri.query(),
                &parts.headers,
            )
            .await
        }
        ("GET", ["v1.0", "admin", "exchange", "tracing", "messageTraces", rest @ ..]) => {
            super::trace::handle(&state, rest, parts.uri.query(), &parts.headers).await
        }
        ("GET", ["beta", "reports", "appCredentialSignInActivities"]) => {
            super::activity::handle(&state, parts.uri.query(), &parts.headers).await
        }
        ("GET", ["v1.0", "admin", "serviceAnnouncement", rest @ ..]) => {
            super::health::handle(&state, rest, parts.uri.query(), &parts.headers).await
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "application/json",
            "{\"error\":\"not_found\"}",
        ),
    };
    Ok(resp)
}

/// Binds 127.0.0.1:0 and serves TLS connections until `stop` fires.
pub async fn start(
    state: HttpsState,
    tls: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    super::serve_loopback(stop, move |stream, _| {
        let acceptor = acceptor.clone();
        let state = state.clone();
        async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| route(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        }
    })
    .await
}
