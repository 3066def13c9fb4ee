//! Which credential really signs in, against the simulator over real sockets: the credential
//! activity report (Graph beta `appCredentialSignInActivities`) read for an app, its last
//! sign-ins beside the expiry series, the page and `/status` naming the credential the
//! application signs in with when the agent uses another, a rotation the application has not
//! taken, stale credentials, a report of many pages, and a refusal (no `AuditLog.Read.All`, or
//! no Entra ID P1 licence) that is "not available", never a failure.

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::sim::{SimApp, ROLE_APPLICATION_READ_ALL, ROLE_AUDIT_LOG_READ_ALL};

use crate::common::*;

const OLD: &str = "Ol1~the-old-secret-the-application-has";
const NEW: &str = "Nw2~the-new-secret-the-agent-has";

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

/// An app whose reader roles are `roles`, with its secrets; the agent uses `agent_secret`; its
/// Graph and activity checks run every second, and it has one mailbox.
fn config(w: &World, n: u32, name: &str, app: SimApp, agent_secret: &str) -> String {
    let id = client_id(n);
    w.sim.add_app(app);
    let address = format!("{name}@contoso.com");
    w.sim.add_mailbox(&address, &[&id]);
    let file = w.file(&format!("{name}.secret"), agent_secret);
    format!(
        "{}    checks:\n      graph: {{ schedule: 1s, timeout: 5s }}\n      activity: {{ enabled: true, schedule: 1s, timeout: 5s }}\n",
        secret_app(w, name, &id, &file, "")
    )
}

fn agent_yaml(apps: &[String], mailboxes: &[(&str, &str)], smtp_port: u16) -> String {
    let mut y = String::from(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: { schedule: 1s, timeout: 5s }\n    smtp: { schedule: 1s, timeout: 5s }\napps:\n",
    );
    for a in apps {
        y += a;
    }
    y += "mailboxes:\n";
    for (name, app) in mailboxes {
        y += &format!(
            "  - {{ name: {name}, app: {app}, address: {app}@contoso.com, smtp_host: 127.0.0.1, smtp_port: {smtp_port} }}\n"
        );
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_the_application_signs_in_with_is_named_when_the_agent_uses_another() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    // The rotation half done: the agent got the new secret; the application signed in with the
    // old one an hour ago, and it expires in 3 days. A third secret last signed in 100 days ago.
    let app = SimApp::new(TENANT, &id, "invoicing")
        .with_secret(
            OLD,
            Some("invoicing-2024"),
            now - days(700),
            now + days(3) + chrono::Duration::hours(1),
        )
        .with_secret(NEW, Some("invoicing-2026"), now - days(2), now + days(700))
        .with_secret(
            "Fx3~a-forgotten-one",
            Some("fax-gateway"),
            now - days(400),
            now + days(300),
        )
        .with_graph_role(ROLE_APPLICATION_READ_ALL)
        .with_graph_role(ROLE_AUDIT_LOG_READ_ALL);
    let yaml = agent_yaml(
        &[config(&w, 1, "invoicing", app, NEW)],
        &[("invoices", "invoicing")],
        w.sim.smtp_addr.port(),
    );
    w.sim
        .set_sign_in(&id, "invoicing-2024", now - chrono::Duration::hours(1));
    w.sim.set_sign_in(&id, "fax-gateway", now - days(100));
    let old_key = w.sim.key_id(&id, "invoicing-2024").unwrap();
    let new_key = w.sim.key_id(&id, "invoicing-2026").unwrap();
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "the verdict on the application's secret",
        |t| verdict_cause(t, "invoices").as_deref() == Some("active_credential_expiring"),
    )
    .await;
    // The last sign-ins beside the expiry series, keyed alike; the agent's own sign-in counts.
    let last = |key: &str| {
        value(
            &text,
            "smtp_oauth_credential_last_sign_in_timestamp_seconds",
            &[
                ("target", "invoicing"),
                ("key_id", key),
                ("type", "password"),
            ],
        )
    };
    let old_last = last(&old_key).expect("the old secret's last sign-in");
    assert!(
        (old_last - (now - chrono::Duration::hours(1)).timestamp() as f64).abs() < 2.0,
        "{old_last}"
    );
    assert!(last(&new_key).expect("the agent's sign-in") > old_last);
    assert!(
        value(
            &text,
            "smtp_oauth_credential_expiry_timestamp_seconds",
            &[("target", "invoicing"), ("key_id", &old_key)]
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_activity_available",
            &[("target", "invoicing")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_success",
            &[("check", "activity"), ("target", "invoicing")]
        ),
        Some(1.0)
    );

    // /status: each credential's state; the verdict names the application's secret.
    let status = agent.status();
    let m = status
        .mailboxes
        .iter()
        .find(|m| m.name == "invoices")
        .unwrap();
    let act = m.credential_activity.as_ref().expect("credential activity");
    let state = |key: &str| {
        act.credentials
            .iter()
            .find(|c| c.key_id == key)
            .map(|c| (c.state, c.agent))
    };
    assert_eq!(state(&old_key), Some(("active", false)));
    assert_eq!(state(&new_key), Some(("active", true)));
    let fax = w.sim.key_id(&id, "fax-gateway").unwrap();
    assert_eq!(state(&fax), Some(("stale", false)));
    let v = m.verdict.as_ref().unwrap();
    assert_eq!((v.step, v.severity), ("2", "warning"));
    assert!(
        v.summary.contains("\"invoicing-2024\"")
            && v.summary
                .contains("not the one the agent uses, \"invoicing-2026\"")
            && v.summary.contains("expires in 3 days"),
        "{}",
        v.summary
    );

    // The page says so, in the credential column, and marks the stale one.
    let html = reqwest::get(format!("http://{}/", agent.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = html
        .split("<tr")
        .find(|r| r.contains("data-target=\"invoices\""))
        .expect("the mailbox's row");
    assert!(
        row.contains(&format!("data-key-id=\"{old_key}\""))
            && row.contains("the application signs in with secret invoicing-2024"),
        "{row}"
    );
    assert!(row.contains("stale: secret fax-gateway"), "{row}");
    assert!(
        row.contains("<code>active_credential_expiring</code>"),
        "{row}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_the_application_has_not_taken_is_said() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(2);
    // A new secret added three days ago that nothing signs in with; the agent (and the
    // application) still use the old one, which has years left.
    let app = SimApp::new(TENANT, &id, "scanner")
        .with_secret(OLD, Some("scanner-old"), now - days(300), now + days(400))
        .with_secret(NEW, Some("scanner-new"), now - days(3), now + days(700))
        .with_graph_role(ROLE_APPLICATION_READ_ALL)
        .with_graph_role(ROLE_AUDIT_LOG_READ_ALL);
    let yaml = agent_yaml(
        &[config(&w, 2, "scanner", app, OLD)],
        &[("scans", "scanner")],
        w.sim.smtp_addr.port(),
    );
    let agent = w.agent(&yaml).await;
    wait_for(&agent, Duration::from_secs(20), "rotation_not_taken", |t| {
        verdict_cause(t, "scans").as_deref() == Some("rotation_not_taken")
    })
    .await;
    let v = agent.status().mailboxes[0].verdict.clone().unwrap();
    assert!(
        v.summary.contains("\"scanner-new\"")
            && v.summary.contains("still uses the old \"scanner-old\""),
        "{}",
        v.summary
    );
    assert_eq!(v.severity, "warning");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_report_or_a_tenant_without_the_licence_is_not_available_never_a_failure() {
    let w = World::new().await;
    let now = Utc::now();
    // One reader without AuditLog.Read.All; one in a tenant without Entra ID P1.
    let other_tenant = "99999999-2222-3333-4444-555555555555";
    w.sim
        .add_tenant(other_tenant, &["unlicensed.onmicrosoft.com"]);
    w.sim.set_activity_licensed(other_tenant, false);
    let no_role = SimApp::new(TENANT, &client_id(3), "no-role")
        .with_secret(OLD, None, now - days(1), now + days(100))
        .with_graph_role(ROLE_APPLICATION_READ_ALL);
    let unlicensed = SimApp::new(other_tenant, &client_id(4), "unlicensed")
        .with_secret(OLD, None, now - days(1), now + days(100))
        .with_graph_role(ROLE_APPLICATION_READ_ALL)
        .with_graph_role(ROLE_AUDIT_LOG_READ_ALL);
    let second = config(&w, 4, "unlicensed", unlicensed, OLD).replace(TENANT, other_tenant);
    let yaml = agent_yaml(
        &[config(&w, 3, "no-role", no_role, OLD), second],
        &[],
        w.sim.smtp_addr.port(),
    )
    .replace("mailboxes:\n", "");
    let agent = w.agent(&yaml).await;
    let text = wait_for(&agent, Duration::from_secs(20), "both reads", |t| {
        ["no-role", "unlicensed"].iter().all(|a| {
            value(
                t,
                "smtp_oauth_credential_activity_available",
                &[("target", a)],
            ) == Some(0.0)
        })
    })
    .await;
    for a in ["no-role", "unlicensed"] {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_check_success",
                &[("check", "activity"), ("target", a)]
            ),
            Some(1.0),
            "{a}: not available is no failure"
        );
        assert!(
            !text.contains(&format!(
                "smtp_oauth_check_failure_info{{check=\"activity\",target=\"{a}\""
            )),
            "{text}"
        );
    }
    let status = agent.status();
    let why = |name: &str| {
        status
            .apps
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| a.credential_activity.as_ref())
            .and_then(|c| c.unavailable.clone())
            .unwrap_or_default()
    };
    assert!(
        why("no-role").contains("AuditLog.Read.All"),
        "{}",
        why("no-role")
    );
    assert!(why("unlicensed").contains("P1"), "{}", why("unlicensed"));
    // The verdicts of these apps stay as their other checks say.
    for a in ["no-role", "unlicensed"] {
        let cause = verdict_cause(&text, a);
        assert!(
            !cause.as_deref().unwrap_or("").contains("credential"),
            "{a}: {cause:?}"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_of_several_pages_is_read_to_its_end() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(5);
    // 60 secrets: the simulator serves the report 50 entries a page.
    let mut app = SimApp::new(TENANT, &id, "many")
        .with_graph_role(ROLE_APPLICATION_READ_ALL)
        .with_graph_role(ROLE_AUDIT_LOG_READ_ALL);
    for i in 0..60 {
        app = app.with_secret(
            &format!("M{i:02}~secret-number-{i}"),
            Some(&format!("s{i}")),
            now - days(10),
            now + days(100),
        );
    }
    let yaml = agent_yaml(
        &[config(&w, 5, "many", app, "M00~secret-number-0")],
        &[],
        w.sim.smtp_addr.port(),
    )
    .replace("mailboxes:\n", "");
    for i in 0..60 {
        w.sim.set_sign_in(
            &id,
            &format!("s{i}"),
            now - chrono::Duration::minutes(i + 5),
        );
    }
    let agent = w.agent(&yaml).await;
    let text = wait_for(&agent, Duration::from_secs(20), "sixty sign-ins", |t| {
        t.lines()
            .filter(|l| {
                l.starts_with(
                    "smtp_oauth_credential_last_sign_in_timestamp_seconds{target=\"many\"",
                )
            })
            .count()
            == 60
    })
    .await;
    assert!(w.sim.activity_requests() >= 2, "two pages at least");
    assert!(text.contains("smtp_oauth_check_success{check=\"activity\",target=\"many\"} 1"));
    agent.stop().await;
}
