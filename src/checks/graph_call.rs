//! The one authenticated Microsoft Graph request every check makes (credentials, canary,
//! service health, and the reads to come): the reader's token from the shared cache, the
//! request with a `client-request-id`, a reply read up to a bound with the token redacted out of
//! it, a token that Graph refuses (401, 403) dropped from the cache, `Retry-After` and
//! throttling read one way, and Graph's error code and request ids kept for the log. What a
//! status means is each check's to say.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::Failure;
use crate::auth::{AccessToken, Resource, TokenCache, TokenError};
use crate::http_client::{self, BoundedResponse, HttpError};
use crate::net::NetFailure;
use crate::plan::App;
use crate::reasons::{CommonReason, Reason};

/// After a 429 without `Retry-After`, wait at least this long: never retry in a tight loop.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// Longest piece of Graph text (error code, message, ids) copied into a log message.
const MAX_TEXT: usize = 300;

/// An authenticated Graph session of one run: the reader app, its token, the run's deadline.
pub struct Graph<'a> {
    reader: &'a Arc<App>,
    tokens: &'a TokenCache,
    token: AccessToken,
    deadline: Instant,
    prefer: Option<&'static str>,
}

/// Why a Graph call failed.
#[derive(Debug)]
pub enum CallFailure {
    /// The reader's token request failed.
    Token(TokenError),
    /// The run's deadline had passed before the call could be made.
    DeadlinePassed,
    /// No token or no (complete) reply before the deadline.
    Timeout,
    /// DNS, a refused connection, TLS: the same reasons as the other checks'.
    Network(NetFailure),
    /// A reply larger than [`http_client::MAX_BODY_BYTES`].
    TooLarge,
    /// The request failed for another reason (the log has it).
    Request,
    /// A reply with a status other than 2xx.
    Status(u16),
}

/// A failed Graph call: what failed, the text for the log (nothing the agent sent in it), and
/// what Graph said about itself.
#[derive(Debug)]
pub struct GraphError {
    pub failure: CallFailure,
    pub message: String,
    /// How long Graph (or the token endpoint) asked to wait; a 429 without `Retry-After` waits
    /// [`DEFAULT_THROTTLE_WAIT`].
    pub retry_after: Option<Duration>,
    /// Graph's error code, when the reply is Graph's error JSON (`None`: it is not, such as a
    /// proxy's page).
    pub code: Option<String>,
    /// Graph's `request-id` (from the error body, else the header): what Microsoft support asks for.
    pub request_id: Option<String>,
    /// The `client-request-id` Graph echoes.
    pub client_request_id: Option<String>,
}

impl GraphError {
    fn new(failure: CallFailure, message: String) -> Self {
        Self {
            failure,
            message,
            retry_after: None,
            code: None,
            request_id: None,
            client_request_id: None,
        }
    }

    /// The HTTP status of Graph's reply, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self.failure {
            CallFailure::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the reply is in Graph's own error shape: a 403 or 404 means what Graph says only
    /// then (the same status from a proxy or a wrong `graph_url` does not).
    pub fn from_graph(&self) -> bool {
        self.code.is_some()
    }

    /// Graph asks for quiet: a 429, or a 503 with `Retry-After` (Graph throttles with both).
    pub fn throttled(&self) -> bool {
        match self.status() {
            Some(429) => true,
            Some(503) => self.retry_after.is_some(),
            _ => false,
        }
    }

    /// The reason of a failure that is no answer of Graph's (the deadline, the network), which
    /// every check names alike; `None` for the rest, which each check names itself.
    pub fn common_reason(&self) -> Option<Reason> {
        match &self.failure {
            CallFailure::DeadlinePassed | CallFailure::Timeout => {
                Some(CommonReason::Timeout.into())
            }
            CallFailure::Network(f) => Some(f.reason().into()),
            _ => None,
        }
    }

    /// The check's failure under `reason`, keeping what the log and the verdict need: the
    /// token error's facts, the certificate problem, Graph's request ids.
    pub fn failure(&self, reason: impl Into<Reason>) -> Failure {
        let mut f = match &self.failure {
            CallFailure::Token(e) => Failure::from_token_error(reason, e),
            CallFailure::Network(n) => Failure {
                cert_problem: n.cert_problem(),
                ..Failure::new(reason, "")
            },
            _ => Failure::new(reason, ""),
        };
        f.message = self.message.clone();
        if !matches!(self.failure, CallFailure::Token(_)) {
            f.trace_id = self.request_id.clone();
            f.correlation_id = self.client_request_id.clone();
        }
        f
    }
}

impl<'a> Graph<'a> {
    /// A session with the reader's Graph token from the shared cache (a Graph token lives an
    /// hour or more; every app read through the same reader shares one).
    pub async fn connect(
        reader: &'a Arc<App>,
        tokens: &'a TokenCache,
        deadline: Instant,
    ) -> Result<Graph<'a>, GraphError> {
        match tokio::time::timeout_at(deadline, tokens.get(reader, Resource::Graph)).await {
            Ok(Ok(token)) => Ok(Graph {
                reader,
                tokens,
                token,
                deadline,
                prefer: None,
            }),
            Ok(Err(e)) => {
                let message = format!("no Graph token for app {:?}: {e}", reader.name);
                let retry_after = e.retry_after;
                Err(GraphError {
                    retry_after,
                    ..GraphError::new(CallFailure::Token(e), message)
                })
            }
            Err(_) => Err(GraphError::new(
                CallFailure::Timeout,
                format!(
                    "no Graph token from {} (app {:?}) before the check's timeout",
                    reader.token_url(),
                    reader.name
                ),
            )),
        }
    }

    /// Sends `Prefer: {value}` with every call of the session.
    pub fn prefer(mut self, value: &'static str) -> Self {
        self.prefer = Some(value);
        self
    }

    /// When the run ends: no call starts after it.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The app whose token the session uses.
    pub fn reader(&self) -> &'a Arc<App> {
        self.reader
    }

    /// `{graph_url}/{version}/{segments…}`, each segment one percent-encoded path segment (an
    /// address or an id cannot add a segment of its own).
    pub fn url(&self, version: &str, segments: &[&str]) -> url::Url {
        let mut u = self.reader.graph_url.clone();
        u.path_segments_mut()
            .expect("an http base URL")
            .pop_if_empty()
            .push(version)
            .extend(segments);
        u
    }

    /// `GET url`.
    pub async fn get(&self, url: url::Url) -> Result<BoundedResponse, GraphError> {
        self.call(reqwest::Method::GET, url).await
    }

    /// One request within the run's deadline: a 2xx reply, or why not.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: url::Url,
    ) -> Result<BoundedResponse, GraphError> {
        let shown = format!("{method} {url}");
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(GraphError::new(
                CallFailure::DeadlinePassed,
                format!("the check's timeout passed before {shown} could be asked"),
            ));
        }
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let body = method == reqwest::Method::POST;
        let mut req = self
            .reader
            .net
            .http
            .request(method, url)
            .bearer_auth(self.token.value.expose())
            .header(http::header::ACCEPT, "application/json")
            // Graph echoes this id in its reply and logs; it is what Microsoft support asks for.
            .header("client-request-id", &client_request_id)
            .header("return-client-request-id", "true");
        if let Some(p) = self.prefer {
            req = req.header("Prefer", p);
        }
        // An action without a body still says so (Content-Length: 0), as Graph wants.
        if body {
            req = req.body("");
        }
        let mut resp = match http_client::send(req, left).await {
            Ok(r) => r,
            Err(e) => {
                let (failure, what) = match e {
                    HttpError::Timeout => (
                        CallFailure::Timeout,
                        "no reply within the check's timeout".to_string(),
                    ),
                    HttpError::Network(f, m) => (CallFailure::Network(f), m),
                    HttpError::TooLarge => (
                        CallFailure::TooLarge,
                        format!(
                            "the reply is larger than {} KiB",
                            http_client::MAX_BODY_BYTES / 1024
                        ),
                    ),
                    e @ HttpError::Other(_) => (CallFailure::Request, e.to_string()),
                };
                return Err(GraphError {
                    client_request_id: Some(client_request_id.clone()),
                    ..GraphError::new(
                        failure,
                        format!("{shown}: {what} (client-request-id {client_request_id})"),
                    )
                });
            }
        };
        // Graph (or something in its place) may quote the bearer token back: out of the body
        // before anything reads it, since a log message keeps only its first part.
        redact_bytes(&mut resp.body, self.token.value.expose().as_bytes());
        if (200..300).contains(&resp.status) {
            return Ok(resp);
        }
        if matches!(resp.status, 401 | 403) {
            // Graph refuses the token (401), or what it carries (403: the roles of before an
            // admin granted the permission): drop it, so that the next run gets a new one instead
            // of the same refusal until it expires.
            self.tokens
                .invalidate(self.reader, Resource::Graph, &self.token);
        }
        Err(error_reply(&shown, &resp))
    }
}

/// One page of a Graph collection: its items and, when there are more, the link to the next.
#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub value: Vec<T>,
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
}

/// Why reading a paged collection failed.
#[derive(Debug)]
pub enum PageError {
    /// A call failed (its status, Retry-After and ids are in the error).
    Call(GraphError),
    /// A page is not the collection JSON promised, or its next link is not Graph's.
    Invalid(String),
}

impl<'a> Graph<'a> {
    /// The URL of the next page: the path and query of Graph's `@odata.nextLink` on the Graph
    /// this session talks to (its `graph_url`, which a test or a proxy may set), so that the
    /// token never goes to a host a reply names. The link must be under a version root
    /// (`/v1.0/`, `/beta/`).
    pub fn next_page_url(&self, link: &str) -> Result<url::Url, String> {
        let parsed =
            url::Url::parse(link).map_err(|e| format!("@odata.nextLink is not a URL ({e})"))?;
        let path = parsed.path();
        let rest = ["/v1.0/", "/beta/"]
            .iter()
            .find_map(|root| path.find(root).map(|i| &path[i..]))
            .ok_or_else(|| {
                format!(
                    "@odata.nextLink {:?} is not under a Graph version root",
                    clean(path)
                )
            })?;
        let mut u = self.reader.graph_url.clone();
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}{rest}"));
        u.set_query(parsed.query());
        Ok(u)
    }

    /// Every item of a paged collection, following `@odata.nextLink` for at most `max_pages`
    /// pages (a collection longer than that is refused rather than read without end).
    pub async fn get_pages<T: serde::de::DeserializeOwned>(
        &self,
        url: url::Url,
        max_pages: usize,
    ) -> Result<Vec<T>, PageError> {
        let mut out = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(u) = next.take() {
            if pages == max_pages {
                return Err(PageError::Invalid(format!(
                    "the collection has more than {max_pages} pages"
                )));
            }
            pages += 1;
            let resp = self.get(u).await.map_err(PageError::Call)?;
            let page: Page<T> = serde_json::from_slice(&resp.body).map_err(|e| {
                PageError::Invalid(format!(
                    "page {pages} is not Graph's collection JSON: {e} (request-id {})",
                    request_id(&resp).unwrap_or_else(|| "none".into())
                ))
            })?;
            out.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.next_page_url(&link).map_err(PageError::Invalid)?);
            }
        }
        Ok(out)
    }
}

/// Replaces every occurrence of `secret` in `body` with `[redacted]`.
fn redact_bytes(body: &mut Vec<u8>, secret: &[u8]) {
    if secret.is_empty() || !body.windows(secret.len()).any(|w| w == secret) {
        return;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(secret) {
            out.extend_from_slice(b"[redacted]");
            i += secret.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    *body = out;
}

/// Graph's error body: `{"error":{"code","message","innerError":{...}}}`.
#[derive(Debug, Deserialize)]
struct GraphErrorBody {
    error: GraphErrorJson,
}

#[derive(Debug, Deserialize)]
struct GraphErrorJson {
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "innerError")]
    inner_error: Option<InnerError>,
}

#[derive(Debug, Default, Deserialize)]
struct InnerError {
    #[serde(default)]
    date: Option<String>,
    #[serde(default, rename = "request-id")]
    request_id: Option<String>,
    #[serde(default, rename = "client-request-id")]
    client_request_id: Option<String>,
}

/// Text from the wire, safe for one log line: no control characters, bounded length.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT)
        .collect()
}

/// The `request-id` header, for replies whose body does not carry it.
pub fn request_id(resp: &BoundedResponse) -> Option<String> {
    resp.headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(clean)
}

/// What a non-2xx reply says: its status, how long to wait, and Graph's code, message and ids
/// (for the log only). `shown` names the request in the message. The entry point of the fuzz
/// target too (`fuzz/fuzz_targets/graph_response.rs`, through the credential check).
pub fn error_reply(shown: &str, resp: &BoundedResponse) -> GraphError {
    let status = resp.status;
    let body: Option<GraphErrorJson> = serde_json::from_slice::<GraphErrorBody>(&resp.body)
        .ok()
        .map(|b| b.error);
    let mut e = GraphError::new(CallFailure::Status(status), String::new());
    let what = match &body {
        Some(b) => {
            let inner = b.inner_error.as_ref();
            e.code = Some(clean(&b.code));
            e.request_id = inner
                .and_then(|i| i.request_id.as_deref())
                .map(clean)
                .or_else(|| request_id(resp));
            e.client_request_id = inner
                .and_then(|i| i.client_request_id.as_deref())
                .map(clean);
            format!(
                "{}: {} (request-id {}, client-request-id {}, date {})",
                clean(&b.code),
                clean(b.message.as_deref().unwrap_or("")),
                e.request_id.as_deref().unwrap_or("none"),
                e.client_request_id.as_deref().unwrap_or("none"),
                inner
                    .and_then(|i| i.date.as_deref())
                    .map(clean)
                    .unwrap_or_else(|| "none".into()),
            )
        }
        None => {
            let n = resp.body.len().min(120);
            e.request_id = request_id(resp);
            format!(
                "not Graph's error JSON (body starts {:?}, request-id {})",
                clean(&String::from_utf8_lossy(&resp.body[..n])),
                e.request_id.as_deref().unwrap_or("none")
            )
        }
    };
    e.retry_after = http_client::retry_after(&resp.headers);
    if status == 429 && e.retry_after.is_none() {
        e.retry_after = Some(DEFAULT_THROTTLE_WAIT);
    }
    e.message = format!("{shown}: HTTP {status}: {what}");
    if let Some(w) = e.retry_after {
        e.message += &format!("; next try in {}s at the earliest", w.as_secs());
    }
    e
}

/// A reply as `http_client::send` returns it, for unit tests of what reads replies.
#[cfg(test)]
pub(crate) fn test_reply(status: u16, headers: &[(&str, &str)], body: &str) -> BoundedResponse {
    let mut h = http::HeaderMap::new();
    for (k, v) in headers {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    BoundedResponse {
        status,
        headers: h,
        body: body.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_reply as reply;
    use super::*;
    use serde_json::json;

    fn graph_error(code: &str) -> String {
        json!({"error": {"code": code, "message": "Insufficient privileges to complete the operation.",
                         "innerError": {"date": "2026-01-01T00:00:00", "request-id": "req-1", "client-request-id": "cli-1"}}})
        .to_string()
    }

    #[test]
    fn an_error_reply_keeps_graphs_code_ids_and_wait() {
        let e = error_reply(
            "GET x",
            &reply(403, &[], &graph_error("Authorization_RequestDenied")),
        );
        assert_eq!(e.status(), Some(403));
        assert!(e.from_graph() && !e.throttled());
        assert_eq!(e.code.as_deref(), Some("Authorization_RequestDenied"));
        let f = e.failure(crate::reasons::GraphReason::PermissionMissing);
        assert_eq!(f.trace_id.as_deref(), Some("req-1"));
        assert_eq!(f.correlation_id.as_deref(), Some("cli-1"));
        assert!(f.message.contains("Authorization_RequestDenied") && f.message.contains("req-1"));
        // Not Graph's shape: no code, the header's request id.
        let e = error_reply(
            "GET x",
            &reply(500, &[("request-id", "hdr-9")], "oops\u{1b}[31m"),
        );
        assert!(!e.from_graph());
        assert_eq!(e.request_id.as_deref(), Some("hdr-9"));
        assert!(!e.message.contains('\u{1b}'), "{}", e.message);
    }

    #[test]
    fn throttling_is_a_429_or_a_503_with_retry_after() {
        let wait = |status, headers: &[(&str, &str)]| {
            let e = error_reply("GET x", &reply(status, headers, ""));
            (e.throttled(), e.retry_after)
        };
        assert_eq!(
            wait(429, &[("retry-after", "30")]),
            (true, Some(Duration::from_secs(30)))
        );
        assert_eq!(wait(429, &[]), (true, Some(DEFAULT_THROTTLE_WAIT)));
        assert_eq!(
            wait(503, &[("retry-after", "7")]),
            (true, Some(Duration::from_secs(7)))
        );
        assert_eq!(wait(503, &[]), (false, None));
        assert_eq!(
            wait(503, &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")]),
            (true, Some(Duration::from_secs(60)))
        );
        assert!(!wait(500, &[("retry-after", "5")]).0);
    }

    #[test]
    fn the_token_is_redacted_wherever_it_appears() {
        let mut body = b"{\"error\":\"tok tok-tail\"}".to_vec();
        redact_bytes(&mut body, b"tok");
        assert_eq!(body, b"{\"error\":\"[redacted] [redacted]-tail\"}");
        let mut clean_body = b"nothing here".to_vec();
        redact_bytes(&mut clean_body, b"tok");
        assert_eq!(clean_body, b"nothing here");
    }
}
