//! Scale smoke test (not in the default run: `scripts/scale.sh`): 1,000 apps and 10,000
//! mailboxes against the simulator. Every mailbox's first SMTP run happens within the startup
//! spread; the test reports the process's CPU time, the scrape size and the time to render it,
//! and checks that every mailbox ran, with one token request per app.

use std::time::{Duration, Instant};

use chrono::Utc;
use smtp_oauth_exporter::sim::SimApp;

use crate::common::*;

const APPS: u32 = 1_000;
const MAILBOXES_PER_APP: u32 = 10;

/// User + system CPU seconds of this process so far (Linux /proc).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "scale suite: run with scripts/scale.sh"]
async fn ten_thousand_mailboxes_on_one_agent() {
    let w = World::new().await;
    let now = Utc::now();
    let file = w.file("scale.secret", "Sc4~scale-secret");
    let mut yaml = String::from(
        "scheduler:\n  startup_spread: 30s\n  max_concurrent_checks: 200\ndefaults:\n  checks:\n    token: { enabled: false }\n    graph: { enabled: false }\n    smtp: { schedule: 5m, timeout: 30s }\napps:\n",
    );
    let mut mailboxes = String::from("mailboxes:\n");
    for a in 0..APPS {
        let id = client_id(10_000 + a);
        w.sim.add_app(SimApp::new(TENANT, &id, "scale").with_secret(
            "Sc4~scale-secret",
            None,
            now,
            now + chrono::Duration::days(30),
        ));
        yaml += &secret_app(&w, &format!("app-{a}"), &id, &file, "");
        for m in 0..MAILBOXES_PER_APP {
            let address = format!("mb-{a}-{m}@contoso.com");
            w.sim.add_mailbox(&address, &[&id]);
            mailboxes += &format!(
                "  - {{ name: mb-{a}-{m}, app: app-{a}, address: {address}, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
                w.sim.smtp_addr.port()
            );
        }
    }
    yaml += &mailboxes;
    let t = Instant::now();
    let config = w.config(&yaml);
    println!(
        "config: {} apps, {} mailboxes parsed and validated in {:?}",
        config.apps.len(),
        config.mailboxes.len(),
        t.elapsed()
    );
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let agent = smtp_oauth_exporter::agent::Agent::start(config, &Default::default())
        .await
        .unwrap();
    let total = (APPS * MAILBOXES_PER_APP) as f64;
    let text = wait_for(
        &agent,
        Duration::from_secs(120),
        "every mailbox to have run once",
        |t| {
            t.lines()
                .filter(|l| l.starts_with("smtp_oauth_check_success{check=\"smtp\""))
                .count() as f64
                >= total
        },
    )
    .await;
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed());
    let ok = text
        .lines()
        .filter(|l| l.starts_with("smtp_oauth_check_success{check=\"smtp\"") && l.ends_with(" 1"))
        .count();
    let t = Instant::now();
    let body = agent.render_metrics();
    let render = t.elapsed();
    println!(
        "first round: {ok}/{total} mailboxes succeeded in {wall:?}; CPU {cpu:.1}s for agent AND simulator (both sides of {total} TLS handshakes)"
    );
    println!(
        "scrape: {} series, {} bytes, rendered in {render:?}",
        body.lines().filter(|l| !l.starts_with('#')).count(),
        body.len()
    );
    assert_eq!(ok as f64, total, "every mailbox succeeded");
    let requests: u64 = (0..APPS)
        .map(|a| w.sim.token_requests(&client_id(10_000 + a)))
        .sum();
    println!("token requests: {requests} for {APPS} apps");
    assert_eq!(requests, u64::from(APPS), "one token per app");
    // Steady state: the next round is 5 minutes away; the idle agent must cost next to nothing.
    let cpu1 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = cpu_seconds() - cpu1;
    println!("idle between rounds: {idle:.2}s CPU in 10s");
    assert!(
        idle < 1.0,
        "idle agent with 10,000 scheduled mailboxes used {idle:.2}s CPU in 10s"
    );
    agent.stop().await;
}
