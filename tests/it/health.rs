//! Microsoft 365 service health in the verdict, against the simulator over real sockets: an open
//! Exchange Online incident turns a transient SMTP failure's verdict into the incident and its
//! resolution turns it back; an advisory, or an incident on
//! a healthy tenant, leaves `ok`; the issues are fixed-label series, their titles on `/status`;
//! the agent's own alerts name only the incident a verdict names.

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::sim::{
    Delivery, GraphFault, HealthIssue, SimApp, SmtpFault, SmtpStep, ROLE_MAIL_READ_WRITE,
    ROLE_SERVICE_HEALTH_READ_ALL,
};

use crate::common::*;

const SECRET: &str = "Hlt~service-health-test-secret";
const TITLE: &str = "Users may be unable to send email through SMTP AUTH";

/// One app (SMTP.SendAsApp, ServiceHealth.Read.All, health read every second) and one mailbox
/// on `smtp_port`.
fn config(w: &World, smtp_port: u16, health_role: bool) -> String {
    let now = Utc::now();
    let id = client_id(1);
    let mut app = SimApp::new(TENANT, &id, "sender").with_secret(
        SECRET,
        None,
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(90),
    );
    if health_role {
        app = app.with_graph_role(ROLE_SERVICE_HEALTH_READ_ALL);
    }
    w.sim.add_app(app);
    w.sim.add_mailbox("mail@contoso.com", &[&id]);
    let file = w.file("s.secret", SECRET);
    format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    graph: {{ enabled: false }}\n    smtp: {{ schedule: 1s, timeout: 5s }}\napps:\n{}mailboxes:\n  - {{ name: mail, app: sender, address: mail@contoso.com, smtp_host: 127.0.0.1, smtp_port: {smtp_port} }}\n",
        secret_app(
            w,
            "sender",
            &id,
            &file,
            "    checks:\n      health: { enabled: true, schedule: 1s, timeout: 5s }\n"
        )
    )
}

fn advisory(id: &str) -> HealthIssue {
    HealthIssue {
        id: id.into(),
        service: "Exchange Online".into(),
        classification: "advisory".into(),
        status: "serviceDegradation".into(),
        title: "Some users may see delays in the new Outlook".into(),
        impact_description: "Users may notice delays.".into(),
        feature: "Outlook".into(),
        feature_group: "E-Mail and calendar access".into(),
        start: Utc::now() - chrono::Duration::hours(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_exchange_incident_explains_a_transient_failure_until_it_is_resolved() {
    let w = World::new().await;
    // Exchange answers every connection with a temporary error.
    let port = w
        .sim
        .start_smtp(Some(SmtpFault::Reply {
            at: SmtpStep::Banner,
            code: 421,
            text: "4.3.2 Service not available, closing transmission channel".into(),
        }))
        .await
        .unwrap()
        .port();
    let agent = w.agent(&config(&w, port, true)).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "the transient failure",
        |t| {
            value(
                t,
                "smtp_oauth_check_success",
                &[("check", "health"), ("target", "sender")],
            ) == Some(1.0)
                && verdict_cause(t, "mail").is_some_and(|c| c != "pending")
        },
    )
    .await;
    let before = verdict_cause(&text, "mail").unwrap();
    assert!(
        text.contains(&format!("smtp_oauth_verdict{{target=\"mail\",app=\"sender\",step=\"transient\",cause=\"{before}\"")),
        "a transient verdict first:\n{text}"
    );
    assert!(
        !text.contains("smtp_oauth_service_health_issue_info{"),
        "{text}"
    );

    // Microsoft posts an incident: the verdict names it, on the metrics, /status and the alerts.
    w.sim.add_health_issue(
        TENANT,
        HealthIssue::exchange_incident(
            "EX424242",
            TITLE,
            Utc::now() - chrono::Duration::minutes(20),
        ),
    );
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "the incident's verdict",
        |t| verdict_cause(t, "mail").as_deref() == Some("microsoft_incident"),
    )
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_service_health_issue_info",
            &[
                ("tenant", TENANT),
                ("id", "EX424242"),
                ("service", "exchange_online"),
                ("classification", "incident"),
                ("status", "service_degradation"),
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains(TITLE), "the title is never a label");
    // The incident the verdict names, for the alerts' descriptions.
    assert_eq!(
        value(
            &text,
            "smtp_oauth_verdict_incident_info",
            &[
                ("target", "mail"),
                ("id", "EX424242"),
                ("service", "exchange_online")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    let base = format!("http://{}", agent.local_addr());
    let status = reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains(TITLE), "{status}");
    assert!(status.contains("EX424242"));
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("EX424242") && page.contains("Service health"),
        "{page}"
    );

    // Resolved: the verdict is the failure's own again, the series is gone.
    w.sim.resolve_health_issue("EX424242");
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "the verdict to turn back",
        |t| verdict_cause(t, "mail").as_deref() == Some(before.as_str()),
    )
    .await;
    assert!(
        !text.contains("smtp_oauth_service_health_issue_info{"),
        "{text}"
    );
    assert!(
        !text.contains("smtp_oauth_verdict_incident_info{"),
        "{text}"
    );
    assert!(w.sim.health_requests(&client_id(1)) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_tenant_stays_ok_with_an_advisory_or_an_incident() {
    let w = World::new().await;
    w.sim.add_health_issue(TENANT, advisory("EX111"));
    let port = w.sim.smtp_addr.port();
    let agent = w.agent(&config(&w, port, true)).await;
    let text = wait_for(&agent, Duration::from_secs(20), "the advisory", |t| {
        t.contains("smtp_oauth_service_health_issue_info{")
            && verdict_cause(t, "mail").is_some_and(|c| c != "pending")
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_service_health_issue_info",
            &[("id", "EX111"), ("classification", "advisory")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        verdict_cause(&text, "mail").as_deref(),
        Some("ok"),
        "{text}"
    );
    // An incident while every check passes changes nothing either.
    w.sim.add_health_issue(
        TENANT,
        HealthIssue::exchange_incident("EX222", TITLE, Utc::now()),
    );
    let text = wait_for(&agent, Duration::from_secs(20), "the incident", |t| {
        value(
            t,
            "smtp_oauth_service_health_issue_info",
            &[("id", "EX222")],
        )
        .is_some()
    })
    .await;
    assert_eq!(
        verdict_cause(&text, "mail").as_deref(),
        Some("ok"),
        "{text}"
    );
}

/// The permission revoked while an incident is open: the agent no longer knows whether it is,
/// so its series and its hold on the verdict go at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_is_forgotten_when_service_health_can_no_longer_be_read() {
    let w = World::new().await;
    w.sim.add_health_issue(
        TENANT,
        HealthIssue::exchange_incident("EX909", TITLE, Utc::now()),
    );
    let port = w.sim.smtp_addr.port();
    let agent = w.agent(&config(&w, port, true)).await;
    wait_for(&agent, Duration::from_secs(20), "the incident", |t| {
        value(
            t,
            "smtp_oauth_service_health_issue_info",
            &[("id", "EX909")],
        )
        .is_some()
    })
    .await;
    // Graph refuses the read from now on (403, as for a revoked ServiceHealth.Read.All).
    w.sim
        .set_graph_fault(&client_id(1), Some(GraphFault::Forbidden));
    let text = wait_for(&agent, Duration::from_secs(20), "the incident to go", |t| {
        value(
            t,
            "smtp_oauth_check_failure_info",
            &[("check", "health"), ("reason", "health_permission_missing")],
        )
        .is_some()
            && !t.contains("smtp_oauth_service_health_issue_info{")
    })
    .await;
    assert_eq!(
        verdict_cause(&text, "mail").as_deref(),
        Some("ok"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_service_health_read_all_the_reason_is_the_permission() {
    let w = World::new().await;
    let port = w.sim.smtp_addr.port();
    let agent = w.agent(&config(&w, port, false)).await;
    let text = wait_for(&agent, Duration::from_secs(20), "the health check", |t| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "health"), ("target", "sender")],
        ) == Some(0.0)
    })
    .await;
    assert_reason(&text, "health", "sender", "health_permission_missing");
    // The mail path is fine: the mailbox's verdict is not about the missing health permission.
    assert_eq!(
        verdict_cause(&text, "mail").as_deref(),
        Some("ok"),
        "{text}"
    );
}

/// The agent's own alerts name the incident a mailbox's verdict names, once, and no other: an
/// SMTP timeout during an Exchange Online incident names it; a canary refused 5.1.8 at the same
/// time (a policy on the sender, not the incident's doing) does not, as in the Prometheus rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_alerts_name_only_the_incident_a_verdict_names() {
    let w = World::new().await;
    let now = Utc::now();
    let file = w.file("s.secret", SECRET);
    let mut apps = String::new();
    for (n, name, role) in [
        (1, "sender", ROLE_SERVICE_HEALTH_READ_ALL),
        (2, "reader", ROLE_MAIL_READ_WRITE),
    ] {
        let id = client_id(n);
        w.sim.add_app(
            SimApp::new(TENANT, &id, name)
                .with_secret(
                    SECRET,
                    None,
                    now - chrono::Duration::days(1),
                    now + chrono::Duration::days(90),
                )
                .with_graph_role(role),
        );
        let health = if n == 1 {
            "    checks:\n      health: { enabled: true, schedule: 1s, timeout: 5s }\n"
        } else {
            ""
        };
        apps += &secret_app(&w, name, &id, &file, health);
    }
    w.sim.add_mailbox("down@contoso.com", &[&client_id(1)]);
    w.sim
        .add_mailbox("restricted@contoso.com", &[&client_id(1)]);
    w.sim.set_delivery(
        "restricted@contoso.com",
        Some(Delivery::Reject {
            at: SmtpStep::Data,
            code: 550,
            text: "5.1.8 Access denied, bad outbound sender".into(),
        }),
    );
    w.sim.add_health_issue(
        TENANT,
        HealthIssue::exchange_incident("EX515151", TITLE, now - chrono::Duration::minutes(20)),
    );
    // `down`'s server sends its banner after 3 s, past the check's 1 s timeout.
    let slow = w
        .sim
        .start_smtp(Some(SmtpFault::BannerDelay(Duration::from_secs(3))))
        .await
        .unwrap()
        .port();
    let good = w.sim.smtp_addr.port();
    let agent = w
        .agent(&format!(
            "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    graph: {{ enabled: false }}\n    smtp: {{ schedule: 1s, timeout: 1s }}\nalerts:\n  failing_for: 1s\n  evaluation_interval: 200ms\napps:\n{apps}mailboxes:\n  - {{ name: down, app: sender, address: down@contoso.com, smtp_host: 127.0.0.1, smtp_port: {slow} }}\n  - {{ name: restricted, app: sender, address: restricted@contoso.com, smtp_host: 127.0.0.1, smtp_port: {good}, canary: {{ reader: reader, timeout: 10s }} }}\n"
        ))
        .await;
    let url = format!("http://{}/alerts", agent.local_addr());
    let description = |alerts: &[serde_json::Value], name: &str, target: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == name && a["labels"]["target"] == target)
            .and_then(|a| a["annotations"]["description"].as_str().map(str::to_string))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (down, restricted) = loop {
        let alerts: Vec<serde_json::Value> =
            reqwest::get(&url).await.unwrap().json().await.unwrap();
        if let (Some(d), Some(r)) = (
            description(&alerts, "SmtpOAuthSmtpUnreachable", "down"),
            description(&alerts, "SmtpOAuthCanaryFailing", "restricted"),
        ) {
            break (d, r);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both alerts within 30 s: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        down.matches("Microsoft reports incident EX515151 on Exchange Online")
            .count(),
        1,
        "named once: {down}"
    );
    assert!(!restricted.contains("EX515151"), "{restricted}");
    assert!(restricted.contains("Defender portal"), "{restricted}");
}

/// Microsoft's own example answers in PascalCase (`"Incident"`, `"ServiceRestored"`): an open
/// incident in those words explains a transient failure; one marked `FalsePositive` (or
/// `ServiceRestored`) explains nothing, although Graph still lists it as unresolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pascal_case_values_count_and_a_false_positive_explains_nothing() {
    let w = World::new().await;
    let port = w
        .sim
        .start_smtp(Some(SmtpFault::Reply {
            at: SmtpStep::Banner,
            code: 421,
            text: "4.3.2 Service not available, closing transmission channel".into(),
        }))
        .await
        .unwrap()
        .port();
    let pascal = |id: &str, status: &str| HealthIssue {
        classification: "Incident".into(),
        status: status.into(),
        service: "Exchange Online".into(),
        ..HealthIssue::exchange_incident(id, TITLE, Utc::now() - chrono::Duration::minutes(5))
    };
    w.sim
        .add_health_issue(TENANT, pascal("EX700", "FalsePositive"));
    w.sim
        .add_health_issue(TENANT, pascal("EX701", "ServiceRestored"));
    let agent = w.agent(&config(&w, port, true)).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "a read and a verdict",
        |t| {
            value(
                t,
                "smtp_oauth_check_success",
                &[("check", "health"), ("target", "sender")],
            ) == Some(1.0)
                && verdict_cause(t, "mail").is_some_and(|c| c != "pending")
        },
    )
    .await;
    assert_ne!(
        verdict_cause(&text, "mail").as_deref(),
        Some("microsoft_incident"),
        "{text}"
    );
    assert!(
        !text.contains("smtp_oauth_service_health_issue_info{"),
        "{text}"
    );

    w.sim
        .add_health_issue(TENANT, pascal("EX702", "ServiceDegradation"));
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "the PascalCase incident",
        |t| verdict_cause(t, "mail").as_deref() == Some("microsoft_incident"),
    )
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_service_health_issue_info",
            &[
                ("id", "EX702"),
                ("classification", "incident"),
                ("status", "service_degradation")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    agent.stop().await;
}
