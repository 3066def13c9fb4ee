//! Filling the cause table's `{placeholders}` from a target, its reports and the finding: the
//! one place where a verdict's summary and fix get the target's names, hosts and dates.

use chrono::{DateTime, Utc};

use super::{Cause, Inputs};
use crate::checks::health::{Issue, Service};
use crate::checks::Failure;
use crate::plan::{CheckKind, Credential, DiagnosisSettings, Target};

/// Values for the `{placeholders}` of the cause table.
pub(super) struct Vars<'a> {
    pub i: &'a Inputs<'a>,
    pub check: Option<CheckKind>,
    pub failure: Option<&'a Failure>,
    pub days: Option<i64>,
    pub date: Option<DateTime<Utc>>,
    pub incident: Option<&'a Issue>,
    pub credential: Option<&'a crate::checks::graph::CredentialInfo>,
    pub other: Option<&'a crate::checks::graph::CredentialInfo>,
    pub last_sign_in: Option<DateTime<Utc>>,
    /// The finding's own placeholders.
    pub extra: &'a [(&'static str, String)],
}

impl Vars<'_> {
    pub fn render(&self, template: &str) -> String {
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
        let policy = self
            .i
            .graph_ok
            .and_then(|r| r.graph())
            .and_then(|g| g.secret_policy.as_ref())
            .and_then(|p| p.known)
            .map(|r| match (r.addition_blocked, r.max_lifetime) {
                (true, _) => "forbids adding client secrets".to_string(),
                (false, Some(max)) => format!(
                    "caps new client secrets at {} (under the {} warning window)",
                    crate::plan::format_duration(max),
                    crate::plan::format_duration(self.i.settings.expiry_warning)
                ),
                (false, None) => String::new(),
            })
            .unwrap_or_default();
        let incident = self.incident;
        let agent_credential = self
            .i
            .graph_ok
            .and_then(|r| r.graph())
            .and_then(|g| g.registration.as_ref())
            .and_then(|r| r.in_use())
            .map(|c| format!(", {}", super::activity::name(c)))
            .unwrap_or_default();
        let credential_kind = self
            .credential
            .map(|c| match c.kind {
                crate::checks::graph::CredentialType::Password => "client secret",
                crate::checks::graph::CredentialType::Certificate => "certificate",
            })
            .unwrap_or(kind);
        let trace = self
            .i
            .canary
            .and_then(|r| r.canary())
            .and_then(|c| c.trace.as_ref())
            .map(|t| format!("; message trace: {}", t.words()))
            .unwrap_or_default();
        let pairs: [(&str, String); 29] = [
            ("{trace}", trace),
            (
                "{credential}",
                self.credential
                    .map(super::activity::name)
                    .unwrap_or_default(),
            ),
            ("{credential_kind}", credential_kind.to_string()),
            (
                "{old_credential}",
                self.other.map(super::activity::name).unwrap_or_default(),
            ),
            (
                "{last_sign_in}",
                self.last_sign_in
                    .map(|t| t.format("on %Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
            ),
            ("{agent_credential}", agent_credential),
            ("{policy}", policy),
            ("{held}", self.held()),
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
                        Service::ExchangeOnline => "Exchange Online",
                        Service::MicrosoftEntra => "Microsoft Entra",
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
        for (k, v) in self.extra {
            if out.contains(k) {
                out = out.replace(k, v);
            }
        }
        for (k, v) in pairs {
            if out.contains(k) {
                out = out.replace(k, &v);
            }
        }
        out
    }
}

impl Vars<'_> {
    /// What a throttled run holds back, and until when (`; …`), or nothing.
    fn held(&self) -> String {
        let report = match self.check {
            Some(CheckKind::Token) => self.i.token,
            Some(CheckKind::Smtp) => self.i.smtp,
            Some(CheckKind::Graph) => self.i.graph,
            Some(CheckKind::Canary) => self.i.canary,
            _ => None,
        };
        let Some(r) =
            report.filter(|r| r.failure.as_ref().is_some_and(|f| f.reason.is_throttled()))
        else {
            return String::new();
        };
        let what = match r.kind {
            CheckKind::Token => "Entra ID holds back the app's token check (its mailboxes keep sending with the cached token)",
            CheckKind::Graph | CheckKind::Health | CheckKind::Activity => "Graph holds back the app's Graph reads (credentials, service health, credential activity)",
            CheckKind::Traffic => "message trace holds back the tenant's reads",
            CheckKind::Discovery => "Graph holds back the tenant's inventory",
            CheckKind::Smtp => "Exchange holds back this mailbox's SMTP check",
            CheckKind::Canary => "this mailbox's canary waits",
        };
        let until = r.retry_after.and_then(|d| {
            let end = r.started_at + chrono::Duration::from_std(r.duration + d).ok()?;
            Some(end.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        });
        match until {
            Some(t) => format!("; {what} until {t}, as its Retry-After asks"),
            None => format!("; {what} for a minute"),
        }
    }
}

fn host_port(u: &url::Url) -> (String, String) {
    (
        u.host_str().unwrap_or_default().to_string(),
        u.port_or_known_default().unwrap_or(443).to_string(),
    )
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
        activity: None,
        traffic: None,
        traffic_check: None,
        issues: &[],
        sibling_authenticated: false,
        sibling_rbac_authenticated: false,
        seen_model: None,
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
        credential: None,
        other: None,
        last_sign_in: None,
        extra: &[],
    };
    vars.render(cause.info().remediation)
}
