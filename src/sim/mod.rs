//! A Microsoft 365 simulator on loopback, for the demo and the tests: an Entra ID token endpoint
//! (HTTPS) that issues JWT-shaped tokens, a Microsoft Graph endpoint that serves app
//! registrations, mail (find a message by `internetMessageId`, delete it) and service health
//! issues, and Exchange SMTP submission with STARTTLS and XOAUTH2 that delivers what it accepts
//! into mailbox stores as scripted per sender ([`Delivery`]), each scriptable to fail.
//! The directory (tenants, apps, credentials, mailboxes) lives in [`Directory`].

mod activity;
mod discovery;
pub mod fleet;
pub mod front;
mod graph;
mod graph_call;
mod graph_mail;
mod health;
mod https;
mod mailbox;
mod policy;
mod reply;
mod simulator;
pub mod smtp;
mod smtp_fault;
pub mod tls;
mod token;
mod trace;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use front::{Front, HttpBody, HttpReply, NetFault};
pub use health::HealthIssue;
pub use mailbox::{Delivery, StoredMessage, FOLDER_INBOX, FOLDER_JUNK};
pub use tls::{app_certificate, AppCertificate, CertFault, TestCa};

/// At most this many accepted messages are kept for [`Simulator::messages`] (the newest).
pub const MESSAGES_KEPT: usize = 10_000;

/// The Exchange Online role that SMTP AUTH needs.
pub const ROLE_SMTP: &str = "SMTP.SendAsApp";
/// The Graph role that reads app registrations.
pub const ROLE_APPLICATION_READ_ALL: &str = "Application.Read.All";
/// The Graph role that reads and deletes mail in every mailbox (or, with RBAC for
/// Applications, in a scoped set).
pub const ROLE_MAIL_READ_WRITE: &str = "Mail.ReadWrite";
/// The Graph role that reads mail.
pub const ROLE_MAIL_READ: &str = "Mail.Read";
/// The Graph role that reads Microsoft 365 service health.
pub const ROLE_SERVICE_HEALTH_READ_ALL: &str = "ServiceHealth.Read.All";
/// The Graph role that reads the tenant's policies (app management policies among them).
pub const ROLE_POLICY_READ_ALL: &str = "Policy.Read.All";
/// The Graph role that reads the sign-in and audit reports (credential sign-in activity).
pub const ROLE_AUDIT_LOG_READ_ALL: &str = "AuditLog.Read.All";
/// The Graph role that reads Exchange Online's message trace.
pub const ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL: &str = "ExchangeMessageTrace.Read.All";

/// A client secret of an app registration.
#[derive(Debug, Clone)]
pub struct SimSecret {
    pub key_id: String,
    pub display_name: Option<String>,
    pub value: String,
    /// What Graph shows of the value: its first three characters.
    pub hint: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Added to the service principal (Enterprise application), not the app registration:
    /// it signs in alike, and only `servicePrincipals(appId=…)` lists it.
    pub on_service_principal: bool,
}

/// A certificate credential of an app registration.
#[derive(Debug, Clone)]
pub struct SimCertificate {
    pub key_id: String,
    pub display_name: Option<String>,
    pub der: Vec<u8>,
    /// Graph's `customKeyIdentifier` as served; `None` serves what Graph does: the base64 of the
    /// certificate's SHA-1 thumbprint. Tests set other spellings (such as hex) here.
    pub custom_key_identifier: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Added to the service principal, not the app registration.
    pub on_service_principal: bool,
}

/// An app management policy's secret restrictions (Graph's `appManagementConfiguration`, the
/// `passwordCredentials` part): the tenant's default policy or one assigned to an app.
#[derive(Debug, Clone, Default)]
pub struct SimAppPolicy {
    /// `isEnabled`.
    pub enabled: bool,
    /// A `passwordAddition` restriction: no new client secrets.
    pub password_addition_blocked: bool,
    /// A `passwordLifetime` restriction: new secrets live at most this long (ISO 8601, such as
    /// `P90D`).
    pub password_max_lifetime: Option<String>,
    /// `restrictForAppsCreatedAfterDateTime` of both: apps created before are exempt.
    pub restrict_for_apps_created_after: Option<DateTime<Utc>>,
}

/// An app registration with its service principal.
#[derive(Debug, Clone)]
pub struct SimApp {
    pub client_id: String,
    pub tenant_id: String,
    pub object_id: String,
    /// The object ID of its service principal (the Enterprise application).
    pub sp_object_id: String,
    pub display_name: String,
    pub secrets: Vec<SimSecret>,
    pub certificates: Vec<SimCertificate>,
    /// Application roles consented for Exchange Online (SMTP.SendAsApp when step 3 is done).
    pub exchange_roles: Vec<String>,
    /// Application roles consented for Microsoft Graph.
    pub graph_roles: Vec<String>,
    /// Whether `New-ServicePrincipal` was run in Exchange Online for the app (setup step 4).
    pub exchange_service_principal: bool,
    /// Whether the app has a service principal (Enterprise application) in Entra ID: without
    /// one Entra ID refuses its token requests (AADSTS7000229) since 2026-03-31.
    pub entra_service_principal: bool,
    /// RBAC for Applications: the management scope (lowercase mailbox addresses) of the app's
    /// `Application SMTP.SendAsApp` role assignment; `None`: no assignment. Exchange uses it
    /// for a token without the `SMTP.SendAsApp` role; a token with the role is judged by
    /// FullAccess instead (`shared/reference/microsoft-365.md`, "Two authorization models").
    pub smtp_role_scope: Option<HashSet<String>>,
    /// The application object's `createdDateTime` (app management policies restrict apps
    /// created after a date).
    pub created: DateTime<Utc>,
    /// An app management policy assigned to the app (it overrides the tenant default for the
    /// restrictions it defines).
    pub policy: Option<SimAppPolicy>,
}

impl SimApp {
    pub fn new(tenant_id: &str, client_id: &str, display_name: &str) -> Self {
        Self {
            client_id: client_id.into(),
            tenant_id: tenant_id.into(),
            object_id: uuid::Uuid::new_v4().to_string(),
            sp_object_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.into(),
            secrets: Vec::new(),
            certificates: Vec::new(),
            exchange_roles: vec![ROLE_SMTP.into()],
            graph_roles: Vec::new(),
            exchange_service_principal: true,
            entra_service_principal: true,
            smtp_role_scope: None,
            created: DateTime::from_timestamp(1_700_000_000, 0).expect("a valid time"),
            policy: None,
        }
    }

    /// RBAC for Applications as Microsoft documents it: no `SMTP.SendAsApp` permission (tokens
    /// carry no role), and a role assignment "Application SMTP.SendAsApp" whose management
    /// scope holds these mailboxes.
    pub fn with_rbac_scope(mut self, mailboxes: &[&str]) -> Self {
        self.exchange_roles.clear();
        self.smtp_role_scope = Some(mailboxes.iter().map(|m| m.to_ascii_lowercase()).collect());
        self
    }

    /// A client secret added to the service principal rather than the app registration.
    pub fn with_service_principal_secret(
        mut self,
        value: &str,
        display_name: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        self = self.with_secret(value, display_name, start, end);
        if let Some(s) = self.secrets.last_mut() {
            s.on_service_principal = true;
        }
        self
    }

    /// An app management policy assigned to the app.
    pub fn with_policy(mut self, policy: SimAppPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The app registration has no service principal (Enterprise application) in its tenant.
    pub fn without_entra_service_principal(mut self) -> Self {
        self.entra_service_principal = false;
        self
    }

    /// Admin consent for `SMTP.SendAsApp` was never granted (setup step 3 missing).
    pub fn without_consent(mut self) -> Self {
        self.exchange_roles.clear();
        self
    }

    /// `New-ServicePrincipal` was never run in Exchange Online (setup step 4 missing).
    pub fn without_exchange_service_principal(mut self) -> Self {
        self.exchange_service_principal = false;
        self
    }

    /// Adds a secret valid from `start` to `end`.
    pub fn with_secret(
        mut self,
        value: &str,
        display_name: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        self.secrets.push(SimSecret {
            key_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.map(str::to_string),
            value: value.into(),
            hint: value.chars().take(3).collect(),
            start,
            end,
            on_service_principal: false,
        });
        self
    }

    pub fn with_certificate(
        mut self,
        der: Vec<u8>,
        display_name: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        self.certificates.push(SimCertificate {
            key_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.map(str::to_string),
            der,
            custom_key_identifier: None,
            start,
            end,
            on_service_principal: false,
        });
        self
    }

    /// Adds a consented Microsoft Graph application role (such as `Application.Read.All`).
    pub fn with_graph_role(mut self, role: &str) -> Self {
        self.graph_roles.push(role.into());
        self
    }
}

/// A tenant: its ID and verified domains.
#[derive(Debug, Clone)]
pub struct SimTenant {
    pub id: String,
    pub domains: Vec<String>,
    /// `Set-TransportConfig -SmtpClientAuthenticationDisabled $true`.
    pub smtp_auth_disabled: bool,
    /// The tenant's default app management policy (`None`: as Entra ships it, disabled).
    pub default_policy: Option<SimAppPolicy>,
}

/// A mailbox and who may send as it.
#[derive(Debug, Clone)]
pub struct SimMailbox {
    pub address: String,
    /// Client IDs whose service principal has FullAccess (setup step 4).
    pub full_access: HashSet<String>,
    /// `Set-CASMailbox -SmtpClientAuthenticationDisabled`: `Some(true)` off for this mailbox,
    /// `Some(false)` on whatever the tenant says, `None` follows the tenant.
    pub smtp_auth_disabled: Option<bool>,
}

/// A message the simulated Exchange accepted (`DATA`).
#[derive(Debug, Clone)]
pub struct SimMessage {
    /// The mailbox that authenticated.
    pub sender: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// The message as received, dot-stuffing removed.
    pub data: String,
    /// The queue ID the simulator answered with.
    pub queue_id: String,
}

/// A scripted failure of the token endpoint for one client ID.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenFault {
    /// AADSTS7000222 whatever the secret.
    ExpiredSecret,
    /// AADSTS7000215 whatever the secret.
    InvalidSecret,
    /// AADSTS700016.
    UnknownApp,
    /// AADSTS90002.
    UnknownTenant,
    /// HTTP 500 with an HTML body.
    ServerError,
    /// Answer only after this long.
    Slow(Duration),
    /// HTTP 429 with `Retry-After`.
    TooManyRequests { retry_after_seconds: u64 },
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// An AADSTS error in Microsoft's shape: this HTTP status, OAuth `error` and AADSTS code
    /// (any code, in Microsoft's table or not).
    Aadsts {
        status: u16,
        error: String,
        code: u32,
    },
    /// HTTP 401 AADSTS7000215 whose description quotes the credential received: the client
    /// secret, or the client assertion (a broken proxy or a debugging gateway might).
    EchoCredential,
    /// HTTP 400 with a page that is not JSON and quotes the form received from the credential
    /// on, the credential starting at byte 100 (across the first 120 bytes a client may log).
    EchoForm,
    /// HTTP 401 AADSTS7000215 whose description quotes the credential received base64-encoded
    /// (standard, then URL-safe) and inside `Basic base64(client_id:credential)`, as a gateway
    /// that logs an `Authorization` header might.
    EchoBase64,
}

/// How many request times (token, Graph) the simulator keeps per app.
pub const GRAPH_TIMES_KEPT: usize = 64;

/// A scripted failure of the Graph endpoint for the app registration it is asked about.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphFault {
    /// HTTP 403 `Authorization_RequestDenied`, whatever the token's roles.
    Forbidden,
    /// HTTP 404 `Request_ResourceNotFound`, as for a deleted app registration.
    NotFound,
    /// HTTP 429 with `Retry-After`.
    TooManyRequests { retry_after_seconds: u64 },
    /// HTTP 503 with `Retry-After`.
    Unavailable { retry_after_seconds: u64 },
    /// HTTP 500 `generalException`.
    ServerError,
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// Answer only after this long.
    Slow(Duration),
    /// HTTP 401 `InvalidAuthenticationToken` whose message quotes the bearer token received.
    EchoToken,
}

/// Everything the simulator knows and records.
pub struct Directory {
    /// Whether issued tokens, assertions and transcripts are kept (the tests search them; a
    /// long benchmark run must not grow without bound).
    pub record: bool,
    pub tenants: Vec<SimTenant>,
    pub apps: HashMap<String, SimApp>,
    pub mailboxes: HashMap<String, SimMailbox>,
    pub token_faults: HashMap<String, TokenFault>,
    /// Fixed token lifetime; `None` means random 60 to 90 minutes, as Entra ID does.
    pub token_lifetime: Option<Duration>,
    /// How far Microsoft's clock (the simulator's) is from the host's, the agent's: the times
    /// in issued tokens and the checks of assertions and bearer tokens use it.
    pub clock_offset: chrono::Duration,
    /// Token requests received per client ID.
    pub token_requests: HashMap<String, u64>,
    /// When the last [`GRAPH_TIMES_KEPT`] of them arrived, on tokio's clock.
    pub token_request_times: HashMap<String, VecDeque<tokio::time::Instant>>,
    /// Token requests received by resource (`exchange`, `graph`, `other`).
    pub token_requests_by_resource: HashMap<&'static str, u64>,
    /// Scripted Graph failures, by the client ID (appId) of the app registration asked about.
    pub graph_faults: HashMap<String, GraphFault>,
    /// Graph requests received, by the client ID (appId) of the app registration asked about.
    pub graph_requests: HashMap<String, u64>,
    /// When the last [`GRAPH_TIMES_KEPT`] of them arrived, on tokio's clock (so a test with a
    /// paused clock sees its virtual time).
    pub graph_request_times: HashMap<String, VecDeque<tokio::time::Instant>>,
    /// Every access token issued (tests assert none leaks).
    pub issued_tokens: Vec<String>,
    /// `jti` values of accepted client assertions (replays are refused).
    pub seen_jti: HashSet<String>,
    /// Every client assertion received (tests assert none leaks).
    pub received_assertions: Vec<String>,
    /// Every message accepted over SMTP.
    pub messages: Vec<SimMessage>,
    /// What happens to the mail a mailbox submits, by lowercase sender address (absent: Inbox
    /// at once).
    pub deliveries: HashMap<String, Delivery>,
    /// Delivered messages, by lowercase recipient address.
    stores: HashMap<String, Vec<mailbox::Stored>>,
    /// `DATA` commands received over SMTP (accepted or not).
    pub data_commands: u64,
    /// Method and path-and-query of every Graph request under `/v1.0/users/` (kept while
    /// `record`).
    pub graph_mail_requests: Vec<(String, String)>,
    /// Service health issues, of every tenant.
    health_issues: Vec<health::IssueState>,
    /// Service health requests received, by the client ID of the caller (`""`: no valid token).
    pub health_requests: HashMap<String, u64>,
    /// The last sign-in of each credential, by key ID: recorded when the token endpoint issues a
    /// token with it, or scripted (an application signing in with a secret the agent does not
    /// use).
    pub sign_ins: HashMap<String, DateTime<Utc>>,
    /// Tenants without the Entra ID P1 licence the sign-in activity report needs.
    pub activity_unlicensed: HashSet<String>,
    /// Requests to the credential sign-in activity report received.
    pub activity_requests: u64,
    /// Message trace rows, oldest first.
    trace_rows: VecDeque<trace::Row>,
    /// Message trace requests accepted per tenant in the last 5 minutes (its throttling).
    trace_limit: HashMap<String, VecDeque<tokio::time::Instant>>,
    /// The most rows a message trace page holds, whatever `$top` asks (Graph's default 1,000).
    pub trace_page_cap: usize,
    /// Tenants without the service principal of Microsoft's message trace app.
    pub trace_unprincipled: HashSet<String>,
    /// Message trace requests received, and those answered 429.
    pub trace_calls: u64,
    pub trace_throttled: u64,
    /// The inventory's reads received, and the most assignments a page of them holds.
    pub discovery_requests: u64,
    pub discovery_page_cap: usize,
    /// SMTP connections by listener: open now, and the most open at once (Exchange allows a
    /// mailbox 3 concurrent connections).
    pub smtp_connections: HashMap<std::net::SocketAddr, SmtpConnections>,
}

/// The SMTP connections of one listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct SmtpConnections {
    pub accepted: u64,
    pub open: usize,
    pub peak: usize,
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            record: true,
            smtp_connections: HashMap::new(),
            tenants: Vec::new(),
            apps: HashMap::new(),
            mailboxes: HashMap::new(),
            token_faults: HashMap::new(),
            token_lifetime: None,
            clock_offset: chrono::Duration::zero(),
            token_requests: HashMap::new(),
            token_request_times: HashMap::new(),
            token_requests_by_resource: HashMap::new(),
            graph_faults: HashMap::new(),
            graph_requests: HashMap::new(),
            graph_request_times: HashMap::new(),
            issued_tokens: Vec::new(),
            seen_jti: HashSet::new(),
            received_assertions: Vec::new(),
            messages: Vec::new(),
            deliveries: HashMap::new(),
            stores: HashMap::new(),
            data_commands: 0,
            graph_mail_requests: Vec::new(),
            health_issues: Vec::new(),
            health_requests: HashMap::new(),
            sign_ins: HashMap::new(),
            activity_unlicensed: HashSet::new(),
            activity_requests: 0,
            trace_rows: VecDeque::new(),
            trace_limit: HashMap::new(),
            trace_page_cap: 1000,
            trace_unprincipled: HashSet::new(),
            trace_calls: 0,
            trace_throttled: 0,
            discovery_requests: 0,
            discovery_page_cap: 999,
        }
    }
}

impl Directory {
    /// Now, on Microsoft's clock (see `clock_offset`).
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    pub fn tenant(&self, id_or_domain: &str) -> Option<&SimTenant> {
        let k = id_or_domain.to_ascii_lowercase();
        self.tenants
            .iter()
            .find(|t| t.id == k || t.domains.iter().any(|d| d.eq_ignore_ascii_case(&k)))
    }
}

/// Binds 127.0.0.1:0 and hands every connection to `serve` in its own task, until `stop`.
/// No session outlives five minutes, whatever a client does.
async fn serve_loopback<F, Fut>(stop: CancellationToken, serve: F) -> std::io::Result<SocketAddr>
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    serve_listener(listener, stop, serve)
}

/// [`serve_loopback`] on a listener of the caller's.
fn serve_listener<F, Fut>(
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    serve: F,
) -> std::io::Result<SocketAddr>
where
    F: Fn(tokio::net::TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Out of file descriptors and the like: do not spin.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let session = serve(stream, addr);
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = session => {}
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(300)) => {}
                }
            });
        }
    });
    Ok(addr)
}

pub use simulator::{Simulator, SmtpListener};
pub use smtp::Transcript;
pub use smtp_fault::{SmtpFault, SmtpStep};
pub use token::IssuedClaims;
pub use trace::TraceEntry;
