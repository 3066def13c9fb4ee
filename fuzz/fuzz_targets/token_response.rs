//! The token endpoint's reply: `auth::request_token_via`, the token request with the HTTP
//! exchange replaced by the fuzzer's reply. The request is built as in production (client
//! secret, form body), the reply parsed by `oauth2` into the token or the AADSTS error body, and
//! mapped to a typed `TokenError` (reason, AADSTS code, Microsoft's ids, `Retry-After`, the
//! redacted message); a token's claims are decoded.
//!
//! Input: byte 0 picks the HTTP status, byte 1 the `Content-Type`, `Retry-After` and (rarely)
//! a transport failure instead of a reply; the rest is the body.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtp_oauth_exporter::auth::{claims, request_token_via};
use smtp_oauth_exporter::checks::Failure;
use smtp_oauth_exporter::http_client::{BoundedResponse, HttpError};
use smtp_oauth_exporter::plan::App;

/// The app's client secret: a reply that echoes it must not get it into a message.
const SECRET: &str = "Fz7~fuzz-client-secret.value_0123456789";
const SCOPE: &str = "https://outlook.office365.com/.default";

const STATUSES: [u16; 16] = [
    200, 200, 200, 200, 400, 400, 401, 401, 403, 404, 429, 500, 502, 503, 204, 302,
];
const CONTENT_TYPES: [Option<&str>; 4] = [
    Some("application/json; charset=utf-8"),
    Some("application/json"),
    None,
    Some("text/html; charset=us-ascii"),
];
const RETRY_AFTER: [Option<&str>; 4] = [
    None,
    Some("30"),
    Some("Wed, 21 Oct 2026 07:28:00 GMT"),
    Some("soon"),
];

fn app() -> &'static Arc<App> {
    static APP: OnceLock<Arc<App>> = OnceLock::new();
    APP.get_or_init(|| {
        let yaml = format!(
            "apps:\n  - name: billing\n    tenant: contoso.onmicrosoft.com\n    client_id: 1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70\n    client_secret: \"{SECRET}\"\n"
        );
        let plan = smtp_oauth_exporter::config::from_yaml(&yaml, "fuzz.yml", Path::new("."))
            .expect("the fuzz configuration loads");
        plan.apps[0].clone()
    })
}

fuzz_target!(|data: &[u8]| {
    let [status, flags, body @ ..] = data else {
        return;
    };
    let status = STATUSES[usize::from(status & 15)];
    let transport_failure = flags >> 4 == 15;
    let mut headers = http::HeaderMap::new();
    if let Some(ct) = CONTENT_TYPES[usize::from(flags & 3)] {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ct),
        );
    }
    if let Some(ra) = RETRY_AFTER[usize::from((flags >> 2) & 3)] {
        headers.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(ra),
        );
    }
    let send = |_req| {
        let reply = if transport_failure {
            Err(match flags & 3 {
                0 => HttpError::Timeout,
                1 => HttpError::TooLarge,
                _ => HttpError::Other(String::from_utf8_lossy(body).into_owned()),
            })
        } else {
            Ok(BoundedResponse {
                status,
                headers: headers.clone(),
                body: body.to_vec(),
            })
        };
        std::future::ready(reply)
    };
    let result = futures::executor::block_on(request_token_via(
        app(),
        SCOPE,
        Duration::from_secs(15),
        send,
    ));
    match result {
        Ok(token) => {
            assert!(!transport_failure);
            assert!(token.lifetime >= Duration::from_secs(1));
            assert!(token.lifetime <= Duration::from_secs(24 * 3600));
            assert!(!token.value.expose().is_empty());
            assert!(token.expires_at > token.requested_at);
            assert_eq!(token.claims, claims::decode(token.value.expose()));
        }
        Err(e) => {
            let failure = Failure::from_token_error(e.reason, &e);
            for text in [&e.message, &failure.message] {
                assert!(!text.contains(SECRET), "the secret leaked: {text:?}");
            }
            let _ = e.known_aadsts();
            let _ = e.reason.as_str();
        }
    }
});
