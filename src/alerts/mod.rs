//! The alerts, one table: each with its Prometheus rule (expression, `for`, severity, summary
//! and description templates, runbook anchor), from which `alerts/smtp-oauth-exporter.rules.yml`
//! is generated (a test keeps the shipped file equal), and the same conditions evaluated by the
//! agent itself for `GET /alerts` and the optional push to Alertmanager, with the same
//! thresholds, for sites without Prometheus rules.

pub mod push;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::diagnosis::Cause;
use crate::metrics::AgentInfo;
use crate::plan::format_duration;
use crate::plan::{AlertSettings, CheckKind, JobKey, Plan};
use crate::reasons::{CanaryReason, CommonReason, Reason, SmtpReason, TokenReason};
use crate::state::View;

/// Where the runbook lives; each rule's `runbook_url` is this plus `#anchor`.
pub const RUNBOOK_BASE: &str =
    "https://github.com/smtp-oauth-exporter/smtp-oauth-exporter/blob/main/docs/runbooks.md";

/// How loud an alert is (its `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warning,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// One Prometheus alerting rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: &'static str,
    pub level: Level,
    /// `for:` (`None`: fires at once).
    pub for_: Option<Duration>,
    pub expr: String,
    pub summary: String,
    pub description: String,
    /// The runbook section (`docs/runbooks.md#anchor`).
    pub anchor: String,
}

/// The label filter of failures that must not page on their own: throttling.
const NOT_THROTTLED: &str = "reason!=\"throttled\"";

/// SMTP reasons of a mailbox that cannot sign in (the token's own failures alert on the app).
const SMTP_AUTH_REASONS: [SmtpReason; 5] = [
    SmtpReason::AuthRejected,
    SmtpReason::SmtpAuthDisabled,
    SmtpReason::SendAsDenied,
    SmtpReason::Xoauth2NotOffered,
    SmtpReason::TlsVersion,
];

/// Network reasons of a mailbox whose SMTP endpoint cannot be reached.
const UNREACHABLE: [Reason; 6] = [
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

/// A target's app label on an app's own series.
fn app_label(expr: &str) -> String {
    format!("label_replace({expr}, \"app\", \"$1\", \"target\", \"(.+)\")")
}

const CONFIRM: &str = "Confirm with `smtp-oauth-exporter check {{ $labels.target }}`.";

/// The Microsoft incident the mailbox's verdict names, for the annotations of mail-path alerts:
/// on-call sees at once that Microsoft has posted the problem (that mailbox's tenant only: the
/// agent matched the incident to it).
const EXO_INCIDENTS: &str = "{{ with printf \"smtp_oauth_verdict_incident_info{target='%s'}\" $labels.target | query }}{{ range . }} Microsoft reports incident {{ .Labels.id }} on {{ if eq .Labels.service \"exchange_online\" }}Exchange Online{{ else }}Microsoft Entra{{ end }}: follow it in Microsoft 365 admin center > Health > Service health.{{ end }}{{ end }}";

/// The canary reasons that mean mail is not delivered (or refused at submission).
const CANARY_FAILING: [Reason; 5] = [
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
            name: "SmtpOAuthTokenFailing",
            level: Level::Critical,
            for_: Some(s.failing_for),
            expr: app_label(&format!(
                "smtp_oauth_check_failure_info{{check=\"token\",{NOT_THROTTLED}}}"
            )),
            summary: "App {{ $labels.target }} cannot get a token from Entra ID ({{ $labels.reason }}{{ if $labels.aadsts }}, AADSTS{{ $labels.aadsts }}{{ end }})".into(),
            description: format!(
                "Entra ID refuses the token request of app {{{{ $labels.target }}}}: {{{{ $labels.reason }}}}{{{{ if $labels.aadsts }}}} (AADSTS{{{{ $labels.aadsts }}}}){{{{ end }}}}. Every mailbox of the app stops sending once its cached token expires (within 90 minutes). What to do: {}. {CONFIRM}",
                chain("reason", &token_causes)
            ),
            anchor: "smtpoauthtokenfailing".into(),
        },
        Rule {
            name: "SmtpOAuthSmtpAuthFailing",
            level: Level::Critical,
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
            name: "SmtpOAuthSmtpUnreachable",
            level: Level::Critical,
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
                ])
            ),
            anchor: "smtpoauthsmtpunreachable".into(),
        },
        Rule {
            name: "SmtpOAuthStartTlsMissing",
            level: Level::Critical,
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
            name: "SmtpOAuthCanaryFailing",
            level: Level::Critical,
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
                ])
            ),
            anchor: "smtpoauthcanaryfailing".into(),
        },
        Rule {
            name: "SmtpOAuthCanarySlow",
            level: Level::Warning,
            for_: Some(Duration::from_secs(1800)),
            expr: format!(
                "smtp_oauth_canary_last_delivery_seconds > {}",
                s.canary_slow.as_secs()
            ),
            summary: "Mail from {{ $labels.target }} takes {{ $value | humanizeDuration }} to arrive".into(),
            description: format!(
                "The delivery canary of mailbox {{{{ $labels.target }}}} arrived {{{{ $value | humanizeDuration }}}} after Exchange accepted it (more than {}), for half an hour: queues or filtering delay the mail. What to do: Exchange admin center > Mail flow > Message trace for the canary's Message-ID (in /status) shows where the time went; check the service health of Exchange Online. {CONFIRM}",
                format_duration(s.canary_slow)
            ),
            anchor: "smtpoauthcanaryslow".into(),
        },
        Rule {
            name: "SmtpOAuthCanaryJunk",
            level: Level::Warning,
            for_: Some(Duration::from_secs(1200)),
            expr: "smtp_oauth_canary_in_junk == 1".into(),
            summary: "Mail from {{ $labels.target }} lands in Junk Email".into(),
            description: format!(
                "The delivery canary of mailbox {{{{ $labels.target }}}} was delivered to the Junk Email folder, run after run: the application's mail may be too. What to do: {}. {CONFIRM}",
                go_text(Cause::CanaryJunk.info().remediation)
            ),
            anchor: "smtpoauthcanaryjunk".into(),
        },
        Rule {
            name: "SmtpOAuthCredentialExpiringSoon",
            level: Level::Warning,
            for_: Some(Duration::from_secs(900)),
            expr: app_label(&format!(
                "{in_use_days} < {} > {}",
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
            name: "SmtpOAuthCredentialExpiring",
            level: Level::Critical,
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
            name: "SmtpOAuthCredentialExpired",
            level: Level::Critical,
            for_: Some(Duration::from_secs(300)),
            expr: app_label(&format!("{in_use_days} <= 0")),
            summary: "The {{ $labels.type }} app {{ $labels.target }} signs in with has expired".into(),
            description: format!(
                "The {{{{ $labels.type }}}} credential app {{{{ $labels.target }}}} uses has expired ({{{{ $value | printf \"%.1f\" }}}} days left); its mailboxes cannot get tokens. What to do: {{{{ if eq $labels.type \"certificate\" }}}}{}{{{{ else }}}}{}{{{{ end }}}}. {CONFIRM}",
                go_text(Cause::CertificateExpired.info().remediation),
                go_text(Cause::SecretExpired.info().remediation)
            ),
            anchor: "smtpoauthcredentialexpired".into(),
        },
        Rule {
            name: "SmtpOAuthAppCredentialExpiring",
            level: Level::Info,
            for_: Some(Duration::from_secs(900)),
            expr: app_label(&format!(
                "(smtp_oauth_credential_expiry_timestamp_seconds - time()) / 86400 < {} > 0",
                days(s.credential_warning)
            )),
            summary: "A {{ $labels.type }} of app {{ $labels.target }} ({{ $labels.display_name }}) expires in {{ $value | printf \"%.0f\" }} days".into(),
            description: "The {{ $labels.type }} {{ $labels.key_id }} ({{ $labels.display_name }}) of app {{ $labels.target }} expires in {{ $value | printf \"%.1f\" }} days. What to do: if an application signs in with it, plan its rotation: add a new one, configure it, delete the old one (Entra admin center > App registrations > Certificates & secrets).".into(),
            anchor: "smtpoauthappcredentialexpiring".into(),
        },
        Rule {
            name: "SmtpOAuthSendAsAppMissing",
            level: Level::Critical,
            for_: Some(s.failing_for),
            expr: app_label("smtp_oauth_token_smtp_role_present == 0"),
            summary: "The token of app {{ $labels.target }} lacks SMTP.SendAsApp (admin consent)".into(),
            description: format!(
                "Entra ID issues app {{{{ $labels.target }}}} tokens without the SMTP.SendAsApp role: the permission or its admin consent is missing or was revoked, and every SMTP AUTH of its mailboxes fails 535 5.7.3. What to do: {}. {CONFIRM}",
                go_text(Cause::ConsentMissing.info().remediation)
            ),
            anchor: "smtpoauthsendasappmissing".into(),
        },
        Rule {
            name: "SmtpOAuthCredentialNotFound",
            level: Level::Warning,
            for_: Some(Duration::from_secs(1800)),
            expr: app_label("smtp_oauth_credential_in_use_found == 0"),
            summary: "The credential configured for app {{ $labels.target }} is none of its app registration's".into(),
            description: "Microsoft Graph lists no secret or certificate of app {{ $labels.target }} that matches the one the agent signs in with: most often the secret's ID was pasted instead of its value, or the secret was deleted or replaced. What to do: in Entra admin center > App registrations > Certificates & secrets, create a secret and copy its Value (not the Secret ID) into the application and the agent's secret file. Confirm with `smtp-oauth-exporter check {{ $labels.target }}`.".into(),
            anchor: "smtpoauthcredentialnotfound".into(),
        },
        Rule {
            name: "SmtpOAuthServerCertificateExpiring",
            level: Level::Warning,
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
            name: "SmtpOAuthCheckStale",
            level: Level::Warning,
            for_: None,
            // Throttling alone never fires: a throttled check backs off (Retry-After) and the
            // verdict shows it as transient.
            expr: "smtp_oauth_check_overdue == 1\n  unless on (job, instance, check, target) smtp_oauth_check_failure_info{reason=\"throttled\"}".into(),
            summary: "The {{ $labels.check }} check of {{ $labels.target }} has not succeeded for three of its intervals".into(),
            description: "The {{ $labels.check }} check of {{ $labels.target }} has not succeeded for three of its intervals (the agent computes it, smtp_oauth_check_overdue): its results are stale (it cannot run, or fails without an alert of its own). What to do: look at smtp_oauth_check_failure_info for the reason, and `smtp-oauth-exporter check {{ $labels.target }}`.".into(),
            anchor: "smtpoauthcheckstale".into(),
        },
        Rule {
            name: "SmtpOAuthGraphPermissionMissing",
            level: Level::Warning,
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
            name: "SmtpOAuthTlsVerificationOff",
            level: Level::Warning,
            for_: None,
            expr: "smtp_oauth_smtp_tls_insecure_skip_verify == 1".into(),
            summary: "Certificate verification is switched off for mailbox {{ $labels.target }}".into(),
            description: format!(
                "Mailbox {{{{ $labels.target }}}} is checked with tls_insecure_skip_verify: anyone in the path could read its token. What to do: {}.",
                go_text(Cause::TlsVerificationOff.info().remediation)
            ),
            anchor: "smtpoauthtlsverificationoff".into(),
        },
        Rule {
            name: "SmtpOAuthMicrosoftIncident",
            level: Level::Info,
            for_: None,
            expr: "smtp_oauth_service_health_issue_info{classification=\"incident\"} == 1".into(),
            summary: "Microsoft reports incident {{ $labels.id }} on {{ $labels.service }} for tenant {{ $labels.tenant }} ({{ $labels.status }})".into(),
            description: "Microsoft 365 service health lists incident {{ $labels.id }} on {{ $labels.service }}, status {{ $labels.status }}, for tenant {{ $labels.tenant }}. Failures of the checks that need that service show it in their verdict (cause microsoft_incident). What to do: follow {{ $labels.id }} in Microsoft 365 admin center > Health > Service health (its title and impact are on the agent's status page and in /status); nothing to change on your side unless it says so.".into(),
            anchor: "smtpoauthmicrosoftincident".into(),
        },
        Rule {
            name: "SmtpOAuthConfigReloadFailing",
            level: Level::Warning,
            for_: Some(Duration::from_secs(300)),
            expr: "smtp_oauth_config_last_reload_successful == 0".into(),
            summary: "smtp-oauth-exporter on {{ $labels.instance }} runs an old configuration: the last reload failed".into(),
            description: "The last configuration reload of the agent on {{ $labels.instance }} failed; it keeps running the previous configuration. What to do: `smtp-oauth-exporter check-config --config.file <file>` names the error (file, line, field); fix it and reload again.".into(),
            anchor: "smtpoauthconfigreloadfailing".into(),
        },
        Rule {
            name: "SmtpOAuthExporterDown",
            level: Level::Critical,
            for_: Some(Duration::from_secs(300)),
            // A /probe job's `up` is 0 for a bad target or a full probe queue: not the agent.
            expr: "up{job=~\".*smtp-oauth.*\",job!~\".*probe.*\"} == 0".into(),
            summary: "smtp-oauth-exporter on {{ $labels.instance }} is down".into(),
            description: "Prometheus cannot scrape the agent on {{ $labels.instance }} (job {{ $labels.job }}): nothing watches the SMTP chain it checks. What to do: look at the process or pod (systemctl status smtp-oauth-exporter, kubectl logs), its last log lines, and `curl {{ $labels.instance }}/-/healthy`.".into(),
            anchor: "smtpoauthexporterdown".into(),
        },
        Rule {
            name: "SmtpOAuthExporterAbsent",
            level: Level::Critical,
            for_: Some(Duration::from_secs(600)),
            expr: "absent(smtp_oauth_build_info)".into(),
            summary: "No smtp-oauth-exporter is scraped at all".into(),
            description: "Prometheus has no smtp_oauth_build_info series: no agent is scraped (removed from the scrape configuration, or every instance gone), so nothing watches the SMTP chain. What to do: check the scrape configuration (job smtp-oauth) and that the agent runs.".into(),
            anchor: "smtpoauthexporterabsent".into(),
        },
    ]
}

/// The Prometheus rules file (`alerts/smtp-oauth-exporter.rules.yml`), from [`rules`] with the
/// default thresholds.
pub fn rules_yaml() -> String {
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
    struct YamlRule {
        alert: &'static str,
        expr: String,
        #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
        for_: Option<String>,
        labels: BTreeMap<&'static str, &'static str>,
        annotations: BTreeMap<&'static str, String>,
    }
    let rules = rules(&AlertSettings::default())
        .into_iter()
        .map(|r| YamlRule {
            alert: r.name,
            expr: r.expr,
            for_: r.for_.map(format_duration),
            labels: [("severity", r.level.as_str())].into_iter().collect(),
            annotations: [
                ("summary", r.summary),
                ("description", r.description),
                ("runbook_url", format!("{RUNBOOK_BASE}#{}", r.anchor)),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    let file = File {
        groups: vec![Group {
            name: "smtp-oauth-exporter",
            rules,
        }],
    };
    format!(
        "# Generated from src/alerts/mod.rs (UPDATE_ALERTS=1 cargo test --test it alerts): edit there.\n# Alerts for smtp-oauth-exporter; every rule's runbook is in docs/runbooks.md.\n{}",
        yaml_serde::to_string(&file).expect("rules serialize")
    )
}

/// An alert as Alertmanager's v2 API takes it (`POST /api/v2/alerts`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// A condition that holds now, before its rule's `for:` is applied.
#[derive(Debug, Clone)]
pub struct Candidate {
    for_: Option<Duration>,
    alert: Alert,
    /// When the condition began, when the state knows it (a run of failures); otherwise the
    /// first evaluation that saw it counts.
    since: Option<DateTime<Utc>>,
}

/// The alert's identity: its label set, as Alertmanager deduplicates.
fn key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

struct Builder<'a> {
    rules: BTreeMap<&'static str, Rule>,
    out: Vec<Candidate>,
    generator_url: &'a str,
    now: DateTime<Utc>,
}

impl Builder<'_> {
    fn push(
        &mut self,
        name: &'static str,
        labels: &[(&str, &str)],
        since: Option<DateTime<Utc>>,
        summary: String,
        description: String,
    ) {
        let rule = &self.rules[name];
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("alertname".into(), name.into());
        l.insert("severity".into(), rule.level.as_str().into());
        self.out.push(Candidate {
            for_: rule.for_,
            since,
            alert: Alert {
                labels: l,
                annotations: [
                    ("summary".to_string(), summary),
                    ("description".to_string(), description),
                    (
                        "runbook_url".to_string(),
                        format!("{RUNBOOK_BASE}#{}", rule.anchor),
                    ),
                ]
                .into_iter()
                .collect(),
                starts_at: since.unwrap_or(self.now),
                ends_at: None,
                generator_url: self.generator_url.to_string(),
            },
        });
    }
}

fn days(d: chrono::Duration) -> f64 {
    d.num_seconds() as f64 / 86_400.0
}

/// The conditions that hold now, from the agent's own state, with the same thresholds as the
/// rules (those about the agent being down or absent are Prometheus' alone).
pub fn evaluate(
    plan: &Plan,
    view: &View,
    agent: &AgentInfo,
    settings: &AlertSettings,
    now: DateTime<Utc>,
    generator_url: &str,
) -> Vec<Candidate> {
    let mut b = Builder {
        rules: rules(settings).into_iter().map(|r| (r.name, r)).collect(),
        out: Vec::new(),
        generator_url,
        now,
    };
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    for (key, st) in view.jobs {
        let JobKey { kind, target } = key;
        let target = target.as_str();
        let Some(t) = plan.target(target) else {
            continue;
        };
        let app = t.app().name.as_str();
        let verdict = view.verdicts.get(target);
        let (step, cause) = verdict
            .map(|v| (v.step().as_str(), v.cause.label()))
            .unwrap_or(("", ""));
        let what = verdict.map(|v| v.summary.as_str()).unwrap_or_default();
        let fix = verdict.map(|v| v.remediation.as_str()).unwrap_or_default();
        let last = st.last.as_deref();
        if let Some(f) = last.and_then(|r| r.failure.as_ref()) {
            let reason = f.reason;
            let aadsts = f.aadsts.map(|c| c.to_string()).unwrap_or_default();
            let labels = [
                ("check", kind.as_str()),
                ("target", target),
                ("app", app),
                ("reason", reason.as_str()),
                ("aadsts", aadsts.as_str()),
                ("step", step),
                ("cause", cause),
            ];
            let since = st.failing_since;
            match (kind, reason) {
                (CheckKind::Token, r) if r != Reason::Token(TokenReason::Throttled) => b.push(
                    "SmtpOAuthTokenFailing",
                    &labels,
                    since,
                    format!(
                        "App {target} cannot get a token from Entra ID ({reason}{})",
                        if aadsts.is_empty() { String::new() } else { format!(", AADSTS{aadsts}") }
                    ),
                    format!(
                        "{}. Every mailbox of the app stops sending once its cached token expires. What to do: {}",
                        f.message,
                        reason.info().remediation
                    ),
                ),
                (CheckKind::Smtp, Reason::Smtp(SmtpReason::StarttlsMissing)) => b.push(
                    "SmtpOAuthStartTlsMissing",
                    &labels,
                    since,
                    format!("STARTTLS is missing on the way to SMTP for mailbox {target}: a downgrade"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Smtp, Reason::Smtp(s)) if SMTP_AUTH_REASONS.contains(&s) => b.push(
                    "SmtpOAuthSmtpAuthFailing",
                    &labels,
                    since,
                    format!("Mailbox {target} cannot sign in to SMTP: setup step {step} ({cause})"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Smtp, r) if UNREACHABLE.contains(&r) => b.push(
                    "SmtpOAuthSmtpUnreachable",
                    &labels,
                    since,
                    format!("The SMTP endpoint of mailbox {target} cannot be reached ({reason})"),
                    // The verdict names the incident when Microsoft has one open on the
                    // service the failure needs (cause microsoft_incident), as the rules do.
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Canary, r) if CANARY_FAILING.contains(&r) => b.push(
                    "SmtpOAuthCanaryFailing",
                    &labels,
                    since,
                    format!("Mail from {target} is not delivered: the canary fails ({cause})"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Graph, Reason::Graph(crate::reasons::GraphReason::PermissionMissing)) => {
                    b.push(
                        "SmtpOAuthGraphPermissionMissing",
                        &labels,
                        since,
                        format!("App {target}'s credential expiry is not watched: no Graph permission"),
                        format!("{what}. What to do: {fix}"),
                    )
                }
                _ => {}
            }
        }
        let throttled = last
            .and_then(|r| r.failure.as_ref())
            .is_some_and(|f| f.reason.is_throttled());
        if *kind == CheckKind::Canary {
            let last_found = st
                .last_found
                .as_deref()
                .and_then(|r| r.canary().filter(|c| c.found.is_some()).cloned());
            if let Some(c) = last_found {
                let labels = [("target", target), ("app", app)];
                let secs = c.delivery_seconds().unwrap_or_default();
                if secs > settings.canary_slow.as_secs_f64() {
                    b.push(
                        "SmtpOAuthCanarySlow",
                        &labels,
                        None,
                        format!("Mail from {target} takes {secs:.0} s to arrive"),
                        format!(
                            "The delivery canary of mailbox {target} arrived {secs:.0} s after Exchange accepted it (more than {}).{} What to do: Exchange admin center > Mail flow > Message trace for {}.",
                            format_duration(settings.canary_slow),
                            incidents(view, &t.app().tenant),
                            c.message_id.as_deref().unwrap_or("the canary's Message-ID")
                        ),
                    );
                }
                if c.found.as_ref().is_some_and(|f| f.junk) {
                    b.push(
                        "SmtpOAuthCanaryJunk",
                        &labels,
                        None,
                        format!("Mail from {target} lands in Junk Email"),
                        format!(
                            "The delivery canary of mailbox {target} was delivered to Junk Email. What to do: {}",
                            crate::diagnosis::remediation_for(t, Cause::CanaryJunk)
                        ),
                    );
                }
            }
        }
        if st.overdue(settings.stale_intervals, now) && !throttled {
            b.push(
                "SmtpOAuthCheckStale",
                &[("check", kind.as_str()), ("target", target), ("app", app)],
                None,
                format!(
                    "The {kind} check of {target} has not succeeded for {} of its intervals",
                    settings.stale_intervals
                ),
                format!(
                    "Its results are stale or failing; smtp_oauth_check_failure_info says why. What to do: `smtp-oauth-exporter check {target}`."
                ),
            );
        }
        if last.and_then(|r| r.token()).and_then(|d| d.smtp_role) == Some(false) {
            b.push(
                "SmtpOAuthSendAsAppMissing",
                &[("target", target), ("app", app)],
                None,
                format!("The token of app {target} lacks SMTP.SendAsApp (admin consent)"),
                format!(
                    "Entra ID issues app {target} tokens without the SMTP.SendAsApp role; every SMTP AUTH of its mailboxes fails 535 5.7.3. What to do: {}",
                    crate::diagnosis::remediation_for(t, Cause::ConsentMissing)
                ),
            );
        }
        let reg = st
            .last_ok
            .as_deref()
            .and_then(|r| r.graph())
            .and_then(|g| g.registration.as_ref());
        let Some(reg) = reg else { continue };
        if reg.in_use_matches == 0 {
            b.push(
                "SmtpOAuthCredentialNotFound",
                &[("target", target), ("app", app)],
                None,
                format!("The credential configured for app {target} is none of its app registration's"),
                "Microsoft Graph lists no secret or certificate of the app that matches the one the agent signs in with: most often the secret's ID was pasted instead of its value, or the secret was deleted. Create a secret and copy its Value (not the Secret ID).".into(),
            );
        }
        if let Some((c, end)) = reg.in_use().and_then(|c| Some((c, c.end?))) {
            let left = end - now;
            let labels = [("target", target), ("app", app), ("type", c.kind.as_str())];
            let kind = c.kind.as_str();
            let on = end.format("%Y-%m-%d");
            if left <= chrono::Duration::zero() {
                let cause = if kind == "certificate" {
                    Cause::CertificateExpired
                } else {
                    Cause::SecretExpired
                };
                b.push(
                    "SmtpOAuthCredentialExpired",
                    &labels,
                    None,
                    format!("The {kind} app {target} signs in with has expired"),
                    format!(
                        "It expired on {on}. What to do: {}",
                        crate::diagnosis::remediation_for(t, cause)
                    ),
                );
            } else if left < dur(settings.credential_critical) {
                b.push(
                    "SmtpOAuthCredentialExpiring",
                    &labels,
                    None,
                    format!(
                        "The {kind} app {target} signs in with expires in {:.1} days",
                        days(left)
                    ),
                    format!(
                        "It expires on {on}. What to do now: {}",
                        crate::diagnosis::remediation_for(t, Cause::CredentialExpiring)
                    ),
                );
            } else if left < dur(settings.credential_warning) {
                b.push(
                    "SmtpOAuthCredentialExpiringSoon",
                    &labels,
                    None,
                    format!(
                        "The {kind} app {target} signs in with expires in {:.0} days",
                        days(left)
                    ),
                    format!(
                        "It expires on {on}. What to do: {}",
                        crate::diagnosis::remediation_for(t, Cause::CredentialExpiring)
                    ),
                );
            }
        }
        for c in &reg.credentials {
            let Some(end) = c.end else { continue };
            let left = end - now;
            if left > chrono::Duration::zero() && left < dur(settings.credential_warning) {
                let name = c.display_name.clone().unwrap_or_default();
                b.push(
                    "SmtpOAuthAppCredentialExpiring",
                    &[("target", target), ("app", app), ("type", c.kind.as_str()), ("key_id", &c.key_id), ("display_name", &name)],
                    None,
                    format!("A {} of app {target} ({name}) expires in {:.0} days", c.kind.as_str(), days(left)),
                    "What to do: if an application signs in with it, plan its rotation: add a new one, configure it, delete the old one (Entra admin center > App registrations > Certificates & secrets).".into(),
                );
            }
        }
    }
    for m in &plan.mailboxes {
        if m.tls_insecure_skip_verify {
            b.push(
                "SmtpOAuthTlsVerificationOff",
                &[("target", &m.name), ("app", &m.app.name)],
                None,
                format!(
                    "Certificate verification is switched off for mailbox {}",
                    m.name
                ),
                format!(
                    "Anyone in the path could read its token. What to do: {}",
                    crate::diagnosis::remediation_for(
                        &crate::plan::Target::Mailbox(m.clone()),
                        Cause::TlsVerificationOff
                    )
                ),
            );
        }
    }
    for (endpoint, e) in view.endpoints {
        let Some(exp) = e.tls.as_ref().and_then(|t| t.earliest_expiry()) else {
            continue;
        };
        if exp - now < dur(settings.server_certificate_warning) {
            b.push(
                "SmtpOAuthServerCertificateExpiring",
                &[("endpoint", endpoint)],
                None,
                format!("The certificate of SMTP endpoint {endpoint} expires in {:.0} days", days(exp - now)),
                "A certificate this close to expiry usually belongs to something in the path (a TLS-inspecting proxy): renew it there.".into(),
            );
        }
    }
    for (tenant, issues) in view.health {
        for x in issues.iter().filter(|x| x.incident) {
            b.push(
                "SmtpOAuthMicrosoftIncident",
                &[
                    ("tenant", tenant),
                    ("id", &x.id),
                    ("service", x.service.as_str()),
                    ("classification", x.classification()),
                    ("status", &x.status),
                ],
                x.start,
                format!(
                    "Microsoft reports incident {} on {} for tenant {tenant}: {}",
                    x.id,
                    x.service.as_str(),
                    x.title
                ),
                format!(
                    "{} (status {}). What to do: follow {} in Microsoft 365 admin center > Health > Service health; nothing to change on your side unless it says so.",
                    if x.impact.is_empty() { &x.title } else { &x.impact },
                    x.status,
                    x.id
                ),
            );
        }
    }
    if !agent.config_reload_successful {
        b.push(
            "SmtpOAuthConfigReloadFailing",
            &[],
            None,
            "smtp-oauth-exporter runs an old configuration: the last reload failed".into(),
            "`smtp-oauth-exporter check-config --config.file <file>` names the error; fix it and reload again.".into(),
        );
    }
    b.out
}

/// The open Exchange Online incidents of a tenant, as a sentence for the description of a slow
/// canary, which no verdict explains (empty when there are none).
fn incidents(view: &View, tenant: &str) -> String {
    view.health
        .get(tenant)
        .map(|issues| {
            issues
                .iter()
                .filter(|x| {
                    x.incident && x.service == crate::checks::health::Service::ExchangeOnline
                })
                .map(|x| {
                    format!(
                        " Microsoft reports incident {} on Exchange Online: {}.",
                        x.id, x.title
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Applies each rule's `for:` across evaluations, as Prometheus keeps pending alerts: an alert
/// fires once its condition has held that long, and is resolved when it stops holding.
#[derive(Default)]
pub struct Tracker {
    /// Conditions seen, by alert identity: when first seen, and whether the alert fired.
    seen: BTreeMap<String, (DateTime<Utc>, Option<Alert>)>,
}

/// One evaluation's outcome.
#[derive(Debug, Default)]
pub struct Update {
    /// Firing now.
    pub firing: Vec<Alert>,
    /// Fired before, no longer holds: send once more, with `endsAt` now.
    pub resolved: Vec<Alert>,
}

impl Tracker {
    pub fn update(&mut self, candidates: Vec<Candidate>, now: DateTime<Utc>) -> Update {
        let mut out = Update::default();
        let mut still = BTreeMap::new();
        for c in candidates {
            let k = key(&c.alert.labels);
            let first_seen = self.seen.get(&k).map_or(now, |(t, _)| *t);
            let since = c.since.unwrap_or(first_seen).min(first_seen);
            let held = now - since;
            let due = c.for_.is_none_or(|f| {
                held >= chrono::Duration::from_std(f).unwrap_or(chrono::Duration::MAX)
            });
            let fired = if due {
                let mut a = c.alert;
                a.starts_at = since;
                out.firing.push(a.clone());
                Some(a)
            } else {
                None
            };
            still.insert(k, (first_seen, fired));
        }
        for (k, (_, fired)) in std::mem::take(&mut self.seen) {
            if let (false, Some(mut a)) = (still.contains_key(&k), fired) {
                a.ends_at = Some(now);
                out.resolved.push(a);
            }
        }
        self.seen = still;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn candidate(target: &str, for_secs: Option<u64>, since: Option<i64>) -> Candidate {
        Candidate {
            for_: for_secs.map(Duration::from_secs),
            since: since.map(at),
            alert: Alert {
                labels: [("alertname", "X"), ("target", target)]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
                annotations: BTreeMap::new(),
                starts_at: at(0),
                ends_at: None,
                generator_url: String::new(),
            },
        }
    }

    fn targets(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.labels["target"].as_str()).collect()
    }

    #[test]
    fn an_alert_fires_once_its_condition_held_for_its_for() {
        let mut t = Tracker::default();
        let u = t.update(vec![candidate("a", Some(60), None)], at(0));
        assert!(u.firing.is_empty(), "pending, not firing");
        let u = t.update(vec![candidate("a", Some(60), None)], at(30));
        assert!(u.firing.is_empty());
        let u = t.update(vec![candidate("a", Some(60), None)], at(60));
        assert_eq!(targets(&u.firing), ["a"]);
        assert_eq!(u.firing[0].starts_at, at(0), "startsAt is when it began");
    }

    #[test]
    fn a_condition_gone_before_its_for_never_fires_nor_resolves() {
        let mut t = Tracker::default();
        t.update(vec![candidate("a", Some(60), None)], at(0));
        let u = t.update(vec![], at(30));
        assert!(u.firing.is_empty() && u.resolved.is_empty());
        // It starts over: a new run of the condition waits its full `for:` again.
        let u = t.update(vec![candidate("a", Some(60), None)], at(40));
        assert!(u.firing.is_empty());
        let u = t.update(vec![candidate("a", Some(60), None)], at(90));
        assert!(u.firing.is_empty(), "only 50 s of the new run");
    }

    #[test]
    fn a_known_start_counts_and_without_for_it_fires_at_once() {
        let mut t = Tracker::default();
        // Failing since 10 minutes before the agent's first evaluation saw it.
        let u = t.update(
            vec![
                candidate("a", Some(300), Some(-600)),
                candidate("b", None, None),
            ],
            at(0),
        );
        assert_eq!(targets(&u.firing), ["a", "b"]);
        assert_eq!(u.firing[0].starts_at, at(-600));
    }

    #[test]
    fn a_fired_alert_resolves_once_with_ends_at_now() {
        let mut t = Tracker::default();
        t.update(vec![candidate("a", None, None)], at(0));
        let u = t.update(vec![], at(20));
        assert!(u.firing.is_empty());
        assert_eq!(targets(&u.resolved), ["a"]);
        assert_eq!(u.resolved[0].ends_at, Some(at(20)));
        let u = t.update(vec![], at(40));
        assert!(u.resolved.is_empty(), "resolved once");
    }

    #[test]
    fn the_rule_table_is_complete_and_consistent() {
        let rules = rules(&AlertSettings::default());
        let names: std::collections::BTreeSet<_> = rules.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), rules.len(), "unique names");
        for r in &rules {
            assert!(r.name.starts_with("SmtpOAuth"), "{}", r.name);
            assert_eq!(r.anchor, r.name.to_lowercase());
            assert!(r.description.contains("What to do"), "{}", r.name);
        }
    }
}
