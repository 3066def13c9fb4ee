//! The running simulator: its servers started on loopback with fresh certificates (HTTPS for
//! login and Graph, SMTP listeners with and without scripted faults), and what the demo and the
//! tests do with it (add apps and mailboxes, script faults, read what was sent and asked).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    front, health, https, reply, smtp, token, Delivery, Directory, Front, GraphFault, HealthIssue,
    NetFault, SimApp, SimAppPolicy, SimMailbox, SimMessage, SimTenant, SmtpFault, StoredMessage,
    TestCa, TokenFault,
};

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
            reply::HttpsState {
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

    /// The most SMTP connections the listener at `listener` held open at once.
    pub fn smtp_peak_connections(&self, listener: SocketAddr) -> usize {
        self.directory
            .lock()
            .expect("sim lock")
            .smtp_connections
            .get(&listener)
            .map_or(0, |c| c.peak)
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

    /// The key ID of an app's secret or certificate by its display name (the tests and the demo
    /// name credentials; Graph keys them by ID).
    pub fn key_id(&self, client_id: &str, display_name: &str) -> Option<String> {
        let d = self.directory.lock().expect("sim lock");
        let app = d.apps.get(client_id)?;
        app.secrets
            .iter()
            .map(|s| (&s.key_id, &s.display_name))
            .chain(
                app.certificates
                    .iter()
                    .map(|c| (&c.key_id, &c.display_name)),
            )
            .find(|(_, n)| n.as_deref() == Some(display_name))
            .map(|(k, _)| k.clone())
    }

    /// Records a sign-in with an app's credential (by display name) at `at`, as the application
    /// itself signing in would; the token endpoint records the agent's own.
    pub fn set_sign_in(
        &self,
        client_id: &str,
        display_name: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        if let Some(k) = self.key_id(client_id, display_name) {
            self.directory
                .lock()
                .expect("sim lock")
                .sign_ins
                .insert(k, at);
        }
    }

    /// Whether a tenant has the Entra ID P1 licence the sign-in activity report needs (it has,
    /// unless this says otherwise).
    pub fn set_activity_licensed(&self, tenant_id: &str, licensed: bool) {
        let mut d = self.directory.lock().expect("sim lock");
        let t = tenant_id.to_ascii_lowercase();
        if licensed {
            d.activity_unlicensed.remove(&t);
        } else {
            d.activity_unlicensed.insert(t);
        }
    }

    /// Adds rows to a tenant's message trace (scripted history).
    pub fn add_trace(&self, tenant_id: &str, entries: Vec<super::TraceEntry>) {
        let mut d = self.directory.lock().expect("sim lock");
        super::trace::add(&mut d, tenant_id, entries);
    }

    /// Scripted history: `count` messages from `sender` to `recipient`, of this trace status,
    /// received evenly from `from` to `to` (both included).
    #[allow(clippy::too_many_arguments)]
    pub fn add_traffic(
        &self,
        tenant_id: &str,
        sender: &str,
        recipient: &str,
        count: usize,
        status: &str,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) {
        // Evenly from `from` to `to`, both included (one message: at `to`).
        let step = (to - from) / (count.saturating_sub(1).max(1) as i32);
        let from = if count == 1 { to } else { from };
        let entries = (0..count)
            .map(|i| super::TraceEntry {
                sender: sender.into(),
                recipient: recipient.into(),
                message_id: format!("<{}@sim.example>", uuid::Uuid::new_v4()),
                received: from + step * (i as i32),
                status: status.into(),
                subject: format!("message {i}"),
                detail: (status == "failed").then(|| {
                    "550 5.1.1 RESOLVER.ADR.RecipientNotFound; Recipient not found".into()
                }),
            })
            .collect();
        self.add_trace(tenant_id, entries);
    }

    /// Keeps `sender` sending: one delivered message to `recipient` in its tenant's message
    /// trace every `every`, for as long as the simulator runs (a demo mailbox that is never
    /// silent).
    pub fn keep_sending(&self, tenant_id: &str, sender: &str, recipient: &str, every: Duration) {
        let directory = self.directory.clone();
        let stop = self.stop.clone();
        let (tenant, sender, recipient) = (
            tenant_id.to_string(),
            sender.to_string(),
            recipient.to_string(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                n += 1;
                let mut d = directory.lock().expect("sim lock");
                let now = d.now();
                super::trace::add(
                    &mut d,
                    &tenant,
                    [super::TraceEntry {
                        sender: sender.clone(),
                        recipient: recipient.clone(),
                        message_id: format!("<{}@sim.example>", uuid::Uuid::new_v4()),
                        received: chrono::DateTime::from_timestamp(now.timestamp(), 0)
                            .unwrap_or(now),
                        status: "delivered".into(),
                        subject: format!("message {n}"),
                        detail: None,
                    }],
                );
            }
        });
    }

    /// The most app role assignments a page of `appRoleAssignedTo` holds (default 999).
    pub fn set_discovery_page_cap(&self, n: usize) {
        self.directory.lock().expect("sim lock").discovery_page_cap = n;
    }

    /// The inventory's reads received so far (faults included).
    pub fn discovery_requests(&self) -> u64 {
        self.directory.lock().expect("sim lock").discovery_requests
    }

    /// The most rows a message trace page holds (Graph: `$top`, default 1,000).
    pub fn set_trace_page_cap(&self, rows: usize) {
        self.directory.lock().expect("sim lock").trace_page_cap = rows;
    }

    /// Whether the tenant has the service principal of Microsoft's message trace app
    /// (`8bd644d1-64a1-4d4b-ae52-2e0cbf64e373`); without it message trace answers 401.
    pub fn set_trace_service_principal(&self, tenant_id: &str, present: bool) {
        let mut d = self.directory.lock().expect("sim lock");
        let t = tenant_id.to_ascii_lowercase();
        if present {
            d.trace_unprincipled.remove(&t);
        } else {
            d.trace_unprincipled.insert(t);
        }
    }

    /// Message trace requests received so far (faults included), and those answered 429.
    pub fn trace_calls(&self) -> (u64, u64) {
        let d = self.directory.lock().expect("sim lock");
        (d.trace_calls, d.trace_throttled)
    }

    /// Requests to the credential sign-in activity report so far, faults included.
    pub fn activity_requests(&self) -> u64 {
        self.directory.lock().expect("sim lock").activity_requests
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
                default_policy: None,
            });
    }

    /// Sets a tenant's default app management policy (`None`: disabled, as shipped).
    pub fn set_default_app_policy(&self, tenant_id: &str, policy: Option<SimAppPolicy>) {
        let mut d = self.directory.lock().expect("sim lock");
        if let Some(t) = d
            .tenants
            .iter_mut()
            .find(|t| t.id.eq_ignore_ascii_case(tenant_id))
        {
            t.default_policy = policy;
        }
    }

    /// RBAC for Applications: gives the app a role assignment "Application SMTP.SendAsApp"
    /// scoped to these mailboxes (`None` removes it), as `New-ManagementScope` and
    /// `New-ManagementRoleAssignment` do.
    pub fn set_smtp_role_scope(&self, client_id: &str, mailboxes: Option<&[&str]>) {
        if let Some(a) = self
            .directory
            .lock()
            .expect("sim lock")
            .apps
            .get_mut(client_id)
        {
            a.smtp_role_scope =
                mailboxes.map(|m| m.iter().map(|x| x.to_ascii_lowercase()).collect());
        }
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

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
