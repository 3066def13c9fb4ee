//! HTTP clients for the token endpoint and Graph: on the shared TLS configuration (`crate::tls`),
//! no redirects, bounded timeouts, and reply bodies read up to a size limit.

use std::time::Duration;

/// Largest reply body the agent reads from Entra ID or Graph.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Builds the client an app's requests go through, on the given TLS configuration.
/// No request goes anywhere but where it was sent: redirects are errors.
pub fn client(tls: &rustls::ClientConfig) -> Result<reqwest::Client, String> {
    let b = reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        // RFC 6749 section 3.2: the token endpoint is called directly; a redirect is an error.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("smtp-oauth-exporter/", env!("CARGO_PKG_VERSION")))
        // Our resolver, so that a name that does not resolve is told apart (reason `dns`).
        .dns_resolver(crate::net::resolver());
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A reply read with a bound on its body.
pub struct BoundedResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// Why an HTTP exchange failed before a complete reply was read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("timed out")]
    Timeout,
    /// DNS, a refused connection, a TLS failure: the same reasons as the SMTP check's.
    #[error("{1}")]
    Network(crate::net::NetFailure, String),
    #[error("reply body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("request failed: {0}")]
    Other(String),
}

/// Describes a reqwest error without the URL's query (which never holds secrets here, but the
/// chain of sources is what helps an admin: connection refused, certificate unknown, ...).
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut parts = Vec::new();
    let mut src: Option<&dyn Error> = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    if !parts.is_empty() {
        parts.join(": ")
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

/// Sends a request and reads the reply, at most [`MAX_BODY_BYTES`], within `timeout`.
pub async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<BoundedResponse, HttpError> {
    let fut = async {
        let mut resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                return HttpError::Timeout;
            }
            match crate::net::classify(&e) {
                Some(crate::net::NetFailure::Timeout) => HttpError::Timeout,
                Some(f) => HttpError::Network(f, describe(&e)),
                // Connected (a refusal or a DNS failure would be classified), but the
                // connection broke while it was being set up: the TLS handshake, as the SMTP
                // check says for the same thing.
                None if e.is_connect() => {
                    HttpError::Network(crate::net::NetFailure::TlsHandshake, describe(&e))
                }
                None => HttpError::Other(describe(&e)),
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_BODY_BYTES)
        {
            return Err(HttpError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            if e.is_timeout() {
                HttpError::Timeout
            } else {
                HttpError::Other(describe(&e))
            }
        })? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(BoundedResponse {
            status,
            headers,
            body,
        })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout),
    }
}

/// `Retry-After` in seconds (RFC 9110 section 10.2.3); the HTTP-date form is read as 60 seconds.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    match v.parse::<u64>() {
        Ok(s) => Some(Duration::from_secs(s.min(86_400))),
        Err(_) => Some(Duration::from_secs(60)),
    }
}
