//! The one table of failure reasons: for every check kind a fixed set of `reason` label values,
//! each with whether it is transient, the setup step it points at and what to do about it.
//! Metrics, the verdict, the log and the README's reason tables all read it.

use std::fmt;

use crate::plan::CheckKind;

/// The setup step a reason or a verdict points at: the five steps of
/// `shared/reference/microsoft-365.md`, then what lies outside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "&'static str")]
pub enum Step {
    /// 1: the app registration in Entra ID (tenant, client ID).
    AppRegistration,
    /// 2: the client secret or certificate.
    Credential,
    /// 3: the `SMTP.SendAsApp` application permission and its admin consent.
    ApiPermission,
    /// 4: the Exchange service principal and FullAccess on the mailbox.
    ExchangeAccess,
    /// 5: the client side: SMTP AUTH switched on, host, port, TLS, endpoints.
    ClientConfig,
    /// A tenant policy (Conditional Access, security defaults).
    Policy,
    /// The network between the agent and Microsoft (DNS, firewall, proxy, TLS inspection).
    Network,
    /// A temporary condition (throttling, a server error) that the next run may not see.
    Transient,
    /// Not explained by the table: the log line has the details.
    Unknown,
    /// Nothing is broken.
    Ok,
}

impl Step {
    pub const ALL: [Step; 10] = [
        Step::AppRegistration,
        Step::Credential,
        Step::ApiPermission,
        Step::ExchangeAccess,
        Step::ClientConfig,
        Step::Policy,
        Step::Network,
        Step::Transient,
        Step::Unknown,
        Step::Ok,
    ];

    /// The five setup steps, in order.
    pub const SETUP: [Step; 5] = [
        Step::AppRegistration,
        Step::Credential,
        Step::ApiPermission,
        Step::ExchangeAccess,
        Step::ClientConfig,
    ];

    /// The `step` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::AppRegistration => "1",
            Step::Credential => "2",
            Step::ApiPermission => "3",
            Step::ExchangeAccess => "4",
            Step::ClientConfig => "5",
            Step::Policy => "policy",
            Step::Network => "network",
            Step::Transient => "transient",
            Step::Unknown => "unknown",
            Step::Ok => "ok",
        }
    }

    /// The step in the admin's words.
    pub fn title(self) -> &'static str {
        match self {
            Step::AppRegistration => "1 app registration",
            Step::Credential => "2 client secret or certificate",
            Step::ApiPermission => "3 API permission and admin consent",
            Step::ExchangeAccess => "4 Exchange service principal and mailbox permission",
            Step::ClientConfig => "5 client configuration (SMTP AUTH, host, TLS)",
            Step::Policy => "tenant policy",
            Step::Network => "network",
            Step::Transient => "transient",
            Step::Unknown => "unknown",
            Step::Ok => "ok",
        }
    }
}

impl From<Step> for &'static str {
    fn from(s: Step) -> Self {
        s.as_str()
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the reason table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonInfo {
    /// The `reason` label value.
    pub label: &'static str,
    /// Whether the next run may well succeed without anyone doing anything.
    pub transient: bool,
    /// The setup step it points at.
    pub step: Step,
    /// What the check saw (AADSTS code, SMTP reply, HTTP status), for the README.
    pub evidence: &'static str,
    /// What to do, in the admin's terms.
    pub remediation: &'static str,
}

/// Defines a reason enum with its table rows: `Variant => (label, transient, step, evidence,
/// remediation)`, plus `ALL`, `as_str` and `info`.
macro_rules! reason_table {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => ($label:expr, $transient:expr, $step:expr, $evidence:expr, $remediation:expr $(,)?) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every reason of the set, in table order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),+ ];

            /// The reason's row of the table.
            pub fn info(self) -> &'static ReasonInfo {
                match self {
                    $( $name::$variant => &ReasonInfo {
                        label: $label,
                        transient: $transient,
                        step: $step,
                        evidence: $evidence,
                        remediation: $remediation,
                    } ),+
                }
            }

            /// The `reason` label value.
            pub fn as_str(self) -> &'static str {
                self.info().label
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

reason_table! {
    /// Reasons every check kind can end with: the network between the agent and Microsoft, the
    /// check's own timeout, the agent's host out of resources, and a bug in the agent.
    pub enum CommonReason {
        /// The host name does not resolve.
        Dns => ("dns", false, Step::Network, "",
            "the host name does not resolve: check DNS on the agent's host, and the configured host (smtp_host, login_url, graph_url)"),
        /// Nothing accepts connections on the port (closed, or a firewall rejects it).
        ConnectRefused => ("connect_refused", false, Step::Network, "",
            "the port refuses connections: a firewall or proxy blocks outbound 443 (Entra ID, Graph) or 587 (SMTP)"),
        /// No answer within the check's timeout.
        Timeout => ("timeout", false, Step::Network, "",
            "no answer within the timeout: a firewall dropping packets, a proxy, or a slow endpoint; the log names the phase"),
        /// TLS failed for another reason than the certificate.
        TlsHandshake => ("tls_handshake", false, Step::Network, "",
            "the TLS handshake failed (not a TLS server, or no common protocol version or cipher)"),
        /// The server certificate is untrusted, expired or for another host.
        TlsCertInvalid => ("tls_cert_invalid", false, Step::Network, "",
            "the server certificate is not trusted, expired or for another host; an untrusted issuer usually means a TLS-inspecting proxy: exempt Microsoft's hosts from inspection or add the proxy's CA to ca_file"),
        /// The agent's own host ran out of file descriptors, socket buffers or memory (EMFILE,
        /// ENFILE, ENOBUFS, ENOMEM): nothing left the host, so nothing is known of the tenant.
        LocalResources => ("local_resources", false, Step::Unknown, "EMFILE, ENFILE, ENOBUFS, ENOMEM",
            "the agent's host ran out of file descriptors (or socket buffers, or memory): raise the open file limit (LimitNOFILE= in the systemd unit; the agent raises its soft limit to the hard one at start and logs both) or lower --web.max-connections and scheduler.max_concurrent_checks; nothing is known of the tenant until a run gets through"),
        /// A bug in the agent (a panic) failed the run.
        InternalError => ("internal_error", true, Step::Unknown, "",
            "a bug in the agent failed this run (the log says so); the next run goes ahead as scheduled; please report it"),
    }
}

reason_table! {
    /// Why a token request to Entra ID failed (besides the common reasons). AADSTS codes from
    /// the reference table; branch on `error_codes`, never on the text.
    pub enum TokenReason {
        /// AADSTS7000222: the client secret expired.
        SecretExpired => ("secret_expired", false, Step::Credential, "AADSTS7000222",
            "create a new client secret and put its value in the secret file"),
        /// AADSTS7000215: a wrong secret value, often the secret's ID pasted instead.
        SecretInvalid => ("secret_invalid", false, Step::Credential, "AADSTS7000215",
            "the configured secret is not one of the app's: paste the secret's Value, not its Secret ID"),
        /// AADSTS7000218: neither secret nor assertion sent.
        CredentialMissing => ("credential_missing", false, Step::ClientConfig, "AADSTS7000218",
            "configure a client secret or a certificate for the app"),
        /// AADSTS700027 / 700024: assertion signature or time window invalid.
        AssertionInvalid => ("assertion_invalid", false, Step::Credential, "AADSTS700027, 700024",
            "upload the certificate (public key) to the app registration; check the agent host's clock"),
        /// AADSTS700016: no such application in the tenant.
        AppNotFound => ("app_not_found", false, Step::AppRegistration, "AADSTS700016",
            "wrong client ID or tenant, or the app registration was deleted"),
        /// AADSTS7000229: the app has no service principal (Enterprise application) in the
        /// tenant; service-principal-less sign-in was retired on 2026-03-31.
        ServicePrincipalMissing => ("service_principal_missing", false, Step::AppRegistration, "AADSTS7000229",
            "the app has no service principal (Enterprise application) in the tenant: create it (New-MgServicePrincipal -AppId, or Grant admin consent on the app registration)"),
        /// AADSTS7000112 / 70001: application disabled.
        AppDisabled => ("app_disabled", false, Step::AppRegistration, "AADSTS7000112, 70001",
            "re-enable the app's service principal (Enterprise applications > Properties > Enabled for users to sign-in)"),
        /// AADSTS90002 / 900023: tenant not found or invalid.
        TenantNotFound => ("tenant_not_found", false, Step::ClientConfig, "AADSTS90002, 900023",
            "wrong tenant ID or domain, or the wrong cloud"),
        /// AADSTS70011 / 1002012 / 700022: scope invalid.
        InvalidScope => ("invalid_scope", false, Step::ClientConfig, "AADSTS70011, 1002012, 700022",
            "the scope must be one resource's `/.default` (the cloud setting picks it)"),
        /// AADSTS500011: the resource principal is not in the tenant.
        ResourceNotFound => ("resource_not_found", false, Step::ApiPermission, "AADSTS500011",
            "Office 365 Exchange Online is not in the tenant (no Exchange Online licence?), or the wrong cloud"),
        /// AADSTS65001 / 650056 / 90094: admin consent missing.
        ConsentMissing => ("consent_missing", false, Step::ApiPermission, "AADSTS65001, 650056, 90094",
            "grant admin consent for the permissions the app requests (API permissions > Grant admin consent); an app that sends by RBAC for Applications needs no Exchange API permission"),
        /// AADSTS53003: blocked by Conditional Access.
        ConditionalAccess => ("conditional_access", false, Step::Policy, "AADSTS53003",
            "a Conditional Access policy blocks the app: exclude the workload identity from it"),
        /// AADSTS90055 or HTTP 429.
        Throttled => ("throttled", true, Step::Transient, "AADSTS90055, HTTP 429",
            "Entra ID throttles the tenant: the agent waits for Retry-After"),
        /// Another HTTP status without a known AADSTS code.
        HttpError => ("http_error", true, Step::Transient, "HTTP 5xx, no AADSTS code",
            "Entra ID answered an HTTP error without an AADSTS code; the log has the status"),
        /// A reply that is not the JSON the protocol promises.
        InvalidResponse => ("invalid_response", false, Step::Unknown, "not the promised JSON",
            "the reply is not Entra ID's JSON (a proxy's page? a wrong login_url?); the log has its start"),
        /// An AADSTS code outside the reference table, or another unexpected failure.
        Other => ("other", false, Step::Unknown, "other AADSTS codes",
            "the log line has the AADSTS code and Microsoft's description"),
    }
}

reason_table! {
    /// Why the SMTP check failed (besides the common reasons). Replies from the reference table.
    pub enum SmtpReason {
        /// The server does not offer STARTTLS: credentials are never sent in clear.
        StarttlsMissing => ("starttls_missing", false, Step::Network, "no STARTTLS in EHLO",
            "something on the path strips STARTTLS (a security problem); nothing was sent: find the device that rewrites SMTP"),
        /// XOAUTH2 is not offered after TLS, or refused (504 5.7.4).
        Xoauth2NotOffered => ("xoauth2_not_offered", false, Step::ClientConfig, "504 5.7.4",
            "XOAUTH2 is not offered: not Exchange Online, or the wrong smtp_host"),
        /// 535 5.7.3: the token was refused.
        AuthRejected => ("auth_rejected", false, Step::ExchangeAccess, "535 5.7.3",
            "New-ServicePrincipal with the Enterprise applications object ID, then Add-MailboxPermission ... -AccessRights FullAccess; or admin consent for SMTP.SendAsApp when the token lacks it"),
        /// 535 5.7.139: SMTP AUTH disabled for the tenant or mailbox, or blocked by policy.
        SmtpAuthDisabled => ("smtp_auth_disabled", false, Step::ClientConfig, "535 5.7.139",
            "Set-CASMailbox -SmtpClientAuthenticationDisabled $false (mailbox) or Set-TransportConfig -SmtpClientAuthenticationDisabled $false (tenant); or security defaults / Conditional Access"),
        /// 421 4.7.66: the TLS version was refused.
        TlsVersion => ("tls_version", false, Step::ClientConfig, "421 4.7.66",
            "TLS 1.2 or later is required"),
        /// 432 4.3.2, 4.7.x, other 4xx replies.
        Throttled => ("throttled", true, Step::Transient, "432 4.3.2, 4.7.x, other 4xx",
            "too many concurrent connections for the mailbox (limit 3) or a temporary server error"),
        /// 5.7.60 / 5.2.252 to MAIL FROM.
        SendAsDenied => ("send_as_denied", false, Step::ExchangeAccess, "5.7.60, 5.2.252",
            "the app may not send as this address: FullAccess (or Send As) on the mailbox for the app's service principal"),
        /// The server refused the test message of `check --send-test-to` (RCPT TO or DATA).
        MessageRejected => ("message_rejected", false, Step::ExchangeAccess, "5xx to RCPT TO or DATA",
            "the server refused the test message; the reply in the log says why (recipient, size, policy)"),
        /// 550 5.1.8: the mailbox is restricted after sending spam.
        SenderRestricted => ("sender_restricted", false, Step::Policy, "550 5.1.8",
            "the mailbox may not send (restricted after sending spam): release it in the Microsoft Defender portal > Email & collaboration > Review > Restricted entities, and find out why it sent spam"),
        /// 550 5.7.705 / 5.7.708: the whole tenant may not send.
        TenantSendingBlocked => ("tenant_sending_blocked", false, Step::Policy, "550 5.7.705, 5.7.708",
            "Exchange Online blocks the tenant's outbound mail (over its threshold, or its traffic suspected): look for compromised accounts, then open a request with Microsoft support"),
        /// Anything that is not the SMTP the check expects.
        ProtocolError => ("protocol_error", false, Step::Unknown, "garbage, overlong lines, dropped connection",
            "the server did not speak the SMTP expected (a proxy? the wrong port?); the log has the reply"),
        /// No token could be had for the mailbox's app.
        TokenUnavailable => ("token_unavailable", false, Step::AppRegistration, "no token",
            "no token for the mailbox's app: see the app's token check (the AADSTS code is kept)"),
    }
}

reason_table! {
    /// Why the Graph credential check failed (besides the common reasons).
    pub enum GraphReason {
        /// 403 in Graph's error shape: no `Application.Read.All`.
        PermissionMissing => ("graph_permission_missing", false, Step::ApiPermission, "HTTP 403 (Graph error JSON)",
            "grant Application.Read.All (application permission, admin consent) to the app, or set graph_reader to an app that has it"),
        /// 404 in Graph's error shape: no app registration with this client ID.
        AppNotFound => ("app_not_found", false, Step::AppRegistration, "HTTP 404 (Graph error JSON)",
            "the client ID is not an app registration of the tenant"),
        /// 429, or 503 with `Retry-After`.
        Throttled => ("throttled", true, Step::Transient, "HTTP 429, 503 with Retry-After",
            "Graph throttled the read; the next one waits for Retry-After (60 s for a 429 without one)"),
        /// Another HTTP status.
        HttpError => ("http_error", true, Step::Transient, "other HTTP status",
            "Graph answered an HTTP error; the log has the status and Graph's error code"),
        /// Not the application object Graph promises.
        InvalidResponse => ("invalid_response", false, Step::Unknown, "not the promised JSON",
            "not the JSON Graph promises (bad dates, wrong appId, over 1 MiB); the log says what"),
        /// No Graph token for the app or its reader.
        TokenUnavailable => ("token_unavailable", false, Step::AppRegistration, "no Graph token",
            "no Graph token for the app or its graph_reader (the AADSTS code is kept)"),
    }
}

reason_table! {
    /// Why the delivery canary failed, after its SMTP session (whose failures are the SMTP
    /// check's reasons): finding the message with the reader's Graph token.
    pub enum CanaryReason {
        /// Accepted by Exchange, not in the canary mailbox within the timeout.
        NotDelivered => ("not_delivered", false, Step::Unknown, "not found within the timeout",
            "Exchange accepted the message but it did not arrive: Exchange admin center > Mail flow > Message trace for its Message-ID (quarantine, a transport rule, a queue)"),
        /// Found in Junk Email.
        DeliveredToJunk => ("delivered_to_junk", false, Step::Policy, "found in Junk Email",
            "the message landed in Junk Email: allow the sender (Defender portal > Tenant Allow/Block List) or fix the rule that marks it"),
        /// 403 from Graph: the reader may not read (Mail.Read) or delete (Mail.ReadWrite) mail.
        ReaderPermissionMissing => ("reader_permission_missing", false, Step::ApiPermission, "HTTP 403 (Graph)",
            "grant Mail.ReadWrite (application permission, admin consent) to the canary's reader app, scoped to the canary mailbox with Exchange RBAC for Applications"),
        /// 404 from Graph for the canary address.
        RecipientNotFound => ("recipient_not_found", false, Step::ClientConfig, "HTTP 404 (Graph)",
            "the canary address is not a mailbox of the reader's tenant: check canary.to"),
        /// 429, or 503 with Retry-After.
        GraphThrottled => ("graph_throttled", true, Step::Transient, "HTTP 429, 503 with Retry-After",
            "Graph throttled the search; the next run waits for Retry-After"),
        /// Another HTTP status from Graph.
        GraphError => ("graph_error", true, Step::Transient, "other HTTP status",
            "Graph answered an HTTP error; the log has the status and Graph's error code"),
        /// Not the JSON Graph promises.
        GraphInvalidResponse => ("graph_invalid_response", false, Step::Unknown, "not the promised JSON",
            "not the JSON Graph promises; the log says what"),
        /// No Graph token for the reader app.
        ReaderTokenUnavailable => ("reader_token_unavailable", false, Step::AppRegistration, "no Graph token",
            "no Graph token for the canary's reader app (the AADSTS code is kept): see its token check"),
    }
}

reason_table! {
    /// Why reading Microsoft 365 service health failed.
    pub enum HealthReason {
        /// 403: no `ServiceHealth.Read.All`.
        PermissionMissing => ("health_permission_missing", false, Step::ApiPermission, "HTTP 403 (Graph)",
            "grant ServiceHealth.Read.All (Microsoft Graph > Application permissions, admin consent) to the app"),
        /// 429, or 503 with Retry-After.
        Throttled => ("throttled", true, Step::Transient, "HTTP 429, 503 with Retry-After",
            "Graph throttled the read; the next one waits for Retry-After"),
        /// Another HTTP status.
        HttpError => ("http_error", true, Step::Transient, "other HTTP status",
            "Graph answered an HTTP error; the log has the status"),
        /// Not the JSON Graph promises.
        InvalidResponse => ("invalid_response", false, Step::Unknown, "not the promised JSON",
            "not the JSON Graph promises; the log says what"),
        /// No Graph token for the app.
        TokenUnavailable => ("token_unavailable", false, Step::AppRegistration, "no Graph token",
            "no Graph token for the app (the AADSTS code is kept)"),
    }
}

reason_table! {
    /// Why reading the credential sign-in activity failed. A refusal (403: no
    /// `AuditLog.Read.All`, or a tenant without the Entra ID P1 licence the report needs) is no
    /// failure: the activity is then "not available", which the check reports as a fact.
    pub enum ActivityReason {
        /// 429, or 503 with Retry-After.
        Throttled => ("throttled", true, Step::Transient, "HTTP 429, 503 with Retry-After",
            "Graph throttled the read; the next one waits for Retry-After"),
        /// Another HTTP status.
        HttpError => ("http_error", true, Step::Transient, "other HTTP status",
            "Graph answered an HTTP error (the report is Graph beta: Microsoft may change it); the log has the status and Graph's error code"),
        /// Not the JSON Graph promises.
        InvalidResponse => ("invalid_response", false, Step::Unknown, "not the promised JSON",
            "not the JSON Graph beta promised (the report is beta: Microsoft may have changed it); the log says what"),
        /// No Graph token for the app or its reader.
        TokenUnavailable => ("token_unavailable", false, Step::AppRegistration, "no Graph token",
            "no Graph token for the app or its graph_reader (the AADSTS code is kept)"),
    }
}

reason_table! {
    /// Why reading the tenant's message trace failed.
    pub enum TrafficReason {
        /// 403: no `ExchangeMessageTrace.Read.All`.
        PermissionMissing => ("trace_permission_missing", false, Step::ApiPermission, "HTTP 403 (Graph)",
            "grant ExchangeMessageTrace.Read.All (Microsoft Graph > Application permissions, admin consent) to the app that reads the tenant's message trace"),
        /// 401 "Service principal-less Authentication failed": the tenant lacks the service
        /// principal of Microsoft's first-party message trace app.
        ServicePrincipalMissing => ("trace_service_principal_missing", false, Step::AppRegistration, "HTTP 401 Service principal-less Authentication failed",
            "the tenant lacks the service principal of Microsoft's message trace app: New-MgServicePrincipal -AppId 8bd644d1-64a1-4d4b-ae52-2e0cbf64e373 (Microsoft Graph PowerShell, as an administrator)"),
        /// 429, or 503 with Retry-After (100 requests per 5 minutes per tenant).
        Throttled => ("throttled", true, Step::Transient, "HTTP 429, 503 with Retry-After",
            "Graph throttled message trace (100 requests per 5 minutes per tenant, shared with every other client of the tenant): the next read waits for Retry-After"),
        /// The agent's own budget for the tenant (100 requests per 5 minutes) is spent.
        BudgetExhausted => ("budget_exhausted", true, Step::Transient, "100 requests in 5 minutes used",
            "the window needed more pages than the tenant's budget of 100 requests per 5 minutes allows: the next read continues with a narrower window"),
        /// Another HTTP status.
        HttpError => ("http_error", true, Step::Transient, "other HTTP status",
            "Graph answered an HTTP error; the log has the status and Graph's error code"),
        /// Not the JSON Graph promises.
        InvalidResponse => ("invalid_response", false, Step::Unknown, "not the promised JSON",
            "not the JSON Graph promises; the log says what"),
        /// No Graph token for the reader.
        TokenUnavailable => ("token_unavailable", false, Step::AppRegistration, "no Graph token",
            "no Graph token for the app that reads the trace (the AADSTS code is kept)"),
    }
}

reason_table! {
    /// Why the inventory of the tenant's apps that can send SMTP failed.
    pub enum DiscoveryReason {
        /// 403: no `Application.Read.All`.
        PermissionMissing => ("discovery_permission_missing", false, Step::ApiPermission, "HTTP 403 (Graph)",
            "grant Application.Read.All (Microsoft Graph > Application permissions, admin consent) to the app that inventories the tenant"),
        /// 429, or 503 with Retry-After.
        Throttled => ("throttled", true, Step::Transient, "HTTP 429, 503 with Retry-After",
            "Graph throttled the inventory; the next one waits for Retry-After"),
        /// Another HTTP status.
        HttpError => ("http_error", true, Step::Transient, "other HTTP status",
            "Graph answered an HTTP error; the log has the status and Graph's error code"),
        /// Not the JSON Graph promises.
        InvalidResponse => ("invalid_response", false, Step::Unknown, "not the promised JSON",
            "not the JSON Graph promises (no SMTP.SendAsApp role on the Office 365 Exchange Online service principal, bad dates, more apps than the agent reads); the log says what"),
        /// No Graph token for the reader.
        TokenUnavailable => ("token_unavailable", false, Step::AppRegistration, "no Graph token",
            "no Graph token for the app that inventories the tenant (the AADSTS code is kept)"),
    }
}

impl TokenReason {
    /// The reason for a known AADSTS code; `None` for codes outside the reference table.
    pub fn from_aadsts(code: u32) -> Option<TokenReason> {
        Some(match code {
            7000222 => TokenReason::SecretExpired,
            7000215 => TokenReason::SecretInvalid,
            7000218 => TokenReason::CredentialMissing,
            700027 | 700024 => TokenReason::AssertionInvalid,
            700016 => TokenReason::AppNotFound,
            7000229 => TokenReason::ServicePrincipalMissing,
            7000112 | 70001 => TokenReason::AppDisabled,
            90002 | 900023 => TokenReason::TenantNotFound,
            70011 | 1002012 | 700022 => TokenReason::InvalidScope,
            500011 => TokenReason::ResourceNotFound,
            65001 | 650056 | 90094 => TokenReason::ConsentMissing,
            53003 => TokenReason::ConditionalAccess,
            90055 => TokenReason::Throttled,
            _ => return None,
        })
    }
}

/// Any failure reason of any check: the value of the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Common(CommonReason),
    Token(TokenReason),
    Smtp(SmtpReason),
    Graph(GraphReason),
    Canary(CanaryReason),
    Health(HealthReason),
    Activity(ActivityReason),
    Traffic(TrafficReason),
    Discovery(DiscoveryReason),
}

impl Reason {
    pub fn info(self) -> &'static ReasonInfo {
        match self {
            Reason::Common(r) => r.info(),
            Reason::Token(r) => r.info(),
            Reason::Smtp(r) => r.info(),
            Reason::Graph(r) => r.info(),
            Reason::Canary(r) => r.info(),
            Reason::Health(r) => r.info(),
            Reason::Activity(r) => r.info(),
            Reason::Traffic(r) => r.info(),
            Reason::Discovery(r) => r.info(),
        }
    }

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        self.info().label
    }

    pub fn is_transient(self) -> bool {
        self.info().transient
    }

    /// Microsoft asked to slow down (AADSTS90055 or HTTP 429; SMTP 432 4.3.2 or 4.7.x; Graph
    /// 429 or 503 with Retry-After).
    pub fn is_throttled(self) -> bool {
        matches!(
            self,
            Reason::Token(TokenReason::Throttled)
                | Reason::Smtp(SmtpReason::Throttled)
                | Reason::Graph(GraphReason::Throttled)
                | Reason::Canary(CanaryReason::GraphThrottled)
                | Reason::Health(HealthReason::Throttled)
                | Reason::Activity(ActivityReason::Throttled)
                | Reason::Traffic(TrafficReason::Throttled)
                | Reason::Discovery(DiscoveryReason::Throttled)
        )
    }

    pub fn step(self) -> Step {
        self.info().step
    }

    /// Every reason a check kind can end with: its own, then the common ones.
    pub fn of(kind: CheckKind) -> Vec<Reason> {
        let own: Vec<Reason> = match kind {
            CheckKind::Token => TokenReason::ALL.iter().map(|r| Reason::Token(*r)).collect(),
            CheckKind::Smtp => SmtpReason::ALL.iter().map(|r| Reason::Smtp(*r)).collect(),
            CheckKind::Graph => GraphReason::ALL.iter().map(|r| Reason::Graph(*r)).collect(),
            // The canary's SMTP session fails as the SMTP check does.
            CheckKind::Canary => CanaryReason::ALL
                .iter()
                .map(|r| Reason::Canary(*r))
                .chain(SmtpReason::ALL.iter().map(|r| Reason::Smtp(*r)))
                .collect(),
            CheckKind::Health => HealthReason::ALL
                .iter()
                .map(|r| Reason::Health(*r))
                .collect(),
            CheckKind::Activity => ActivityReason::ALL
                .iter()
                .map(|r| Reason::Activity(*r))
                .collect(),
            CheckKind::Traffic => TrafficReason::ALL
                .iter()
                .map(|r| Reason::Traffic(*r))
                .collect(),
            CheckKind::Discovery => DiscoveryReason::ALL
                .iter()
                .map(|r| Reason::Discovery(*r))
                .collect(),
        };
        own.into_iter()
            .chain(CommonReason::ALL.iter().map(|r| Reason::Common(*r)))
            .collect()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CommonReason> for Reason {
    fn from(r: CommonReason) -> Self {
        Reason::Common(r)
    }
}
impl From<TokenReason> for Reason {
    fn from(r: TokenReason) -> Self {
        Reason::Token(r)
    }
}
impl From<SmtpReason> for Reason {
    fn from(r: SmtpReason) -> Self {
        Reason::Smtp(r)
    }
}
impl From<GraphReason> for Reason {
    fn from(r: GraphReason) -> Self {
        Reason::Graph(r)
    }
}
impl From<CanaryReason> for Reason {
    fn from(r: CanaryReason) -> Self {
        Reason::Canary(r)
    }
}
impl From<HealthReason> for Reason {
    fn from(r: HealthReason) -> Self {
        Reason::Health(r)
    }
}
impl From<ActivityReason> for Reason {
    fn from(r: ActivityReason) -> Self {
        Reason::Activity(r)
    }
}
impl From<TrafficReason> for Reason {
    fn from(r: TrafficReason) -> Self {
        Reason::Traffic(r)
    }
}
impl From<DiscoveryReason> for Reason {
    fn from(r: DiscoveryReason) -> Self {
        Reason::Discovery(r)
    }
}

/// The README's reason tables, one per check kind, generated from this table (a test keeps the
/// README equal to it).
pub fn markdown_tables() -> String {
    let mut out = String::new();
    for kind in CheckKind::ALL {
        out += &format!(
            "| reason (`check=\"{kind}\"`) | seen as | setup step | transient | what to do |\n|---|---|---|---|---|\n"
        );
        for r in Reason::of(kind) {
            let i = r.info();
            out += &format!(
                "| `{}` | {} | {} | {} | {} |\n",
                i.label,
                i.evidence,
                i.step.title(),
                if i.transient { "yes" } else { "no" },
                i.remediation
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_distinct_within_a_check_and_well_formed() {
        for kind in CheckKind::ALL {
            let all = Reason::of(kind);
            let labels: HashSet<&str> = all.iter().map(|r| r.as_str()).collect();
            assert_eq!(labels.len(), all.len(), "{kind}: duplicate label");
            for l in labels {
                assert!(
                    l.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()),
                    "{l}"
                );
            }
        }
    }

    #[test]
    fn every_aadsts_code_of_the_reference_maps_to_its_reason() {
        // The AADSTS table of shared/reference/microsoft-365.md, row by row.
        let table: &[(&[u32], TokenReason, Step)] = &[
            (&[7000222], TokenReason::SecretExpired, Step::Credential),
            (&[7000215], TokenReason::SecretInvalid, Step::Credential),
            (
                &[7000218],
                TokenReason::CredentialMissing,
                Step::ClientConfig,
            ),
            (
                &[700027, 700024],
                TokenReason::AssertionInvalid,
                Step::Credential,
            ),
            (&[700016], TokenReason::AppNotFound, Step::AppRegistration),
            (
                &[7000112, 70001],
                TokenReason::AppDisabled,
                Step::AppRegistration,
            ),
            (
                &[90002, 900023],
                TokenReason::TenantNotFound,
                Step::ClientConfig,
            ),
            (
                &[70011, 1002012, 700022],
                TokenReason::InvalidScope,
                Step::ClientConfig,
            ),
            (
                &[500011],
                TokenReason::ResourceNotFound,
                Step::ApiPermission,
            ),
            (
                &[65001, 650056, 90094],
                TokenReason::ConsentMissing,
                Step::ApiPermission,
            ),
            (&[53003], TokenReason::ConditionalAccess, Step::Policy),
            (&[90055], TokenReason::Throttled, Step::Transient),
        ];
        for (codes, reason, step) in table {
            for c in *codes {
                assert_eq!(TokenReason::from_aadsts(*c), Some(*reason), "AADSTS{c}");
                assert_eq!(reason.info().step, *step, "AADSTS{c}");
            }
        }
        assert_eq!(TokenReason::from_aadsts(12345), None);
    }
}
