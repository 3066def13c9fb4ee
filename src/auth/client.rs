//! One client-credentials token request (RFC 6749 section 4.4) through the `oauth2` crate, with a
//! client secret or a certificate assertion (RFC 7523), mapped to a typed [`TokenError`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AuthType, ClientId, ClientSecret, RequestTokenError, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};

use super::assertion;
use super::claims::{self, TokenClaims};
use super::error::{AadErrorResponse, TokenError};
use crate::http_client::{self as http, HttpError};
use crate::plan::{App, Credential};
use crate::reasons::{CommonReason, TokenReason};
use crate::secret::Secret;

/// An access token and when it stops being valid.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub value: Secret,
    /// When the request for it was sent (tokio's clock): the newest token wins the cache.
    pub requested_at: tokio::time::Instant,
    /// Monotonic expiry (follows tokio's clock, so paused-time tests see it).
    pub expires_at: tokio::time::Instant,
    /// Wall-clock expiry, for metrics.
    pub expires_at_wall: DateTime<Utc>,
    /// `expires_in` as the endpoint gave it.
    pub lifetime: Duration,
    /// Decoded payload, for diagnosis only.
    pub claims: Option<TokenClaims>,
}

/// Which resource a token is for: one resource per token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Exchange,
    Graph,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Exchange => "exchange",
            Resource::Graph => "graph",
        }
    }

    pub fn scope(self, app: &App) -> String {
        match self {
            Resource::Exchange => app.exchange_scope().to_string(),
            Resource::Graph => app.graph_scope(),
        }
    }
}

type AadClient = oauth2::Client<
    AadErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// The longest `expires_in` taken as a token lifetime.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What the transport saw of the reply, which `oauth2` does not hand back.
#[derive(Default)]
struct Seen {
    status: Option<u16>,
    retry_after: Option<Duration>,
    transport: Option<HttpError>,
}

/// Requests a token for `scope` from the app's token endpoint, within `timeout`.
pub async fn request_token(
    app: &App,
    client: &reqwest::Client,
    scope: &str,
    timeout: Duration,
) -> Result<AccessToken, TokenError> {
    request_token_via(app, scope, timeout, |r: oauth2::HttpRequest| {
        let (parts, body) = r.into_parts();
        let rb = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body);
        http::send(rb, timeout)
    })
    .await
}

/// [`request_token`] with the HTTP exchange supplied by the caller: the same request, reply
/// parsing and error mapping. For the fuzz target (`fuzz/fuzz_targets/token_response.rs`).
#[doc(hidden)]
pub async fn request_token_via<F, Fut>(
    app: &App,
    scope: &str,
    timeout: Duration,
    send: F,
) -> Result<AccessToken, TokenError>
where
    F: Fn(oauth2::HttpRequest) -> Fut,
    Fut: std::future::Future<Output = Result<http::BoundedResponse, HttpError>>,
{
    let token_url = app.token_url();
    let url = TokenUrl::new(token_url.clone()).map_err(|e| {
        TokenError::new(
            CommonReason::InternalError,
            format!("invalid token URL: {e}"),
        )
    })?;
    let mut oauth: AadClient = oauth2::Client::new(ClientId::new(app.client_id.clone()))
        .set_token_uri(url)
        // Entra ID takes the credential in the form body (client_secret_post).
        .set_auth_type(AuthType::RequestBody);
    let assertion_value;
    let mut request_assertion = None;
    match &app.credential {
        Credential::ClientSecret(s) => {
            oauth = oauth.set_client_secret(ClientSecret::new(s.expose().to_string()));
        }
        Credential::Certificate(cert) => {
            assertion_value = assertion::client_assertion(cert, &app.client_id, &token_url)
                .map_err(|m| TokenError::new(CommonReason::InternalError, m))?;
            request_assertion = Some(&assertion_value);
        }
    }
    let mut req = oauth
        .exchange_client_credentials()
        .add_scope(Scope::new(scope.to_string()));
    if let Some(a) = request_assertion {
        req = req
            .add_extra_param("client_assertion_type", assertion::ASSERTION_TYPE)
            .add_extra_param("client_assertion", a.expose());
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let transport = {
        let seen = seen.clone();
        let send = &send;
        move |r: oauth2::HttpRequest| {
            let seen = seen.clone();
            let reply = send(r);
            async move {
                match reply.await {
                    Ok(resp) => {
                        let mut s = seen.lock().expect("lock");
                        s.status = Some(resp.status);
                        s.retry_after = http::retry_after(&resp.headers);
                        drop(s);
                        let mut out = ::http::Response::builder().status(resp.status);
                        if let Some(h) = out.headers_mut() {
                            *h = resp.headers;
                        }
                        out.body(resp.body)
                            .map_err(|e| TransportError(e.to_string()))
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        seen.lock().expect("lock").transport = Some(e);
                        Err(TransportError(msg))
                    }
                }
            }
        }
    };

    let started = tokio::time::Instant::now();
    let result = req.request_async(&transport).await;
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    // A server (or a proxy) could echo what we sent: keep the credential out of the log.
    let sent: Vec<&str> = match (&app.credential, request_assertion) {
        (Credential::ClientSecret(s), _) => vec![s.expose()],
        (_, Some(a)) => vec![a.expose()],
        _ => vec![],
    };
    let redact = |text: String| crate::secret::redact(&text, &sent);
    match result {
        Ok(resp) => {
            let lifetime = resp.expires_in().ok_or_else(|| {
                TokenError::new(
                    TokenReason::InvalidResponse,
                    "the token reply has no expires_in",
                )
            })?;
            // Entra ID issues tokens for 60 to 90 minutes; a day or more is not a token lifetime.
            if lifetime.is_zero() || lifetime > MAX_LIFETIME {
                return Err(TokenError::new(
                    TokenReason::InvalidResponse,
                    format!(
                        "the token reply has expires_in {} (expected 1 s to 24 h)",
                        lifetime.as_secs()
                    ),
                ));
            }
            let value = resp.access_token().secret().clone();
            if value.is_empty() {
                return Err(TokenError::new(
                    TokenReason::InvalidResponse,
                    "the token reply has an empty access_token",
                ));
            }
            let claims = claims::decode(&value);
            Ok(AccessToken {
                value: Secret::new(value),
                // Count from when the request was sent: the server's clock started before ours ended.
                requested_at: started,
                expires_at: started + lifetime,
                expires_at_wall: Utc::now()
                    + chrono::Duration::from_std(lifetime).unwrap_or_default()
                    - chrono::Duration::from_std(started.elapsed()).unwrap_or_default(),
                lifetime,
                claims,
            })
        }
        Err(RequestTokenError::ServerResponse(body)) => {
            let code = body.error_codes.first().copied();
            let reason = match (code.and_then(TokenReason::from_aadsts), seen.status) {
                (Some(r), _) => r,
                (None, Some(429)) => TokenReason::Throttled,
                (None, Some(400 | 401)) => TokenReason::Other,
                (None, _) => TokenReason::HttpError,
            };
            Err(TokenError {
                reason: reason.into(),
                cert_problem: None,
                aadsts: code,
                http_status: seen.status,
                trace_id: body.trace_id.clone(),
                correlation_id: body.correlation_id.clone(),
                retry_after: seen.retry_after,
                message: redact(format!("HTTP {}: {}", seen.status.unwrap_or(0), body)),
            })
        }
        Err(RequestTokenError::Parse(_, raw)) => {
            let status = seen.status.unwrap_or(0);
            let (reason, what) = match status {
                200 => (
                    TokenReason::InvalidResponse,
                    "the token reply is not valid JSON",
                ),
                429 => (TokenReason::Throttled, "throttled"),
                500..=599 => (
                    TokenReason::HttpError,
                    "the error reply is not Microsoft's JSON",
                ),
                // A redirect (never followed), a proxy's block page, a wrong login_url: not
                // Entra ID, and not transient.
                _ => (
                    TokenReason::InvalidResponse,
                    "the reply is not Microsoft's JSON",
                ),
            };
            // Redacted before it is cut: a credential the reply quotes across the cut would
            // otherwise leave its start in the log.
            let snippet: String = redact(String::from_utf8_lossy(&raw).into_owned())
                .chars()
                .take(120)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            Err(TokenError {
                http_status: seen.status,
                retry_after: seen.retry_after,
                ..TokenError::new(
                    reason,
                    redact(format!("HTTP {status}: {what} (body starts {snippet:?})")),
                )
            })
        }
        Err(RequestTokenError::Request(_)) => Err(match seen.transport {
            Some(HttpError::Timeout) => TokenError::new(
                CommonReason::Timeout,
                format!("no reply from {token_url} within {timeout:?}"),
            ),
            Some(HttpError::TooLarge) => TokenError::new(
                TokenReason::InvalidResponse,
                "the reply is larger than 1 MiB",
            ),
            // DNS, refused, TLS: the same reasons as the SMTP check's.
            Some(HttpError::Network(f, m)) => TokenError {
                cert_problem: f.cert_problem(),
                ..TokenError::new(f.reason(), redact(format!("{token_url}: {m}")))
            },
            Some(HttpError::Other(m)) => {
                TokenError::new(TokenReason::Other, redact(format!("{token_url}: {m}")))
            }
            None => TokenError::new(TokenReason::Other, "request failed"),
        }),
        Err(RequestTokenError::Other(m)) => {
            let status = seen.status.unwrap_or(0);
            let reason = match status {
                429 => TokenReason::Throttled,
                500..=599 => TokenReason::HttpError,
                _ => TokenReason::InvalidResponse,
            };
            Err(TokenError {
                http_status: seen.status,
                retry_after: seen.retry_after,
                ..TokenError::new(reason, redact(format!("HTTP {status}: {m}")))
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);
