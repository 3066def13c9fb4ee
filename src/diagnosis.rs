//! Reports → verdict: from the latest token, SMTP and Graph results of a mailbox (or of an app
//! without one), the setup step that is broken, a cause from a fixed list and the fix in the
//! admin's terms (portal path or PowerShell). Facts: `shared/reference/microsoft-365.md`.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::checks::health::Service;
use crate::checks::smtp::{self, AuthDisabledScope, Phase};
use crate::checks::{Failure, Report};
use crate::net::CertProblem;
use crate::plan::{CheckKind, Credential, DiagnosisSettings, Target};
use crate::reasons::{
    CanaryReason, CommonReason, GraphReason, Reason, SmtpReason, Step, TokenReason,
};

/// How bad a verdict is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Everything works.
    Ok,
    /// Not checked yet.
    Pending,
    /// Mail goes out, but something needs doing (an expiring secret, a monitoring gap) or a
    /// transient failure was seen.
    Warning,
    /// Mail does not go out, or will not once the cached token expires.
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Ok,
        Severity::Pending,
        Severity::Warning,
        Severity::Critical,
    ];

    /// The `severity` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Pending => "pending",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the cause table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CauseInfo {
    /// The `cause` label value.
    pub label: &'static str,
    pub step: Step,
    pub severity: Severity,
    /// What is wrong; `{placeholders}` are filled from the target.
    pub summary: &'static str,
    /// What to do; `{placeholders}` are filled from the target.
    pub remediation: &'static str,
}

macro_rules! cause_table {
    ( $( $(#[$vmeta:meta])* $variant:ident => ($label:expr, $step:expr, $severity:expr, $summary:expr, $remediation:expr $(,)?) ),+ $(,)? ) => {
        /// Why a target is in the state it is in: a fixed list (the `cause` label).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Cause {
            $( $(#[$vmeta])* $variant ),+
        }

        impl Cause {
            /// Every cause, in table order.
            pub const ALL: &'static [Cause] = &[ $( Cause::$variant ),+ ];

            pub fn info(self) -> &'static CauseInfo {
                match self {
                    $( Cause::$variant => &CauseInfo {
                        label: $label,
                        step: $step,
                        severity: $severity,
                        summary: $summary,
                        remediation: $remediation,
                    } ),+
                }
            }
        }
    };
}

cause_table! {
    Ok => ("ok", Step::Ok, Severity::Ok,
        "every check passes",
        "nothing to do"),
    Pending => ("pending", Step::Unknown, Severity::Pending,
        "not checked yet",
        "wait for the first runs (within scheduler.startup_spread of the start)"),
    /// The in-use secret or certificate expires within `diagnosis.expiry_warning`.
    CredentialExpiring => ("credential_expiring", Step::Credential, Severity::Warning,
        "the {kind} app {app} signs in with expires in {days} days ({date})",
        "Entra admin center > App registrations > client ID {client_id} > Certificates & secrets: add a new {kind}, put it in the application's and the agent's configuration, then delete the old one"),
    SecretExpired => ("secret_expired", Step::Credential, Severity::Critical,
        "the client secret of app {app} has expired (AADSTS7000222)",
        "Entra admin center > App registrations > client ID {client_id} > Certificates & secrets > New client secret; copy its Value (not the Secret ID) into the application and the agent's secret file, then delete the expired secret"),
    CertificateExpired => ("certificate_expired", Step::Credential, Severity::Critical,
        "the certificate app {app} signs in with has expired",
        "make a new certificate, upload it (Entra admin center > App registrations > client ID {client_id} > Certificates & secrets > Certificates > Upload certificate) and configure its key in the application and the agent"),
    /// AADSTS7000215 with a secret shaped like a GUID or equal to one of the app's key IDs.
    SecretIdPasted => ("secret_id_pasted", Step::Credential, Severity::Critical,
        "the configured secret is none of app {app}'s secrets: the secret's ID was pasted instead of its value (AADSTS7000215)",
        "Entra admin center > App registrations > client ID {client_id} > Certificates & secrets: copy the Value column, not the Secret ID (the value shows only right after creation: if it is hidden, create a new secret)"),
    SecretInvalid => ("secret_invalid", Step::Credential, Severity::Critical,
        "Entra ID refuses the configured client secret of app {app} (AADSTS7000215)",
        "the secret was deleted or mistyped: create a new client secret (Entra admin center > App registrations > client ID {client_id} > Certificates & secrets) and copy its Value"),
    /// AADSTS700027: the certificate is not on the app registration.
    CertificateNotUploaded => ("certificate_not_uploaded", Step::Credential, Severity::Critical,
        "the certificate app {app} signs with is not on its app registration (AADSTS700027)",
        "Entra admin center > App registrations > client ID {client_id} > Certificates & secrets > Certificates > Upload certificate: the public certificate whose private key the agent uses"),
    ClockSkew => ("clock_skew", Step::Credential, Severity::Critical,
        "Entra ID refuses the client assertion of app {app} as outside its time window (AADSTS700024)",
        "set the agent host's clock right (NTP)"),
    AppNotFound => ("app_not_found", Step::AppRegistration, Severity::Critical,
        "no app with client ID {client_id} in tenant {tenant} (AADSTS700016)",
        "check client_id and tenant; a deleted app registration can be restored within 30 days (Entra admin center > App registrations > Deleted applications)"),
    AppDisabled => ("app_disabled", Step::AppRegistration, Severity::Critical,
        "app {app} is disabled in tenant {tenant}",
        "Entra admin center > Enterprise applications > client ID {client_id} > Properties > Enabled for users to sign-in: Yes"),
    TenantNotFound => ("tenant_not_found", Step::ClientConfig, Severity::Critical,
        "tenant {tenant} is not found (AADSTS90002, 900023)",
        "check the tenant ID or domain of app {app}, and its cloud (global, usgov, usgov-dod, china)"),
    ScopeInvalid => ("scope_invalid", Step::ClientConfig, Severity::Critical,
        "Entra ID refuses the token scope of app {app}",
        "the scope must be https://outlook.office365.com/.default (the cloud setting picks it): check the app's cloud and login_url"),
    CredentialMissing => ("credential_missing", Step::ClientConfig, Severity::Critical,
        "no credential reached Entra ID for app {app} (AADSTS7000218)",
        "configure a client secret or a certificate for app {app}"),
    /// The token lacks `SMTP.SendAsApp`.
    ConsentMissing => ("consent_missing", Step::ApiPermission, Severity::Critical,
        "the token of app {app} lacks SMTP.SendAsApp: the permission or its admin consent is missing or was revoked",
        "Entra admin center > App registrations > client ID {client_id} > API permissions > Add a permission > APIs my organization uses > Office 365 Exchange Online > Application permissions > SMTP.SendAsApp > Add permissions; then Grant admin consent for the tenant"),
    ExchangeNotInTenant => ("exchange_not_in_tenant", Step::ApiPermission, Severity::Critical,
        "Office 365 Exchange Online is not in tenant {tenant} (AADSTS500011)",
        "the tenant needs Exchange Online (a licence), and app {app} the right cloud"),
    /// 535 5.7.3 although the token has the role, and no other mailbox of the app signs in.
    ServicePrincipalOrPermissionMissing => ("service_principal_or_permission_missing", Step::ExchangeAccess, Severity::Critical,
        "Exchange refuses the token for {address} (535 5.7.3) although it carries SMTP.SendAsApp: the Exchange service principal of app {app}, or its FullAccess on the mailbox, is missing",
        "in Exchange Online PowerShell (Connect-ExchangeOnline): New-ServicePrincipal -AppId {client_id} -ObjectId <Object ID from Entra admin center > Enterprise applications, not App registrations>; then Add-MailboxPermission -Identity {address} -User <the same Object ID> -AccessRights FullAccess. Check: Get-ServicePrincipal | Where-Object AppId -eq '{client_id}'; Get-MailboxPermission -Identity {address}"),
    /// 535 5.7.3 for this mailbox while another mailbox of the same app signs in.
    MailboxPermissionMissing => ("mailbox_permission_missing", Step::ExchangeAccess, Severity::Critical,
        "Exchange refuses the token for {address} (535 5.7.3) while other mailboxes of app {app} sign in: FullAccess on {address} is missing",
        "in Exchange Online PowerShell: Add-MailboxPermission -Identity {address} -User <Object ID of app {app} from Entra admin center > Enterprise applications> -AccessRights FullAccess. Check: Get-MailboxPermission -Identity {address}"),
    /// The server refused `check --send-test-to`'s message for another reason than send-as.
    MessageRejected => ("message_rejected", Step::Unknown, Severity::Critical,
        "the server refused the test message from {address} ({reply})",
        "the reply says why (unknown recipient, size, a transport rule or an outbound spam block); try another recipient"),
    /// 550 5.1.8: the mailbox is restricted for sending spam.
    SenderRestricted => ("sender_restricted", Step::Policy, Severity::Critical,
        "Exchange Online refuses mail from {address}: the mailbox is restricted for sending spam ({reply})",
        "Microsoft Defender portal > Email & collaboration > Review > Restricted entities: release {address}; then find out why it sent spam (a compromised application or password, a mail loop)"),
    /// 550 5.7.705 / 5.7.708: the tenant may not send.
    TenantSendingBlocked => ("tenant_sending_blocked", Step::Policy, Severity::Critical,
        "Exchange Online blocks outbound mail of tenant {tenant} ({reply}): over its sending threshold, or its traffic suspected",
        "look for compromised accounts and unexpected mail flows (Exchange admin center > Mail flow > Message trace), then open a service request with Microsoft support to lift the block"),
    /// The canary was accepted and not delivered within its timeout.
    CanaryNotDelivered => ("canary_not_delivered", Step::Unknown, Severity::Critical,
        "the canary from {address} was accepted but is not in {canary_to} after {canary_timeout}: mail is accepted and goes nowhere",
        "Exchange admin center > Mail flow > Message trace: search the canary's Message-ID ({message_id}) for where it stopped (quarantine, a transport rule, a queue, an outbound block)"),
    /// The canary landed in Junk Email.
    CanaryJunk => ("canary_junk", Step::Policy, Severity::Warning,
        "the canary from {address} landed in the Junk Email folder of {canary_to}: the application's mail may too",
        "Microsoft Defender portal > Email & collaboration > Policies > Tenant Allow/Block Lists: allow {address}, or fix the transport or anti-spam rule that marks it; check SPF, DKIM and DMARC of the sending domain"),
    /// The canary's reader may not read or delete the canary mailbox's mail.
    CanaryReaderPermissionMissing => ("canary_reader_permission_missing", Step::ApiPermission, Severity::Warning,
        "app {canary_reader} may not read or delete mail in {canary_to} (Graph 403): delivery is not watched",
        "grant Mail.ReadWrite (Microsoft Graph > Application permissions, admin consent) to app {canary_reader} and scope it to {canary_to}: New-ManagementScope -Name canary -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{canary_to}'\"; New-ManagementRoleAssignment -App <service principal of {canary_reader}> -Role \"Application Mail.ReadWrite\" -CustomResourceScope canary"),
    /// The canary address is no mailbox the reader's Graph knows: a configuration mistake.
    CanaryRecipientNotFound => ("canary_recipient_not_found", Step::ClientConfig, Severity::Warning,
        "the canary address {canary_to} is no mailbox app {canary_reader} can find with Graph (404): delivery is not watched",
        "set canary.to of mailbox {mailbox} to a mailbox of the reader's tenant (the default is the mailbox itself)"),
    /// The canary could not look (Graph throttled or failing, the reader without a token):
    /// delivery is not known this time.
    CanaryUnavailable => ("canary_unavailable", Step::Transient, Severity::Warning,
        "the canary of {address} could not look for its message ({reason}): delivery is not known this time",
        "nothing, if the next run passes; otherwise see the reason (the reader app's token, Graph)"),
    /// A check failed for a transient, network or unexplained reason while Microsoft reports
    /// an incident on the service it needs.
    MicrosoftIncident => ("microsoft_incident", Step::Transient, Severity::Critical,
        "Microsoft reports incident {incident} on {incident_service} ({incident_title}) and the {check} check fails ({reason})",
        "follow {incident} in Microsoft 365 admin center > Health > Service health; nothing to change on your side unless the incident says so"),
    SendAsDenied => ("send_as_denied", Step::ExchangeAccess, Severity::Critical,
        "app {app} may not send as {address} ({reply})",
        "Add-MailboxPermission -Identity {address} -User <Object ID of the Enterprise application> -AccessRights FullAccess; the MAIL FROM address must be the mailbox itself"),
    SmtpAuthDisabledTenant => ("smtp_auth_disabled_tenant", Step::ClientConfig, Severity::Critical,
        "SMTP AUTH is switched off for the tenant (535 5.7.139)",
        "Set-TransportConfig -SmtpClientAuthenticationDisabled $false (the whole tenant), or for this mailbox only: Set-CASMailbox -Identity {address} -SmtpClientAuthenticationDisabled $false"),
    SmtpAuthDisabledMailbox => ("smtp_auth_disabled_mailbox", Step::ClientConfig, Severity::Critical,
        "SMTP AUTH is switched off for mailbox {address} (535 5.7.139)",
        "Set-CASMailbox -Identity {address} -SmtpClientAuthenticationDisabled $false (or $null to follow the tenant, where SMTP AUTH is on). Check: (Get-CASMailbox -Identity {address}).SmtpClientAuthenticationDisabled"),
    SmtpAuthBlockedByPolicy => ("smtp_auth_blocked_by_policy", Step::Policy, Severity::Critical,
        "security defaults or a Conditional Access policy block SMTP AUTH for {address} (535 5.7.139)",
        "Entra admin center > Overview > Properties > Manage security defaults, or the Conditional Access policy that targets legacy or SMTP authentication: exclude this workload"),
    ConditionalAccess => ("conditional_access", Step::Policy, Severity::Critical,
        "a Conditional Access policy blocks app {app} (AADSTS53003)",
        "Entra admin center > Protection > Conditional Access: exclude the workload identity of app {app} from the blocking policy"),
    Xoauth2NotOffered => ("xoauth2_not_offered", Step::ClientConfig, Severity::Critical,
        "{host}:{port} does not offer AUTH XOAUTH2",
        "smtp_host must be Exchange Online's submission host (smtp.office365.com for the global cloud), port 587"),
    TlsVersion => ("tls_version", Step::ClientConfig, Severity::Critical,
        "{host} refuses the TLS version (421 4.7.66)",
        "TLS 1.2 or later is required between the agent (and the application) and Exchange Online"),
    /// STARTTLS not offered: a downgrade on the path (a security finding, never transient).
    StarttlsStripped => ("starttls_stripped", Step::Network, Severity::Critical,
        "{host}:{port} did not offer STARTTLS: something on the path strips it (a downgrade); no credential was sent",
        "find the firewall or proxy that rewrites SMTP on port {port} (SMTP inspection, fixup or ESMTP filtering) and turn it off for {host}; never let the application fall back to plain text"),
    /// The server certificate is from an untrusted issuer: TLS inspection.
    TlsInspection => ("tls_inspection", Step::Network, Severity::Critical,
        "the certificate {host} presents is not from a trusted CA: a TLS-inspecting proxy sits in the path",
        "exempt {host} (and login.microsoftonline.com, graph.microsoft.com) from TLS inspection, or add the proxy's CA certificate to ca_file of app {app}"),
    ServerCertificateInvalid => ("server_certificate_invalid", Step::Network, Severity::Critical,
        "the certificate {host} presents is expired or for another host",
        "check that {host} is the right host and that nothing in the path answers in its place"),
    TlsFailed => ("tls_failed", Step::Network, Severity::Critical,
        "the TLS handshake with {host} failed",
        "something in the path is not a TLS server for {host}, or shares no protocol version with the agent"),
    DnsFailure => ("dns_failure", Step::Network, Severity::Critical,
        "{host} does not resolve",
        "check DNS on the agent's host and the configured host name"),
    ConnectionRefused => ("connection_refused", Step::Network, Severity::Critical,
        "{host}:{port} refuses connections",
        "a firewall or proxy blocks outbound port {port} to {host}"),
    Timeout => ("timeout", Step::Network, Severity::Critical,
        "{host} did not answer in time ({reason})",
        "a firewall dropping packets, a proxy, or a slow endpoint: the log names the phase"),
    Throttled => ("throttled", Step::Transient, Severity::Warning,
        "Microsoft throttled the last {check} run ({reply})",
        "nothing, if it passes: the agent honours Retry-After; at most 3 concurrent SMTP connections per mailbox"),
    ServiceError => ("service_error", Step::Transient, Severity::Warning,
        "the last {check} run met a server error ({reason})",
        "nothing, if it passes; the log has the status and Microsoft's ids"),
    GraphPermissionMissing => ("graph_permission_missing", Step::ApiPermission, Severity::Warning,
        "app {reader} may not read app registrations in Microsoft Graph (403): the expiry of app {app}'s credentials is not watched",
        "grant Application.Read.All (Microsoft Graph > Application permissions, with admin consent) to app {reader}, or set graph_reader of app {app} to an app that has it"),
    /// The Graph read failed (throttled, network, server error): expiry data is from the last
    /// successful read.
    GraphUnavailable => ("graph_unavailable", Step::Transient, Severity::Warning,
        "the last Graph read of app {app} failed ({reason}): credential expiry is as of the last successful read",
        "nothing, if the next read passes: the agent waits for Retry-After"),
    TlsVerificationOff => ("tls_verification_off", Step::ClientConfig, Severity::Warning,
        "server certificate verification is switched off for {mailbox}: anyone in the path could read its token",
        "remove tls_insecure_skip_verify from mailbox {mailbox}; add the CA to ca_file instead"),
    ProtocolError => ("protocol_error", Step::Unknown, Severity::Critical,
        "{host}:{port} did not speak the SMTP expected",
        "a proxy, or the wrong port: the log has the reply"),
    Unexplained => ("unexplained", Step::Unknown, Severity::Critical,
        "the {check} check failed ({reason})",
        "the log line has the details (and Microsoft's trace and correlation ids)"),
    InternalError => ("internal_error", Step::Unknown, Severity::Critical,
        "a bug in the agent failed the last {check} run",
        "the next run goes ahead as scheduled; please report the log line"),
}

impl Cause {
    pub fn label(self) -> &'static str {
        self.info().label
    }

    pub fn step(self) -> Step {
        self.info().step
    }

    pub fn severity(self) -> Severity {
        self.info().severity
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The verdict of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The target's app (the app itself, or the mailbox's): the `app` label.
    pub app: String,
    pub cause: Cause,
    /// What is wrong, with the target's names filled in.
    pub summary: String,
    /// What to do, with the target's names filled in.
    pub remediation: String,
    /// Which check result the verdict rests on (`None`: the configuration, or nothing yet).
    pub from: Option<CheckKind>,
    /// The Microsoft 365 incident a `microsoft_incident` verdict names: its id and service.
    pub incident: Option<(String, crate::checks::health::Service)>,
}

impl Verdict {
    pub fn step(&self) -> Step {
        self.cause.step()
    }

    pub fn severity(&self) -> Severity {
        self.cause.severity()
    }
}

/// What a verdict is made from: the target and the latest reports of it and its app.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub target: &'a Target,
    /// The app's latest token check.
    pub token: Option<&'a Report>,
    /// The mailbox's latest SMTP check.
    pub smtp: Option<&'a Report>,
    /// The app's latest Graph check.
    pub graph: Option<&'a Report>,
    /// The app's last successful Graph check (its credential facts stay true after a failure).
    pub graph_ok: Option<&'a Report>,
    /// The mailbox's latest canary run.
    pub canary: Option<&'a Report>,
    /// Open service health issues of the tenant (empty when not watched).
    pub issues: &'a [crate::checks::health::Issue],
    /// Another mailbox of the same app got past AUTH in its latest run (so the Exchange service
    /// principal exists).
    pub sibling_authenticated: bool,
    pub now: DateTime<Utc>,
    pub settings: &'a DiagnosisSettings,
}

/// Values for the `{placeholders}` of the cause table.
struct Vars<'a> {
    i: &'a Inputs<'a>,
    check: Option<CheckKind>,
    failure: Option<&'a Failure>,
    days: Option<i64>,
    date: Option<DateTime<Utc>>,
    incident: Option<&'a crate::checks::health::Issue>,
}

impl Vars<'_> {
    fn render(&self, template: &str) -> String {
        let app = self.i.target.app();
        let mailbox = self.i.target.mailbox();
        // A failure of the SMTP check for want of a token is about the token endpoint.
        let about_token = self.failure.is_some_and(|f| f.token_reason.is_some());
        let (host, port) = match (self.check, mailbox) {
            (Some(CheckKind::Smtp), Some(m)) if !about_token => {
                (m.smtp_host.clone(), m.smtp_port.to_string())
            }
            (Some(CheckKind::Graph), _) if !about_token => host_port(&app.graph_url),
            (_, _) => host_port(&app.login_url),
        };
        let session = match self.check {
            Some(CheckKind::Smtp) => self.i.smtp.and_then(|r| r.smtp()),
            Some(CheckKind::Canary) => self.i.canary.and_then(|r| r.canary()).map(|c| &c.smtp),
            _ => None,
        };
        let smtp_reply = session.and_then(|d| d.failed_reply.as_ref()).map(|r| {
            format!("{} {}", r.code, r.enhanced.as_deref().unwrap_or_default())
                .trim()
                .to_string()
        });
        let reply = smtp_reply
            .or_else(|| self.failure.map(|f| f.reason.as_str().to_string()))
            .unwrap_or_default();
        let reason = self
            .failure
            .map(|f| match f.aadsts {
                Some(c) => format!("{}, AADSTS{c}", f.root_reason()),
                None => f.root_reason().to_string(),
            })
            .unwrap_or_default();
        let kind = match &app.credential {
            Credential::ClientSecret(_) => "client secret",
            Credential::Certificate(_) => "certificate",
        };
        let canary = mailbox.and_then(|m| m.canary.as_ref());
        let incident = self.incident;
        let pairs: [(&str, String); 21] = [
            (
                "{canary_to}",
                canary.map(|c| c.to.to_string()).unwrap_or_default(),
            ),
            (
                "{canary_reader}",
                canary.map(|c| c.reader.name.clone()).unwrap_or_default(),
            ),
            (
                "{canary_timeout}",
                canary
                    .map(|c| crate::plan::format_duration(c.check.timeout))
                    .unwrap_or_default(),
            ),
            (
                "{message_id}",
                self.i
                    .canary
                    .and_then(|r| r.canary())
                    .and_then(|c| c.message_id.clone())
                    .unwrap_or_default(),
            ),
            (
                "{incident}",
                incident.map(|x| x.id.clone()).unwrap_or_default(),
            ),
            (
                "{incident_service}",
                incident
                    .map(|x| match x.service {
                        crate::checks::health::Service::ExchangeOnline => "Exchange Online",
                        crate::checks::health::Service::MicrosoftEntra => "Microsoft Entra",
                    })
                    .unwrap_or_default()
                    .to_string(),
            ),
            (
                "{incident_title}",
                incident.map(|x| x.title.clone()).unwrap_or_default(),
            ),
            ("{app}", app.name.clone()),
            ("{client_id}", app.client_id.clone()),
            ("{tenant}", app.tenant.clone()),
            (
                "{mailbox}",
                mailbox.map(|m| m.name.clone()).unwrap_or_default(),
            ),
            (
                "{address}",
                mailbox.map(|m| m.address.to_string()).unwrap_or_default(),
            ),
            ("{host}", host),
            ("{port}", port),
            (
                "{days}",
                self.days.map(|d| d.to_string()).unwrap_or_default(),
            ),
            (
                "{date}",
                self.date
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
            ),
            ("{kind}", kind.to_string()),
            ("{reader}", app.graph_reader_or_self().name.clone()),
            ("{reply}", reply),
            ("{reason}", reason),
            (
                "{check}",
                self.check
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
            ),
        ];
        let mut out = template.to_string();
        for (k, v) in pairs {
            if out.contains(k) {
                out = out.replace(k, &v);
            }
        }
        out
    }
}

fn host_port(u: &url::Url) -> (String, String) {
    (
        u.host_str().unwrap_or_default().to_string(),
        u.port_or_known_default().unwrap_or(443).to_string(),
    )
}

/// A candidate verdict before the worst one is picked.
struct Finding<'a> {
    cause: Cause,
    from: Option<CheckKind>,
    failure: Option<&'a Failure>,
    days: Option<i64>,
    date: Option<DateTime<Utc>>,
    incident: Option<&'a crate::checks::health::Issue>,
}

impl<'a> Finding<'a> {
    fn new(cause: Cause, from: Option<CheckKind>, failure: Option<&'a Failure>) -> Self {
        Self {
            cause,
            from,
            failure,
            days: None,
            date: None,
            incident: None,
        }
    }
}

/// A cause's remediation with a target's names filled in (no report needed).
pub fn remediation_for(target: &Target, cause: Cause) -> String {
    let settings = DiagnosisSettings::default();
    let i = Inputs {
        target,
        token: None,
        smtp: None,
        graph: None,
        graph_ok: None,
        canary: None,
        issues: &[],
        sibling_authenticated: false,
        now: Utc::now(),
        settings: &settings,
    };
    let vars = Vars {
        i: &i,
        check: None,
        failure: None,
        days: None,
        date: None,
        incident: None,
    };
    vars.render(cause.info().remediation)
}

/// The verdict of a target from its inputs.
pub fn diagnose(i: &Inputs) -> Verdict {
    let mut findings: Vec<Finding> = Vec::new();
    // Order matters among equally severe findings: the mail path first (SMTP, then the token
    // it needs), then what only threatens it (Graph, settings).
    if let Some(r) = i.smtp {
        if let Some(f) = &r.failure {
            let cause = smtp_cause(i, r, f);
            // A failure that the token caused (no token, or no role in it) is over once a newer
            // token run succeeded with the role: the newest token is what the next run sends.
            let token_caused = f.token_reason.is_some() || (cause == Cause::ConsentMissing);
            let fixed_since = i.token.is_some_and(|t| {
                t.started_at > r.started_at
                    && t.success()
                    && t.token().and_then(|d| d.smtp_role) == Some(true)
            });
            if !(token_caused && fixed_since) {
                findings.push(Finding::new(cause, Some(CheckKind::Smtp), Some(f)));
            }
        }
    }
    // The canary: delivery, after the SMTP session it shares the checks of.
    if let Some(r) = i.canary {
        if let Some(f) = &r.failure {
            let cause = match f.reason {
                Reason::Canary(c) => match c {
                    CanaryReason::NotDelivered => Cause::CanaryNotDelivered,
                    CanaryReason::DeliveredToJunk => Cause::CanaryJunk,
                    CanaryReason::ReaderPermissionMissing => Cause::CanaryReaderPermissionMissing,
                    CanaryReason::RecipientNotFound => Cause::CanaryRecipientNotFound,
                    CanaryReason::GraphThrottled
                    | CanaryReason::GraphError
                    | CanaryReason::GraphInvalidResponse
                    | CanaryReason::ReaderTokenUnavailable => Cause::CanaryUnavailable,
                },
                _ => smtp_cause(i, r, f),
            };
            findings.push(Finding::new(cause, Some(CheckKind::Canary), Some(f)));
        }
    }
    if let Some(r) = i.token {
        match &r.failure {
            Some(f) => findings.push(Finding::new(
                token_cause(i, f),
                Some(CheckKind::Token),
                Some(f),
            )),
            None => {
                // A token newer than the last SMTP run that lacks the role: consent was revoked,
                // and the next SMTP run will fail. Say so now.
                let newer = i.smtp.is_none_or(|s| s.started_at <= r.started_at);
                if newer && r.token().and_then(|t| t.smtp_role) == Some(false) {
                    findings.push(Finding::new(
                        Cause::ConsentMissing,
                        Some(CheckKind::Token),
                        None,
                    ));
                }
            }
        }
    }
    if let Some(f) = expiry_finding(i) {
        findings.push(f);
    }
    if let Some(r) = i.graph {
        if let Some(f) = &r.failure {
            let cause = match f.reason {
                Reason::Graph(GraphReason::PermissionMissing) => Cause::GraphPermissionMissing,
                _ => Cause::GraphUnavailable,
            };
            findings.push(Finding::new(cause, Some(CheckKind::Graph), Some(f)));
        }
    }
    if let Some(m) = i.target.mailbox() {
        if m.tls_insecure_skip_verify {
            findings.push(Finding::new(Cause::TlsVerificationOff, None, None));
        }
    }
    // Not run yet: a mailbox before its first SMTP run, an app before its first token run,
    // or a target none of whose checks has reported.
    let any = i.token.is_some() || i.graph.is_some() || i.smtp.is_some();
    let awaited = !any
        || match i.target {
            Target::Mailbox(m) => m.smtp_check.enabled && i.smtp.is_none(),
            Target::App(a) => a.token_check.enabled && i.token.is_none(),
        };
    if awaited {
        findings.push(Finding::new(Cause::Pending, None, None));
    }
    // The worst finding; the first of equals.
    let mut best = findings
        .into_iter()
        .enumerate()
        .max_by_key(|(n, f)| (f.cause.severity(), std::cmp::Reverse(*n)))
        .map(|(_, f)| f)
        .unwrap_or_else(|| Finding::new(Cause::Ok, None, None));
    // A failure Microsoft has already posted: transient, network or unexplained, on a service
    // with an open incident (advisories change nothing).
    if let (Some(check), Some(_)) = (best.from, best.failure) {
        let outside = matches!(
            best.cause.step(),
            Step::Transient | Step::Network | Step::Unknown
        );
        // The service the failed step needs: a token (the token check's, or the one an SMTP
        // session or the canary's reader could not get) is Entra's; the rest of the mail path
        // Exchange Online's; Graph's own failures are neither.
        let token_failure = best.failure.is_some_and(|f| {
            f.token_reason.is_some()
                || matches!(
                    f.reason,
                    Reason::Smtp(SmtpReason::TokenUnavailable)
                        | Reason::Canary(CanaryReason::ReaderTokenUnavailable)
                )
        });
        let service = match check {
            CheckKind::Token => Some(Service::MicrosoftEntra),
            CheckKind::Smtp | CheckKind::Canary if token_failure => Some(Service::MicrosoftEntra),
            CheckKind::Smtp | CheckKind::Canary => Some(Service::ExchangeOnline),
            CheckKind::Graph | CheckKind::Health => None,
        };
        let incident = i
            .issues
            .iter()
            .find(|x| x.incident && service.is_some_and(|s| s == x.service));
        // A definite answer (STARTTLS stripped on the path, a message refused with its reason)
        // is not the incident's doing.
        let definite = matches!(best.cause, Cause::StarttlsStripped | Cause::MessageRejected);
        if let (true, Some(x)) = (outside && !definite, incident) {
            best.cause = Cause::MicrosoftIncident;
            best.incident = Some(x);
        }
    }
    let vars = Vars {
        i,
        check: best.from,
        failure: best.failure,
        days: best.days,
        date: best.date,
        incident: best.incident,
    };
    let info = best.cause.info();
    Verdict {
        app: i.target.app().name.clone(),
        cause: best.cause,
        summary: vars.render(info.summary),
        remediation: vars.render(info.remediation),
        from: best.from,
        incident: best.incident.map(|x| (x.id.clone(), x.service)),
    }
}

/// The in-use credential's expiry, from the last successful Graph read.
fn expiry_finding<'a>(i: &Inputs<'a>) -> Option<Finding<'a>> {
    let reg = i.graph_ok?.graph()?.registration.as_ref()?;
    let end = reg.in_use()?.end?;
    let left = end - i.now;
    let days = crate::plan::days_until(end, i.now);
    let window = chrono::Duration::from_std(i.settings.expiry_warning).ok()?;
    let cause = if left <= chrono::Duration::zero() {
        match i.target.app().credential {
            Credential::ClientSecret(_) => Cause::SecretExpired,
            Credential::Certificate(_) => Cause::CertificateExpired,
        }
    } else if left <= window {
        Cause::CredentialExpiring
    } else {
        return None;
    };
    Some(Finding {
        days: Some(days),
        date: Some(end),
        ..Finding::new(cause, Some(CheckKind::Graph), None)
    })
}

/// Whether the configured secret is the `keyId` of one of the app's credentials (Graph).
fn is_a_key_id(i: &Inputs, secret: &str) -> bool {
    i.graph_ok
        .and_then(|r| r.graph())
        .and_then(|g| g.registration.as_ref())
        .is_some_and(|reg| {
            reg.credentials
                .iter()
                .any(|c| c.key_id.eq_ignore_ascii_case(secret.trim()))
        })
}

/// The cause of a token failure (from the token check, or kept by the SMTP or Graph check).
fn token_cause(i: &Inputs, f: &Failure) -> Cause {
    match f.root_reason() {
        Reason::Token(t) => match t {
            TokenReason::SecretExpired => Cause::SecretExpired,
            TokenReason::SecretInvalid => {
                // A secret's ID is a GUID, and Graph lists it as the secret's keyId; a value
                // never looks like one (a deleted or mistyped value is secret_invalid).
                let is_an_id = match &i.target.app().credential {
                    Credential::ClientSecret(s) => {
                        crate::plan::is_guid(s.expose()) || is_a_key_id(i, s.expose())
                    }
                    Credential::Certificate(_) => false,
                };
                if is_an_id {
                    Cause::SecretIdPasted
                } else {
                    Cause::SecretInvalid
                }
            }
            TokenReason::CredentialMissing => Cause::CredentialMissing,
            TokenReason::AssertionInvalid => {
                let expired = i
                    .graph_ok
                    .and_then(|r| r.graph())
                    .and_then(|g| g.registration.as_ref())
                    .and_then(|reg| reg.in_use())
                    .and_then(|c| c.end)
                    .is_some_and(|end| end <= i.now);
                if expired {
                    Cause::CertificateExpired
                } else if f.aadsts == Some(700024) {
                    Cause::ClockSkew
                } else {
                    Cause::CertificateNotUploaded
                }
            }
            TokenReason::AppNotFound => Cause::AppNotFound,
            TokenReason::AppDisabled => Cause::AppDisabled,
            TokenReason::TenantNotFound => Cause::TenantNotFound,
            TokenReason::InvalidScope => Cause::ScopeInvalid,
            TokenReason::ResourceNotFound => Cause::ExchangeNotInTenant,
            TokenReason::ConsentMissing => Cause::ConsentMissing,
            TokenReason::ConditionalAccess => Cause::ConditionalAccess,
            TokenReason::Throttled => Cause::Throttled,
            TokenReason::HttpError => Cause::ServiceError,
            TokenReason::InvalidResponse | TokenReason::Other => Cause::Unexplained,
        },
        Reason::Common(c) => common_cause(c, f.cert_problem),
        _ => Cause::Unexplained,
    }
}

fn common_cause(c: CommonReason, cert: Option<CertProblem>) -> Cause {
    match c {
        CommonReason::Dns => Cause::DnsFailure,
        CommonReason::ConnectRefused => Cause::ConnectionRefused,
        CommonReason::Timeout => Cause::Timeout,
        CommonReason::TlsHandshake => Cause::TlsFailed,
        CommonReason::TlsCertInvalid => match cert {
            Some(CertProblem::Untrusted) => Cause::TlsInspection,
            _ => Cause::ServerCertificateInvalid,
        },
        CommonReason::InternalError => Cause::InternalError,
    }
}

/// The cause of an SMTP failure.
fn smtp_cause(i: &Inputs, r: &Report, f: &Failure) -> Cause {
    let details = r.smtp();
    match f.reason {
        Reason::Smtp(s) => match s {
            SmtpReason::StarttlsMissing => Cause::StarttlsStripped,
            SmtpReason::Xoauth2NotOffered => Cause::Xoauth2NotOffered,
            SmtpReason::AuthRejected => match details.and_then(|d| d.token_has_role) {
                Some(false) => Cause::ConsentMissing,
                _ if i.sibling_authenticated => Cause::MailboxPermissionMissing,
                _ => Cause::ServicePrincipalOrPermissionMissing,
            },
            SmtpReason::SmtpAuthDisabled => {
                let text = details
                    .and_then(|d| d.failed_reply.as_ref())
                    .map(|r| r.text.as_str())
                    .unwrap_or_default();
                match smtp::auth_disabled_scope(text) {
                    AuthDisabledScope::Tenant => Cause::SmtpAuthDisabledTenant,
                    AuthDisabledScope::Mailbox | AuthDisabledScope::Unknown => {
                        Cause::SmtpAuthDisabledMailbox
                    }
                    AuthDisabledScope::Policy => Cause::SmtpAuthBlockedByPolicy,
                }
            }
            SmtpReason::TlsVersion => Cause::TlsVersion,
            SmtpReason::Throttled => Cause::Throttled,
            SmtpReason::SendAsDenied => Cause::SendAsDenied,
            SmtpReason::SenderRestricted => Cause::SenderRestricted,
            SmtpReason::TenantSendingBlocked => Cause::TenantSendingBlocked,
            SmtpReason::MessageRejected => Cause::MessageRejected,
            SmtpReason::ProtocolError => Cause::ProtocolError,
            SmtpReason::TokenUnavailable => token_cause(i, f),
        },
        Reason::Common(c) => common_cause(c, f.cert_problem),
        _ => Cause::Unexplained,
    }
}

/// How far the evidence proves one setup step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Proven to work.
    Ok,
    /// Works, but needs attention (an expiring credential).
    Warning,
    /// Broken: the verdict's step.
    Failed,
    /// Not reached, or not checked.
    Unknown,
}

impl StepStatus {
    /// ✔ ⚠ ✘ ? for people.
    pub fn mark(self) -> &'static str {
        match self {
            StepStatus::Ok => "✔",
            StepStatus::Warning => "⚠",
            StepStatus::Failed => "✘",
            StepStatus::Unknown => "?",
        }
    }
}

/// Each of the five setup steps with what the evidence shows of it.
pub fn setup_steps(i: &Inputs, v: &Verdict) -> [(Step, StepStatus); 5] {
    let token_ok = i.token.is_some_and(|r| r.success())
        || i.smtp
            .and_then(|r| r.smtp())
            .is_some_and(|d| d.token_has_role.is_some());
    let role = i
        .smtp
        .and_then(|r| r.smtp())
        .and_then(|d| d.token_has_role)
        .or_else(|| i.token.and_then(|r| r.token()).and_then(|t| t.smtp_role));
    let smtp_done = i.smtp.map(|r| {
        let d = r.smtp();
        let authenticated = r.success()
            || d.and_then(|d| d.failed_phase)
                .is_some_and(|p| matches!(p, Phase::MailFrom | Phase::Send | Phase::Quit));
        (r.success(), authenticated)
    });
    Step::SETUP.map(|step| {
        let status = if v.step() == step && v.severity() == Severity::Critical {
            StepStatus::Failed
        } else if v.step() == step && v.severity() == Severity::Warning {
            StepStatus::Warning
        } else {
            let proven = match step {
                Step::AppRegistration | Step::Credential => token_ok,
                Step::ApiPermission => role == Some(true),
                Step::ExchangeAccess => smtp_done.is_some_and(|(_, auth)| auth),
                Step::ClientConfig => smtp_done.is_some_and(|(ok, _)| ok),
                _ => false,
            };
            if proven {
                StepStatus::Ok
            } else {
                StepStatus::Unknown
            }
        };
        (step, status)
    })
}

/// The README's cause table, generated from the one above (a test keeps the README equal).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| cause | step | severity | what it means | what to do |\n|---|---|---|---|---|\n",
    );
    for c in Cause::ALL {
        let i = c.info();
        out += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            i.label,
            i.step.as_str(),
            i.severity,
            i.summary,
            i.remediation
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::checks::smtp::{ReplyFacts, SmtpDetails};
    use crate::checks::token::TokenDetails;
    use crate::checks::{Details, Failure};
    use crate::plan::Plan;
    use crate::reasons::TokenReason;

    fn plan(secret: &str) -> Plan {
        let yaml = format!(
            "apps:\n  - {{ name: app, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: \"{secret}\", login_url: \"https://login.example:8443\" }}\nmailboxes:\n  - {{ name: mb, app: app, address: mb@contoso.com, smtp_host: smtp.example }}\n"
        );
        crate::config::from_yaml(&yaml, "t.yml", std::path::Path::new(".")).unwrap()
    }

    fn report(kind: CheckKind, at: i64, failure: Option<Failure>, details: Details) -> Report {
        Report {
            kind,
            target: "x".into(),
            started_at: DateTime::from_timestamp(1_800_000_000 + at, 0).unwrap(),
            duration: Duration::from_millis(5),
            failure,
            details,
            retry_after: None,
        }
    }

    fn token_ok(role: bool) -> Details {
        Details::Token(TokenDetails {
            resource: crate::auth::Resource::Exchange,
            expires_at: None,
            lifetime_seconds: Some(3600),
            smtp_role: Some(role),
            claims: None,
            http_status: None,
        })
    }

    fn smtp(role: Option<bool>, reply: Option<(u16, &str)>) -> Details {
        Details::Smtp(SmtpDetails {
            app: "app".into(),
            address: "mb@contoso.com".into(),
            phases: Vec::new(),
            host: "smtp.example".into(),
            port: 587,
            failed_phase: reply.map(|_| crate::checks::smtp::Phase::Auth),
            failed_reply: reply.map(|(code, text)| ReplyFacts {
                code,
                enhanced: text.split_whitespace().next().map(str::to_string),
                text: text.into(),
            }),
            tls: None,
            insecure_skip_verify: false,
            token_has_role: role,
            sent: None,
        })
    }

    fn diagnose_with(plan: &Plan, token: Option<&Report>, smtp: Option<&Report>) -> Verdict {
        let target = plan.target("mb").unwrap().clone();
        diagnose(&Inputs {
            target: &target,
            token,
            smtp,
            graph: None,
            graph_ok: None,
            sibling_authenticated: false,
            now: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
            settings: &plan.settings.diagnosis,
            canary: None,
            issues: &[],
        })
    }

    /// An open incident names the failure of a check that needs its service, and only for a
    /// transient, network or unexplained cause: a token an SMTP session could not get is
    /// Entra's, a refused message is no incident's doing, an advisory changes nothing.
    #[test]
    fn an_incident_explains_only_failures_of_the_service_it_is_on() {
        use crate::checks::health::{Issue, Service};
        let p = plan("Abc~value");
        let issue = |id: &str, service, incident| Issue {
            id: id.into(),
            service,
            incident,
            status: "service_degradation".into(),
            title: "t".into(),
            impact: "i".into(),
            start: None,
        };
        let target = p.target("mb").unwrap().clone();
        let verdict = |smtp: &Report, issues: &[Issue]| {
            diagnose(&Inputs {
                target: &target,
                token: None,
                smtp: Some(smtp),
                graph: None,
                graph_ok: None,
                sibling_authenticated: false,
                now: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
                settings: &p.settings.diagnosis,
                canary: None,
                issues,
            })
        };
        let timeout = report(
            CheckKind::Smtp,
            0,
            Some(Failure::new(CommonReason::Timeout, "banner")),
            smtp(None, None),
        );
        let mut no_token = Failure::new(SmtpReason::TokenUnavailable, "no token");
        no_token.token_reason = Some(CommonReason::Timeout.into());
        let no_token = report(CheckKind::Smtp, 0, Some(no_token), smtp(None, None));
        let refused = report(
            CheckKind::Smtp,
            0,
            Some(Failure::new(SmtpReason::MessageRejected, "550")),
            smtp(None, Some((550, "5.7.1 rejected"))),
        );
        let exo = [issue("EX1", Service::ExchangeOnline, true)];
        let entra = [issue("MO1", Service::MicrosoftEntra, true)];
        let advisory = [issue("EX2", Service::ExchangeOnline, false)];

        let v = verdict(&timeout, &exo);
        assert_eq!(v.cause, Cause::MicrosoftIncident);
        assert!(v.summary.contains("EX1"), "{}", v.summary);
        assert_eq!(verdict(&timeout, &entra).cause, Cause::Timeout);
        assert_eq!(verdict(&timeout, &advisory).cause, Cause::Timeout);
        // The token the session could not get: Entra's incident, not Exchange's.
        assert_eq!(verdict(&no_token, &exo).cause, Cause::Timeout);
        let v = verdict(&no_token, &entra);
        assert_eq!(v.cause, Cause::MicrosoftIncident);
        assert!(v.summary.contains("MO1"), "{}", v.summary);
        // A refusal with its reason stays what it is.
        assert_eq!(verdict(&refused, &exo).cause, Cause::MessageRejected);
    }

    #[test]
    fn nothing_run_is_pending_not_ok() {
        let p = plan("Abc~value");
        assert_eq!(diagnose_with(&p, None, None).cause, Cause::Pending);
    }

    #[test]
    fn a_token_failure_inside_the_smtp_check_names_the_login_host() {
        let p = plan("Abc~value");
        let mut f = Failure::new(SmtpReason::TokenUnavailable, "no token");
        f.token_reason = Some(CommonReason::Dns.into());
        let s = report(CheckKind::Smtp, 0, Some(f), smtp(None, None));
        let v = diagnose_with(&p, None, Some(&s));
        assert_eq!(v.cause, Cause::DnsFailure);
        assert!(
            v.summary.starts_with("login.example does not resolve"),
            "{}",
            v.summary
        );
    }

    #[test]
    fn a_consent_failure_is_over_once_a_newer_token_has_the_role() {
        let p = plan("Abc~value");
        let s = report(
            CheckKind::Smtp,
            0,
            Some(Failure::new(SmtpReason::AuthRejected, "535")),
            smtp(
                Some(false),
                Some((535, "5.7.3 Authentication unsuccessful")),
            ),
        );
        let old_token = report(CheckKind::Token, -10, None, token_ok(false));
        assert_eq!(
            diagnose_with(&p, Some(&old_token), Some(&s)).cause,
            Cause::ConsentMissing
        );
        let granted = report(CheckKind::Token, 10, None, token_ok(true));
        assert_eq!(diagnose_with(&p, Some(&granted), Some(&s)).cause, Cause::Ok);
        // ... but a 535 although the token had the role stays: that is step 4.
        let s4 = report(
            CheckKind::Smtp,
            0,
            Some(Failure::new(SmtpReason::AuthRejected, "535")),
            smtp(Some(true), Some((535, "5.7.3 Authentication unsuccessful"))),
        );
        let v = diagnose_with(&p, Some(&granted), Some(&s4));
        assert_eq!(v.cause, Cause::ServicePrincipalOrPermissionMissing);
        assert!(v.summary.contains("mb@contoso.com"), "{}", v.summary);
    }

    #[test]
    fn a_guid_shaped_secret_is_an_id_and_another_wrong_value_is_invalid() {
        let invalid = || {
            let mut f = Failure::new(TokenReason::SecretInvalid, "AADSTS7000215");
            f.aadsts = Some(7000215);
            report(CheckKind::Token, 0, Some(f), Details::None)
        };
        let p = plan("0e2f6c1a-9d4b-4c7e-8a51-3b6d2e9f7c40");
        assert_eq!(
            diagnose_with(&p, Some(&invalid()), None).cause,
            Cause::SecretIdPasted
        );
        let p = plan("Xyz~a-deleted-secret-value");
        assert_eq!(
            diagnose_with(&p, Some(&invalid()), None).cause,
            Cause::SecretInvalid
        );
    }
}
