//! Throttling and retries through the real scheduler: a Graph read that fails for a transient
//! reason is retried before its 6-hour slot (after `Retry-After` when given), never in a tight
//! loop; a service that throttles an app holds back only that app's checks that use it.

use std::time::{Duration, Instant};

use chrono::Utc;
use smtp_oauth_exporter::sim::{GraphFault, SimApp, TokenFault, ROLE_APPLICATION_READ_ALL};

use crate::common::*;

fn graph_app(w: &World, id: &str) -> String {
    let now = Utc::now();
    w.sim.add_app(
        SimApp::new(TENANT, id, "reader")
            .with_secret("Rdr~value", None, now, now + chrono::Duration::days(300))
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
    );
    let file = w.file("reader.secret", "Rdr~value");
    format!(
        "scheduler:\n  startup_spread: 100ms\ndefaults:\n  checks:\n    token: {{ enabled: false }}\n    graph: {{ schedule: 6h, timeout: 2s }}\napps:\n{}",
        secret_app(w, "reader", id, &file, "")
    )
}

fn graph_failure(t: &str, reason: &str) -> bool {
    value(
        t,
        "smtp_oauth_check_failure_info",
        &[("check", "graph"), ("target", "reader"), ("reason", reason)],
    ) == Some(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_graph_read_on_a_six_hour_schedule_is_retried_after_retry_after() {
    let w = World::new().await;
    let id = client_id(1);
    w.sim.set_graph_fault(
        &id,
        Some(GraphFault::TooManyRequests {
            retry_after_seconds: 2,
        }),
    );
    let agent = w.agent(&graph_app(&w, &id)).await;
    wait_for(&agent, Duration::from_secs(10), "the throttled read", |t| {
        graph_failure(t, "throttled")
    })
    .await;
    let throttled_at = Instant::now();
    assert_eq!(w.sim.graph_requests(&id), 1);
    w.sim.set_graph_fault(&id, None);
    // Retry-After 2 s plus at most a tenth of jitter: well within a minute, not in 6 hours.
    wait_for(&agent, Duration::from_secs(60), "the retried read", |t| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "graph"), ("target", "reader")],
        ) == Some(1.0)
    })
    .await;
    let took = throttled_at.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "retried after {took:?}, sooner than Retry-After"
    );
    // The retry reads the application and its service principal: two requests.
    assert_eq!(
        w.sim.graph_requests(&id),
        3,
        "one retry, then the 6-hour schedule"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_graph_read_backs_off_instead_of_looping() {
    let w = World::new().await;
    let id = client_id(1);
    // HTTP 500 without Retry-After: transient, first retry after 30 s.
    w.sim.set_graph_fault(&id, Some(GraphFault::ServerError));
    let agent = w.agent(&graph_app(&w, &id)).await;
    wait_for(&agent, Duration::from_secs(10), "the failed read", |t| {
        graph_failure(t, "http_error")
    })
    .await;
    // Poll the simulator's count for three seconds: the one request only.
    let start = Instant::now();
    let mut polls = 0;
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(w.sim.graph_requests(&id), 1, "retried within 3 s");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(polls >= 20);
    agent.stop().await;
}

/// Each service throttles on its own: Entra ID throttling app `slow` holds back its token
/// check only (its mailbox keeps sending with the cached token, and other apps are not
/// touched); Graph throttling app `slow` holds back its Graph read only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_service_holds_back_only_the_checks_that_use_it() {
    let w = World::new().await;
    let now = Utc::now();
    let year = chrono::Duration::days(365);
    let (slow, fast) = (client_id(1), client_id(2));
    w.sim.add_app(
        SimApp::new(TENANT, &slow, "slow")
            .with_secret("Slo~v", None, now, now + year)
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
    );
    w.sim
        .add_app(SimApp::new(TENANT, &fast, "fast").with_secret("Fas~v", None, now, now + year));
    w.sim.add_mailbox("slow@contoso.com", &[&slow]);
    w.sim.add_mailbox("fast@contoso.com", &[&fast]);
    let (s, f) = (w.file("s.secret", "Slo~v"), w.file("f.secret", "Fas~v"));
    let port = w.sim.smtp_addr.port();
    let yaml = format!(
        "metrics:\n  detail: true\nscheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\napps:\n{}{}mailboxes:\n  - {{ name: slow-mail, app: slow, address: slow@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n  - {{ name: fast-mail, app: fast, address: fast@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n",
        secret_app(&w, "slow", &slow, &s, "    checks: { graph: { enabled: true, schedule: 1s, timeout: 2s } }\n"),
        secret_app(&w, "fast", &fast, &f, ""),
    );
    let agent = w.agent(&yaml).await;
    let runs = |t: &str, check: &str, target: &str| {
        ["success", "failure"]
            .iter()
            .map(|r| {
                value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[("check", check), ("target", target), ("result", r)],
                )
                .unwrap_or(0.0)
            })
            .sum::<f64>()
    };
    wait_for(&agent, Duration::from_secs(10), "both healthy", |t| {
        runs(t, "smtp", "slow-mail") >= 1.0 && runs(t, "smtp", "fast-mail") >= 1.0
    })
    .await;
    let throttled = |check: &'static str| {
        move |t: &str| {
            value(
                t,
                "smtp_oauth_check_failure_info",
                &[
                    ("check", check),
                    ("target", "slow"),
                    ("reason", "throttled"),
                ],
            ) == Some(1.0)
        }
    };
    // Entra ID throttles app `slow` for 6 s, then Graph does for 6 s (the page may be a second
    // old: the window below ends before the hold does).
    for (check, held, going) in [("token", "token", "graph"), ("graph", "graph", "token")] {
        match check {
            "token" => w.sim.set_token_fault(
                &slow,
                Some(TokenFault::TooManyRequests {
                    retry_after_seconds: 6,
                }),
            ),
            _ => w.sim.set_graph_fault(
                &slow,
                Some(GraphFault::TooManyRequests {
                    retry_after_seconds: 6,
                }),
            ),
        }
        wait_for(&agent, Duration::from_secs(10), check, throttled(check)).await;
        w.sim.set_token_fault(&slow, None);
        w.sim.set_graph_fault(&slow, None);
        // A run in progress may still finish; from half a second on, the held check waits
        // while the app's other checks, its mailbox and the other app's run every second.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = scrape(&agent).await;
        tokio::time::sleep(Duration::from_millis(3000)).await;
        let after = scrape(&agent).await;
        assert_eq!(
            runs(&after, held, "slow"),
            runs(&before, held, "slow"),
            "the throttled {held} check ran"
        );
        for (check, target) in [
            (going, "slow"),
            ("smtp", "slow-mail"),
            ("smtp", "fast-mail"),
        ] {
            assert!(
                runs(&after, check, target) >= runs(&before, check, target) + 2.0,
                "{check} of {target} was held back by the {held} throttling"
            );
        }
        assert_eq!(
            value(
                &after,
                "smtp_oauth_check_success",
                &[("check", "smtp"), ("target", "slow-mail")]
            ),
            Some(1.0),
            "the mailbox sends with the cached token"
        );
        // The verdict says what is held back, and until when.
        if held == "graph" {
            let status = agent.status();
            let v = status
                .mailboxes
                .iter()
                .find(|m| m.name == "slow-mail")
                .and_then(|m| m.verdict.clone())
                .unwrap();
            assert!(
                v.summary.contains(
                    "Graph holds back the app's Graph reads (credentials, service health, credential activity) until "
                ) && v.summary.contains("as its Retry-After asks"),
                "{v:?}"
            );
        }
        // Wait out the hold before the next round.
        tokio::time::sleep(Duration::from_millis(3000)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_401_drops_the_cached_graph_token() {
    let w = World::new().await;
    let id = client_id(1);
    // Graph refuses the (valid) token once with 401.
    w.sim.set_graph_fault(&id, Some(GraphFault::EchoToken));
    let yaml = graph_app(&w, &id).replace("schedule: 6h", "schedule: 1s");
    let agent = w.agent(&yaml).await;
    wait_for(&agent, Duration::from_secs(10), "the refused read", |t| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "graph"), ("target", "reader")],
        ) == Some(0.0)
    })
    .await;
    assert_eq!(w.sim.token_requests(&id), 1);
    w.sim.set_graph_fault(&id, None);
    wait_for(&agent, Duration::from_secs(10), "a read that works", |t| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "graph"), ("target", "reader")],
        ) == Some(1.0)
    })
    .await;
    // The refused token was dropped: the read that works used a new one.
    assert_eq!(w.sim.token_requests(&id), 2);
    agent.stop().await;
}
