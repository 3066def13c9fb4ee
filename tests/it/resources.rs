//! The agent's own host out of resources is the agent's fault, never the tenant's: with its open
//! file limit pinned low, SMTP sessions that find no descriptor fail with `local_resources` and
//! the verdict `agent_resources`, not `connect_refused` and a firewall to blame; the limits are
//! logged at start.

use std::time::{Duration, Instant};

use smtp_oauth_exporter::sim::SmtpFault;

use crate::common::*;

/// Mailboxes checked at once against a server that holds every session open: more than the
/// descriptors the agent has.
const MAILBOXES: usize = 60;
/// The agent's open file limit, soft and hard (so that it cannot raise it).
const OPEN_FILES: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_is_the_agents_fault_not_a_firewall() {
    let w = World::new().await;
    let app = w.app_with_secret(1, "billing", "Fd~secret-value");
    // The banner never comes before the check's timeout: each session holds its socket.
    let stall = w
        .sim
        .start_smtp(Some(SmtpFault::BannerDelay(Duration::from_secs(30))))
        .await
        .unwrap();
    let mut yaml = format!(
        "scheduler: {{ startup_spread: 0s }}\ndefaults:\n  checks:\n    token: {{ enabled: false }}\n    graph: {{ enabled: false }}\n    smtp: {{ schedule: 1h, timeout: 4s }}\napps:\n{app}mailboxes:\n"
    );
    for n in 0..MAILBOXES {
        yaml += &mailbox_line(
            &format!("mb{n}"),
            "billing",
            &format!("mb{n}@contoso.com"),
            stall.port(),
        );
    }
    let config = w.file("config.yml", &yaml);
    let agent = Process::start_with_open_files(
        Some(OPEN_FILES),
        &["--config.file", &config],
        w.dir.path().join("agent.log"),
    )
    .await;

    let start = Instant::now();
    let log = loop {
        let log = agent.log_text();
        if log.contains("reason=local_resources") {
            break log;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no run failed with local_resources:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        log.contains(&format!("soft={OPEN_FILES}")) && log.contains(&format!("hard={OPEN_FILES}")),
        "the open file limits are logged at start:\n{log}"
    );
    assert!(
        !log.contains("connect_refused") && !log.contains("reason=dns"),
        "a descriptor the host did not have was blamed on the network:\n{log}"
    );

    // Once the held sessions time out the descriptors come back, and the verdicts say whose
    // fault it was.
    let client = reqwest::Client::new();
    let text = loop {
        if let Ok(r) = client.get(agent.url("/metrics")).send().await {
            if let Ok(text) = r.text().await {
                if value(&text, "smtp_oauth_verdict", &[("cause", "agent_resources")]).is_some() {
                    break text;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no agent_resources verdict:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        value(
            &text,
            "smtp_oauth_verdict",
            &[("cause", "connection_refused")]
        )
        .is_none(),
        "{text}"
    );
    assert!(text.contains("reason=\"local_resources\""), "{text}");
    agent.stop();
}
