//! The agent's own evaluation of the alerts (`GET /alerts`, the push to Alertmanager): the
//! conditions of the rules over the agent's state, with the same thresholds and reason sets,
//! as candidates before `for:` is applied.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::rules::{
    covered, rules, Rule, CANARY_FAILING, RUNBOOKS_PATH, SMTP_AUTH_REASONS, UNREACHABLE,
};
use super::AlertName;
use crate::diagnosis::Cause;
use crate::metrics::AgentInfo;
use crate::plan::{format_duration, AlertSettings, CheckKind, JobKey, Plan};
use crate::reasons::{CanaryReason, Reason, SmtpReason, TokenReason};
use crate::state::View;

mod derived;
use derived::{credential_alerts, incidents, stale_alerts};

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
    /// How long after a push the alert must stay firing at Alertmanager without another push:
    /// through a restart of the agent until it fires again (its `for:` counted anew after the
    /// first round of checks), so that a restart resolves nothing still broken.
    #[serde(skip)]
    pub outlive: Duration,
}

/// A condition that holds now, before its rule's `for:` is applied.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub(super) for_: Option<Duration>,
    pub(super) alert: Alert,
    /// When the condition began, when the state knows it (a run of failures); otherwise the
    /// first evaluation that saw it counts.
    pub(super) since: Option<DateTime<Utc>>,
}

struct Builder<'a> {
    rules: BTreeMap<AlertName, Rule>,
    out: Vec<Candidate>,
    generator_url: &'a str,
    /// Where runbook links point (`alerts.runbook_base_url`, else the agent's `/runbooks`).
    runbooks: String,
    /// A restart's first round (`scheduler.startup_spread`) plus evaluations.
    restart: Duration,
    now: DateTime<Utc>,
}

impl Builder<'_> {
    fn push(
        &mut self,
        name: AlertName,
        labels: &[(&str, &str)],
        since: Option<DateTime<Utc>>,
        summary: String,
        description: String,
    ) {
        let rule = &self.rules[&name];
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert("alertname".into(), name.as_str().into());
        l.insert("severity".into(), rule.level.as_str().into());
        if let Some(c) = rule.cause {
            l.insert("cause".into(), c.into());
        }
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
                        format!("{}#{}", self.runbooks, rule.anchor),
                    ),
                ]
                .into_iter()
                .collect(),
                starts_at: since.unwrap_or(self.now),
                ends_at: None,
                generator_url: self.generator_url.to_string(),
                outlive: self.restart + rule.for_.unwrap_or_default(),
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
        runbooks: settings
            .runbook_base_url
            .clone()
            .unwrap_or_else(|| format!("{}{}", generator_url.trim_end_matches('/'), RUNBOOKS_PATH)),
        restart: plan.settings.scheduler.startup_spread
            + plan.settings.alert_evaluation_interval * 2,
        now,
    };
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    for (key, st) in view.jobs {
        let JobKey { kind, target } = key;
        let target = target.as_str();
        let Some(t) = plan.target(target) else {
            continue;
        };
        let app = t.app_label();
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
            // An app's own failures carry no verdict labels: an app with mailboxes has no
            // verdict of its own (the rules cannot join one either).
            let app_labels = &labels[..5];
            let since = st.failing_since;
            match (kind, reason) {
                (CheckKind::Token, r) if r != Reason::Token(TokenReason::Throttled) => b.push(
                    AlertName::TokenFailing,
                    &[app_labels, &[("cause", reason.as_str())]].concat(),
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
                    AlertName::StartTlsMissing,
                    &labels,
                    since,
                    format!("STARTTLS is missing on the way to SMTP for mailbox {target}: a downgrade"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Smtp, Reason::Smtp(s)) if SMTP_AUTH_REASONS.contains(&s) => b.push(
                    AlertName::SmtpAuthFailing,
                    &labels,
                    since,
                    format!("Mailbox {target} cannot sign in to SMTP: setup step {step} ({cause})"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Smtp, r) if UNREACHABLE.contains(&r) => b.push(
                    AlertName::SmtpUnreachable,
                    &labels,
                    since,
                    format!("The SMTP endpoint of mailbox {target} cannot be reached ({reason})"),
                    // The verdict names the incident when Microsoft has one open on the
                    // service the failure needs (cause microsoft_incident), as the rules do.
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Canary, r) if CANARY_FAILING.contains(&r) => b.push(
                    AlertName::CanaryFailing,
                    &labels,
                    since,
                    format!("Mail from {target} is not delivered: the canary fails ({cause})"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Canary, Reason::Canary(CanaryReason::ReaderPermissionMissing)) => b.push(
                    AlertName::CanaryReaderDenied,
                    app_labels,
                    since,
                    format!("The delivery canary of {target} cannot look for its message: its reader app may not read the mailbox"),
                    format!("{what}. What to do: {fix}"),
                ),
                (CheckKind::Graph, Reason::Graph(crate::reasons::GraphReason::PermissionMissing)) => {
                    b.push(
                        AlertName::GraphPermissionMissing,
                        app_labels,
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
                        AlertName::CanarySlow,
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
                        AlertName::CanaryJunk,
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
        // Stale only where no other alert covers the failure (as the rule's expression).
        let covered_by_another = last
            .and_then(|r| r.failure.as_ref())
            .is_some_and(|f| covered(*kind, f.reason));
        if st.overdue(settings.stale_intervals, now) && !throttled && !covered_by_another {
            b.push(
                AlertName::CheckStale,
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
        if last.and_then(|r| r.token()).and_then(|d| d.smtp_role) == Some(false)
            && t.app().authorization == crate::plan::Authorization::Classic
        {
            b.push(
                AlertName::SendAsAppMissing,
                &[("target", target), ("app", app)],
                None,
                format!("The token of app {target} lacks SMTP.SendAsApp (admin consent)"),
                format!(
                    "Entra ID issues app {target} tokens without the SMTP.SendAsApp role, and the app is configured for the classic model; every SMTP AUTH of its mailboxes fails 535 5.7.3. What to do: {}",
                    crate::diagnosis::remediation_for(t, Cause::ConsentMissing)
                ),
            );
        }
        // Credential activity: a credential not signed in for `credential_stale_after`.
        let activity = |name: &str| {
            view.jobs
                .get(&JobKey {
                    kind: CheckKind::Activity,
                    target: name.to_string(),
                })
                .and_then(|s| s.last_ok.as_deref())
                .and_then(|r| r.activity())
        };
        if *kind == CheckKind::Activity {
            if let Some(act) = activity(target) {
                stale_alerts(&mut b, target, app, act, settings, now);
            }
        }
        let reg = st
            .last_ok
            .as_deref()
            .and_then(|r| r.graph())
            .and_then(|g| g.registration.as_ref());
        let Some(reg) = reg else { continue };
        // Signed in within `credential_used_within`: the application uses it.
        let signed_in = |key_id: &str| {
            activity(target)
                .and_then(|a| a.last_sign_in(key_id))
                .is_some_and(|t| now - t < dur(settings.credential_used_within))
        };
        if reg.in_use_matches == 0 {
            b.push(
                AlertName::CredentialNotFound,
                &[("target", target), ("app", app)],
                None,
                format!("The credential configured for app {target} is none of its app registration's"),
                "Microsoft Graph lists no secret or certificate of the app that matches the one the agent signs in with: most often the secret's ID was pasted instead of its value, or the secret was deleted. Create a secret and copy its Value (not the Secret ID).".into(),
            );
        }
        if let Some((c, end)) = reg.in_use().and_then(|c| Some((c, c.end?))) {
            let left = end - now;
            let expired_cause = match c.kind {
                crate::checks::graph::CredentialType::Certificate => "certificate_expired",
                crate::checks::graph::CredentialType::Password => "secret_expired",
            };
            let labels = [
                ("target", target),
                ("app", app),
                ("type", c.kind.as_str()),
                ("origin", c.origin.as_str()),
            ];
            let expired_labels = [&labels[..], &[("cause", expired_cause)]].concat();
            let kind = c.kind.as_str();
            let on = end.format("%Y-%m-%d");
            if left <= chrono::Duration::zero() {
                let cause = if kind == "certificate" {
                    Cause::CertificateExpired
                } else {
                    Cause::SecretExpired
                };
                b.push(
                    AlertName::CredentialExpired,
                    &expired_labels,
                    None,
                    format!("The {kind} app {target} signs in with has expired"),
                    format!(
                        "It expired on {on}. What to do: {}",
                        crate::diagnosis::remediation_for(t, cause)
                    ),
                );
            } else if left < dur(settings.credential_critical) {
                b.push(
                    AlertName::CredentialExpiring,
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
                    AlertName::CredentialExpiringSoon,
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
        let fix = crate::diagnosis::remediation_for(t, Cause::ActiveCredentialExpiring);
        credential_alerts(&mut b, target, app, reg, &signed_in, &fix, settings, now);
    }
    // The apps the inventory discovered: their credentials alert as a configured app's other
    // credentials do (none is the agent's).
    for d in view
        .jobs
        .iter()
        .filter(|(k, _)| k.kind == CheckKind::Discovery)
        .filter_map(|(_, st)| st.last_ok.as_deref()?.discovery())
    {
        for a in d.apps.iter().filter(|a| a.configured.is_none()) {
            let target = a.app_id.as_str();
            let act = crate::checks::activity::ActivityDetails {
                keys: a.activity.clone(),
                ..Default::default()
            };
            if d.activity_read {
                stale_alerts(&mut b, target, target, &act, settings, now);
            }
            let Some(reg) = &a.credentials else { continue };
            let signed_in = |key_id: &str| {
                act.last_sign_in(key_id)
                    .is_some_and(|t| now - t < dur(settings.credential_used_within))
            };
            let fix = format!(
                "before it expires: put a new credential into the application that signs in as {} ({target}) (Entra admin center > App registrations > Certificates & secrets), check that its sign-ins move to it, then delete the old one",
                a.display_name
            );
            credential_alerts(&mut b, target, target, reg, &signed_in, &fix, settings, now);
        }
    }
    // What the watched mailboxes sent (message trace).
    for m in &plan.mailboxes {
        let Some(t) = view.history.traffic.get(&m.name) else {
            continue;
        };
        let labels = [("target", m.name.as_str()), ("app", m.app.name.as_str())];
        let target = crate::plan::Target::Mailbox(m.clone());
        if t.silent(now) {
            b.push(
                AlertName::TrafficSilent,
                &labels,
                None,
                format!("Mailbox {} has sent nothing for longer than it should", m.name),
                format!(
                    "Message trace shows no message from {} since {}, longer than its expect_traffic_within. What to do: {}",
                    m.address,
                    t.quiet_since().map(|q| q.to_rfc3339()).unwrap_or_default(),
                    crate::diagnosis::remediation_for(&target, Cause::TrafficSilent)
                ),
            );
        }
        if let Some(share) = t
            .failed_share(now)
            .filter(|s| *s > settings.traffic_failed_share)
        {
            b.push(
                AlertName::TrafficFailing,
                &labels,
                None,
                format!(
                    "{:.0}% of the messages mailbox {} sent in the last 24 h failed or were quarantined",
                    share * 100.0,
                    m.name
                ),
                format!(
                    "Message trace: more than {:.0}% failed or quarantined. What to do: {}",
                    settings.traffic_failed_share * 100.0,
                    crate::diagnosis::remediation_for(&target, Cause::TrafficFailing)
                ),
            );
        }
    }
    for m in &plan.mailboxes {
        if m.tls_insecure_skip_verify {
            b.push(
                AlertName::TlsVerificationOff,
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
                AlertName::ServerCertificateExpiring,
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
                AlertName::MicrosoftIncident,
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
            AlertName::ConfigReloadFailing,
            &[],
            None,
            "smtp-oauth-exporter runs an old configuration: the last reload failed".into(),
            "`smtp-oauth-exporter check-config --config.file <file>` names the error; fix it and reload again.".into(),
        );
    }
    b.out
}
