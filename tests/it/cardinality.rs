//! The cardinality budget on a demo scrape: a healthy mailbox costs at most 8 series (5 today, 7
//! with its traffic watched), and what every mailbox of one SMTP endpoint shares (TLS facts, per-phase latency) is one set
//! of series per endpoint, fed by all of its mailboxes.

use std::collections::BTreeMap;
use std::time::Duration;

use smtp_oauth_exporter::agent::{Agent, ServeOptions};
use smtp_oauth_exporter::demo::Demo;

use crate::common::*;

/// The series of a scrape whose `label` is `value`.
fn series_with<'a>(text: &'a str, label: &str, value: &str) -> Vec<&'a str> {
    let needle = format!("{label}=\"{value}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_mailbox_costs_at_most_eight_series_and_endpoints_are_shared() {
    let demo = Demo::start().await.unwrap();
    let agent = Agent::start(demo.plan().await.unwrap(), &ServeOptions::default())
        .await
        .unwrap();
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "every mailbox's verdict",
        |t| {
            t.lines()
                .filter(|l| l.starts_with("smtp_oauth_verdict{"))
                .count()
                // One per scenario, and the canaries' reader (an app without a mailbox).
                == smtp_oauth_exporter::demo::SCENARIOS.len() + 1
                && !t.contains("cause=\"pending\"")
                && t.contains("graph-throttled\",app=\"reports\",step=\"transient\"")
                && t.contains("smtp_oauth_traffic_messages_total{target=\"traffic-healthy\"")
        },
    )
    .await;
    agent.stop().await;

    // The budget, for each healthy mailbox of the demo.
    for mailbox in ["healthy-secret", "healthy-certificate"] {
        let own = series_with(&text, "target", mailbox);
        assert!(
            own.len() <= 8,
            "{mailbox} has {} series:\n{}",
            own.len(),
            own.join("\n")
        );
        let mut names: Vec<&str> = own.iter().map(|l| l.split('{').next().unwrap()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "smtp_oauth_check_duration_seconds",
                "smtp_oauth_check_last_run_timestamp_seconds",
                "smtp_oauth_check_last_success_timestamp_seconds",
                "smtp_oauth_check_success",
                "smtp_oauth_verdict",
            ],
            "{mailbox}"
        );
    }
    // A healthy mailbox with a delivery canary: its three series on top, within the budget.
    let own = series_with(&text, "target", "canary-delivered");
    let mut names: Vec<&str> = own.iter().map(|l| l.split('{').next().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "smtp_oauth_canary_last_delivery_seconds",
            "smtp_oauth_check_duration_seconds",
            "smtp_oauth_check_last_run_timestamp_seconds",
            "smtp_oauth_check_last_success_timestamp_seconds",
            "smtp_oauth_check_last_success_timestamp_seconds",
            "smtp_oauth_check_success",
            "smtp_oauth_check_success",
            "smtp_oauth_verdict",
        ],
        "{}",
        own.join("\n")
    );
    // A healthy mailbox whose traffic is watched: its messages by status (delivered alone) and
    // its newest message on top, within the budget.
    let own = series_with(&text, "target", "traffic-healthy");
    let mut names: Vec<&str> = own.iter().map(|l| l.split('{').next().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "smtp_oauth_check_duration_seconds",
            "smtp_oauth_check_last_run_timestamp_seconds",
            "smtp_oauth_check_last_success_timestamp_seconds",
            "smtp_oauth_check_success",
            "smtp_oauth_traffic_last_message_timestamp_seconds",
            "smtp_oauth_traffic_messages_total",
            "smtp_oauth_verdict",
        ],
        "{}",
        own.join("\n")
    );
    // One that fails: a counter per status seen, its failed share; still a handful.
    let own = series_with(&text, "target", "traffic-quarantined");
    let traffic: Vec<&&str> = own
        .iter()
        .filter(|l| l.starts_with("smtp_oauth_traffic_"))
        .collect();
    assert_eq!(traffic.len(), 5, "{traffic:?}");
    assert!(own.len() <= 10, "{}", own.join("\n"));
    // No mailbox series carries a phase or a TLS fact.
    for line in text.lines().filter(|l| l.contains("target=\"")) {
        assert!(
            !line.contains("phase=\"")
                || line.starts_with("smtp_oauth_smtp_status_code{")
                || line.starts_with("smtp_oauth_smtp_enhanced_status_code_info{"),
            "{line}"
        );
        assert!(!line.contains("fingerprint_sha256"), "{line}");
    }

    // The shared endpoint: one TLS fact set and one histogram per phase, however many
    // mailboxes; every mailbox that reached a phase counted in it.
    let endpoints: BTreeMap<String, usize> = text
        .lines()
        .filter(|l| l.starts_with("smtp_oauth_smtp_tls_version_info{"))
        .map(|l| {
            let e = l.split("endpoint=\"").nth(1).unwrap();
            (e.split('"').next().unwrap().to_string(), 0)
        })
        .collect();
    let main = format!("127.0.0.1:{}", demo.sim.smtp_addr.port());
    assert!(endpoints.contains_key(&main), "{endpoints:?}");
    assert_eq!(
        series_with(&text, "endpoint", &main)
            .iter()
            .filter(|l| l.starts_with("smtp_oauth_smtp_tls_version_info"))
            .count(),
        1
    );
    // 12 of the demo's mailboxes (and 8 canaries) use the main endpoint, and each connected at
    // least once.
    let connects = value(
        &text,
        "smtp_oauth_smtp_phase_duration_seconds_count",
        &[("endpoint", &main), ("phase", "connect")],
    )
    .unwrap();
    assert!(connects >= 20.0, "{connects} connects counted at {main}");
    let per_phase = series_with(&text, "endpoint", &main)
        .iter()
        .filter(|l| l.contains("phase=\"connect\""))
        .count();
    assert_eq!(
        per_phase,
        smtp_oauth_exporter::metrics::text::LATENCY_BUCKETS.len() + 3,
        "buckets, +Inf, sum and count"
    );
}
