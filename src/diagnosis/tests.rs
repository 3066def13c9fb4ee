//! The decision's unit tests: incidents, pending, token failures inside SMTP, consent, pasted IDs.
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
        sibling_rbac_authenticated: false,
        seen_model: None,
        now: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
        settings: &plan.settings.diagnosis,
        canary: None,
        activity: None,
        traffic: None,
        traffic_check: None,
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
            sibling_rbac_authenticated: false,
            seen_model: None,
            now: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
            settings: &p.settings.diagnosis,
            canary: None,
            activity: None,
            traffic: None,
            traffic_check: None,
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
    // An app configured the classic way (on `auto`, one seen working with the role).
    let yaml = "apps:\n  - { name: app, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: \"Abc~value\", authorization: classic }\nmailboxes:\n  - { name: mb, app: app, address: mb@contoso.com, smtp_host: smtp.example }\n";
    let p = crate::config::from_yaml(yaml, "t.yml", std::path::Path::new(".")).unwrap();
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

/// An app that signs in without `SMTP.SendAsApp` (RBAC for Applications: configured as
/// `app_rbac`, or on `auto` with another mailbox past AUTH without the role) is never told to
/// add the role, whatever fails: the role would switch Exchange to the FullAccess check and
/// refuse the mailboxes that work. Every reason of every check, with and without the role in
/// the token, on both token and SMTP sides.
#[test]
fn no_fix_tells_an_rbac_app_to_add_the_role() {
    use crate::plan::Authorization;
    use crate::reasons::Reason;
    let advice = |t: &str| {
        t.contains("SMTP.SendAsApp > Add permissions")
            || t.contains("Application permissions > SMTP.SendAsApp")
    };
    for (setting, sibling) in [("app_rbac", false), ("app_rbac", true), ("auto", true)] {
        let yaml = format!(
            "apps:\n  - {{ name: app, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: \"Abc~x\", authorization: {setting} }}\nmailboxes:\n  - {{ name: mb, app: app, address: mb@contoso.com, smtp_host: smtp.example }}\n"
        );
        let p = crate::config::from_yaml(&yaml, "t.yml", std::path::Path::new(".")).unwrap();
        let target = p.target("mb").unwrap().clone();
        let mut seen = 0;
        let reasons = CheckKind::ALL
            .into_iter()
            .flat_map(|k| Reason::of(k).into_iter().map(move |r| (k, r)));
        for (kind, reason) in reasons {
            for role in [Some(false), Some(true), None] {
                let f = Failure::new(reason, "x");
                let details = match kind {
                    CheckKind::Smtp => smtp(role, Some((535, "5.7.3 Authentication unsuccessful"))),
                    _ => Details::None,
                };
                let failed = report(kind, 0, Some(f), details);
                let token = report(CheckKind::Token, 1, None, token_ok(role == Some(true)));
                let (token, smtp_r, other) = match kind {
                    CheckKind::Token => (Some(&failed), None, None),
                    CheckKind::Smtp => (Some(&token), Some(&failed), None),
                    _ => (Some(&token), None, Some(&failed)),
                };
                let v = diagnose(&Inputs {
                    target: &target,
                    token,
                    smtp: smtp_r,
                    graph: other.filter(|_| kind == CheckKind::Graph),
                    graph_ok: None,
                    canary: other.filter(|_| kind == CheckKind::Canary),
                    activity: other.filter(|_| kind == CheckKind::Activity),
                    traffic: None,
                    traffic_check: other.filter(|_| kind == CheckKind::Traffic),
                    issues: &[],
                    sibling_authenticated: sibling,
                    sibling_rbac_authenticated: sibling,
                    seen_model: sibling.then_some(Authorization::AppRbac),
                    now: DateTime::from_timestamp(1_800_000_100, 0).unwrap(),
                    settings: &p.settings.diagnosis,
                });
                assert!(
                    !advice(&v.remediation) && !advice(&v.summary),
                    "{setting}, sibling {sibling}, {reason:?}, role {role:?}: {} {}",
                    v.cause,
                    v.remediation
                );
                seen += 1;
            }
        }
        assert!(seen > 100, "{seen}");
    }
}
