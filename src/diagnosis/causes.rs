//! The cause table: every cause a verdict can name (the `cause` label), with its setup step,
//! severity, and the summary and fix templates in the admin's terms; the README's table is
//! generated from it.

use std::fmt;

use crate::reasons::Step;

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
    /// A credential of the app that is not the agent's signed in within
    /// `diagnosis.credential_used_within` (the application uses it) and expires within
    /// `diagnosis.expiry_warning`.
    ActiveCredentialExpiring => ("active_credential_expiring", Step::Credential, Severity::Warning,
        "the application signs in with {credential_kind} {credential} of app {app} (last sign-in {last_sign_in}), not the one the agent uses{agent_credential}, and it expires in {days} days ({date}): then the application stops sending while the agent's checks stay green",
        "before {date}: put the value of the credential the agent uses (or a new one: Entra admin center > App registrations > client ID {client_id} > Certificates & secrets) into the application's configuration, check that its sign-ins move to it, then delete {credential}"),
    /// A credential that signed in within `diagnosis.credential_used_within`, not the agent's,
    /// has expired: the application signing in with it gets no token any more.
    ActiveCredentialExpired => ("active_credential_expired", Step::Credential, Severity::Critical,
        "{credential_kind} {credential} of app {app} expired on {date}, and the application signed in with it {last_sign_in}: it gets no token any more (AADSTS7000222), while the agent signs in with another{agent_credential}",
        "put the value of the credential the agent uses (or a new one: Entra admin center > App registrations > client ID {client_id} > Certificates & secrets > New client secret) into the application's configuration now; then delete {credential}, whose sign-ins otherwise keep this verdict for diagnosis.credential_used_within"),
    /// The newest credential has not signed in since it was added, while an older one has: a
    /// rotation the application has not taken.
    RotationNotTaken => ("rotation_not_taken", Step::Credential, Severity::Warning,
        "{credential_kind} {credential} of app {app} was added on {date} and nothing has signed in with it since: the application still uses the old {old_credential} (last sign-in {last_sign_in})",
        "put the value of {credential} into the application's configuration, check that its sign-ins move to it, then delete {old_credential} (Entra admin center > App registrations > client ID {client_id} > Certificates & secrets)"),
    /// A watched mailbox sent nothing for longer than its `expect_traffic_within`.
    TrafficSilent => ("traffic_silent", Step::Unknown, Severity::Warning,
        "{address} has sent nothing for {silence}{last_message}, and it sends at least once every {expected}: the application that sends as it may have stopped",
        "look at the application that sends as {address}: its service, its outgoing queue, its log (AADSTS7000222 there is an expired secret: see its app's credential activity); Exchange admin center > Mail flow > Message trace, sender {address}; if it has nothing to send at such times, raise its expect_traffic_within"),
    /// A watched mailbox's failed and quarantined messages of the last 24 h are more than
    /// `diagnosis.traffic_failed_share` of them.
    TrafficFailing => ("traffic_failing", Step::Policy, Severity::Warning,
        "{share} of the {total} messages {address} sent in the last 24 h failed or were quarantined ({failed} failed, {quarantined} quarantined)",
        "Exchange admin center > Mail flow > Message trace: sender {address}, status Failed or Quarantined; a failed one's details give the recipient's reply; Microsoft Defender portal > Email & collaboration > Review > Quarantine: release the ones wrongly held, and fix why they were held (the sending domain's SPF, DKIM, DMARC; a transport rule; the content)"),
    /// The tenant's message trace could not be read: the mailbox's traffic is not watched.
    TrafficUnavailable => ("traffic_unavailable", Step::Unknown, Severity::Warning,
        "the message trace of tenant {tenant} could not be read ({reason}): what {address} sends is not watched",
        "{reason_fix}"),
    /// An app management policy forbids new client secrets for the app, or caps their lifetime
    /// below `diagnosis.expiry_warning`, and the app signs in with a secret.
    SecretRotationRestricted => ("secret_rotation_restricted", Step::Credential, Severity::Warning,
        "an app management policy of tenant {tenant} {policy}: app {app} signs in with a client secret that expires in {days} days ({date}), and rotating it will not give it a usable new one",
        "move app {app} to a certificate before {date}: upload one (Entra admin center > App registrations > client ID {client_id} > Certificates & secrets > Certificates > Upload certificate), configure its key in the application and the agent (certificate: instead of client_secret), then delete the secret; or ask the policy's owner to exempt the app (an app management policy assigned to it)"),
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
    /// AADSTS7000229: no service principal (Enterprise application) in the tenant.
    EnterpriseAppMissing => ("enterprise_app_missing", Step::AppRegistration, Severity::Critical,
        "app {app} has no service principal (Enterprise application) in tenant {tenant} (AADSTS7000229): Entra ID no longer issues tokens to an app without one (since 2026-03-31)",
        "create the service principal: Microsoft Graph PowerShell New-MgServicePrincipal -AppId {client_id}, or Entra admin center > App registrations > client ID {client_id} > API permissions > Grant admin consent (which creates it); the Exchange service principal (New-ServicePrincipal -ObjectId) takes its Object ID from Enterprise applications"),
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
    /// 535 5.7.3 with a token without `SMTP.SendAsApp`, `authorization: auto`, and no mailbox of
    /// the app signing in: either model's grant is missing.
    SendAuthorizationMissing => ("send_authorization_missing", Step::ExchangeAccess, Severity::Critical,
        "Exchange refuses the token for {address} (535 5.7.3); the token carries no SMTP.SendAsApp and no mailbox of app {app} signs in: neither authorization model lets the app send as {address}",
        "set up one of Microsoft's two models, then set authorization: of app {app} to it. RBAC for Applications (no API permission): in Exchange Online PowerShell, New-ManagementScope -Name <scope> -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{address}'\" (or a group), then New-ManagementRoleAssignment -App <Object ID from Entra admin center > Enterprise applications> -Role \"Application SMTP.SendAsApp\" -CustomResourceScope <scope>; check: Test-ServicePrincipalAuthorization -Identity <Object ID> -Resource {address}. Or the classic model: Entra admin center > App registrations > client ID {client_id} > API permissions > Office 365 Exchange Online > Application permissions > SMTP.SendAsApp, Grant admin consent, then Add-MailboxPermission -Identity {address} -User <Object ID> -AccessRights FullAccess; check: Get-MailboxPermission -Identity {address}. Both need the Exchange service principal: New-ServicePrincipal -AppId {client_id} -ObjectId <Object ID>"),
    /// 535 5.7.3 for this mailbox while others of the app sign in without `SMTP.SendAsApp`:
    /// RBAC for Applications, and the mailbox is outside the role assignment's scope.
    RbacMailboxOutOfScope => ("rbac_mailbox_out_of_scope", Step::ExchangeAccess, Severity::Critical,
        "Exchange refuses the token for {address} (535 5.7.3) while other mailboxes of app {app} sign in without SMTP.SendAsApp (RBAC for Applications): {address} is outside the management scope of the app's role assignment",
        "in Exchange Online PowerShell, bring {address} into the scope of the app's \"Application SMTP.SendAsApp\" role assignment (Get-ManagementRoleAssignment -Role \"Application SMTP.SendAsApp\" names the scope; Get-ManagementScope shows its filter: for a group filter, Add-DistributionGroupMember -Identity <group> -Member {address}), or assign the role with a scope that holds it; check: Test-ServicePrincipalAuthorization -Identity <Object ID of app {app} from Enterprise applications> -Resource {address} (InScope True). Do not add the SMTP.SendAsApp API permission: Exchange would then check FullAccess and refuse the mailboxes that work"),
    /// 535 5.7.3 with `authorization: app_rbac`, a token without the role, and no mailbox of the
    /// app signing in: the role assignment is missing (or scoped to none of them).
    RbacAssignmentMissing => ("rbac_assignment_missing", Step::ExchangeAccess, Severity::Critical,
        "Exchange refuses the token for {address} (535 5.7.3) and no mailbox of app {app} signs in: app {app} (RBAC for Applications) has no role assignment \"Application SMTP.SendAsApp\" whose scope holds {address}",
        "in Exchange Online PowerShell: New-ServicePrincipal -AppId {client_id} -ObjectId <Object ID from Entra admin center > Enterprise applications> (once per app), New-ManagementScope -Name <scope> -RecipientRestrictionFilter \"PrimarySmtpAddress -eq '{address}'\" (or a group), New-ManagementRoleAssignment -App <Object ID> -Role \"Application SMTP.SendAsApp\" -CustomResourceScope <scope>; check: Get-ManagementRoleAssignment -Role \"Application SMTP.SendAsApp\"; Test-ServicePrincipalAuthorization -Identity <Object ID> -Resource {address}"),
    /// 535 5.7.3 with `authorization: app_rbac` and a token that carries `SMTP.SendAsApp`:
    /// Exchange checks FullAccess instead of the role assignment.
    SendAsAppForcesFullAccess => ("sendasapp_forces_full_access", Step::ApiPermission, Severity::Critical,
        "Exchange refuses the token for {address} (535 5.7.3): app {app} is set up for RBAC for Applications, but its token carries SMTP.SendAsApp, so Exchange checks FullAccess on {address} instead of the role assignment",
        "remove the API permission: Entra admin center > App registrations > client ID {client_id} > API permissions > Office 365 Exchange Online > SMTP.SendAsApp > Remove permission (and its admin consent); tokens issued after that carry no role (the cached one lasts up to 90 minutes). If the app is meant to use FullAccess instead, set authorization: classic for app {app}"),
    /// `authorization: app_rbac` and the token carries `SMTP.SendAsApp`: the mailboxes with
    /// FullAccess still work, the others do not.
    SendAsAppInRbacApp => ("sendasapp_in_rbac_app", Step::ApiPermission, Severity::Warning,
        "app {app} is set up for RBAC for Applications, but its token carries SMTP.SendAsApp: Exchange checks FullAccess instead of the role assignment, and refuses every mailbox without it",
        "remove the API permission: Entra admin center > App registrations > client ID {client_id} > API permissions > Office 365 Exchange Online > SMTP.SendAsApp > Remove permission (and its admin consent); if the app is meant to use FullAccess, set authorization: classic for app {app}"),
    /// AADSTS65001, 650056, 90094 for an app not configured (nor seen) as classic: Entra ID
    /// wants admin consent for a permission the app requests; no advice to add one.
    AdminConsentMissing => ("admin_consent_missing", Step::ApiPermission, Severity::Critical,
        "Entra ID refuses app {app} a token: admin consent is missing for a permission it requests ({reason})",
        "Entra admin center > App registrations > client ID {client_id} > API permissions > Grant admin consent for the tenant (for the permissions listed there); an app that sends by RBAC for Applications needs no Exchange API permission, so remove the ones it does not use"),
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
        "the canary from {address} was accepted but is not in {canary_to} after {canary_timeout}: mail is accepted and goes nowhere{trace}",
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
        "Microsoft throttled the last {check} run ({reply}){held}",
        "nothing, if it passes: the agent honours Retry-After, and holds back only what the throttling service serves (Entra ID: the app's token check; Graph: its Graph reads; Exchange: this mailbox); at most 3 concurrent SMTP connections per mailbox"),
    ServiceError => ("service_error", Step::Transient, Severity::Warning,
        "the last {check} run met a server error ({reason})",
        "nothing, if it passes; the log has the status and Microsoft's ids"),
    GraphPermissionMissing => ("graph_permission_missing", Step::ApiPermission, Severity::Warning,
        "app {reader} may not read app registrations in Microsoft Graph (403): the expiry of app {app}'s credentials is not watched",
        "grant Application.Read.All (Microsoft Graph > Application permissions, with admin consent) to app {reader}, or set graph_reader of app {app} to an app that has it"),
    /// The Graph read failed (throttled, network, server error): expiry data is from the last
    /// successful read.
    GraphUnavailable => ("graph_unavailable", Step::Transient, Severity::Warning,
        "the last Graph read of app {app} failed ({reason}){held}: credential expiry is as of the last successful read",
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
    /// The agent's host ran out of file descriptors (or socket buffers, or memory): the check
    /// never reached Microsoft, so it says nothing of the tenant.
    AgentResources => ("agent_resources", Step::Unknown, Severity::Critical,
        "the agent's host ran out of file descriptors (or socket buffers, or memory) during the {check} check ({reason}): nothing is known of the tenant, and the agent's own watch is down",
        "raise the agent's open file limit (systemd: LimitNOFILE=; the agent raises its soft limit to the hard one at start and logs both), or lower --web.max-connections and scheduler.max_concurrent_checks; look for what holds the descriptors (ls /proc/<pid>/fd | wc -l)"),
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
