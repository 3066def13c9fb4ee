//! What the application itself sends, against the simulator's message trace over real sockets:
//! a watched mailbox's messages counted by status over several pages and windows (other senders
//! left out), its failed share and its silence in the verdict, on `/status`, the page and the
//! agent's own alerts; Graph's throttling (429 with Retry-After) honoured; the agent's own budget
//! of 100 requests per 5 minutes never exceeded; and a lost canary looked up in the trace.

use std::time::{Duration, Instant};

use chrono::Utc;
use smtp_oauth_exporter::sim::{
    Delivery, GraphFault, SimApp, ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL, ROLE_MAIL_READ_WRITE,
};

use crate::common::*;

const SECRET: &str = "Trf~message-trace-test-secret";

/// One app reading its tenant's trace every `schedule`, with these mailboxes (name, address,
/// extra YAML of the mailbox) whose SMTP checks are off unless `extra` turns them on.
fn setup(w: &World, schedule: &str, mailboxes: &[(&str, &str, &str)], extra_top: &str) -> String {
    let now = Utc::now();
    let id = client_id(1);
    w.sim.add_app(
        SimApp::new(TENANT, &id, "sender")
            .with_secret(
                SECRET,
                None,
                now - chrono::Duration::days(1),
                now + chrono::Duration::days(90),
            )
            .with_graph_role(ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL)
            .with_graph_role(ROLE_MAIL_READ_WRITE),
    );
    let file = w.file("s.secret", SECRET);
    let mut y = format!(
        "scheduler:\n  startup_spread: 200ms\n{extra_top}defaults:\n  checks:\n    graph: {{ enabled: false }}\n    smtp: {{ enabled: false }}\napps:\n{}mailboxes:\n",
        secret_app(
            w,
            "sender",
            &id,
            &file,
            &format!("    checks:\n      traffic: {{ enabled: true, schedule: {schedule}, timeout: 5s }}\n")
        )
    );
    for (name, address, extra) in mailboxes {
        w.sim.add_mailbox(address, &[&id]);
        y += &format!(
            "  - {{ name: {name}, app: sender, address: {address}, smtp_host: 127.0.0.1, smtp_port: {}{extra} }}\n",
            w.sim.smtp_addr.port()
        );
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_counted_by_status_over_pages_and_windows_and_a_failing_share_is_said() {
    let w = World::new().await;
    let now = Utc::now();
    let h = chrono::Duration::hours;
    // The watched mailbox: 30 delivered, 4 quarantined, 2 failed in the last 20 hours; another
    // sender of the tenant, not watched, 50 more. Seven rows a page.
    for (n, status) in [(30, "delivered"), (4, "quarantined"), (2, "failed")] {
        w.sim.add_traffic(
            TENANT,
            "invoices@contoso.com",
            "customer@fabrikam.com",
            n,
            status,
            now - h(20),
            now - h(1),
        );
    }
    w.sim.add_traffic(
        TENANT,
        "someone@contoso.com",
        "x@fabrikam.com",
        50,
        "delivered",
        now - h(20),
        now - h(1),
    );
    w.sim.set_trace_page_cap(7);
    let agent = w
        .agent(&setup(
            &w,
            "1s",
            &[(
                "invoices",
                "invoices@contoso.com",
                ", expect_traffic_within: 1d",
            )],
            "",
        ))
        .await;
    let count = |t: &str, status: &str| {
        value(
            t,
            "smtp_oauth_traffic_messages_total",
            &[("target", "invoices"), ("status", status)],
        )
    };
    let text = wait_for(&agent, Duration::from_secs(20), "the counts", |t| {
        count(t, "delivered") == Some(30.0) && verdict_cause(t, "invoices").is_some()
    })
    .await;
    assert_eq!(count(&text, "quarantined"), Some(4.0));
    assert_eq!(count(&text, "failed"), Some(2.0));
    assert_eq!(
        count(&text, "pending"),
        None,
        "a status appears with its first message"
    );
    let share = value(
        &text,
        "smtp_oauth_traffic_failed_share",
        &[("target", "invoices")],
    );
    assert!((share.unwrap() - 6.0 / 36.0).abs() < 1e-9, "{share:?}");
    assert_eq!(
        verdict_cause(&text, "invoices").as_deref(),
        Some("traffic_failing")
    );
    let (calls, throttled) = w.sim.trace_calls();
    assert!(calls >= 13, "86 rows at 7 a page: {calls} requests");
    assert_eq!(throttled, 0);
    // The trace's check is the tenant's.
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_success",
            &[("check", "traffic"), ("target", TENANT)]
        ),
        Some(1.0)
    );

    // A message sent now is counted by a later window, once.
    w.sim.add_traffic(
        TENANT,
        "invoices@contoso.com",
        "customer@fabrikam.com",
        1,
        "delivered",
        Utc::now() - chrono::Duration::milliseconds(200),
        Utc::now(),
    );
    let text = wait_for(&agent, Duration::from_secs(10), "the new message", |t| {
        count(t, "delivered") == Some(31.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        count(&scrape(&agent).await, "delivered"),
        Some(31.0),
        "counted once"
    );
    let last = value(
        &text,
        "smtp_oauth_traffic_last_message_timestamp_seconds",
        &[("target", "invoices")],
    )
    .unwrap();
    assert!(
        (Utc::now().timestamp() as f64 - last).abs() < 10.0,
        "{last}"
    );

    // /status and the page: the traffic beside the checks, with its chart.
    let status = agent.status();
    let t = status.mailboxes[0].traffic.clone().expect("traffic");
    assert_eq!(t.summary, "sent 37 in 24 h, 2 failed, 4 quarantined");
    assert_eq!(t.hourly.len(), 24);
    let html = reqwest::get(format!("http://{}/", agent.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("data-sent=\"37\"")
            && html.contains("sent 37 in 24 h, 2 failed, 4 quarantined")
            && html.contains("<svg class=\"chart\""),
        "{html}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_silent_longer_than_expected_is_said_and_alerts() {
    let w = World::new().await;
    let now = Utc::now();
    w.sim.add_traffic(
        TENANT,
        "reminders@contoso.com",
        "customer@fabrikam.com",
        3,
        "delivered",
        now - chrono::Duration::hours(5),
        now - chrono::Duration::hours(2),
    );
    let agent = w
        .agent(&setup(
            &w,
            "1s",
            &[
                (
                    "reminders",
                    "reminders@contoso.com",
                    ", expect_traffic_within: 1h",
                ),
                // Never sent anything, and is not expected to: never silent.
                ("quiet", "quiet@contoso.com", ""),
            ],
            "alerts: { failing_for: 1s, evaluation_interval: 1s }\n",
        ))
        .await;
    let text = wait_for(&agent, Duration::from_secs(20), "the silence", |t| {
        verdict_cause(t, "reminders").as_deref() == Some("traffic_silent")
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_traffic_silent",
            &[("target", "reminders")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "smtp_oauth_traffic_silent", &[("target", "quiet")]),
        None
    );
    let v = agent.status().mailboxes[0].verdict.clone().unwrap();
    assert!(
        v.summary
            .contains("reminders@contoso.com has sent nothing for 2 h")
            && v.summary.contains("once every 60 min"),
        "{}",
        v.summary
    );
    // The agent's own alert (its for: is the configured failing_for).
    let start = Instant::now();
    loop {
        let alerts = agent.alerts();
        if alerts.iter().any(|a| {
            a.labels["alertname"] == "SmtpOAuthTrafficSilent" && a.labels["target"] == "reminders"
        }) {
            let a = alerts
                .iter()
                .find(|a| a.labels["alertname"] == "SmtpOAuthTrafficSilent")
                .unwrap();
            assert_eq!(a.labels["cause"], "traffic_silent");
            assert_eq!(a.labels["app"], "sender");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{alerts:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphs_429_with_retry_after_holds_the_tenants_reads() {
    let w = World::new().await;
    w.sim.set_graph_fault(
        &client_id(1),
        Some(GraphFault::TooManyRequests {
            retry_after_seconds: 4,
        }),
    );
    let agent = w
        .agent(&setup(&w, "1s", &[("m", "m@contoso.com", "")], ""))
        .await;
    wait_for(&agent, Duration::from_secs(20), "throttled", |t| {
        t.contains(&format!(
            "smtp_oauth_check_failure_info{{check=\"traffic\",target=\"{TENANT}\",reason=\"throttled\""
        ))
    })
    .await;
    // A run every second would ask 3 more times in 3 seconds: Retry-After holds it 4.
    let (before, _) = w.sim.trace_calls();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, _) = w.sim.trace_calls();
    assert_eq!(after, before, "no request while Graph asked to wait");
    w.sim.set_graph_fault(&client_id(1), None);
    wait_for(
        &agent,
        Duration::from_secs(15),
        "the read after the wait",
        |t| {
            value(
                t,
                "smtp_oauth_check_success",
                &[("check", "traffic"), ("target", TENANT)],
            ) == Some(1.0)
        },
    )
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_larger_than_the_budget_stops_at_a_hundred_requests() {
    let w = World::new().await;
    let now = Utc::now();
    // 150 rows, one a page: the first window needs 150 requests.
    w.sim.add_traffic(
        TENANT,
        "bulk@contoso.com",
        "x@fabrikam.com",
        150,
        "delivered",
        now - chrono::Duration::hours(10),
        now - chrono::Duration::hours(1),
    );
    w.sim.set_trace_page_cap(1);
    let agent = w
        .agent(&setup(&w, "1s", &[("bulk", "bulk@contoso.com", "")], ""))
        .await;
    let text = wait_for(&agent, Duration::from_secs(60), "the budget spent", |t| {
        t.contains(&format!(
            "smtp_oauth_check_failure_info{{check=\"traffic\",target=\"{TENANT}\",reason=\"budget_exhausted\""
        ))
    })
    .await;
    let (calls, throttled) = w.sim.trace_calls();
    assert_eq!(calls, 100, "exactly the budget");
    assert_eq!(throttled, 0, "Graph never had to throttle the agent");
    // Nothing counted of a window not read to its end.
    assert_eq!(
        value(
            &text,
            "smtp_oauth_traffic_messages_total",
            &[("target", "bulk"), ("status", "delivered")]
        ),
        None
    );
    let detail = agent.status().mailboxes[0].checks[&smtp_oauth_exporter::plan::CheckKind::Traffic]
        .detail
        .clone()
        .unwrap();
    assert!(detail.contains("narrower window"), "{detail}");
    // And it stays within it: no request for the rest of the 5 minutes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.sim.trace_calls().0, 100);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_canary_is_looked_up_in_the_trace() {
    let w = World::new().await;
    let mailboxes = [
        (
            "held",
            "held@contoso.com",
            Delivery::Quarantine,
            "message trace: quarantined",
        ),
        (
            "bounced",
            "bounced@contoso.com",
            Delivery::Bounce("550 5.1.1 RESOLVER.ADR.RecipientNotFound; not found".into()),
            "message trace: failed: 550 5.1.1 RESOLVER.ADR.RecipientNotFound; not found",
        ),
        (
            "stuck",
            "stuck@contoso.com",
            Delivery::Lost,
            "message trace: still pending",
        ),
    ];
    let list: Vec<(&str, &str, &str)> = mailboxes
        .iter()
        .map(|(n, a, _, _)| {
            (
                *n,
                *a,
                ", canary: { reader: sender, schedule: 1m, timeout: 8s }",
            )
        })
        .collect();
    let yaml = setup(&w, "1m", &list, "");
    for (_, address, delivery, _) in &mailboxes {
        w.sim.set_delivery(address, Some(delivery.clone()));
    }
    let agent = w.agent(&yaml).await;
    wait_for(
        &agent,
        Duration::from_secs(30),
        "three lost canaries",
        |t| {
            mailboxes
                .iter()
                .all(|(n, ..)| verdict_cause(t, n).as_deref() == Some("canary_not_delivered"))
        },
    )
    .await;
    let status = agent.status();
    for (name, _, _, says) in &mailboxes {
        let m = status.mailboxes.iter().find(|m| m.name == *name).unwrap();
        let v = m.verdict.as_ref().unwrap();
        assert!(v.summary.contains(says), "{name}: {}", v.summary);
    }
    agent.stop().await;
}
