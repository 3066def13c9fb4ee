//! Reports → verdict: from the latest token, SMTP and Graph results of a mailbox (or of an app
//! without one), the setup step that is broken, a cause from a fixed list and the fix in the
//! admin's terms (portal path or PowerShell). Facts: `shared/reference/microsoft-365.md`.
//! This file decides; the cause table, the text filling and the step checklist have theirs.

mod activity;
mod causes;
mod render;
mod steps;
mod traffic;

pub use causes::{markdown_table, Cause, CauseInfo, Severity};
pub use render::remediation_for;
pub use steps::{setup_steps, StepStatus};

use chrono::{DateTime, Utc};

use crate::checks::health::Service;
use crate::checks::smtp::{self, AuthDisabledScope};
use crate::checks::{Failure, Report};
use crate::net::CertProblem;
use crate::plan::{Authorization, CheckKind, Credential, DiagnosisSettings, Target};
use crate::reasons::{
    CanaryReason, CommonReason, GraphReason, Reason, SmtpReason, Step, TokenReason,
};
use render::Vars;

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
    /// The app's last successful credential activity read.
    pub activity: Option<&'a Report>,
    /// The mailbox's traffic, when its app watches it.
    pub traffic: Option<&'a crate::checks::traffic::MailboxTraffic>,
    /// Its tenant's latest message trace read.
    pub traffic_check: Option<&'a Report>,
    /// Open service health issues of the tenant (empty when not watched).
    pub issues: &'a [crate::checks::health::Issue],
    /// Another mailbox of the same app got past AUTH in its latest run (so the Exchange service
    /// principal exists).
    pub sibling_authenticated: bool,
    /// Another mailbox of the same app got past AUTH with a token without `SMTP.SendAsApp`
    /// (so RBAC for Applications lets the app in).
    pub sibling_rbac_authenticated: bool,
    /// The model Exchange let the app in by the last time one of its mailboxes got past AUTH
    /// (`Classic` or `AppRbac`; `None`: never seen).
    pub seen_model: Option<Authorization>,
    pub now: DateTime<Utc>,
    pub settings: &'a DiagnosisSettings,
}

/// A candidate verdict before the worst one is picked.
struct Finding<'a> {
    cause: Cause,
    from: Option<CheckKind>,
    failure: Option<&'a Failure>,
    days: Option<i64>,
    date: Option<DateTime<Utc>>,
    incident: Option<&'a crate::checks::health::Issue>,
    /// The credential a finding about credential activity is about.
    credential: Option<&'a crate::checks::graph::CredentialInfo>,
    /// The other credential it names (the old one a rotation left in use).
    other: Option<&'a crate::checks::graph::CredentialInfo>,
    /// The last sign-in it names.
    last_sign_in: Option<DateTime<Utc>>,
    /// More `{placeholders}` of its cause's texts, with their values.
    extra: Vec<(&'static str, String)>,
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
            credential: None,
            other: None,
            last_sign_in: None,
            extra: Vec::new(),
        }
    }
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
                let role = r.token().and_then(|t| t.smtp_role);
                match i.target.app().authorization {
                    // A token newer than the last SMTP run that lacks the role: consent was
                    // revoked, and the next SMTP run will fail. Say so now. Only where the
                    // configuration says the app uses the role: under RBAC for Applications a
                    // token without it is right, so alone it proves nothing (SMTP decides).
                    Authorization::Classic => {
                        let newer = i.smtp.is_none_or(|s| s.started_at <= r.started_at);
                        if newer && role == Some(false) {
                            findings.push(Finding::new(
                                Cause::ConsentMissing,
                                Some(CheckKind::Token),
                                None,
                            ));
                        }
                    }
                    // The role makes Exchange check FullAccess instead of the role assignment.
                    Authorization::AppRbac if role == Some(true) => findings.push(Finding::new(
                        Cause::SendAsAppInRbacApp,
                        Some(CheckKind::Token),
                        None,
                    )),
                    Authorization::AppRbac | Authorization::Auto => {}
                }
            }
        }
    }
    if let Some(f) = rotation_finding(i) {
        findings.push(f);
    }
    if let Some(f) = expiry_finding(i) {
        findings.push(f);
    }
    findings.extend(activity::findings(i));
    findings.extend(traffic::findings(i));
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
            Target::Tenant(_) => false,
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
            CheckKind::Graph
            | CheckKind::Health
            | CheckKind::Activity
            | CheckKind::Traffic
            | CheckKind::Discovery => None,
        };
        let incident = i
            .issues
            .iter()
            .find(|x| x.incident && service.is_some_and(|s| s == x.service));
        // A definite answer (STARTTLS stripped on the path, a message refused with its reason,
        // the agent's own host out of descriptors) is not the incident's doing.
        let definite = matches!(
            best.cause,
            Cause::StarttlsStripped | Cause::MessageRejected | Cause::AgentResources
        );
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
        credential: best.credential,
        other: best.other,
        last_sign_in: best.last_sign_in,
        extra: &best.extra,
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

/// The tenant's policy will refuse (or cut short) the next secret of an app that signs in with
/// one: a warning while the secret still works.
fn rotation_finding<'a>(i: &Inputs<'a>) -> Option<Finding<'a>> {
    if !matches!(i.target.app().credential, Credential::ClientSecret(_)) {
        return None;
    }
    let g = i.graph_ok?.graph()?;
    let rules = g.secret_policy.as_ref()?.known?;
    let short = rules
        .max_lifetime
        .is_some_and(|m| m < i.settings.expiry_warning);
    if !(rules.addition_blocked || short) {
        return None;
    }
    let end = g.registration.as_ref()?.in_use()?.end?;
    if end <= i.now {
        return None;
    }
    Some(Finding {
        days: Some(crate::plan::days_until(end, i.now)),
        date: Some(end),
        ..Finding::new(
            Cause::SecretRotationRestricted,
            Some(CheckKind::Graph),
            None,
        )
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
            TokenReason::ServicePrincipalMissing => Cause::EnterpriseAppMissing,
            TokenReason::AppDisabled => Cause::AppDisabled,
            TokenReason::TenantNotFound => Cause::TenantNotFound,
            TokenReason::InvalidScope => Cause::ScopeInvalid,
            TokenReason::ResourceNotFound => Cause::ExchangeNotInTenant,
            TokenReason::ConsentMissing => match model(i) {
                Authorization::Classic => Cause::ConsentMissing,
                Authorization::AppRbac | Authorization::Auto => Cause::AdminConsentMissing,
            },
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
        CommonReason::LocalResources => Cause::AgentResources,
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
            SmtpReason::AuthRejected => {
                auth_rejected_cause(i, details.and_then(|d| d.token_has_role))
            }
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

/// The app's authorization model: as configured, or on `auto` the one it was last seen working
/// with (`Auto` while never seen).
fn model(i: &Inputs) -> Authorization {
    match i.target.app().authorization {
        Authorization::Auto => i.seen_model.unwrap_or(Authorization::Auto),
        set => set,
    }
}

/// Why Exchange refused the token (535 5.7.3), from the token's role, the app's authorization
/// model and its other mailboxes (`shared/reference/microsoft-365.md`, "Two authorization
/// models"). A token with `SMTP.SendAsApp` is judged by FullAccess; one without it by an
/// "Application SMTP.SendAsApp" role assignment, so a token without the role is a failure only
/// where the configuration says the app uses the role. Advice to add the role is never given
/// for an app that signs in without it: the role would switch every mailbox to FullAccess.
fn auth_rejected_cause(i: &Inputs, role: Option<bool>) -> Cause {
    match (role, model(i)) {
        // The app sends by the role (configured, or seen so): consent was never granted, or
        // was revoked.
        (Some(false), Authorization::Classic) => Cause::ConsentMissing,
        (Some(false), _) if i.sibling_rbac_authenticated => Cause::RbacMailboxOutOfScope,
        // By a role assignment (configured, or seen so): none holds the mailbox any more.
        (Some(false), Authorization::AppRbac) => Cause::RbacAssignmentMissing,
        (Some(false), Authorization::Auto) => Cause::SendAuthorizationMissing,
        (Some(true), Authorization::AppRbac) => Cause::SendAsAppForcesFullAccess,
        _ if i.sibling_authenticated => Cause::MailboxPermissionMissing,
        _ => Cause::ServicePrincipalOrPermissionMissing,
    }
}

#[cfg(test)]
mod tests;
