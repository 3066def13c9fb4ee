//! The Prometheus rule of every alert (expression, `for:`, severity, summary and description
//! templates with each cause's fix, runbook anchor) and the rules file made from them. The reason
//! sets that decide which failure raises which alert live here, and the evaluator reads them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{AlertName, Level};
use crate::diagnosis::Cause;
use crate::plan::{format_duration, AlertSettings, CheckKind};
use crate::reasons::{CanaryReason, CommonReason, GraphReason, Reason, SmtpReason, TokenReason};

/// Where the runbooks live by default: the agent serves `docs/runbooks.md` at `/runbooks`, so
/// a rule's link is the agent's own (its `instance`); `alerts.runbook_base_url` points the
/// links at an internal copy instead.
pub const RUNBOOKS_PATH: &str = "/runbooks";

/// How long an alert about the agent's series holds while the agent is blind to it (not
/// scraped, or back from a restart and not yet through the checks the alert is about): the
/// last state seen stands, instead of resolving a problem nobody fixed.
/// `SmtpOAuthExporterDown` pages within 5 minutes.
pub const BLIND_HOLD: Duration = Duration::from_secs(15 * 60);

/// One Prometheus alerting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: AlertName,
    pub level: Level,
    /// `for:` (`None`: fires at once).
    pub for_: Option<Duration>,
    /// The condition, over the agent's series (the rules file records it and holds it while
    /// the agent is blind, see [`BLIND_HOLD`]).
    pub expr: String,
    /// The `cause` label when the rule sets it; `None` when the expression carries one (the
    /// verdict's, or the failure's reason). Alertmanager groups notifications by `app` and
    /// `cause`: one problem, one page.
    pub cause: Option<&'static str>,
    pub summary: String,
    pub description: String,
    /// The runbook section (`docs/runbooks.md#anchor`).
    pub anchor: String,
}

impl Rule {
    /// Whether the rule is about the agent's own absence (its condition is Prometheus' alone
    /// and is never held).
    pub fn about_the_agent(&self) -> bool {
        matches!(
            self.name,
            AlertName::ExporterDown | AlertName::ExporterAbsent
        )
    }

    /// The series the rules file records the condition in.
    pub fn record(&self) -> String {
        let mut snake = String::new();
        for (i, c) in self
            .name
            .as_str()
            .trim_start_matches("SmtpOAuth")
            .chars()
            .enumerate()
        {
            if c.is_ascii_uppercase() && i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        format!("smtp_oauth:{snake}:condition")
    }

    /// The alerting expression of the rules file: the recorded condition, or the last state it
    /// showed within [`BLIND_HOLD`] while the agent is blind to it: not scraped at all (its
    /// `smtp_oauth_build_info` gone), or back from a restart or reload without having re-run
    /// the checks the alert is about (`smtp_oauth_check_pending`).
    pub fn held_expr(&self) -> String {
        if self.about_the_agent() {
            return self.expr.clone();
        }
        let r = self.record();
        let last = format!("last_over_time({r}[{}])", format_duration(BLIND_HOLD));
        // The check whose first run after a restart the alert waits for (the alert's own
        // check for the stale-check alert), and the labels it is matched on.
        use AlertName as A;
        let pending = match self.name {
            A::TokenFailing | A::SendAsAppMissing => Some(("target", Some(CheckKind::Token))),
            A::SmtpAuthFailing
            | A::SmtpUnreachable
            | A::StartTlsMissing
            | A::TlsVerificationOff => Some(("target", Some(CheckKind::Smtp))),
            A::CanaryFailing | A::CanarySlow | A::CanaryJunk | A::CanaryReaderDenied => {
                Some(("target", Some(CheckKind::Canary)))
            }
            A::CredentialExpiringSoon
            | A::CredentialExpiring
            | A::CredentialExpired
            | A::AppCredentialExpiring
            | A::ActiveCredentialExpiringSoon
            | A::ActiveCredentialExpiring
            | A::CredentialNotFound
            | A::GraphPermissionMissing => Some(("target", Some(CheckKind::Graph))),
            A::CredentialStale => Some(("target", Some(CheckKind::Activity))),
            A::CheckStale => Some(("check, target", None)),
            // Facts of every mailbox of an endpoint, of a tenant: while such a check is due.
            A::ServerCertificateExpiring => Some(("", Some(CheckKind::Smtp))),
            // What a trace read keeps is in memory: after a restart, until it has read again.
            A::TrafficSilent | A::TrafficFailing => Some(("", Some(CheckKind::Traffic))),
            A::MicrosoftIncident => Some(("", Some(CheckKind::Health))),
            // A restart loads the configuration afresh: its failure is over.
            A::ConfigReloadFailing | A::ExporterDown | A::ExporterAbsent => None,
        }
        .map(|(on, check)| {
            let on = if on.is_empty() {
                "job, instance".to_string()
            } else {
                format!("job, instance, {on}")
            };
            let selector = check.map_or(String::new(), |c| format!("{{check=\"{}\"}}", c.as_str()));
            format!("and on ({on}) smtp_oauth_check_pending{selector}")
        });
        let mut out =
            format!("{r}\n  or\n(\n  {last}\n  unless on (job, instance) smtp_oauth_build_info\n)");
        if let Some(p) = pending {
            out += &format!("\n  or\n(\n  {last}\n  {p}\n)");
        }
        out
    }

    /// The `runbook_url` annotation: `{base}#anchor`, by default the agent's own `/runbooks`
    /// (the alert's `instance`). `None` for an alert without an instance and no base set.
    pub fn runbook_url(&self, base: Option<&str>) -> Option<String> {
        match base {
            Some(b) => Some(format!("{}#{}", b.trim_end_matches('/'), self.anchor)),
            None if self.name == AlertName::ExporterAbsent => None,
            None => Some(format!(
                "http://{{{{ $labels.instance }}}}{RUNBOOKS_PATH}#{}",
                self.anchor
            )),
        }
    }
}

/// The label filter of failures that must not page on their own: throttling.
const NOT_THROTTLED: &str = "reason!=\"throttled\"";

/// SMTP reasons of a mailbox that cannot sign in (the token's own failures alert on the app).
pub(super) const SMTP_AUTH_REASONS: [SmtpReason; 5] = [
    SmtpReason::AuthRejected,
    SmtpReason::SmtpAuthDisabled,
    SmtpReason::SendAsDenied,
    SmtpReason::Xoauth2NotOffered,
    SmtpReason::TlsVersion,
];

/// Network reasons of a mailbox whose SMTP endpoint cannot be reached.
pub(super) const UNREACHABLE: [Reason; 6] = [
    Reason::Common(CommonReason::Dns),
    Reason::Common(CommonReason::ConnectRefused),
    Reason::Common(CommonReason::Timeout),
    Reason::Common(CommonReason::TlsHandshake),
    Reason::Common(CommonReason::TlsCertInvalid),
    Reason::Smtp(SmtpReason::ProtocolError),
];

fn regex_of(reasons: impl IntoIterator<Item = Reason>) -> String {
    reasons
        .into_iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join("|")
}

/// A remediation text of the cause or reason tables, with its placeholders turned into what
/// an alert knows (its labels) or a description of what it does not.
fn go_text(t: &str) -> String {
    [
        ("{app}", "{{ $labels.app }}"),
        ("{mailbox}", "{{ $labels.target }}"),
        ("{address}", "<address of mailbox {{ $labels.target }}>"),
        ("{client_id}", "<client ID of app {{ $labels.app }}>"),
        ("{tenant}", "<tenant of app {{ $labels.app }}>"),
        ("{host}", "the SMTP host"),
        ("{port}", "587"),
        ("{reader}", "{{ $labels.app }} (or its graph_reader)"),
        ("{kind}", "secret or certificate"),
        ("{message_id}", "its Message-ID, in /status"),
        (
            "{canary_to}",
            "<canary address of mailbox {{ $labels.target }}>",
        ),
        (
            "{canary_reader}",
            "<canary reader app of mailbox {{ $labels.target }}>",
        ),
        ("{canary_timeout}", "its timeout"),
        ("{date}", "it expires"),
        (
            "{credential}",
            "{{ $labels.type }} {{ $labels.key_id }} ({{ $labels.display_name }})",
        ),
        ("{credential_kind}", "{{ $labels.type }}"),
        ("{old_credential}", "the old one"),
        ("{trace}", ""),
        ("{agent_credential}", ""),
        (
            "{incident}",
            "{{ with printf \"smtp_oauth_verdict_incident_info{target='%s'}\" $labels.target | query }}{{ range . }}{{ .Labels.id }}{{ end }}{{ else }}the incident{{ end }}",
        ),
    ]
    .iter()
    .fold(t.to_string(), |acc, (k, v)| acc.replace(k, v))
}

/// `{{ if eq $labels.LABEL "a" }}fix a{{ else if … }}…{{ else }}fallback{{ end }}`.
fn chain(label: &str, cases: &[(&str, String)]) -> String {
    let mut s = String::new();
    for (i, (value, text)) in cases.iter().enumerate() {
        s += if i == 0 {
            "{{ if eq $labels."
        } else {
            "{{ else if eq $labels."
        };
        s += &format!("{label} \"{value}\" }}}}{text}");
    }
    s += "{{ else }}run `smtp-oauth-exporter check {{ $labels.target }}` for the fix{{ end }}";
    s
}

fn cause_chain(causes: &[Cause]) -> String {
    let cases: Vec<(&str, String)> = causes
        .iter()
        .map(|c| (c.label(), go_text(c.info().remediation)))
        .collect();
    chain("cause", &cases)
}

/// The verdict's labels joined onto a mailbox's failure series.
fn with_verdict(expr: &str) -> String {
    format!(
        "{expr}\n  * on (job, instance, target) group_left (app, step, cause) smtp_oauth_verdict"
    )
}

/// A mailbox's app label (from its verdict) on one of its series.
fn with_app(expr: &str) -> String {
    format!("({expr})\n  * on (job, instance, target) group_left (app) smtp_oauth_verdict")
}

/// The check kinds that check apps, and those that check mailboxes, as label regexes.
fn kinds(per_app: bool) -> String {
    CheckKind::ALL
        .iter()
        .filter(|k| k.is_per_app() == per_app)
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join("|")
}

/// A target's app label on an app's own series.
fn app_label(expr: &str) -> String {
    format!("label_replace({expr}, \"app\", \"$1\", \"target\", \"(.+)\")")
}

const CONFIRM: &str = "Confirm with `smtp-oauth-exporter check {{ $labels.target }}`.";
const CONFIRM_LOWER: &str = "run `smtp-oauth-exporter check {{ $labels.target }}`";

/// The failures another alert covers, by check (CheckStale stays quiet for them).
fn covered_failures() -> String {
    let smtp: Vec<Reason> = SMTP_AUTH_REASONS
        .map(Reason::Smtp)
        .into_iter()
        .chain(UNREACHABLE)
        .chain([
            Reason::Smtp(SmtpReason::StarttlsMissing),
            Reason::Smtp(SmtpReason::TokenUnavailable),
        ])
        .collect();
    let canary: Vec<Reason> = CANARY_FAILING
        .into_iter()
        .chain([Reason::Canary(CanaryReason::ReaderPermissionMissing)])
        .collect();
    [
        "smtp_oauth_check_failure_info{check=\"token\"}".to_string(),
        format!(
            "smtp_oauth_check_failure_info{{check=\"smtp\",reason=~\"{}\"}}",
            regex_of(smtp)
        ),
        format!(
            "smtp_oauth_check_failure_info{{check=\"canary\",reason=~\"{}\"}}",
            regex_of(canary)
        ),
        "smtp_oauth_check_failure_info{check=\"graph\",reason=\"graph_permission_missing\"}"
            .to_string(),
    ]
    .join("\n    or\n    ")
}

/// Whether another alert covers a failure of this check with this reason (the evaluator's side
/// of [`covered_failures`]).
pub(super) fn covered(kind: CheckKind, reason: Reason) -> bool {
    match kind {
        CheckKind::Token => true,
        CheckKind::Smtp => {
            UNREACHABLE.contains(&reason)
                || matches!(reason, Reason::Smtp(s) if SMTP_AUTH_REASONS.contains(&s)
                    || matches!(s, SmtpReason::StarttlsMissing | SmtpReason::TokenUnavailable))
        }
        CheckKind::Canary => {
            CANARY_FAILING.contains(&reason)
                || reason == Reason::Canary(CanaryReason::ReaderPermissionMissing)
        }
        CheckKind::Graph => reason == Reason::Graph(GraphReason::PermissionMissing),
        CheckKind::Health | CheckKind::Activity | CheckKind::Traffic | CheckKind::Discovery => {
            false
        }
    }
}

/// The Microsoft incident the mailbox's verdict names, for the annotations of mail-path alerts:
/// on-call sees at once that Microsoft has posted the problem (that mailbox's tenant only: the
/// agent matched the incident to it).
const EXO_INCIDENTS: &str = "{{ with printf \"smtp_oauth_verdict_incident_info{target='%s'}\" $labels.target | query }}{{ range . }} Microsoft reports incident {{ .Labels.id }} on {{ if eq .Labels.service \"exchange_online\" }}Exchange Online{{ else }}Microsoft Entra{{ end }}: follow it in Microsoft 365 admin center > Health > Service health.{{ end }}{{ end }}";

/// The canary reasons that mean mail is not delivered (or refused at submission).
pub(super) const CANARY_FAILING: [Reason; 5] = [
    Reason::Canary(CanaryReason::NotDelivered),
    Reason::Smtp(SmtpReason::SenderRestricted),
    Reason::Smtp(SmtpReason::TenantSendingBlocked),
    Reason::Smtp(SmtpReason::MessageRejected),
    Reason::Smtp(SmtpReason::SendAsDenied),
];

/// Every alert, in the order of the rules file.
pub fn rules(s: &AlertSettings) -> Vec<Rule> {
    let days = |d: Duration| d.as_secs() / 86_400;
    let in_use_days = "(smtp_oauth_credential_in_use_expiry_timestamp_seconds - time()) / 86400";
    // A credential that signed in within `credential_used_within` (credential activity).
    let signed_in = format!(
        "(time() - smtp_oauth_credential_last_sign_in_timestamp_seconds < {})",
        s.credential_used_within.as_secs()
    );
    // Days left of the credentials the application signed in with lately, besides the agent's.
    let active_days = format!(
        "(\n  (smtp_oauth_credential_expiry_timestamp_seconds - time()) / 86400\n    unless on (job, instance, target, key_id) smtp_oauth_credential_in_use\n    and on (job, instance, target, key_id) {signed_in}\n)"
    );
    let token_causes: Vec<(&str, String)> = TokenReason::ALL
        .iter()
        .filter(|r| **r != TokenReason::Throttled)
        .map(|r| (r.as_str(), go_text(r.info().remediation)))
        .chain(
            CommonReason::ALL
                .iter()
                .map(|r| (r.as_str(), go_text(r.info().remediation))),
        )
        .collect();
    vec![
        Rule {
            name: AlertName::TokenFailing,
            level: Level::Critical,
            cause: None,
            for_: Some(s.failing_for),
            // The token failure's reason is its cause label (an expired secret's alert
            // groups with the credential-expired one).
            expr: format!(
                "label_replace({}, \"cause\", \"$1\", \"reason\", \"(.+)\")",
                app_label(&format!(
                    "smtp_oauth_check_failure_info{{check=\"token\",{NOT_THROTTLED}}}"
                ))
            ),
            summary: "App {{ $labels.target }} cannot get a token from Entra ID ({{ $labels.reason }}{{ if $labels.aadsts }}, AADSTS{{ $labels.aadsts }}{{ end }})".into(),
            description: format!(
                "Entra ID refuses the token request of app {{{{ $labels.target }}}}: {{{{ $labels.reason }}}}{{{{ if $labels.aadsts }}}} (AADSTS{{{{ $labels.aadsts }}}}){{{{ end }}}}. Every mailbox of the app stops sending once its cached token expires (within 90 minutes). What to do: {}. {CONFIRM}",
                chain("reason", &token_causes)
            ),
            anchor: "smtpoauthtokenfailing".into(),
        },
        Rule {
            name: AlertName::SmtpAuthFailing,
            level: Level::Critical,
            cause: None,
            for_: Some(s.failing_for),
            expr: with_verdict(&format!(
                "smtp_oauth_check_failure_info{{check=\"smtp\",reason=~\"{}\"}}",
                regex_of(SMTP_AUTH_REASONS.map(Reason::Smtp))
            )),
            summary: "Mailbox {{ $labels.target }} cannot sign in to SMTP: setup step {{ $labels.step }} ({{ $labels.cause }})".into(),
            description: format!(
                "SMTP AUTH of mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}) fails with {{{{ $labels.reason }}}}{{{{ with printf \"smtp_oauth_smtp_status_code{{target='%s'}}\" $labels.target | query }}}}{{{{ range . }}}}, reply {{{{ .Value }}}} at {{{{ .Labels.phase }}}}{{{{ end }}}}{{{{ end }}}}: setup step {{{{ $labels.step }}}}, {{{{ $labels.cause }}}}. No mail goes out from it. What to do: {}. {CONFIRM}",
                cause_chain(&[
                    Cause::ConsentMissing,
                    Cause::SendAuthorizationMissing,
                    Cause::RbacMailboxOutOfScope,
                    Cause::RbacAssignmentMissing,
                    Cause::SendAsAppForcesFullAccess,
                    Cause::ServicePrincipalOrPermissionMissing,
                    Cause::MailboxPermissionMissing,
                    Cause::SendAsDenied,
                    Cause::SmtpAuthDisabledTenant,
                    Cause::SmtpAuthDisabledMailbox,
                    Cause::SmtpAuthBlockedByPolicy,
                    Cause::Xoauth2NotOffered,
                    Cause::TlsVersion,
                ])
            ),
            anchor: "smtpoauthsmtpauthfailing".into(),
        },
        Rule {
            name: AlertName::SmtpUnreachable,
            level: Level::Critical,
            cause: None,
            for_: Some(s.failing_for),
            expr: with_verdict(&format!(
                "smtp_oauth_check_failure_info{{check=\"smtp\",reason=~\"{}\"}}",
                regex_of(UNREACHABLE)
            )),
            summary: "The SMTP endpoint of mailbox {{ $labels.target }} cannot be reached ({{ $labels.reason }})".into(),
            description: format!(
                "The SMTP check of mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}) fails with {{{{ $labels.reason }}}} ({{{{ $labels.cause }}}}): mail from it cannot leave.{EXO_INCIDENTS} What to do: {}. {CONFIRM}",
                cause_chain(&[
                    Cause::DnsFailure,
                    Cause::ConnectionRefused,
                    Cause::Timeout,
                    Cause::TlsInspection,
                    Cause::ServerCertificateInvalid,
                    Cause::TlsFailed,
                    Cause::ProtocolError,
                    Cause::MicrosoftIncident,
                ])
            ),
            anchor: "smtpoauthsmtpunreachable".into(),
        },
        Rule {
            name: AlertName::StartTlsMissing,
            level: Level::Critical,
            cause: None,
            for_: None,
            expr: with_verdict("smtp_oauth_check_failure_info{check=\"smtp\",reason=\"starttls_missing\"}"),
            summary: "STARTTLS is missing on the way to SMTP for mailbox {{ $labels.target }}: a downgrade".into(),
            description: format!(
                "The SMTP server (or something in between) did not offer STARTTLS to mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}). The agent sent nothing, but an application that falls back to plain text would send its token in clear: a security event. What to do: {}. {CONFIRM}",
                go_text(Cause::StarttlsStripped.info().remediation)
            ),
            anchor: "smtpoauthstarttlsmissing".into(),
        },
        Rule {
            name: AlertName::CanaryFailing,
            level: Level::Critical,
            cause: None,
            for_: Some(s.failing_for),
            expr: with_verdict(&format!(
                "smtp_oauth_check_failure_info{{check=\"canary\",reason=~\"{}\"}}",
                regex_of(CANARY_FAILING)
            )),
            summary: "Mail from {{ $labels.target }} is not delivered: the canary fails ({{ $labels.cause }})".into(),
            description: format!(
                "The delivery canary of mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}) fails with {{{{ $labels.reason }}}}: {{{{ $labels.cause }}}}. Its SMTP login may well work; the mail does not arrive.{EXO_INCIDENTS} What to do: {}. {CONFIRM}",
                cause_chain(&[
                    Cause::CanaryNotDelivered,
                    Cause::SenderRestricted,
                    Cause::TenantSendingBlocked,
                    Cause::SendAsDenied,
                    Cause::MessageRejected,
                    Cause::MicrosoftIncident,
                ])
            ),
            anchor: "smtpoauthcanaryfailing".into(),
        },
        Rule {
            name: AlertName::CanarySlow,
            level: Level::Warning,
            cause: Some("canary_slow"),
            for_: Some(Duration::from_secs(1800)),
            expr: with_app(&format!(
                "smtp_oauth_canary_last_delivery_seconds > {}",
                s.canary_slow.as_secs()
            )),
            summary: "Mail from {{ $labels.target }} takes {{ $value | humanizeDuration }} to arrive".into(),
            description: format!(
                "The delivery canary of mailbox {{{{ $labels.target }}}} arrived {{{{ $value | humanizeDuration }}}} after Exchange accepted it (more than {}), for half an hour: queues or filtering delay the mail. What to do: Exchange admin center > Mail flow > Message trace for the canary's Message-ID (in /status) shows where the time went; check the service health of Exchange Online. {CONFIRM}",
                format_duration(s.canary_slow)
            ),
            anchor: "smtpoauthcanaryslow".into(),
        },
        Rule {
            name: AlertName::CanaryJunk,
            level: Level::Warning,
            cause: Some("canary_junk"),
            for_: Some(Duration::from_secs(1200)),
            expr: with_app("smtp_oauth_canary_in_junk == 1"),
            summary: "Mail from {{ $labels.target }} lands in Junk Email".into(),
            description: format!(
                "The delivery canary of mailbox {{{{ $labels.target }}}} was delivered to the Junk Email folder, run after run: the application's mail may be too. What to do: {}. {CONFIRM}",
                go_text(Cause::CanaryJunk.info().remediation)
            ),
            anchor: "smtpoauthcanaryjunk".into(),
        },
        Rule {
            name: AlertName::CanaryReaderDenied,
            level: Level::Warning,
            cause: Some("canary_reader_permission_missing"),
            for_: Some(Duration::from_secs(900)),
            expr: with_app("smtp_oauth_check_failure_info{check=\"canary\",reason=\"reader_permission_missing\"}"),
            summary: "The delivery canary of {{ $labels.target }} cannot look for its message: its reader app may not read the mailbox (Mail.ReadWrite)".into(),
            description: format!(
                "Microsoft Graph refuses (403) the canary reader of mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}) the read of the canary mailbox: delivery is not watched, though the SMTP login still is. What to do: {}. {CONFIRM}",
                go_text(Cause::CanaryReaderPermissionMissing.info().remediation)
            ),
            anchor: "smtpoauthcanaryreaderdenied".into(),
        },
        Rule {
            name: AlertName::TrafficSilent,
            level: Level::Warning,
            cause: Some("traffic_silent"),
            for_: Some(s.failing_for),
            expr: with_app("smtp_oauth_traffic_silent == 1"),
            summary: "Mailbox {{ $labels.target }} has sent nothing for longer than it should".into(),
            description: format!(
                "Message trace shows no message from mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}){{{{ with printf \"smtp_oauth_traffic_last_message_timestamp_seconds{{target='%s'}}\" $labels.target | query }}}}{{{{ range . }}}} since {{{{ .Value | humanizeTimestamp }}}}{{{{ end }}}}{{{{ end }}}}, longer than its expect_traffic_within: the application that sends as it may have stopped, even while the agent's own login works. What to do: {}. {CONFIRM}",
                go_text(Cause::TrafficSilent.info().remediation)
            ),
            anchor: "smtpoauthtrafficsilent".into(),
        },
        Rule {
            name: AlertName::TrafficFailing,
            level: Level::Warning,
            cause: Some("traffic_failing"),
            for_: Some(Duration::from_secs(1800)),
            expr: with_app(&format!(
                "smtp_oauth_traffic_failed_share > {}",
                s.traffic_failed_share
            )),
            summary: "{{ $value | humanizePercentage }} of the messages mailbox {{ $labels.target }} sent in the last 24 h failed or were quarantined".into(),
            description: format!(
                "Message trace: {{{{ $value | humanizePercentage }}}} of the messages mailbox {{{{ $labels.target }}}} (app {{{{ $labels.app }}}}) sent in the last 24 h failed or were quarantined (more than {}%). What to do: {}. {CONFIRM}",
                s.traffic_failed_share * 100.0,
                go_text(Cause::TrafficFailing.info().remediation)
            ),
            anchor: "smtpoauthtrafficfailing".into(),
        },
        Rule {
            name: AlertName::CredentialExpiringSoon,
            level: Level::Warning,
            cause: Some("credential_expiring"),
            for_: Some(Duration::from_secs(900)),
            expr: app_label(&format!(
                "{in_use_days} < {} >= {}",
                days(s.credential_warning),
                days(s.credential_critical)
            )),
            summary: "The {{ $labels.type }} app {{ $labels.target }} signs in with expires in {{ $value | printf \"%.0f\" }} days".into(),
            description: format!(
                "The {{{{ $labels.type }}}} credential app {{{{ $labels.target }}}} uses expires in {{{{ $value | printf \"%.1f\" }}}} days. What to do: {}. {CONFIRM}",
                go_text(Cause::CredentialExpiring.info().remediation)
            ),
            anchor: "smtpoauthcredentialexpiringsoon".into(),
        },
        Rule {
            name: AlertName::CredentialExpiring,
            level: Level::Critical,
            cause: Some("credential_expiring"),
            for_: Some(Duration::from_secs(900)),
            expr: app_label(&format!(
                "{in_use_days} < {} > 0",
                days(s.credential_critical)
            )),
            summary: "The {{ $labels.type }} app {{ $labels.target }} signs in with expires in {{ $value | printf \"%.1f\" }} days".into(),
            description: format!(
                "The {{{{ $labels.type }}}} credential app {{{{ $labels.target }}}} uses expires in {{{{ $value | printf \"%.1f\" }}}} days; then its mailboxes stop sending. What to do now: {}. {CONFIRM}",
                go_text(Cause::CredentialExpiring.info().remediation)
            ),
            anchor: "smtpoauthcredentialexpiring".into(),
        },
        Rule {
            name: AlertName::CredentialExpired,
            level: Level::Critical,
            cause: None,
            for_: Some(Duration::from_secs(300)),
            expr: format!(
                "label_replace(label_replace({}, \"cause\", \"secret_expired\", \"type\", \"password\"), \"cause\", \"certificate_expired\", \"type\", \"certificate\")",
                app_label(&format!("{in_use_days} <= 0"))
            ),
            summary: "The {{ $labels.type }} app {{ $labels.target }} signs in with has expired".into(),
            description: format!(
                "The {{{{ $labels.type }}}} credential app {{{{ $labels.target }}}} uses has expired ({{{{ $value | printf \"%.1f\" }}}} days left); its mailboxes cannot get tokens. What to do: {{{{ if eq $labels.type \"certificate\" }}}}{}{{{{ else }}}}{}{{{{ end }}}}. {CONFIRM}",
                go_text(Cause::CertificateExpired.info().remediation),
                go_text(Cause::SecretExpired.info().remediation)
            ),
            anchor: "smtpoauthcredentialexpired".into(),
        },
        Rule {
            name: AlertName::AppCredentialExpiring,
            level: Level::Info,
            cause: Some("app_credential_expiring"),
            for_: Some(Duration::from_secs(900)),
            // The credential in use has alerts of its own, and so has one the application
            // signed in with lately (credential activity): this one is about the others.
            expr: app_label(&format!(
                "(smtp_oauth_credential_expiry_timestamp_seconds - time()) / 86400 < {} > 0\n  unless on (job, instance, target, key_id) smtp_oauth_credential_in_use\n  unless on (job, instance, target, key_id) {signed_in}",
                days(s.credential_warning)
            )),
            summary: "A {{ $labels.type }} of app {{ $labels.target }} ({{ $labels.display_name }}) expires in {{ $value | printf \"%.0f\" }} days".into(),
            description: "The {{ $labels.type }} {{ $labels.key_id }} ({{ $labels.display_name }}) of app {{ $labels.target }} expires in {{ $value | printf \"%.1f\" }} days; it is not the one the agent signs in with. What to do: if an application signs in with it, plan its rotation: add a new one, configure it, delete the old one (Entra admin center > App registrations > Certificates & secrets); if nothing uses it, delete it.".into(),
            anchor: "smtpoauthappcredentialexpiring".into(),
        },
        Rule {
            name: AlertName::ActiveCredentialExpiringSoon,
            level: Level::Warning,
            cause: Some("active_credential_expiring"),
            for_: Some(Duration::from_secs(900)),
            expr: app_label(&format!(
                "{active_days} < {} >= {}",
                days(s.credential_warning),
                days(s.credential_critical)
            )),
            summary: "The application signs in with a {{ $labels.type }} of app {{ $labels.target }} ({{ $labels.display_name }}) that expires in {{ $value | printf \"%.0f\" }} days".into(),
            description: format!(
                "The {{{{ $labels.type }}}} {{{{ $labels.key_id }}}} ({{{{ $labels.display_name }}}}) of app {{{{ $labels.target }}}} signed in within the last {} days and expires in {{{{ $value | printf \"%.1f\" }}}} days; the agent signs in with another, so its own checks stay green the day the application stops. What to do: {}. {CONFIRM}",
                days(s.credential_used_within),
                go_text(Cause::ActiveCredentialExpiring.info().remediation)
            ),
            anchor: "smtpoauthactivecredentialexpiringsoon".into(),
        },
        Rule {
            name: AlertName::ActiveCredentialExpiring,
            level: Level::Critical,
            cause: Some("active_credential_expiring"),
            for_: Some(Duration::from_secs(900)),
            // Expired ones too: a credential that signed in lately and has expired is an
            // application that gets no token any more.
            expr: app_label(&format!(
                "{active_days} < {}",
                days(s.credential_critical)
            )),
            summary: "The application signs in with a {{ $labels.type }} of app {{ $labels.target }} ({{ $labels.display_name }}) that {{ if lt $value 0.0 }}has expired{{ else }}expires in {{ $value | printf \"%.1f\" }} days{{ end }}".into(),
            description: format!(
                "The {{{{ $labels.type }}}} {{{{ $labels.key_id }}}} ({{{{ $labels.display_name }}}}) of app {{{{ $labels.target }}}} signed in within the last {} days and {{{{ if lt $value 0.0 }}}}has expired: the application gets no token with it any more{{{{ else }}}}expires in {{{{ $value | printf \"%.1f\" }}}} days{{{{ end }}}}; the agent signs in with another, so its own checks stay green. What to do now: {}. {CONFIRM}",
                days(s.credential_used_within),
                go_text(Cause::ActiveCredentialExpiring.info().remediation)
            ),
            anchor: "smtpoauthactivecredentialexpiring".into(),
        },
        Rule {
            name: AlertName::CredentialStale,
            level: Level::Info,
            cause: Some("credential_stale"),
            for_: Some(Duration::from_secs(3600)),
            expr: app_label(&format!(
                "(time() - smtp_oauth_credential_last_sign_in_timestamp_seconds) / 86400 > {}",
                days(s.credential_stale_after)
            )),
            summary: "A {{ $labels.type }} of app {{ $labels.target }} has not signed in for {{ $value | printf \"%.0f\" }} days".into(),
            description: format!(
                "The {{{{ $labels.type }}}} {{{{ $labels.key_id }}}} of app {{{{ $labels.target }}}} last signed in {{{{ $value | printf \"%.1f\" }}}} days ago (more than {} days): nothing seems to use it. What to do: if nothing uses it, delete it (Entra admin center > App registrations > Certificates & secrets): a forgotten secret is one more to leak.",
                days(s.credential_stale_after)
            ),
            anchor: "smtpoauthcredentialstale".into(),
        },
        Rule {
            name: AlertName::SendAsAppMissing,
            level: Level::Critical,
            cause: Some("consent_missing"),
            for_: Some(s.failing_for),
            // Only for an app configured as classic: under RBAC for Applications a token
            // without the role is right, and an app on `auto` pages through SMTP AUTH instead.
            expr: app_label("smtp_oauth_token_smtp_role_present == 0\n  and on (job, instance, target) smtp_oauth_app_authorization_info{setting=\"classic\"}"),
            summary: "The token of app {{ $labels.target }} lacks SMTP.SendAsApp (admin consent)".into(),
            description: format!(
                "Entra ID issues app {{{{ $labels.target }}}} tokens without the SMTP.SendAsApp role, and the app is configured for the classic model (authorization: classic): the permission or its admin consent is missing or was revoked, and every SMTP AUTH of its mailboxes fails 535 5.7.3. What to do: {}. {CONFIRM}",
                go_text(Cause::ConsentMissing.info().remediation)
            ),
            anchor: "smtpoauthsendasappmissing".into(),
        },
        Rule {
            name: AlertName::CredentialNotFound,
            level: Level::Warning,
            cause: Some("credential_not_found"),
            for_: Some(Duration::from_secs(1800)),
            expr: app_label("smtp_oauth_credential_in_use_found == 0"),
            summary: "The credential configured for app {{ $labels.target }} is none of its app registration's".into(),
            description: "Microsoft Graph lists no secret or certificate of app {{ $labels.target }} that matches the one the agent signs in with: most often the secret's ID was pasted instead of its value, or the secret was deleted or replaced. What to do: in Entra admin center > App registrations > Certificates & secrets, create a secret and copy its Value (not the Secret ID) into the application and the agent's secret file. Confirm with `smtp-oauth-exporter check {{ $labels.target }}`.".into(),
            anchor: "smtpoauthcredentialnotfound".into(),
        },
        Rule {
            name: AlertName::ServerCertificateExpiring,
            level: Level::Warning,
            cause: Some("server_certificate_expiring"),
            for_: Some(Duration::from_secs(900)),
            expr: format!(
                "(smtp_oauth_smtp_ssl_earliest_cert_expiry - time()) / 86400 < {}",
                days(s.server_certificate_warning)
            ),
            summary: "The certificate of SMTP endpoint {{ $labels.endpoint }} expires in {{ $value | printf \"%.0f\" }} days".into(),
            description: "A certificate the SMTP endpoint {{ $labels.endpoint }} presents expires in {{ $value | printf \"%.1f\" }} days. Microsoft renews its own in time: a certificate this close to expiry usually belongs to something in the path (a TLS-inspecting proxy). What to do: check which device presents it (smtp_oauth_smtp_ssl_last_chain_info shows its subject and issuer) and renew it there.".into(),
            anchor: "smtpoauthservercertificateexpiring".into(),
        },
        Rule {
            name: AlertName::CheckStale,
            level: Level::Warning,
            cause: Some("check_stale"),
            for_: None,
            // Only checks that no other alert covers: one that fails for a reason with an
            // alert of its own pages there (by expression, so that it holds on every path).
            // Throttling alone never fires: a throttled check backs off (Retry-After).
            expr: format!(
                "(\n  {}\n  or\n  {}\n)\n  unless on (job, instance, check, target) smtp_oauth_check_failure_info{{reason=\"throttled\"}}\n  unless on (job, instance, check, target) (\n    {}\n  )",
                app_label(&format!("smtp_oauth_check_overdue{{check=~\"{}\"}} == 1", kinds(true))),
                with_app(&format!("smtp_oauth_check_overdue{{check=~\"{}\"}} == 1", kinds(false))),
                covered_failures(),
            ),
            summary: "The {{ $labels.check }} check of {{ $labels.target }} has not succeeded for three of its intervals".into(),
            description: format!(
                "The {{{{ $labels.check }}}} check of {{{{ $labels.target }}}} has not succeeded for three of its intervals (smtp_oauth_check_overdue), and no other alert covers it: {}. Its results are stale. What to do: {CONFIRM_LOWER}, and see the runbook for the reason.",
                "{{ with printf \"smtp_oauth_check_failure_info{check='%s',target='%s'}\" $labels.check $labels.target | query }}{{ range . }}it fails with {{ .Labels.reason }}, a reason without an alert of its own{{ end }}{{ else }}it has not run (a run that never ends, a throttling hold, or an agent too busy to start it){{ end }}"
            ),
            anchor: "smtpoauthcheckstale".into(),
        },
        Rule {
            name: AlertName::GraphPermissionMissing,
            level: Level::Warning,
            cause: Some("graph_permission_missing"),
            for_: Some(Duration::from_secs(3600)),
            expr: app_label("smtp_oauth_check_failure_info{check=\"graph\",reason=\"graph_permission_missing\"}"),
            summary: "App {{ $labels.target }}'s credential expiry is not watched: no Graph permission".into(),
            description: format!(
                "Microsoft Graph answers 403 to the read of app {{{{ $labels.target }}}}'s registration, so the agent cannot see when its secret or certificate expires. What to do: {}. {CONFIRM}",
                go_text(Cause::GraphPermissionMissing.info().remediation)
            ),
            anchor: "smtpoauthgraphpermissionmissing".into(),
        },
        Rule {
            name: AlertName::TlsVerificationOff,
            level: Level::Warning,
            cause: Some("tls_verification_off"),
            for_: None,
            expr: with_app("smtp_oauth_smtp_tls_insecure_skip_verify == 1"),
            summary: "Certificate verification is switched off for mailbox {{ $labels.target }}".into(),
            description: format!(
                "Mailbox {{{{ $labels.target }}}} is checked with tls_insecure_skip_verify: anyone in the path could read its token. What to do: {}.",
                go_text(Cause::TlsVerificationOff.info().remediation)
            ),
            anchor: "smtpoauthtlsverificationoff".into(),
        },
        Rule {
            name: AlertName::MicrosoftIncident,
            level: Level::Info,
            cause: Some("microsoft_incident"),
            for_: None,
            expr: "smtp_oauth_service_health_issue_info{classification=\"incident\"} == 1".into(),
            summary: "Microsoft reports incident {{ $labels.id }} on {{ $labels.service }} for tenant {{ $labels.tenant }} ({{ $labels.status }})".into(),
            description: "Microsoft 365 service health lists incident {{ $labels.id }} on {{ $labels.service }}, status {{ $labels.status }}, for tenant {{ $labels.tenant }}. Failures of the checks that need that service show it in their verdict (cause microsoft_incident). What to do: follow {{ $labels.id }} in Microsoft 365 admin center > Health > Service health (its title and impact are on the agent's status page and in /status); nothing to change on your side unless it says so.".into(),
            anchor: "smtpoauthmicrosoftincident".into(),
        },
        Rule {
            name: AlertName::ConfigReloadFailing,
            level: Level::Warning,
            cause: Some("config_reload_failing"),
            for_: Some(Duration::from_secs(300)),
            expr: "smtp_oauth_config_last_reload_successful == 0".into(),
            summary: "smtp-oauth-exporter on {{ $labels.instance }} runs an old configuration: the last reload failed".into(),
            description: "The last configuration reload of the agent on {{ $labels.instance }} failed; it keeps running the previous configuration. What to do: `smtp-oauth-exporter check-config --config.file <file>` names the error (file, line, field); fix it and reload again.".into(),
            anchor: "smtpoauthconfigreloadfailing".into(),
        },
        Rule {
            name: AlertName::ExporterDown,
            level: Level::Critical,
            cause: Some("exporter_down"),
            for_: Some(Duration::from_secs(300)),
            // A /probe job's `up` is 0 for a bad target or a full probe queue: not the agent.
            expr: "up{job=~\".*smtp-oauth.*\",job!~\".*probe.*\"} == 0".into(),
            summary: "smtp-oauth-exporter on {{ $labels.instance }} is down".into(),
            description: "Prometheus cannot scrape the agent on {{ $labels.instance }} (job {{ $labels.job }}): nothing watches the SMTP chain it checks. What to do: look at the process or pod (systemctl status smtp-oauth-exporter, kubectl logs), its last log lines, and `curl {{ $labels.instance }}/-/healthy`.".into(),
            anchor: "smtpoauthexporterdown".into(),
        },
        Rule {
            name: AlertName::ExporterAbsent,
            level: Level::Critical,
            cause: Some("exporter_absent"),
            for_: Some(Duration::from_secs(600)),
            expr: "absent(smtp_oauth_build_info)".into(),
            summary: "No smtp-oauth-exporter is scraped at all".into(),
            description: "Prometheus has no smtp_oauth_build_info series: no agent is scraped (removed from the scrape configuration, or every instance gone), so nothing watches the SMTP chain. What to do: check the scrape configuration (job smtp-oauth) and that the agent runs.".into(),
            anchor: "smtpoauthexporterabsent".into(),
        },
    ]
}

/// The Prometheus rules file (`alerts/smtp-oauth-exporter.rules.yml`), from [`rules`] with
/// these settings (the shipped file: the defaults). Each alert over the agent's series comes
/// as a recording rule of its condition and the alert on it, held while the agent is blind
/// ([`Rule::held_expr`]).
pub fn rules_yaml(settings: &AlertSettings) -> String {
    #[derive(Serialize)]
    struct File {
        groups: Vec<Group>,
    }
    #[derive(Serialize)]
    struct Group {
        name: &'static str,
        rules: Vec<YamlRule>,
    }
    #[derive(Serialize)]
    #[serde(untagged)]
    enum YamlRule {
        Record {
            record: String,
            expr: String,
        },
        Alert {
            alert: &'static str,
            expr: String,
            #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
            for_: Option<String>,
            labels: BTreeMap<&'static str, &'static str>,
            annotations: BTreeMap<&'static str, String>,
        },
    }
    let mut out = Vec::new();
    for r in rules(settings) {
        if !r.about_the_agent() {
            out.push(YamlRule::Record {
                record: r.record(),
                expr: r.expr.clone(),
            });
        }
        let mut labels: BTreeMap<&'static str, &'static str> =
            [("severity", r.level.as_str())].into_iter().collect();
        if let Some(c) = r.cause {
            labels.insert("cause", c);
        }
        let mut annotations: BTreeMap<&'static str, String> = [
            ("summary", r.summary.clone()),
            ("description", r.description.clone()),
        ]
        .into_iter()
        .collect();
        if let Some(u) = r.runbook_url(settings.runbook_base_url.as_deref()) {
            annotations.insert("runbook_url", u);
        }
        out.push(YamlRule::Alert {
            alert: r.name.as_str(),
            expr: r.held_expr(),
            for_: r.for_.map(format_duration),
            labels,
            annotations,
        });
    }
    let file = File {
        groups: vec![Group {
            name: "smtp-oauth-exporter",
            rules: out,
        }],
    };
    format!(
        "# Generated from src/alerts/rules.rs (UPDATE_ALERTS=1 cargo test --test it alerts): edit there,\n# or generate your own with `smtp-oauth-exporter rules --config.file <file>` (your thresholds and\n# alerts.runbook_base_url).\n# Alerts for smtp-oauth-exporter; every rule's runbook is in docs/runbooks.md, served by the agent at /runbooks.\n# Each alert over the agent's series is a recording rule of its condition (smtp_oauth:*:condition)\n# and the alert on it, which keeps the last state seen for {} while the agent is not scraped, or\n# is back from a restart but has not re-run the checks it is about (smtp_oauth_check_pending),\n# instead of resolving a problem nobody fixed.\n{}",
        format_duration(BLIND_HOLD),
        yaml_serde::to_string(&file).expect("rules serialize")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_table_is_complete_and_consistent() {
        let rules = rules(&AlertSettings::default());
        let names: Vec<AlertName> = rules.iter().map(|r| r.name).collect();
        assert_eq!(names, AlertName::ALL, "one rule per alert, in order");
        for r in &rules {
            assert!(r.name.as_str().starts_with("SmtpOAuth"), "{}", r.name);
            assert_eq!(r.anchor, r.name.anchor());
            assert!(r.description.contains("What to do"), "{}", r.name);
        }
    }
}
