//! The Graph credential check: reads the app registration and its service principal from
//! Microsoft Graph and reports every client secret and certificate of both with its dates, which
//! one the agent itself signs in with, and (opt-in) the tenant's rules for new secrets. The
//! requests are the shared Graph call's; reading the objects is `registration`'s, reading the
//! policies `policy`'s.

pub mod policy;
mod registration;

pub use registration::thumbprint_from_graph;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::graph_call::{self, CallFailure, Graph, GraphError};
use super::{Context, Details, Failure, Outcome};
use crate::http_client::BoundedResponse;
use crate::plan::{App, Target};
use crate::reasons::{GraphReason, Reason};

pub use graph_call::DEFAULT_THROTTLE_WAIT;

/// The properties the check reads of the application; `$select` keeps the reply small.
pub const SELECT: &str = "id,appId,displayName,createdDateTime,passwordCredentials,keyCredentials";

/// The properties the check reads of the service principal.
pub const SP_SELECT: &str = "id,appId,passwordCredentials,keyCredentials";

/// Which object of the app a credential is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialOrigin {
    /// The app registration (`applications`): where the portal adds secrets.
    Application,
    /// The service principal (Enterprise application, `servicePrincipals`): a secret added
    /// there signs in alike, but the app registration does not list it.
    ServicePrincipal,
}

impl CredentialOrigin {
    /// The `origin` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialOrigin::Application => "application",
            CredentialOrigin::ServicePrincipal => "service_principal",
        }
    }
}

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
    /// The object it is on: the `origin` label.
    pub origin: CredentialOrigin,
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
    /// The application object's `createdDateTime` (app management policies date their rules).
    pub created: Option<DateTime<Utc>>,
    /// Every secret and certificate of the application, secrets first, in Graph's order, then
    /// those of its service principal.
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
    /// The tenant's rules for the app's next secret (`None`: not asked,
    /// `app_management_policy` off).
    pub secret_policy: Option<policy::SecretPolicy>,
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

/// `{graph_url}/v1.0/servicePrincipals(appId='{client_id}')?$select=…`: the app's service
/// principal in the tenant, by client ID too.
pub fn service_principal_url(app: &App) -> String {
    format!(
        "{}/v1.0/servicePrincipals(appId='{}')?$select={SP_SELECT}",
        app.graph_url.as_str().trim_end_matches('/'),
        app.client_id
    )
}

fn failed(reason: impl Into<Reason>, message: impl Into<String>, details: GraphDetails) -> Outcome {
    Outcome::failure(Failure::new(reason, message), Details::Graph(details))
}

/// Runs the check for an app: a Graph token (cached) from the app or its reader, one GET of the
/// application, one of its service principal, and (opt-in) two of the policies.
pub async fn run(target: &Target, ctx: &Context, deadline: Instant) -> Outcome {
    let app = target.app();
    let reader = app.graph_reader_or_self();
    let mut details = GraphDetails {
        reader: reader.name.clone(),
        ..GraphDetails::default()
    };
    let graph = match Graph::connect(&reader, &ctx.tokens, deadline).await {
        Ok(g) => g,
        Err(e) => return error_outcome(app, &reader.name, &e, details),
    };
    let mut parsed = Vec::new();
    for (url, origin) in [
        (request_url(app), CredentialOrigin::Application),
        (
            service_principal_url(app),
            CredentialOrigin::ServicePrincipal,
        ),
    ] {
        let u = url::Url::parse(&url).expect("the Graph base URL was validated");
        let resp = match graph.get(u).await {
            Ok(r) => r,
            // No service principal in the tenant: no credential on it (the token check says
            // what that means, AADSTS7000229).
            Err(e)
                if origin == CredentialOrigin::ServicePrincipal
                    && e.status() == Some(404)
                    && e.from_graph() =>
            {
                continue
            }
            Err(e) => {
                details.http_status = e.status();
                return error_outcome(app, &reader.name, &e, details);
            }
        };
        match read_object(
            app,
            &reader.name,
            &url,
            &resp,
            &mut details,
            Utc::now(),
            origin,
        ) {
            Ok(p) => parsed.push((url, resp, p)),
            Err(o) => return *o,
        }
    }
    let mut objects = parsed.into_iter();
    let (_, _, mut registration) = objects.next().expect("the application was read");
    for (url, resp, sp) in objects {
        if let Err(m) = registration.merge(sp, Utc::now()) {
            return invalid(&url, &resp, &m, details);
        }
    }
    registration::mark_in_use(&app.credential, &mut registration);
    details.registration = Some(registration.registration);
    if app.app_management_policy {
        let reg = details.registration.as_ref();
        let created = reg.and_then(|r| r.created);
        let object_id = reg.and_then(|r| r.object_id.clone());
        details.secret_policy = Some(read_policy(&graph, object_id, created).await);
    }
    Outcome::success(Details::Graph(details))
}

/// Reads the tenant's default app management policy and the app's own; a refusal (403) or
/// any other failure leaves the policy unknown, never fails the check.
async fn read_policy(
    graph: &Graph<'_>,
    object_id: Option<String>,
    created: Option<DateTime<Utc>>,
) -> policy::SecretPolicy {
    let unknown = |why: String| policy::SecretPolicy {
        known: None,
        unknown: Some(why),
    };
    let Some(object_id) = object_id else {
        return unknown("the application object has no id".into());
    };
    let tenant = graph.url("v1.0", &["policies", "defaultAppManagementPolicy"]);
    let own = graph.url(
        "v1.0",
        &["applications", &object_id, "appManagementPolicies"],
    );
    let why = |e: GraphError| match e.status() {
        Some(403) => format!(
            "Graph refused the policy read (403): grant Policy.Read.All to app {:?} to know them",
            graph.reader().name
        ),
        _ => e.message,
    };
    let tenant = match graph.get(tenant).await {
        Ok(r) => r,
        Err(e) => return unknown(why(e)),
    };
    let own = match graph.get(own).await {
        Ok(r) => r,
        Err(e) => return unknown(why(e)),
    };
    match policy::read(&tenant.body, &own.body, created) {
        Ok(rules) => policy::SecretPolicy {
            known: Some(rules),
            unknown: None,
        },
        Err(m) => unknown(m),
    }
}

/// The check's reason for a failed Graph call: a 403 or 404 in Graph's own shape is Graph's
/// answer about the reader's permission or the app; the rest is throttling, or an HTTP error.
fn reason_of(e: &GraphError) -> Reason {
    if let Some(r) = e.common_reason() {
        return r;
    }
    match e.failure {
        CallFailure::Token(_) => GraphReason::TokenUnavailable.into(),
        CallFailure::TooLarge => GraphReason::InvalidResponse.into(),
        CallFailure::Status(403) if e.from_graph() => GraphReason::PermissionMissing.into(),
        CallFailure::Status(404) if e.from_graph() => GraphReason::AppNotFound.into(),
        _ if e.throttled() => GraphReason::Throttled.into(),
        _ => GraphReason::HttpError.into(),
    }
}

fn error_outcome(app: &App, reader: &str, e: &GraphError, details: GraphDetails) -> Outcome {
    let reason = reason_of(e);
    let mut f = e.failure(reason);
    if reason == Reason::Graph(GraphReason::PermissionMissing) {
        f.message += &format!("; grant the application permission Application.Read.All (with admin consent) to app {reader:?}, or set graph_reader to an app that has it");
    } else if reason == Reason::Graph(GraphReason::AppNotFound) {
        f.message += &format!("; no app registration with client ID {} in tenant {} (deleted, or the reader is in another tenant)", app.client_id, app.tenant);
    }
    Outcome {
        failure: Some(f),
        details: Details::Graph(details),
        retry_after: e.retry_after,
    }
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
    match read_object(
        app,
        reader,
        url,
        resp,
        &mut details,
        now,
        CredentialOrigin::Application,
    ) {
        Ok(mut parsed) => {
            registration::mark_in_use(&app.credential, &mut parsed);
            details.registration = Some(parsed.registration);
            Outcome::success(Details::Graph(details))
        }
        Err(o) => *o,
    }
}

/// One object's reply (the application, or its service principal) read, or the failed outcome.
fn read_object(
    app: &App,
    reader: &str,
    url: &str,
    resp: &BoundedResponse,
    details: &mut GraphDetails,
    now: DateTime<Utc>,
    origin: CredentialOrigin,
) -> Result<registration::Parsed, Box<Outcome>> {
    details.http_status = Some(resp.status);
    if !(200..300).contains(&resp.status) {
        let e = graph_call::error_reply(&format!("GET {url}"), resp);
        return Err(Box::new(error_outcome(
            app,
            reader,
            &e,
            std::mem::take(details),
        )));
    }
    registration::read_registration(&app.client_id, &resp.body, now, origin)
        .map_err(|m| Box::new(invalid(url, resp, &m, std::mem::take(details))))
}

/// An app's credentials as the inventory reads them: its service principal's reply and, when the
/// registration is in the tenant, the application's (`None`: registered elsewhere, a
/// multi-tenant app). No in-use match: the agent does not sign in with them.
pub(crate) fn read_credentials(
    client_id: &str,
    application: Option<&[u8]>,
    service_principal: &[u8],
    now: DateTime<Utc>,
) -> Result<Registration, String> {
    let sp = registration::read_registration(
        client_id,
        service_principal,
        now,
        CredentialOrigin::ServicePrincipal,
    )?;
    let parsed = match application {
        Some(body) => {
            let mut app = registration::read_registration(
                client_id,
                body,
                now,
                CredentialOrigin::Application,
            )?;
            app.merge(sp, now)?;
            app
        }
        None => sp,
    };
    Ok(parsed.registration)
}

fn invalid(url: &str, resp: &BoundedResponse, m: &str, details: GraphDetails) -> Outcome {
    failed(
        GraphReason::InvalidResponse,
        format!(
            "{url}: HTTP {} but {m} (request-id {})",
            resp.status,
            graph_call::request_id(resp).unwrap_or_else(|| "none".into())
        ),
        details,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::auth::Resource;
    use crate::checks::graph_call::test_reply as reply;

    const CLIENT: &str = "00000000-0000-4000-8000-000000000001";

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
            let o = read_reply(
                app,
                "reader",
                "https://graph.example/x",
                &r,
                GraphDetails::default(),
                Utc::now(),
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
