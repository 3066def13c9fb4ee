//! Sharding across replicas: two agent processes with `--shard.count 2` (indices 0 and 1) on
//! one configuration of 50 mailboxes over 10 apps against the simulator. Together their
//! `/metrics` cover every mailbox and app exactly once; with the default split by app each
//! app's token is requested by one replica only; split by mailbox, each app's token and Graph
//! checks still run on one replica.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use smtp_oauth_exporter::sim::fleet::{self, FleetOptions};
use smtp_oauth_exporter::sim::Simulator;

use crate::common::*;

/// `(check, target)` of every `smtp_oauth_check_success` series, and the targets of
/// `token_requests_by_app_total` with a request, in one scrape.
fn series(text: &str, name: &str, label: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let s = l.find(&format!("{label}=\""))? + label.len() + 2;
            Some(l[s..s + l[s..].find('"')?].to_string())
        })
        .collect()
}

fn check_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("smtp_oauth_check_success{"))
        .map(|l| l.split_once('}').unwrap().0.to_string())
        .collect()
}

async fn run_pair(by: &str) -> (Simulator, [String; 2]) {
    let sim = Simulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opts = FleetOptions {
        mailboxes: 50,
        per_app: 5,
        smtp_schedule: "1s".into(),
        token_schedule: "1s".into(),
        graph_schedule: "2s".into(),
        startup_spread: "300ms".into(),
        ..Default::default()
    };
    let config = fleet::generate(&sim, &opts, dir.path()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("metrics:\n  detail: true\n{text}")).unwrap();
    let replicas: Vec<Process> = futures::future::join_all((0..2).map(|i| {
        let config = config.clone();
        let log = dir.path().join(format!("replica-{i}.log"));
        async move {
            Process::start(
                &[
                    "--config.file",
                    config.to_str().unwrap(),
                    "--shard.count",
                    "2",
                    "--shard.index",
                    &i.to_string(),
                    "--shard.by",
                    by,
                ],
                log,
            )
            .await
        }
    }))
    .await;
    assert_eq!(replicas.len(), 2);
    // Until every check of the fleet has run somewhere: 10 apps x (token, graph) + 50 mailboxes.
    let client = reqwest::Client::new();
    let start = Instant::now();
    let pages = loop {
        let mut pages = Vec::new();
        for r in &replicas {
            pages.push(
                client
                    .get(r.url("/metrics"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
        let ran: usize = pages.iter().map(|p| check_keys(p).len()).sum();
        if ran >= 70 {
            break [pages[0].clone(), pages[1].clone()];
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {ran} of 70 checks ran:\n{}\n{}",
            replicas[0].log_text(),
            replicas[1].log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for r in replicas {
        let status = r.stop();
        assert!(status.success(), "{status:?}");
    }
    (sim, pages)
}

/// Every key once across the two pages, and both replicas have a share.
fn exactly_once(pages: &[String; 2], keys: impl Fn(&str) -> Vec<String>, expected: usize) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for p in pages {
        let k = keys(p);
        assert!(!k.is_empty(), "a replica with no share");
        for key in k {
            *seen.entry(key).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), expected, "{seen:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "checked by both replicas: {twice:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_by_app_check_everything_once_and_share_no_token() {
    let (sim, pages) = run_pair("app").await;
    exactly_once(&pages, check_keys, 70);
    exactly_once(&pages, |p| series(p, "smtp_oauth_verdict", "target"), 50);
    // Each app's token requests come from one replica only.
    exactly_once(
        &pages,
        |p| {
            let mut apps = series(p, "smtp_oauth_token_requests_by_app_total", "target");
            apps.sort();
            apps.dedup();
            apps
        },
        10,
    );
    for i in 0..10 {
        assert!(sim.token_requests(&fleet::client_id(i)) > 0);
    }
    // An app and its mailboxes are on the same replica.
    for (n, p) in pages.iter().enumerate() {
        for m in series(p, "smtp_oauth_verdict", "target") {
            let app = m.trim_start_matches("mb-").split('-').next().unwrap();
            assert!(
                p.contains(&format!("check=\"token\",target=\"app-{app}\"")),
                "replica {n} has mailbox {m} without its app"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_split_by_mailbox_check_everything_once() {
    let (_sim, pages) = run_pair("mailbox").await;
    exactly_once(&pages, check_keys, 70);
    // Each mailbox's verdict once; an app whose mailboxes are all elsewhere has a verdict of
    // its own on its replica (its token and Graph results), also once.
    exactly_once(
        &pages,
        |p| {
            series(p, "smtp_oauth_verdict", "target")
                .into_iter()
                .filter(|t| t.starts_with("mb-"))
                .collect()
        },
        50,
    );
    let apps: Vec<String> = pages
        .iter()
        .flat_map(|p| series(p, "smtp_oauth_verdict", "target"))
        .filter(|t| t.starts_with("app-"))
        .collect();
    let mut unique = apps.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), apps.len(), "an app verdict on both replicas");
}
