//! `/probe` over a real socket: a healthy and a failing target answer with that run's series
//! only (clean for promtool), an unknown target gets 400, Prometheus' scrape timeout bounds the
//! run, and concurrent probes of different targets each get their own answer.

use std::time::{Duration, Instant};

use chrono::Utc;
use smtp_oauth_exporter::sim::{SimApp, SmtpFault};

use crate::common::*;

async fn probe(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    timeout: Option<&str>,
) -> (u16, String) {
    let mut req = client.get(format!("{base}/probe?{query}"));
    if let Some(t) = timeout {
        req = req.header("X-Prometheus-Scrape-Timeout-Seconds", t);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_answer_with_their_own_series() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim.add_app(SimApp::new(TENANT, &id, "probe").with_secret(
        "Prb~secret-value",
        None,
        now,
        now + chrono::Duration::days(90),
    ));
    w.sim.add_mailbox("healthy@contoso.com", &[&id]);
    w.sim.add_mailbox("denied@contoso.com", &[]);
    for n in 0..4 {
        w.sim.add_mailbox(&format!("many{n}@contoso.com"), &[&id]);
    }
    let slow = w
        .sim
        .start_smtp(Some(SmtpFault::BannerDelay(Duration::from_secs(30))))
        .await
        .unwrap();
    let file = w.file("p.secret", "Prb~secret-value");
    let port = w.sim.smtp_addr.port();
    let mut yaml = format!(
        // Scheduled checks are off: everything the probes show, they ran themselves.
        "defaults:\n  checks:\n    token: {{ enabled: false }}\n    smtp: {{ enabled: false, timeout: 10s }}\n    graph: {{ enabled: false }}\napps:\n{}mailboxes:\n",
        secret_app(&w, "app", &id, &file, "")
    );
    for (name, port) in [("healthy", port), ("denied", port), ("slow", slow.port())] {
        yaml += &format!("  - {{ name: {name}, app: app, address: {name}@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n");
    }
    for n in 0..4 {
        yaml += &format!("  - {{ name: many{n}, app: app, address: many{n}@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n");
    }
    let agent = w.agent(&yaml).await;
    let base = format!("http://{}", agent.local_addr());
    let client = reqwest::Client::new();

    let (status, healthy) = probe(&client, &base, "target=healthy", None).await;
    assert_eq!(status, 200, "{healthy}");
    assert_eq!(
        value(&healthy, "probe_success", &[]),
        Some(1.0),
        "{healthy}"
    );
    assert_eq!(
        value(&healthy, "probe_check_success", &[("check", "smtp")]),
        Some(1.0)
    );
    for phase in ["connect", "tls", "auth", "mail_from"] {
        assert!(
            value(&healthy, "probe_smtp_duration_seconds", &[("phase", phase)]).is_some(),
            "{phase}: {healthy}"
        );
    }
    assert!(value(
        &healthy,
        "probe_tls_version_info",
        &[("version", "TLS 1.3")]
    )
    .is_some());
    assert!(value(&healthy, "probe_ssl_earliest_cert_expiry", &[]).is_some());
    assert!(value(
        &healthy,
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        &[]
    )
    .is_some());
    assert_eq!(
        value(
            &healthy,
            "probe_verdict",
            &[("cause", "ok"), ("step", "ok")]
        ),
        Some(1.0)
    );
    assert!(!healthy.contains("target="), "no target label: {healthy}");
    promtool_check_metrics(&healthy);

    let (status, denied) = probe(&client, &base, "target=denied", None).await;
    assert_eq!(status, 200);
    assert_eq!(value(&denied, "probe_success", &[]), Some(0.0), "{denied}");
    assert_eq!(
        value(
            &denied,
            "probe_failure_info",
            &[("check", "smtp"), ("reason", "auth_rejected")]
        ),
        Some(1.0),
        "{denied}"
    );
    assert_eq!(
        value(&denied, "probe_smtp_status_code", &[("phase", "auth")]),
        Some(535.0)
    );
    assert_eq!(
        value(
            &denied,
            "probe_verdict",
            &[
                ("step", "4"),
                ("cause", "service_principal_or_permission_missing")
            ]
        ),
        Some(1.0),
        "{denied}"
    );
    promtool_check_metrics(&denied);

    // An app's probe runs its token check; a mailbox's token check is its app's.
    let (_, token) = probe(&client, &base, "target=app", None).await;
    assert_eq!(
        value(&token, "probe_check_success", &[("check", "token")]),
        Some(1.0),
        "{token}"
    );
    assert!(value(&token, "probe_token_expiry_timestamp_seconds", &[]).is_some());
    let (_, via_mailbox) = probe(&client, &base, "target=healthy&check=token", None).await;
    assert_eq!(
        value(&via_mailbox, "probe_check_success", &[("check", "token")]),
        Some(1.0)
    );
    promtool_check_metrics(&token);

    // Clear answers to bad requests.
    for (query, want) in [
        ("target=nope", "unknown target"),
        ("", "target parameter is missing"),
        ("target=healthy&check=dns", "unknown check"),
    ] {
        let (status, body) = probe(&client, &base, query, None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(want), "{query}: {body}");
    }

    // Prometheus' scrape timeout (less half a second) bounds a run against a silent server.
    let t = Instant::now();
    let (status, slow_body) = probe(&client, &base, "target=slow", Some("2")).await;
    let took = t.elapsed();
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &slow_body,
            "probe_failure_info",
            &[("check", "smtp"), ("reason", "timeout")]
        ),
        Some(1.0),
        "{slow_body}"
    );
    assert!(took < Duration::from_secs(2), "the probe took {took:?}");

    // Concurrent probes of different targets: each answers for its own target.
    let targets = ["healthy", "denied", "many0", "many1", "many2", "many3"];
    let queries: Vec<String> = targets.iter().map(|t| format!("target={t}")).collect();
    let answers =
        futures::future::join_all(queries.iter().map(|q| probe(&client, &base, q, Some("10"))))
            .await;
    for (t, (status, body)) in targets.iter().zip(answers) {
        assert_eq!(status, 200, "{t}");
        let want = if *t == "denied" { 0.0 } else { 1.0 };
        assert_eq!(
            value(&body, "probe_success", &[]),
            Some(want),
            "{t}: {body}"
        );
    }
    // Probes are not scheduled runs: the agent's own series saw none of them.
    let metrics = scrape(&agent).await;
    assert!(
        !metrics.contains("smtp_oauth_check_success{"),
        "probes must not write the agent's state:\n{metrics}"
    );
    agent.stop().await;
}
