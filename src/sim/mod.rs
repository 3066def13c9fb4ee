//! A Microsoft 365 simulator on loopback, for the demo and the tests: an Entra ID token endpoint
//! (HTTPS) that issues JWT-shaped tokens, a Microsoft Graph endpoint that serves app
//! registrations, mail (find a message by `internetMessageId`, delete it) and service health
//! issues, and Exchange SMTP submission with STARTTLS and XOAUTH2 that delivers what it accepts
//! into mailbox stores as scripted per sender ([`Delivery`]), each scriptable to fail.
//! The directory (tenants, apps, credentials, mailboxes) lives in [`Directory`].

pub mod fleet;
pub mod front;
mod graph;
mod graph_call;
mod graph_mail;
mod health;
mod https;
mod mailbox;
pub mod smtp;
pub mod tls;
mod token;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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
}

/// An app registration with its service principal.
#[derive(Debug, Clone)]
pub struct SimApp {
    pub client_id: String,
    pub tenant_id: String,
    pub object_id: String,
    pub display_name: String,
    pub secrets: Vec<SimSecret>,
    pub certificates: Vec<SimCertificate>,
    /// Application roles consented for Exchange Online (SMTP.SendAsApp when step 3 is done).
    pub exchange_roles: Vec<String>,
    /// Application roles consented for Microsoft Graph.
    pub graph_roles: Vec<String>,
    /// Whether `New-ServicePrincipal` was run in Exchange Online for the app (setup step 4).
    pub exchange_service_principal: bool,
}

impl SimApp {
    pub fn new(tenant_id: &str, client_id: &str, display_name: &str) -> Self {
        Self {
            client_id: client_id.into(),
            tenant_id: tenant_id.into(),
            object_id: uuid::Uuid::new_v4().to_string(),
            display_name: display_name.into(),
            secrets: Vec::new(),
            certificates: Vec::new(),
            exchange_roles: vec![ROLE_SMTP.into()],
            graph_roles: Vec::new(),
            exchange_service_principal: true,
        }
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
}

impl Default for Directory {
    fn default() -> Self {
        Self {
            record: true,
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

/// A running simulator. Dropping it stops its servers.
pub struct Simulator {
    pub directory: Arc<Mutex<Directory>>,
    /// HTTPS address of the login (token) and Graph endpoints.
    pub https_addr: SocketAddr,
    /// The SMTP submission listener without faults.
    pub smtp_addr: SocketAddr,
    smtp_shared: smtp::SmtpShared,
    /// PEM of the CA that signed the simulator's certificates (the agent's `ca_file`).
    pub ca_pem: String,
    pub ca: Arc<TestCa>,
    /// HMAC key the simulator signs its access tokens with.
    signing_key: Arc<Vec<u8>>,
    stop: CancellationToken,
}

impl Simulator {
    /// Starts the simulator's servers on 127.0.0.1 with fresh certificates and an empty directory.
    pub async fn start() -> std::io::Result<Simulator> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = Arc::new(TestCa::new("smtp-oauth-exporter simulator CA"));
        let directory = Arc::new(Mutex::new(Directory::default()));
        let signing_key: Arc<Vec<u8>> = Arc::new((0..32).map(|_| rand::random::<u8>()).collect());
        let stop = CancellationToken::new();
        let server_cert = ca.loopback_cert();
        let https_addr = https::start(
            https::HttpsState {
                directory: directory.clone(),
                signing_key: signing_key.clone(),
            },
            server_cert.server_config(),
            stop.clone(),
        )
        .await?;
        let smtp_shared = smtp::SmtpShared {
            directory: directory.clone(),
            signing_key: signing_key.clone(),
            transcripts: Default::default(),
            streamed: Default::default(),
            sessions: Default::default(),
            record: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let smtp_addr = smtp::start(
            smtp_shared.clone(),
            Arc::new(Mutex::new(smtp::Mode::new(
                None,
                server_cert.server_config(),
            ))),
            stop.clone(),
        )
        .await?;
        Ok(Simulator {
            directory,
            https_addr,
            smtp_addr,
            smtp_shared,
            ca_pem: ca.pem(),
            ca,
            signing_key,
            stop,
        })
    }

    /// Base URL to use as an app's `login_url` (and `graph_url`).
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_addr.port())
    }

    pub fn addr_summary(&self) -> String {
        format!(
            "{} (login, Graph), smtp://{}",
            self.base_url(),
            self.smtp_addr
        )
    }

    /// Starts another SMTP listener with a scripted fault; returns its address.
    pub async fn start_smtp(&self, fault: Option<SmtpFault>) -> std::io::Result<SocketAddr> {
        Ok(self.start_smtp_listener(fault).await?.addr)
    }

    /// Starts another SMTP listener with a scripted fault that can be changed, or cleared, while
    /// it runs.
    pub async fn start_smtp_listener(
        &self,
        fault: Option<SmtpFault>,
    ) -> std::io::Result<SmtpListener> {
        let mode = Arc::new(Mutex::new(smtp::Mode::new(
            None,
            self.ca.loopback_cert().server_config(),
        )));
        let listener = SmtpListener {
            addr: smtp::start(self.smtp_shared.clone(), mode.clone(), self.stop.clone()).await?,
            mode,
            ca: self.ca.clone(),
        };
        listener.set_fault(fault);
        Ok(listener)
    }

    /// A fault front for `upstream` (see [`front`]): a loopback port that misbehaves as
    /// scripted, and passes connections through to `upstream` once the fault is cleared.
    pub fn start_front(
        &self,
        upstream: SocketAddr,
        fault: Option<NetFault>,
    ) -> std::io::Result<Front> {
        front::Front::start(upstream, fault, self.ca.clone(), self.stop.clone())
    }

    /// Stops keeping what the tests search (issued tokens, assertions, SMTP transcripts), so
    /// that a long run holds bounded memory.
    pub fn stop_recording(&self) {
        self.directory.lock().expect("sim lock").record = false;
        self.smtp_shared
            .record
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// SMTP connections accepted so far.
    pub fn smtp_sessions(&self) -> u64 {
        self.smtp_shared
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the `EndlessLine` listeners managed to write before their clients hung up.
    pub fn smtp_bytes_streamed(&self) -> u64 {
        self.smtp_shared
            .streamed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What every SMTP connection so far sent, in order of connection.
    pub fn smtp_transcripts(&self) -> Vec<smtp::Transcript> {
        self.smtp_shared
            .transcripts
            .lock()
            .expect("sim lock")
            .clone()
    }

    /// `Set-CASMailbox -SmtpClientAuthenticationDisabled $true|$false|$null` for one mailbox.
    pub fn set_mailbox_smtp_auth(&self, address: &str, disabled: Option<bool>) {
        if let Some(m) = self
            .directory
            .lock()
            .expect("sim lock")
            .mailboxes
            .get_mut(&address.to_ascii_lowercase())
        {
            m.smtp_auth_disabled = disabled;
        }
    }

    /// `Set-CASMailbox -SmtpClientAuthenticationDisabled $true` (or `$null` when `false`).
    pub fn set_mailbox_smtp_auth_disabled(&self, address: &str, disabled: bool) {
        self.set_mailbox_smtp_auth(address, disabled.then_some(true));
    }

    /// `Set-TransportConfig -SmtpClientAuthenticationDisabled` for a tenant.
    pub fn set_tenant_smtp_auth_disabled(&self, tenant_id: &str, disabled: bool) {
        let mut d = self.directory.lock().expect("sim lock");
        if let Some(t) = d
            .tenants
            .iter_mut()
            .find(|t| t.id.eq_ignore_ascii_case(tenant_id))
        {
            t.smtp_auth_disabled = disabled;
        }
    }

    /// Grants (the roles) or revokes (none) the app's Exchange Online application permissions,
    /// as admin consent does; tokens issued from now on carry these roles.
    pub fn set_exchange_roles(&self, client_id: &str, roles: &[&str]) {
        if let Some(a) = self
            .directory
            .lock()
            .expect("sim lock")
            .apps
            .get_mut(client_id)
        {
            a.exchange_roles = roles.iter().map(|r| r.to_string()).collect();
        }
    }

    /// Messages accepted over SMTP so far (the newest [`MESSAGES_KEPT`]).
    pub fn messages(&self) -> Vec<SimMessage> {
        self.directory.lock().expect("sim lock").messages.clone()
    }

    /// Scripts what happens to the messages this mailbox submits from now on (`None`: delivered
    /// to the Inbox at once). Other mailboxes are not affected.
    pub fn set_delivery(&self, sender_address: &str, delivery: Option<Delivery>) {
        let mut d = self.directory.lock().expect("sim lock");
        let key = sender_address.to_ascii_lowercase();
        match delivery {
            Some(v) => d.deliveries.insert(key, v),
            None => d.deliveries.remove(&key),
        };
    }

    /// Messages currently in a mailbox's store (delivered, so visible, and not deleted), any
    /// folder, in order of delivery.
    pub fn stored_messages(&self, mailbox_address: &str) -> Vec<StoredMessage> {
        self.directory
            .lock()
            .expect("sim lock")
            .stores
            .get(&mailbox_address.to_ascii_lowercase())
            .map(|v| {
                v.iter()
                    .filter(|s| s.visible())
                    .map(|s| s.message.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many `DATA` commands the SMTP listeners have received in total (accepted or not).
    pub fn data_commands(&self) -> u64 {
        self.directory.lock().expect("sim lock").data_commands
    }

    /// The path and query, as sent, of every Graph request under `/v1.0/users/` (messages,
    /// mailFolders), in order of arrival, faults included.
    pub fn graph_mail_requests(&self) -> Vec<String> {
        self.graph_mail_calls()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// The same as [`Simulator::graph_mail_requests`], with each request's method.
    pub fn graph_mail_calls(&self) -> Vec<(String, String)> {
        self.directory
            .lock()
            .expect("sim lock")
            .graph_mail_requests
            .clone()
    }

    /// Adds a service health issue of a tenant (open, last modified now).
    pub fn add_health_issue(&self, tenant_id: &str, issue: HealthIssue) {
        let mut d = self.directory.lock().expect("sim lock");
        let now = d.now();
        d.health_issues.push(health::IssueState {
            tenant_id: tenant_id.to_ascii_lowercase(),
            issue,
            last_modified: now,
            resolved: None,
        });
    }

    /// Resolves the health issue with this id (in every tenant holding one): `isResolved`
    /// true, status `serviceRestored`, `endDateTime` now. It stays in the list, as Graph keeps
    /// resolved issues.
    pub fn resolve_health_issue(&self, id: &str) {
        let mut d = self.directory.lock().expect("sim lock");
        let now = d.now();
        for s in d.health_issues.iter_mut().filter(|s| s.issue.id == id) {
            s.issue.status = "serviceRestored".into();
            s.resolved = Some(now);
            s.last_modified = now;
        }
    }

    /// Service health requests received so far from this client ID, faults included.
    pub fn health_requests(&self, client_id: &str) -> u64 {
        self.directory
            .lock()
            .expect("sim lock")
            .health_requests
            .get(client_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn add_tenant(&self, id: &str, domains: &[&str]) {
        self.directory
            .lock()
            .expect("sim lock")
            .tenants
            .push(SimTenant {
                id: id.to_ascii_lowercase(),
                domains: domains.iter().map(|d| d.to_string()).collect(),
                smtp_auth_disabled: false,
            });
    }

    pub fn add_app(&self, app: SimApp) {
        self.directory
            .lock()
            .expect("sim lock")
            .apps
            .insert(app.client_id.clone(), app);
    }

    pub fn add_mailbox(&self, address: &str, full_access: &[&str]) {
        self.directory.lock().expect("sim lock").mailboxes.insert(
            address.to_ascii_lowercase(),
            SimMailbox {
                address: address.into(),
                full_access: full_access.iter().map(|s| s.to_string()).collect(),
                smtp_auth_disabled: None,
            },
        );
    }

    /// Scripts (or with `None` clears) a token endpoint failure for a client ID.
    pub fn set_token_fault(&self, client_id: &str, fault: Option<TokenFault>) {
        let mut d = self.directory.lock().expect("sim lock");
        match fault {
            Some(f) => d.token_faults.insert(client_id.into(), f),
            None => d.token_faults.remove(client_id),
        };
    }

    /// Makes every issued token live exactly this long.
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        self.directory.lock().expect("sim lock").token_lifetime = lifetime;
    }

    /// Sets how far Microsoft's clock runs from the host's (the agent's): tokens are issued,
    /// and assertions and bearer tokens checked, on the shifted clock.
    pub fn set_clock_offset(&self, offset: chrono::Duration) {
        self.directory.lock().expect("sim lock").clock_offset = offset;
    }

    /// Token requests received for a client ID so far.
    pub fn token_requests(&self, client_id: &str) -> u64 {
        self.directory
            .lock()
            .expect("sim lock")
            .token_requests
            .get(client_id)
            .copied()
            .unwrap_or(0)
    }

    /// When the last token requests of a client ID arrived, oldest first, on tokio's clock.
    pub fn token_request_times(&self, client_id: &str) -> Vec<tokio::time::Instant> {
        self.directory
            .lock()
            .expect("sim lock")
            .token_request_times
            .get(client_id)
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Scripts (or with `None` clears) a Graph failure for the app registration with this
    /// client ID (whoever asks about it).
    pub fn set_graph_fault(&self, client_id: &str, fault: Option<GraphFault>) {
        let mut d = self.directory.lock().expect("sim lock");
        match fault {
            Some(f) => d.graph_faults.insert(client_id.into(), f),
            None => d.graph_faults.remove(client_id),
        };
    }

    /// Graph requests received so far about the app registration with this client ID
    /// (from the app itself or from a reader app), faults included.
    pub fn graph_requests(&self, client_id: &str) -> u64 {
        self.directory
            .lock()
            .expect("sim lock")
            .graph_requests
            .get(client_id)
            .copied()
            .unwrap_or(0)
    }

    /// When the last Graph requests about this client ID's app registration arrived, oldest
    /// first, on tokio's clock.
    pub fn graph_request_times(&self, client_id: &str) -> Vec<tokio::time::Instant> {
        self.directory
            .lock()
            .expect("sim lock")
            .graph_request_times
            .get(client_id)
            .map(|t| t.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn received_assertions(&self) -> Vec<String> {
        self.directory
            .lock()
            .expect("sim lock")
            .received_assertions
            .clone()
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.directory
            .lock()
            .expect("sim lock")
            .issued_tokens
            .clone()
    }

    /// Verifies a token this simulator issued and returns its claims, or why it is unacceptable.
    pub fn verify_token(&self, token: &str) -> Result<token::IssuedClaims, String> {
        let now = self.directory.lock().expect("sim lock").now();
        token::verify(&self.signing_key, token, now)
    }
}

/// An SMTP listener of the simulator whose fault (and with it the certificate it presents) can
/// be changed while it runs: each connection takes the fault in force when it is accepted.
#[derive(Clone)]
pub struct SmtpListener {
    pub addr: SocketAddr,
    mode: Arc<Mutex<smtp::Mode>>,
    ca: Arc<TestCa>,
}

impl SmtpListener {
    /// Scripts (or with `None` clears) the listener's fault for the connections to come.
    pub fn set_fault(&self, fault: Option<SmtpFault>) {
        let cert = self
            .ca
            .cert_with(fault.as_ref().and_then(SmtpFault::cert_fault));
        *self.mode.lock().expect("sim lock") = smtp::Mode::new(fault, cert.server_config());
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

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub use smtp::{SmtpFault, SmtpStep, Transcript};
pub use token::IssuedClaims;
