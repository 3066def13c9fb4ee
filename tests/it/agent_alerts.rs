//! The agent's own alerts (for sites without Prometheus rules): `GET /alerts` in Alertmanager's
//! v2 format, and the push to Alertmanager (`POST /api/v2/alerts`) with basic auth or a bearer
//! token from a file, after the rule's `for:`, re-sent while firing with `endsAt` ahead, and
//! resolved with `endsAt` now. A hung Alertmanager delays nobody else: the push has a timeout
//! and goes to every URL at once. The receiver is a loopback HTTP server of the test.

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::Value;
use smtp_oauth_exporter::sim::SimApp;

use crate::common::*;

/// Alerts named `name` about `target` in the pushes received so far: (push, alert).
fn pushed(inbox: &Inbox, name: &str, target: &str) -> Vec<(Received, Value)> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.body
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|a| a["labels"]["alertname"] == name && a["labels"]["target"] == target)
                .map(|a| (r.clone(), a))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {v}"))
        .with_timezone(&Utc)
}

async fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_alerts(url: &str) -> Vec<Value> {
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    resp.json::<Vec<Value>>().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_listed_pushed_with_basic_auth_resent_and_resolved() {
    let w = World::new().await;
    let id = client_id(1);
    // Set up the classic way, and said so: revoking the consent breaks it.
    let billing = w.app_with_secret(1, "billing", "Bil~secret") + "    authorization: classic\n";
    w.sim.add_mailbox("invoices@contoso.com", &[&id]);
    let (am, inbox) = http_receiver().await;
    let password = "am-P4ss~never-shown";
    let password_file = w.file("am.password", &format!("{password}\n"));
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\nalerts:\n  failing_for: 3s\n  evaluation_interval: 200ms\nalertmanager:\n  urls: ['http://127.0.0.1:{am}/am/']\n  resend_interval: 1s\n  basic_auth: {{ username: agent, password_file: {password_file} }}\napps:\n{}mailboxes:\n  - {{ name: invoices, app: billing, address: invoices@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        billing,
        w.sim.smtp_addr.port()
    );
    let agent = w.agent(&yaml).await;
    let url = format!("http://{}/alerts", agent.local_addr());
    wait_for(&agent, Duration::from_secs(10), "a healthy start", |t| {
        value(
            t,
            "smtp_oauth_verdict",
            &[("target", "invoices"), ("cause", "ok")],
        ) == Some(1.0)
    })
    .await;
    assert!(get_alerts(&url).await.is_empty(), "nothing is wrong yet");

    // Consent for SMTP.SendAsApp revoked: SMTP AUTH fails, and after `failing_for` it fires.
    w.sim.set_exchange_roles(&id, &[]);
    let (push, alert) = wait_until(
        "the SMTP AUTH alert pushed",
        Duration::from_secs(20),
        || {
            pushed(&inbox, "SmtpOAuthSmtpAuthFailing", "invoices")
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(push.path, "/am/api/v2/alerts");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("agent:{password}"));
    assert_eq!(push.authorization, Some(format!("Basic {basic}")));
    let starts = time(&alert["startsAt"]);
    assert!(
        push.received_at - starts >= chrono::Duration::milliseconds(2900),
        "pushed {:?} after the failures began: before failing_for (3s)",
        push.received_at - starts
    );
    // endsAt outlives a restart: four resends (4 s), the first round (200 ms) and two
    // evaluations (400 ms), and the alert's for: (3 s), which a new agent waits again.
    assert!(
        time(&alert["endsAt"]) - push.received_at >= chrono::Duration::milliseconds(7400),
        "endsAt {} only {:?} ahead",
        alert["endsAt"],
        time(&alert["endsAt"]) - push.received_at
    );
    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["app"], "billing");
    assert_eq!(labels["check"], "smtp");
    assert_eq!(labels["reason"], "auth_rejected");
    assert_eq!(labels["step"], "3");
    assert_eq!(labels["cause"], "consent_missing");
    let annotations = &alert["annotations"];
    assert!(annotations["summary"]
        .as_str()
        .unwrap()
        .contains("setup step 3"));
    assert!(
        annotations["description"].as_str().unwrap().contains(&id),
        "the fix names the app's client ID"
    );
    // The runbook link is the agent's own /runbooks, and it opens there.
    let runbook = annotations["runbook_url"].as_str().unwrap();
    assert_eq!(
        runbook,
        format!(
            "http://{}/runbooks#smtpoauthsmtpauthfailing",
            agent.local_addr()
        )
    );
    let page = reqwest::get(runbook).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("id=\"smtpoauthsmtpauthfailing\""));
    assert!(alert["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with(&format!("http://{}/", agent.local_addr())));

    // GET /alerts lists the same alert; the token's missing role fires too.
    let listed = get_alerts(&url).await;
    let names: Vec<&str> = listed
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"SmtpOAuthSmtpAuthFailing"), "{names:?}");
    assert!(names.contains(&"SmtpOAuthSendAsAppMissing"), "{names:?}");
    assert!(listed
        .iter()
        .all(|a| a.get("startsAt").is_some() && a["annotations"]["runbook_url"].is_string()));

    // Re-sent while firing (resend_interval 1s).
    wait_until(
        "a second push of the alert",
        Duration::from_secs(10),
        || (pushed(&inbox, "SmtpOAuthSmtpAuthFailing", "invoices").len() >= 2).then_some(()),
    )
    .await;

    // Consent granted again: resolved, with endsAt at the time it stopped, once.
    w.sim.set_exchange_roles(&id, &["SMTP.SendAsApp"]);
    let (push, alert) = wait_until("the alert resolved", Duration::from_secs(20), || {
        pushed(&inbox, "SmtpOAuthSmtpAuthFailing", "invoices")
            .into_iter()
            .find(|(p, a)| time(&a["endsAt"]) <= p.received_at)
    })
    .await;
    assert!(push.received_at - time(&alert["endsAt"]) < chrono::Duration::seconds(2));
    let start = std::time::Instant::now();
    while !get_alerts(&url).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "GET /alerts still lists alerts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The password reaches Alertmanager and nothing the agent shows.
    let status = reqwest::get(format!("http://{}/status", agent.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let alerts_text = serde_json::to_string(&get_alerts(&url).await).unwrap();
    for text in [scrape(&agent).await, status, alerts_text] {
        assert!(!text.contains(password), "the Alertmanager password leaked");
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_alertmanager_times_out_and_the_others_still_get_alerts_with_a_bearer_token() {
    let w = World::new().await;
    let id = client_id(2);
    // An app whose secret Entra ID does not know: the token check fails for good.
    w.sim
        .add_app(SimApp::new(TENANT, &id, "legacy").with_secret(
            "Leg~right",
            None,
            Utc::now(),
            Utc::now() + chrono::Duration::days(300),
        ));
    let (am, inbox) = http_receiver().await;
    // Accepts connections and never answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut socks = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            socks.push(s);
        }
    });
    let secret = w.file("legacy.secret", "Leg~wrong");
    let token = w.file("am.token", "am-bearer-t0ken\n");
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\nalerts:\n  failing_for: 1s\n  evaluation_interval: 200ms\nalertmanager:\n  urls: ['http://127.0.0.1:{hung_port}', 'http://127.0.0.1:{am}']\n  timeout: 500ms\n  resend_interval: 1s\n  bearer_token_file: {token}\napps:\n{}",
        secret_app(&w, "legacy", &id, &secret, "")
    );
    let agent = w.agent(&yaml).await;
    let (push, alert) = wait_until("the token alert pushed", Duration::from_secs(15), || {
        pushed(&inbox, "SmtpOAuthTokenFailing", "legacy")
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        push.authorization.as_deref(),
        Some("Bearer am-bearer-t0ken")
    );
    assert_eq!(push.path, "/api/v2/alerts");
    assert_eq!(alert["labels"]["reason"], "secret_invalid");
    // Re-sent every second or so although the first URL hangs each time (timeout 500 ms).
    let first = push.received_at;
    let later = wait_until("three more pushes", Duration::from_secs(10), || {
        let all = pushed(&inbox, "SmtpOAuthTokenFailing", "legacy");
        (all.len() >= 4).then(|| all[3].0.received_at)
    })
    .await;
    assert!(
        later - first < chrono::Duration::seconds(6),
        "three resends took {:?}",
        later - first
    );
    agent.stop().await;
    held.abort();
}
