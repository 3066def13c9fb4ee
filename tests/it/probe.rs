//! `/probe` over a real socket: a healthy and a failing target answer with that run's series
//! only (clean for promtool), an unknown target or an app's SMTP check gets 400, Prometheus'
//! scrape timeout bounds the run, and concurrent probes of different targets each get their own
//! answer. And what probes cost: a flood after the scheduled runs costs the tenant nothing,
//! concurrent probes share a run, a mailbox never has more than two sessions, runs beyond the
//! rate limits get 429, a probe that cannot start in time gets 503.

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
    let (_, via_module) = probe(&client, &base, "target=healthy&module=token", None).await;
    assert_eq!(
        value(&via_module, "probe_check_success", &[("check", "token")]),
        Some(1.0),
        "{via_module}"
    );
    promtool_check_metrics(&token);

    // Clear answers to bad requests.
    for (query, want) in [
        ("target=nope", "unknown target"),
        ("", "target parameter is missing"),
        ("target=healthy&check=dns", "unknown check"),
        // An app has no SMTP check: before, 200 with no series of any check.
        ("target=app&check=smtp", "runs on a mailbox"),
        // The Prometheus Operator's Probe sends `module`: it names the check.
        ("target=healthy&module=dns", "module: unknown check"),
        (
            "target=healthy&module=graph&check=token",
            "ask for different checks",
        ),
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

/// A probe with the agent's address as seen in its answers: status and page.
async fn probe_from(
    client: &reqwest::Client,
    base: &str,
    query: &str,
) -> (u16, String, Option<String>) {
    let resp = client
        .get(format!("{base}/probe?{query}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.text().await.unwrap(), retry_after)
}

/// The flood of "Where it stands" (4 clients hammering `/probe` for token, SMTP and Graph) after
/// the scheduled runs: every probe is answered from them (`probe_cached 1`), and the tenant
/// sees not one token request, Graph read or SMTP session more than the schedule made. (Before,
/// 4 clients made thousands of token requests and Graph reads a second.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_flood_costs_the_tenant_nothing_beyond_the_schedule() {
    let w = World::new().await;
    let id = client_id(1);
    let app = w.app_with_secret(1, "app", "Fld~secret-value");
    w.sim.add_mailbox("mb@contoso.com", &[&id]);
    let yaml = format!(
        "scheduler: {{ startup_spread: 100ms }}\ndefaults:\n  checks:\n    token: {{ schedule: 10m }}\n    smtp: {{ schedule: 10m }}\napps:\n{app}mailboxes:\n{}",
        mailbox_line("mb", "app", "mb@contoso.com", w.sim.smtp_addr.port())
    );
    let agent = w.agent(&yaml).await;
    wait_for(&agent, Duration::from_secs(10), "the scheduled runs", |t| {
        ["token", "graph"].iter().all(|c| {
            value(
                t,
                "smtp_oauth_check_last_run_timestamp_seconds",
                &[("check", c), ("target", "app")],
            )
            .is_some()
        }) && value(
            t,
            "smtp_oauth_check_success",
            &[("check", "smtp"), ("target", "mb")],
        ) == Some(1.0)
    })
    .await;
    let cost = || {
        (
            w.sim.token_requests(&id),
            w.sim.graph_requests(&id),
            w.sim.smtp_sessions(),
        )
    };
    let before = cost();
    let base = format!("http://{}", agent.local_addr());
    let queries = [
        "target=app&check=token",
        "target=mb",
        "target=mb&check=graph",
        "target=app",
    ];
    let flood_until = Instant::now() + Duration::from_secs(2);
    let clients = (0..4).map(|c| {
        let base = base.clone();
        async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while Instant::now() < flood_until {
                let (status, page, _) = probe_from(&client, &base, queries[(c + n) % 4]).await;
                assert_eq!(status, 200, "{page}");
                assert_eq!(value(&page, "probe_cached", &[]), Some(1.0), "{page}");
                assert!(value(&page, "probe_result_age_seconds", &[]).is_some());
                n += 1;
            }
            n
        }
    });
    let probes: usize = futures::future::join_all(clients).await.into_iter().sum();
    assert!(probes > 100, "only {probes} probes: no flood");
    assert_eq!(
        cost(),
        before,
        "{probes} probes cost the tenant (token requests, Graph reads, SMTP sessions)"
    );
    agent.stop().await;
}

/// Concurrent probes of one target share one run, even with the freshness window off; probes
/// of three targets that are the same mailbox, on top of the scheduler's runs of them, never
/// hold more than two SMTP sessions of it at once (Exchange allows three; before, one mailbox
/// got 2,488 sessions in 3 s and no bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_share_runs_and_a_mailbox_never_gets_more_than_two_sessions() {
    let w = World::new().await;
    let id = client_id(1);
    let app = w.app_with_secret(1, "app", "Ssn~secret-value");
    w.sim.add_mailbox("shared@contoso.com", &[&id]);
    w.sim.add_mailbox("alone@contoso.com", &[&id]);
    // Every session lasts a while: the sessions of one moment overlap.
    let slow = w
        .sim
        .start_smtp_listener(Some(SmtpFault::BannerDelay(Duration::from_millis(300))))
        .await
        .unwrap();
    let lone = w
        .sim
        .start_smtp_listener(Some(SmtpFault::BannerDelay(Duration::from_millis(500))))
        .await
        .unwrap();
    let mut yaml = format!(
        "scheduler: {{ startup_spread: 0s }}\nprobe: {{ freshness: 0s, rate_limit: 0, client_rate_limit: 0 }}\ndefaults:\n  checks:\n    token: {{ schedule: 10m }}\n    graph: {{ enabled: false }}\n    smtp: {{ schedule: 1s, timeout: 10s }}\napps:\n{app}mailboxes:\n"
    );
    for n in 1..=3 {
        yaml += &mailbox_line(
            &format!("same{n}"),
            "app",
            "shared@contoso.com",
            slow.addr.port(),
        );
    }
    yaml += &format!(
        "  - {{ name: alone, app: app, address: alone@contoso.com, smtp_host: 127.0.0.1, smtp_port: {}, checks: {{ smtp: {{ enabled: false }} }} }}\n",
        lone.addr.port()
    );
    let agent = w.agent(&yaml).await;
    let base = format!("http://{}", agent.local_addr());

    // Eight probes of one target at once: one run, one session.
    let sessions = w.sim.smtp_sessions();
    let client = reqwest::Client::new();
    let answers =
        futures::future::join_all((0..8).map(|_| probe_from(&client, &base, "target=alone"))).await;
    for (status, page, _) in &answers {
        assert_eq!(*status, 200, "{page}");
        assert_eq!(value(page, "probe_success", &[]), Some(1.0), "{page}");
        assert_eq!(value(page, "probe_cached", &[]), Some(0.0), "{page}");
    }
    assert_eq!(w.sim.smtp_peak_connections(lone.addr), 1);

    // Six clients probing the three names of one mailbox while the scheduler runs them.
    let until = Instant::now() + Duration::from_millis(1500);
    let clients = (0..6).map(|c| {
        let base = base.clone();
        async move {
            let client = reqwest::Client::new();
            let mut n = 0;
            while Instant::now() < until {
                let (status, page, _) =
                    probe_from(&client, &base, &format!("target=same{}", 1 + (c + n) % 3)).await;
                assert_eq!(status, 200, "{page}");
                assert_eq!(value(&page, "probe_success", &[]), Some(1.0), "{page}");
                n += 1;
            }
        }
    });
    futures::future::join_all(clients).await;
    assert!(w.sim.smtp_sessions() > sessions + 3);
    let peak = w.sim.smtp_peak_connections(slow.addr);
    assert!(peak <= 2, "{peak} sessions of one mailbox at once");
    assert_eq!(peak, 2, "the two sessions a mailbox may have were used");
    agent.stop().await;
}

/// Probes that would run checks beyond the rate limits get 429 with `Retry-After`: one client
/// beyond its own rate, another beyond what is left of the global one. A probe answered from a
/// recent result costs nothing and is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_beyond_the_rate_limits_get_429_with_retry_after() {
    let w = World::new().await;
    let mut apps = String::new();
    for n in 1..=6 {
        apps += &w.app_with_secret(n, &format!("app{n}"), "Rate~secret-value");
    }
    // Client: 1 run a second (a burst of 2); all clients: 1.5 a second (a burst of 3).
    let yaml = format!(
        "probe: {{ rate_limit: 1.5, client_rate_limit: 1 }}\ndefaults:\n  checks:\n    token: {{ enabled: false }}\n    graph: {{ enabled: false }}\napps:\n{apps}"
    );
    let agent = w.agent(&yaml).await;
    let base = format!("http://{}", agent.local_addr());
    let a = reqwest::Client::new();
    // A second client address on loopback.
    let b = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    assert_eq!(probe_from(&a, &base, "target=app1").await.0, 200);
    assert_eq!(probe_from(&a, &base, "target=app2").await.0, 200);
    let (status, body, retry) = probe_from(&a, &base, "target=app3").await;
    assert_eq!(status, 429, "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After: {retry}");
    // Client b has its own burst, but only one run is left of the global one.
    assert_eq!(probe_from(&b, &base, "target=app4").await.0, 200);
    let (status, body, retry) = probe_from(&b, &base, "target=app5").await;
    assert_eq!(status, 429, "{body}");
    assert!(retry.is_some());
    // A fresh result costs nothing: answered, however many.
    for _ in 0..10 {
        let (status, page, _) = probe_from(&a, &base, "target=app1").await;
        assert_eq!(status, 200);
        assert_eq!(value(&page, "probe_cached", &[]), Some(1.0), "{page}");
    }
    agent.stop().await;
}

/// A probe that cannot start its run while there is still time for it (the one probe slot is
/// taken until just before its deadline) answers 503, not a 200 whose run was cut short into a
/// timeout, as it did when it got the slot at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_cannot_start_before_its_deadline_gets_503() {
    let w = World::new().await;
    let id = client_id(1);
    let app = w.app_with_secret(1, "app", "Late~secret-value");
    w.sim.add_mailbox("one@contoso.com", &[&id]);
    w.sim.add_mailbox("two@contoso.com", &[&id]);
    let silent = w
        .sim
        .start_smtp_listener(Some(SmtpFault::BannerDelay(Duration::from_secs(30))))
        .await
        .unwrap();
    let port = silent.addr.port();
    let yaml = format!(
        "scheduler: {{ max_concurrent_probes: 1 }}\ndefaults:\n  checks:\n    token: {{ enabled: false }}\n    graph: {{ enabled: false }}\n    smtp: {{ enabled: false, timeout: 2s }}\napps:\n{app}mailboxes:\n{}{}",
        mailbox_line("one", "app", "one@contoso.com", port),
        mailbox_line("two", "app", "two@contoso.com", port),
    );
    let agent = w.agent(&yaml).await;
    let base = format!("http://{}", agent.local_addr());
    let client = reqwest::Client::new();
    // `one` takes the slot for its 2 s timeout.
    let first = tokio::spawn({
        let client = client.clone();
        let base = base.clone();
        async move { probe_from(&client, &base, "target=one").await }
    });
    let started = Instant::now();
    while w.sim.smtp_peak_connections(silent.addr) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the first probe never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // `two` has 2.3 s (2.8 s less the margin): the slot frees at about 2 s, too late for a run.
    let t = Instant::now();
    let (status, body) = probe(&client, &base, "target=two", Some("2.8")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        t.elapsed() < Duration::from_millis(2300),
        "answered after {:?}",
        t.elapsed()
    );
    let (status, page, _) = first.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &page,
            "probe_failure_info",
            &[("check", "smtp"), ("reason", "timeout")]
        ),
        Some(1.0),
        "{page}"
    );
    agent.stop().await;
}
