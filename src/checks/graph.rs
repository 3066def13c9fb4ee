//! The Graph credential check: reads the app registration from Microsoft Graph and reports every
//! client secret and certificate with its dates, and which one the agent itself signs in with.

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Context, Details, Failure, Outcome};
use crate::auth::Resource;
use crate::http_client::{self, BoundedResponse, HttpError};
use crate::plan::{App, Credential, Target};
use crate::reasons::{CommonReason, GraphReason, Reason};

/// The properties the check reads; `$select` keeps the reply small.
pub const SELECT: &str = "id,appId,displayName,passwordCredentials,keyCredentials";

/// After a 429 without `Retry-After`, wait at least this long: never retry in a tight loop.
pub const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// Longest piece of Graph text (error code, message, ids) copied into a log message.
const MAX_TEXT: usize = 300;

/// The two kinds of app credential Graph lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialType {
    /// A client secret (`passwordCredentials`).
    Password,
    /// A certificate (`keyCredentials`).
    Certificate,
}

impl CredentialType {
    /// The `type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialType::Password => "password",
            CredentialType::Certificate => "certificate",
        }
    }
}

/// One secret or certificate of the app registration, as Graph lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialInfo {
    /// Graph's `keyId`: the identity of the credential (display names repeat).
    pub key_id: String,
    /// Secret or certificate: the `type` label.
    pub kind: CredentialType,
    /// As Graph gives it: unsanitised, may be missing.
    pub display_name: Option<String>,
    /// Graph's `startDateTime`.
    pub start: Option<DateTime<Utc>>,
    /// Graph's `endDateTime`: when the credential expires.
    pub end: Option<DateTime<Utc>>,
    /// Whether this is (one of) the credential(s) the agent's configured credential matches.
    pub in_use: bool,
}

/// What Graph said about the app registration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Registration {
    /// The application object's ID (Graph's `id`).
    pub object_id: Option<String>,
    /// Every secret and certificate, secrets first, in Graph's order.
    pub credentials: Vec<CredentialInfo>,
    /// The earliest `endDateTime` of all credentials, expired ones included (Entra keeps expired
    /// credentials listed, so this is often in the past).
    pub earliest_expiry: Option<DateTime<Utc>>,
    /// The earliest `endDateTime` among the credentials not yet expired when the check ran;
    /// `None` when every credential has expired (or none has an end date).
    pub next_expiry: Option<DateTime<Utc>>,
    /// How many credentials match the agent's own: by `hint` for a secret, by thumbprint for a
    /// certificate. 0: the configured credential is not on the app registration.
    pub in_use_matches: usize,
    /// Several credentials match (for a secret: several share its first three characters), so
    /// the agent cannot tell which one it uses and does not guess.
    pub hint_ambiguous: bool,
}

impl Registration {
    /// The credential the agent uses, when exactly one matches.
    pub fn in_use(&self) -> Option<&CredentialInfo> {
        if self.in_use_matches == 1 {
            self.credentials.iter().find(|c| c.in_use)
        } else {
            None
        }
    }
}

/// What a Graph run learned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphDetails {
    /// The app whose Graph token read the registration: the app itself or its `graph_reader`.
    pub reader: String,
    /// The HTTP status of Graph's reply, when there was one.
    pub http_status: Option<u16>,
    /// The app registration's credentials; `None` when the run did not get that far.
    pub registration: Option<Registration>,
}

/// `{graph_url}/v1.0/applications(appId='{client_id}')?$select=…`: addresses the app
/// registration by client ID, so no object ID needs configuring.
pub fn request_url(app: &App) -> String {
    format!(
        "{}/v1.0/applications(appId='{}')?$select={SELECT}",
        app.graph_url.as_str().trim_end_matches('/'),
        app.client_id
    )
}

fn failed(reason: impl Into<Reason>, message: impl Into<String>, details: GraphDetails) -> Outcome {
    Outcome::failure(Failure::new(reason, message), Details::Graph(details))
}

/// Runs the check for an app: a Graph token (cached) from the app or its reader, then one GET.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let app = target.app();
    let reader = app.graph_reader_or_self();
    let details = GraphDetails {
        reader: reader.name.clone(),
        ..GraphDetails::default()
    };

    // The token comes from the shared cache: a Graph token lives an hour or more, and every app
    // read through the same reader shares one.
    let get = ctx.tokens.get(&reader, Resource::Graph);
    let token = match tokio::time::timeout_at(deadline, get).await {
        Err(_) => {
            return failed(
                CommonReason::Timeout,
                format!(
                    "no Graph token from {} (app {:?}) before the check's timeout",
                    reader.token_url(),
                    reader.name
                ),
                details,
            )
        }
        Ok(Err(e)) => {
            let mut f = Failure::from_token_error(GraphReason::TokenUnavailable, &e);
            f.message = format!("no Graph token for app {:?}: {e}", reader.name);
            let mut o = Outcome::failure(f, Details::Graph(details));
            o.retry_after = e.retry_after;
            return o;
        }
        Ok(Ok(t)) => t,
    };

    let url = request_url(app);
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return failed(
            CommonReason::Timeout,
            format!("the check's timeout passed before {url} could be asked"),
            details,
        );
    }
    let client_request_id = uuid::Uuid::new_v4().to_string();
    let req = app
        .net
        .http
        .get(&url)
        .bearer_auth(token.value.expose())
        .header(http::header::ACCEPT, "application/json")
        // Graph echoes this id in its reply and logs; it is what Microsoft support asks for.
        .header("client-request-id", &client_request_id)
        .header("return-client-request-id", "true");
    let mut resp = match http_client::send(req, left).await {
        Ok(r) => r,
        Err(HttpError::Timeout) => {
            return failed(
                CommonReason::Timeout,
                format!("no reply from {url} within the check's timeout (client-request-id {client_request_id})"),
                details,
            )
        }
        Err(HttpError::TooLarge) => {
            return failed(
                GraphReason::InvalidResponse,
                format!("the reply from {url} is larger than 1 MiB"),
                details,
            )
        }
        // DNS, refused, TLS: the same reasons as the SMTP check's.
        Err(HttpError::Network(f, m)) => {
            let mut o = failed(f.reason(), format!("{url}: {m}"), details);
            if let Some(fail) = o.failure.as_mut() {
                fail.cert_problem = f.cert_problem();
            }
            return o;
        }
        Err(e) => return failed(GraphReason::HttpError, format!("{url}: {e}"), details),
    };
    // Graph (or something in its place) may quote the bearer token in an error: out of the
    // body before anything reads it, since the log keeps only the first part of a message.
    redact_bytes(&mut resp.body, token.value.expose().as_bytes());
    if resp.status == 401 || resp.status == 403 {
        // Graph refuses the token (401), or what it carries (403: the roles of before an admin
        // granted Application.Read.All): drop it, so that the next read gets a new one instead
        // of the same refusal until it expires.
        ctx.tokens.invalidate(&reader, Resource::Graph, &token);
    }
    read_reply(app, &reader.name, &url, &resp, details, Utc::now())
}

/// What the check makes of Graph's reply: an error reply mapped to its reason, or the
/// registration read (as of `now`) with the agent's own credential marked. Also the entry point
/// of the fuzz target (`fuzz/fuzz_targets/graph_response.rs`).
#[doc(hidden)]
pub fn read_reply(
    app: &App,
    reader: &str,
    url: &str,
    resp: &BoundedResponse,
    mut details: GraphDetails,
    now: DateTime<Utc>,
) -> Outcome {
    details.http_status = Some(resp.status);
    if resp.status != 200 {
        return error_reply(app, reader, url, resp, details);
    }
    match read_registration(&app.client_id, &resp.body, now) {
        Ok(mut reg) => {
            mark_in_use(&app.credential, &mut reg);
            details.registration = Some(reg.registration);
            Outcome::success(Details::Graph(details))
        }
        Err(m) => failed(
            GraphReason::InvalidResponse,
            format!("{url}: HTTP 200 but {m} (request-id {})", request_id(resp)),
            details,
        ),
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
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
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
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT)
        .collect()
}

fn request_id(resp: &BoundedResponse) -> String {
    resp.headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .map(clean)
        .unwrap_or_else(|| "none".into())
}

/// Maps a non-200 reply to a reason; the code, message and ids go to the log only.
fn error_reply(
    app: &App,
    reader: &str,
    url: &str,
    resp: &BoundedResponse,
    details: GraphDetails,
) -> Outcome {
    let status = resp.status;
    let body: Option<GraphError> = serde_json::from_slice::<GraphErrorBody>(&resp.body)
        .ok()
        .map(|b| b.error);
    let mut trace_id = None;
    let mut correlation_id = None;
    let what = match &body {
        Some(e) => {
            let inner = e.inner_error.as_ref();
            trace_id = inner
                .and_then(|i| i.request_id.as_deref())
                .map(clean)
                .or_else(|| Some(request_id(resp)));
            correlation_id = inner
                .and_then(|i| i.client_request_id.as_deref())
                .map(clean);
            format!(
                "{}: {} (request-id {}, client-request-id {}, date {})",
                clean(&e.code),
                clean(e.message.as_deref().unwrap_or("")),
                trace_id.as_deref().unwrap_or("none"),
                correlation_id.as_deref().unwrap_or("none"),
                inner
                    .and_then(|i| i.date.as_deref())
                    .map(clean)
                    .unwrap_or_else(|| "none".into()),
            )
        }
        None => {
            let n = resp.body.len().min(120);
            format!(
                "not Graph's error JSON (body starts {:?}, request-id {})",
                clean(&String::from_utf8_lossy(&resp.body[..n])),
                request_id(resp)
            )
        }
    };
    let mut retry_after = http_client::retry_after(&resp.headers);
    // A 403 or 404 counts as Graph's verdict only in Graph's own error shape; the same status
    // from something else on the way (a proxy, a wrong graph_url) is an HTTP error.
    let (reason, advice) = match (status, &body) {
        (403, Some(_)) => (
            GraphReason::PermissionMissing,
            format!("; grant the application permission Application.Read.All (with admin consent) to app {reader:?}, or set graph_reader to an app that has it"),
        ),
        (404, Some(_)) => (
            GraphReason::AppNotFound,
            format!("; no app registration with client ID {} in tenant {} (deleted, or the reader is in another tenant)", app.client_id, app.tenant),
        ),
        (429, _) => (GraphReason::Throttled, String::new()),
        // Graph also throttles with a 503 and Retry-After; a 503 without one is an outage.
        (503, _) if retry_after.is_some() => (GraphReason::Throttled, String::new()),
        _ => (GraphReason::HttpError, String::new()),
    };
    if status == 429 && retry_after.is_none() {
        retry_after = Some(DEFAULT_THROTTLE_WAIT);
    }
    let mut message = format!("{url}: HTTP {status}: {what}{advice}");
    if let Some(w) = retry_after {
        message += &format!("; next try in {}s at the earliest", w.as_secs());
    }
    let mut o = failed(reason, message, details);
    if let Some(f) = o.failure.as_mut() {
        f.trace_id = trace_id;
        f.correlation_id = correlation_id;
    }
    o.retry_after = retry_after;
    o
}

/// The application object, as far as the check reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Application {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    password_credentials: Option<Vec<PasswordCredential>>,
    #[serde(default)]
    key_credentials: Option<Vec<KeyCredential>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordCredential {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    start_date_time: Option<String>,
    #[serde(default)]
    end_date_time: Option<String>,
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyCredential {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    start_date_time: Option<String>,
    #[serde(default)]
    end_date_time: Option<String>,
    #[serde(default)]
    custom_key_identifier: Option<String>,
    #[serde(default)]
    usage: Option<String>,
}

/// A registration as read, with what the in-use match needs (not part of the report).
#[derive(Debug)]
struct Parsed {
    registration: Registration,
    /// Per credential, in the same order: the secret's hint or the certificate's thumbprint.
    matchers: Vec<Matcher>,
}

#[derive(Debug)]
enum Matcher {
    Hint(Option<String>),
    /// `None` when the certificate is not for client authentication (usage other than Verify)
    /// or its `customKeyIdentifier` is not a SHA-1 thumbprint.
    Thumbprint(Option<[u8; 20]>),
}

/// ISO 8601 from Graph: `2026-01-01T00:00:00Z`, with or without fractional seconds; a time
/// without an offset is UTC (Graph's DateTimeOffset values always are).
fn parse_time(field: &str, s: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| Some(t.and_utc()))
        .map_err(|_| format!("{field} {:?} is not an ISO 8601 time", clean(s)))
}

/// A certificate thumbprint as Graph's `customKeyIdentifier` may hold it: base64 of the 20 SHA-1
/// bytes (what Graph's JSON carries for an uploaded certificate), 40 hex digits (what the portal
/// and the Azure CLI show), or base64 of those 40 hex digits (what some upload scripts set).
pub fn thumbprint_from_graph(s: &str) -> Option<[u8; 20]> {
    fn from_hex(h: &str) -> Option<[u8; 20]> {
        let h: Vec<u8> = h
            .bytes()
            .filter(|b| !matches!(b, b':' | b' ' | b'-'))
            .collect();
        if h.len() != 40 || !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in h.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(out)
    }
    let s = s.trim();
    if let Some(t) = from_hex(s) {
        return Some(t);
    }
    let bytes = STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
    match bytes.len() {
        20 => bytes.try_into().ok(),
        40 => from_hex(std::str::from_utf8(&bytes).ok()?),
        _ => None,
    }
}

/// Reads the application object; `now` is the time of the run, which decides which credentials
/// have expired.
fn read_registration(client_id: &str, body: &[u8], now: DateTime<Utc>) -> Result<Parsed, String> {
    let a: Application = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not an application object: {e}"))?;
    // The appId proves the reply is about the app asked for (not another object behind a wrong
    // graph_url or a proxy); $select asks for it, so a reply without it is not trusted.
    let Some(got) = &a.app_id else {
        return Err(format!("the reply has no appId (expected {client_id})"));
    };
    if !got.eq_ignore_ascii_case(client_id) {
        return Err(format!(
            "the reply is about appId {:?}, not {client_id}",
            clean(got)
        ));
    }
    let mut credentials = Vec::new();
    let mut matchers = Vec::new();
    let mut seen = HashSet::new();
    let mut key_id = |kind: CredentialType, k: Option<String>| -> Result<String, String> {
        let k = k.unwrap_or_default();
        // keyId keys the series: it must be present, unique and a plausible label value.
        if k.is_empty() || k.len() > 128 || k.chars().any(char::is_control) {
            return Err(format!(
                "a {} credential has no usable keyId",
                kind.as_str()
            ));
        }
        if !seen.insert((kind, k.clone())) {
            return Err(format!(
                "keyId {k} appears twice among the {} credentials",
                kind.as_str()
            ));
        }
        Ok(k)
    };
    for p in a.password_credentials.unwrap_or_default() {
        let kind = CredentialType::Password;
        credentials.push(CredentialInfo {
            key_id: key_id(kind, p.key_id)?,
            kind,
            display_name: p.display_name,
            start: parse_time("startDateTime", p.start_date_time.as_deref())?,
            end: parse_time("endDateTime", p.end_date_time.as_deref())?,
            in_use: false,
        });
        matchers.push(Matcher::Hint(p.hint));
    }
    for c in a.key_credentials.unwrap_or_default() {
        let kind = CredentialType::Certificate;
        credentials.push(CredentialInfo {
            key_id: key_id(kind, c.key_id)?,
            kind,
            display_name: c.display_name,
            start: parse_time("startDateTime", c.start_date_time.as_deref())?,
            end: parse_time("endDateTime", c.end_date_time.as_deref())?,
            in_use: false,
        });
        // A certificate registered for signing (usage Sign) can share the thumbprint of the one
        // that verifies client assertions; only the Verify one is what the agent signs in with.
        let verify = c
            .usage
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case("Verify"));
        let thumb = c
            .custom_key_identifier
            .as_deref()
            .filter(|_| verify)
            .and_then(thumbprint_from_graph);
        matchers.push(Matcher::Thumbprint(thumb));
    }
    let earliest_expiry = credentials.iter().filter_map(|c| c.end).min();
    let next_expiry = credentials
        .iter()
        .filter_map(|c| c.end)
        .filter(|&end| end > now)
        .min();
    Ok(Parsed {
        registration: Registration {
            object_id: a.id,
            credentials,
            earliest_expiry,
            next_expiry,
            in_use_matches: 0,
            hint_ambiguous: false,
        },
        matchers,
    })
}

/// Marks the credential(s) matching the agent's configured one. A secret is known to Graph only
/// by its `hint` (first three characters), so two secrets may share it: then all candidates are
/// marked and the registration says it is ambiguous, rather than guessing.
fn mark_in_use(own: &Credential, parsed: &mut Parsed) {
    let reg = &mut parsed.registration;
    for (c, m) in reg.credentials.iter_mut().zip(&parsed.matchers) {
        c.in_use = match (own, m) {
            (Credential::ClientSecret(s), Matcher::Hint(Some(h))) => *h == s.hint(),
            (Credential::Certificate(cert), Matcher::Thumbprint(Some(t))) => {
                *t == cert.thumbprint_sha1
            }
            _ => false,
        };
    }
    reg.in_use_matches = reg.credentials.iter().filter(|c| c.in_use).count();
    reg.hint_ambiguous = reg.in_use_matches > 1;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::*;
    use crate::plan::{AssertionAlgorithm, CertificateCredential, SigningKey};
    use crate::secret::Secret;

    const CLIENT: &str = "00000000-0000-4000-8000-000000000001";

    fn secret(v: &str) -> Credential {
        Credential::ClientSecret(Secret::new(v))
    }

    fn certificate(thumb: [u8; 20]) -> Credential {
        Credential::Certificate(Arc::new(CertificateCredential {
            cert_der: Vec::new(),
            key: SigningKey(jsonwebtoken::EncodingKey::from_secret(b"unused")),
            algorithm: AssertionAlgorithm::Ps256,
            thumbprint_sha1: thumb,
            thumbprint_sha256: [0; 32],
        }))
    }

    fn password(key: &str, name: Option<&str>, hint: &str, end: &str) -> serde_json::Value {
        json!({"customKeyIdentifier": null, "displayName": name, "hint": hint, "keyId": key,
               "secretText": null, "startDateTime": "2025-01-01T00:00:00Z", "endDateTime": end})
    }

    fn key(key: &str, ski: &str, usage: &str, end: &str) -> serde_json::Value {
        json!({"customKeyIdentifier": ski, "displayName": "CN=app", "keyId": key, "key": null,
               "type": "AsymmetricX509Cert", "usage": usage,
               "startDateTime": "2025-01-01T00:00:00Z", "endDateTime": end})
    }

    fn app_json(passwords: Vec<serde_json::Value>, keys: Vec<serde_json::Value>) -> Vec<u8> {
        json!({"@odata.context": "x", "id": "obj", "appId": CLIENT, "displayName": "App",
               "passwordCredentials": passwords, "keyCredentials": keys})
        .to_string()
        .into_bytes()
    }

    /// The time of the test runs: after the January 2025 start dates, before the 2026 ends.
    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn read(body: &[u8]) -> Result<Parsed, String> {
        read_registration(CLIENT, body, now())
    }

    fn analyse(own: &Credential, body: &[u8]) -> Registration {
        let mut p = read(body).expect("valid body");
        mark_in_use(own, &mut p);
        p.registration
    }

    #[test]
    fn the_secret_in_use_is_found_by_its_hint() {
        let body = app_json(
            vec![
                password("k1", Some("erp"), "Abc", "2026-03-01T00:00:00Z"),
                password("k2", Some("erp"), "Xyz", "2026-02-01T00:00:00.1234567Z"),
            ],
            vec![],
        );
        let reg = analyse(&secret("Abc~value"), &body);
        assert_eq!(reg.in_use_matches, 1);
        assert!(!reg.hint_ambiguous);
        let used = reg.in_use().expect("one in use");
        assert_eq!(used.key_id, "k1");
        assert_eq!(used.end.unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
        // Fractional seconds parse; the earliest expiry is the other secret's.
        assert_eq!(
            reg.earliest_expiry.unwrap().timestamp(),
            DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
                .unwrap()
                .timestamp()
        );
    }

    #[test]
    fn a_shared_hint_is_ambiguous_and_no_secret_is_picked() {
        let body = app_json(
            vec![
                password("k1", None, "Abc", "2026-03-01T00:00:00Z"),
                password("k2", None, "Abc", "2027-03-01T00:00:00Z"),
                password("k3", None, "Qrs", "2027-03-01T00:00:00Z"),
            ],
            vec![],
        );
        let reg = analyse(&secret("Abc~value"), &body);
        assert_eq!(reg.in_use_matches, 2);
        assert!(reg.hint_ambiguous);
        assert!(reg.in_use().is_none());
        let none = analyse(&secret("Zzz~value"), &body);
        assert_eq!(none.in_use_matches, 0);
        assert!(!none.hint_ambiguous);
    }

    #[test]
    fn a_certificate_is_found_by_its_thumbprint_in_every_spelling() {
        let thumb: [u8; 20] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let hex: String = thumb.iter().map(|b| format!("{b:02X}")).collect();
        for ski in [
            STANDARD.encode(thumb),
            hex.clone(),
            hex.to_lowercase(),
            STANDARD.encode(hex.as_bytes()),
        ] {
            assert_eq!(thumbprint_from_graph(&ski), Some(thumb), "{ski}");
            let body = app_json(
                vec![password("p1", None, "Abc", "2026-03-01T00:00:00Z")],
                vec![
                    key("c1", &ski, "Verify", "2027-01-01T00:00:00Z"),
                    key(
                        "c2",
                        &STANDARD.encode([9u8; 20]),
                        "Verify",
                        "2027-01-01T00:00:00Z",
                    ),
                ],
            );
            let reg = analyse(&certificate(thumb), &body);
            assert_eq!(reg.in_use().map(|c| c.key_id.as_str()), Some("c1"), "{ski}");
        }
        assert_eq!(thumbprint_from_graph("not a thumbprint"), None);
    }

    #[test]
    fn a_signing_twin_of_the_certificate_is_not_in_use() {
        let thumb = [7u8; 20];
        let ski = STANDARD.encode(thumb);
        let body = app_json(
            vec![],
            vec![
                key("sign", &ski, "Sign", "2027-01-01T00:00:00Z"),
                key("verify", &ski, "Verify", "2027-01-01T00:00:00Z"),
            ],
        );
        let reg = analyse(&certificate(thumb), &body);
        assert_eq!(reg.in_use().map(|c| c.key_id.as_str()), Some("verify"));
        // A secret never matches a certificate and vice versa.
        assert_eq!(analyse(&secret("Abc"), &body).in_use_matches, 0);
    }

    #[test]
    fn malformed_registrations_are_refused() {
        let dup = app_json(
            vec![
                password("k1", None, "Abc", "2026-03-01T00:00:00Z"),
                password("k1", None, "Abc", "2026-03-01T00:00:00Z"),
            ],
            vec![],
        );
        assert!(read(&dup).unwrap_err().contains("twice"));
        let no_key = app_json(vec![json!({"hint": "Abc"})], vec![]);
        assert!(read(&no_key).is_err());
        let bad_date = app_json(vec![password("k1", None, "Abc", "next tuesday")], vec![]);
        assert!(read(&bad_date).unwrap_err().contains("endDateTime"));
        let other = json!({"appId": "00000000-0000-4000-8000-000000000002"}).to_string();
        assert!(read(other.as_bytes()).unwrap_err().contains("not"));
        // The client ID matches in any letter case.
        let upper = json!({"appId": CLIENT.to_uppercase()}).to_string();
        assert!(read(upper.as_bytes()).is_ok());
        // No appId: nothing proves the reply is about this app.
        let mut anonymous: serde_json::Value = serde_json::from_slice(&app_json(
            vec![password("k1", None, "Abc", "2026-03-01T00:00:00Z")],
            vec![],
        ))
        .unwrap();
        anonymous.as_object_mut().unwrap().remove("appId");
        assert!(read(anonymous.to_string().as_bytes())
            .unwrap_err()
            .contains("no appId"));
        let null_app_id =
            json!({"id": "obj", "appId": null, "passwordCredentials": []}).to_string();
        assert!(read(null_app_id.as_bytes()).is_err());
        assert!(read(b"{\"id\":").is_err());
        // A password and a certificate may carry the same keyId: their series differ by type.
        let same = app_json(
            vec![password("k1", None, "Abc", "2026-03-01T00:00:00Z")],
            vec![key("k1", "x", "Verify", "2027-01-01T00:00:00Z")],
        );
        assert_eq!(read(&same).unwrap().registration.credentials.len(), 2);
    }

    #[test]
    fn the_next_expiry_skips_expired_credentials() {
        let body = app_json(
            vec![
                // Expired before the run: Entra keeps listing it.
                password("old", None, "Old", "2025-06-01T00:00:00Z"),
                password("new", None, "New", "2026-09-01T00:00:00Z"),
                // Expires exactly at the run: already expired.
                password("now", None, "Now", "2026-01-15T12:00:00Z"),
            ],
            vec![key("c1", "x", "Verify", "2026-04-01T00:00:00Z")],
        );
        let reg = read(&body).unwrap().registration;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(reg.earliest_expiry, Some(at("2025-06-01T00:00:00Z")));
        assert_eq!(reg.next_expiry, Some(at("2026-04-01T00:00:00Z")));

        // Every credential expired: no next expiry, the earliest one stays.
        let body = app_json(
            vec![password("old", None, "Old", "2025-06-01T00:00:00Z")],
            vec![key("c1", "x", "Verify", "2025-12-01T00:00:00Z")],
        );
        let reg = read(&body).unwrap().registration;
        assert_eq!(reg.earliest_expiry, Some(at("2025-06-01T00:00:00Z")));
        assert_eq!(reg.next_expiry, None);

        // No credentials, or none with an end date: neither.
        let reg = read(&app_json(vec![], vec![])).unwrap().registration;
        assert_eq!((reg.earliest_expiry, reg.next_expiry), (None, None));
        let no_end = app_json(vec![json!({"keyId": "k", "hint": "Abc"})], vec![]);
        let reg = read(&no_end).unwrap().registration;
        assert_eq!((reg.earliest_expiry, reg.next_expiry), (None, None));
    }

    #[test]
    fn the_graph_host_follows_the_cloud_unless_overridden() {
        let yaml = |extra: &str| {
            format!(
                "apps:\n  - name: a\n    tenant: contoso.onmicrosoft.com\n    client_id: {CLIENT}\n    client_secret: x\n{extra}"
            )
        };
        let url = |extra: &str| {
            let c = crate::config::from_yaml(&yaml(extra), "t.yml", std::path::Path::new("."))
                .expect("valid config");
            (request_url(&c.apps[0]), Resource::Graph.scope(&c.apps[0]))
        };
        let q = format!("/v1.0/applications(appId='{CLIENT}')?$select={SELECT}");
        for (cloud, host) in [
            ("global", "https://graph.microsoft.com"),
            ("usgov", "https://graph.microsoft.us"),
            ("usgov-dod", "https://dod-graph.microsoft.us"),
            ("china", "https://microsoftgraph.chinacloudapi.cn"),
        ] {
            let (u, scope) = url(&format!("    cloud: {cloud}\n"));
            assert_eq!(u, format!("{host}{q}"));
            assert_eq!(scope, format!("{host}/.default"));
        }
        let (u, scope) = url("    cloud: usgov\n    graph_url: https://127.0.0.1:8443/\n");
        assert_eq!(u, format!("https://127.0.0.1:8443{q}"));
        // The token's audience stays the cloud's Graph resource.
        assert_eq!(scope, "https://graph.microsoft.us/.default");
    }

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> BoundedResponse {
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

    #[test]
    fn error_replies_map_to_reasons_and_waits() {
        let yaml = format!("apps:\n  - name: a\n    tenant: contoso.onmicrosoft.com\n    client_id: {CLIENT}\n    client_secret: x\n");
        let config = crate::config::from_yaml(&yaml, "t.yml", std::path::Path::new(".")).unwrap();
        let app = &config.apps[0];
        let graph_error = |code: &str| {
            json!({"error": {"code": code, "message": "Insufficient privileges to complete the operation.",
                             "innerError": {"date": "2026-01-01T00:00:00", "request-id": "req-1", "client-request-id": "cli-1"}}})
            .to_string()
        };
        let run = |r: BoundedResponse| {
            let o = error_reply(
                app,
                "reader",
                "https://graph.example/x",
                &r,
                GraphDetails::default(),
            );
            let f = o.failure.expect("a failure");
            (f.reason.as_str(), o.retry_after, f)
        };

        let (reason, wait, f) = run(reply(403, &[], &graph_error("Authorization_RequestDenied")));
        assert_eq!((reason, wait), ("graph_permission_missing", None));
        assert_eq!(f.trace_id.as_deref(), Some("req-1"));
        assert_eq!(f.correlation_id.as_deref(), Some("cli-1"));
        assert!(
            f.message.contains("Authorization_RequestDenied") && f.message.contains("req-1"),
            "{}",
            f.message
        );
        assert!(f.message.contains("Application.Read.All") && f.message.contains("\"reader\""));
        assert_eq!(f.aadsts, None);

        let (reason, ..) = run(reply(404, &[], &graph_error("Request_ResourceNotFound")));
        assert_eq!(reason, "app_not_found");
        // The same statuses from something that is not Graph (a proxy, a wrong graph_url).
        assert_eq!(
            run(reply(404, &[], "{\"error\":\"not_found\"}")).0,
            "http_error"
        );
        assert_eq!(
            run(reply(403, &[], "<html>Forbidden</html>")).0,
            "http_error"
        );

        let (reason, wait, _) = run(reply(
            429,
            &[("retry-after", "30")],
            &graph_error("TooManyRequests"),
        ));
        assert_eq!((reason, wait), ("throttled", Some(Duration::from_secs(30))));
        // No Retry-After on a 429: still no tight loop.
        let (reason, wait, _) = run(reply(429, &[], ""));
        assert_eq!((reason, wait), ("throttled", Some(DEFAULT_THROTTLE_WAIT)));
        // A 503 with Retry-After is Graph throttling too, and its wait is kept.
        let (reason, wait, f) = run(reply(
            503,
            &[("retry-after", "7")],
            &graph_error("serviceNotAvailable"),
        ));
        assert_eq!((reason, wait), ("throttled", Some(Duration::from_secs(7))));
        assert!(f.message.contains("next try in 7s"), "{}", f.message);
        // Also in another body shape (a gateway's): Retry-After decides, not the body.
        let (reason, wait, _) = run(reply(503, &[("retry-after", "5")], "Service Unavailable"));
        assert_eq!((reason, wait), ("throttled", Some(Duration::from_secs(5))));
        // A 503 without Retry-After is an outage, with no default wait.
        let (reason, wait, _) = run(reply(503, &[], &graph_error("serviceNotAvailable")));
        assert_eq!((reason, wait), ("http_error", None));
        // Retry-After as an HTTP date: throttled, waiting 60 s (how http_client reads a date).
        let (reason, wait, _) = run(reply(
            503,
            &[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")],
            "",
        ));
        assert_eq!((reason, wait), ("throttled", Some(Duration::from_secs(60))));
        let (reason, wait, f) = run(reply(500, &[("request-id", "hdr-9")], "oops\u{1b}[31m"));
        assert_eq!((reason, wait), ("http_error", None));
        assert!(
            f.message.contains("hdr-9") && !f.message.contains('\u{1b}'),
            "{}",
            f.message
        );
    }
}
