//! Safe reload: `POST /-/reload` (with `--web.enable-lifecycle`) and SIGHUP re-read the
//! configuration file. Unchanged targets keep running (their series never leave a scrape, their
//! counters never go down), changed ones restart, removed ones' series go, a rotated secret file
//! is used, and an invalid file (an empty one, one without targets, unless `allow_empty: true`)
//! keeps the old configuration with `smtp_oauth_config_last_reload_successful 0`. A SIGHUP
//! while the agent starts is applied once it runs.

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::agent::{Agent, ServeOptions};
use smtp_oauth_exporter::sim::SimApp;

use crate::common::*;

/// The configuration: app `billing` (secret file `billing.secret`) with mailboxes `invoices`
/// and `scans`; app `crm` with mailbox `crm-mail`; plus `extra` lines under `mailboxes:`.
fn config(w: &World, billing: &str, crm: &str, scans_ehlo: &str, extra: &str) -> String {
    format!(
        "metrics:\n  detail: true\nscheduler:\n  startup_spread: 300ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\napps:\n{}{}mailboxes:\n  - {{ name: invoices, app: billing, address: invoices@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n  - {{ name: scans, app: billing, address: scans@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port}, ehlo_name: {scans_ehlo} }}\n  - {{ name: crm-mail, app: crm, address: crm@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n{extra}",
        secret_app(w, "billing", &client_id(1), billing, ""),
        secret_app(w, "crm", &client_id(2), crm, ""),
        port = w.sim.smtp_addr.port()
    )
}

async fn post_reload(agent: &Agent) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}/-/reload", agent.local_addr()))
        .send()
        .await
        .expect("reload request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

fn counter(text: &str, check: &str, target: &str) -> f64 {
    value(
        text,
        "smtp_oauth_check_runs_total",
        &[("check", check), ("target", target), ("result", "success")],
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_targets_restarts_changed_ones_and_rejects_a_bad_file() {
    let w = World::new().await;
    let now = Utc::now();
    let year = chrono::Duration::days(365);
    // Billing's registered secret is the new one: the old file content fails.
    w.sim
        .add_app(SimApp::new(TENANT, &client_id(1), "billing").with_secret(
            "Bil~new",
            None,
            now,
            now + year,
        ));
    w.sim
        .add_app(SimApp::new(TENANT, &client_id(2), "crm").with_secret(
            "Crm~value",
            None,
            now,
            now + year,
        ));
    for m in ["invoices", "scans", "crm", "added"] {
        w.sim
            .add_mailbox(&format!("{m}@contoso.com"), &[&client_id(1), &client_id(2)]);
    }
    let billing = w.file("billing.secret", "Bil~old");
    let crm = w.file("crm.secret", "Crm~value");
    let removed = format!(
        "  - {{ name: removed, app: crm, address: crm@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        w.sim.smtp_addr.port()
    );
    let path = w.dir.path().join("config.yml");
    std::fs::write(&path, config(&w, &billing, &crm, "one.example", &removed)).unwrap();
    let plan = smtp_oauth_exporter::config::load(&path).unwrap();
    let agent = Agent::start(
        plan,
        &ServeOptions {
            config_file: Some(path.clone()),
            enable_lifecycle: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    let before = wait_for(&agent, Duration::from_secs(10), "a few runs", |t| {
        counter(t, "token", "crm") >= 2.0
            && counter(t, "smtp", "crm-mail") >= 2.0
            && value(
                t,
                "smtp_oauth_check_failure_info",
                &[
                    ("check", "token"),
                    ("target", "billing"),
                    ("reason", "secret_invalid"),
                ],
            ) == Some(1.0)
            && value(
                t,
                "smtp_oauth_check_success",
                &[("check", "smtp"), ("target", "removed")],
            ) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&before, "smtp_oauth_config_last_reload_successful", &[]),
        Some(1.0)
    );
    let loaded_at = value(
        &before,
        "smtp_oauth_config_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap();

    // The secret rotated in its file, scans' EHLO name changed, `removed` gone, `added` new.
    std::fs::write(&billing, "Bil~new").unwrap();
    let added = format!(
        "  - {{ name: added, app: crm, address: added@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        w.sim.smtp_addr.port()
    );
    std::fs::write(&path, config(&w, &billing, &crm, "two.example", &added)).unwrap();

    // Scrape all through the reload: crm's series are in every page, its counters only grow.
    let url = format!("http://{}/metrics", agent.local_addr());
    let watcher = tokio::spawn(async move {
        let mut pages = Vec::new();
        for _ in 0..40 {
            pages.push(reqwest::get(&url).await.unwrap().text().await.unwrap());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        pages
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = post_reload(&agent).await;
    assert_eq!(status, 200, "{body}");
    // Jobs: billing's token (its secret changed) and its two mailboxes restart; crm's token
    // and crm-mail are kept; removed goes, added comes.
    assert_eq!(
        body.trim(),
        "configuration reloaded: 2 jobs kept, 3 restarted, 1 added, 1 removed"
    );
    let pages = watcher.await.unwrap();
    assert_eq!(pages.len(), 40);
    let mut last = (0.0, 0.0);
    for p in &pages {
        let now = (counter(p, "token", "crm"), counter(p, "smtp", "crm-mail"));
        assert!(now.0 >= last.0 && now.1 >= last.1, "a counter went down");
        assert!(now.0 >= 2.0 && now.1 >= 2.0, "crm's series left a scrape");
        last = now;
    }

    let after = wait_for(
        &agent,
        Duration::from_secs(10),
        "the new configuration",
        |t| {
            value(
                t,
                "smtp_oauth_check_success",
                &[("check", "token"), ("target", "billing")],
            ) == Some(1.0)
                && value(
                    t,
                    "smtp_oauth_check_success",
                    &[("check", "smtp"), ("target", "added")],
                ) == Some(1.0)
                && value(
                    t,
                    "smtp_oauth_check_success",
                    &[("check", "smtp"), ("target", "invoices")],
                ) == Some(1.0)
        },
    )
    .await;
    assert!(
        !after.contains("target=\"removed\""),
        "a removed target's series stayed"
    );
    assert!(
        value(
            &after,
            "smtp_oauth_config_last_reload_success_timestamp_seconds",
            &[]
        )
        .unwrap()
            > loaded_at
    );
    // billing's token check passing is the rotated secret in use: Entra ID knows only the new one.

    // An invalid file: 500 with the error, the old configuration keeps running, the metric says 0.
    std::fs::write(&path, "apps: [ { name: broken }\n").unwrap();
    let (status, body) = post_reload(&agent).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("failed to reload config: "), "{body}");
    assert!(
        body.contains("config.yml"),
        "the error names the file: {body}"
    );
    let runs = counter(&scrape(&agent).await, "token", "crm");
    let failed = wait_for(&agent, Duration::from_secs(10), "runs go on", |t| {
        counter(t, "token", "crm") > runs
    })
    .await;
    assert_eq!(
        value(&failed, "smtp_oauth_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert!(failed.contains("target=\"added\""));

    // An empty file (a truncated write, a wrong mount) and one without targets are refused the
    // same way: every target keeps running, nothing resolves quietly.
    for empty in ["", "# nothing yet\napps: []\nmailboxes: []\n"] {
        std::fs::write(&path, empty).unwrap();
        let (status, body) = post_reload(&agent).await;
        assert_eq!(status, 500, "{empty:?}: {body}");
        assert!(
            body.contains("no apps and no mailboxes") && body.contains("allow_empty: true"),
            "{body}"
        );
        let page = scrape(&agent).await;
        assert_eq!(
            value(&page, "smtp_oauth_config_last_reload_successful", &[]),
            Some(0.0)
        );
        assert!(page.contains("target=\"added\"") && page.contains("target=\"crm\""));
    }

    // Fixed again: 1 again.
    std::fs::write(&path, config(&w, &billing, &crm, "two.example", &added)).unwrap();
    let (status, body) = post_reload(&agent).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        "configuration reloaded: 6 jobs kept, 0 restarted, 0 added, 0 removed"
    );
    assert_eq!(
        value(
            &scrape(&agent).await,
            "smtp_oauth_config_last_reload_successful",
            &[]
        ),
        Some(1.0)
    );

    // Asked for in so many words, a configuration without targets is taken.
    std::fs::write(&path, "allow_empty: true\n").unwrap();
    let (status, body) = post_reload(&agent).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.trim(),
        "configuration reloaded: 0 jobs kept, 0 restarted, 0 added, 6 removed"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_over_http_needs_the_lifecycle_flag_and_post() {
    let w = World::new().await;
    let path = w.dir.path().join("config.yml");
    let yaml = "apps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: x, checks: { token: { enabled: false }, graph: { enabled: false } } }\n";
    std::fs::write(&path, yaml).unwrap();
    let start = |lifecycle| {
        let path = path.clone();
        async move {
            Agent::start(
                smtp_oauth_exporter::config::load(&path).unwrap(),
                &ServeOptions {
                    config_file: Some(path),
                    enable_lifecycle: lifecycle,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let off = start(false).await;
    let (status, body) = post_reload(&off).await;
    assert_eq!(status, 403, "{body}");
    // The reload itself (SIGHUP's path) works without the flag.
    assert!(off.reload().await.is_ok());
    off.stop().await;

    let on = start(true).await;
    let get = reqwest::get(format!("http://{}/-/reload", on.local_addr()))
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, PUT");
    let (status, _) = post_reload(&on).await;
    assert_eq!(status, 200);
    on.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let w = World::new().await;
    let now = Utc::now();
    w.sim
        .add_app(SimApp::new(TENANT, &client_id(1), "billing").with_secret(
            "Bil~value",
            None,
            now,
            now + chrono::Duration::days(300),
        ));
    let secret = w.file("billing.secret", "Bil~value");
    let head = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ enabled: false }}\napps:\n{}",
        secret_app(&w, "billing", &client_id(1), &secret, "")
    );
    let path = w.dir.path().join("config.yml");
    std::fs::write(&path, &head).unwrap();
    let agent = Process::start(
        &["--config.file", path.to_str().unwrap()],
        w.dir.path().join("agent.log"),
    )
    .await;
    let client = reqwest::Client::new();
    let metrics = || async {
        client
            .get(agent.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // A second app appears with the reload.
    std::fs::write(
        &path,
        format!(
            "{head}{}",
            secret_app(&w, "second", &client_id(2), &secret, "")
        ),
    )
    .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = std::time::Instant::now();
    loop {
        let text = metrics().await;
        if value(
            &text,
            "smtp_oauth_check_runs_total",
            &[("check", "token"), ("target", "second")],
        )
        .is_some()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no reload after SIGHUP:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The log line follows the swap (the new plan serves first): give it a moment.
    let start = std::time::Instant::now();
    while !agent.log_text().contains("configuration reloaded") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no reload log line:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = agent.stop();
    assert!(status.success(), "SIGTERM after a reload: {status:?}");
}

/// Opens the FIFO for writing once a reader has it open (polled: a non-blocking open fails
/// until then), so that the caller knows the reader is reading it right now.
#[cfg(unix)]
fn open_fifo(path: &std::path::Path, limit: Duration) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let start = std::time::Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return Ok(f),
            // ENXIO: no reader yet.
            Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("no reader opened {}: {e}", path.display())),
        }
    }
}

/// A SIGHUP that arrives while the agent reads its configuration at start (here: while it
/// waits on a FIFO, so the moment is certain) is logged and applied once the agent runs; the
/// process does not die of it (systemd would not restart a signal death it counts as clean).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_start_up_is_applied_once_the_agent_runs() {
    use std::io::Write;
    let w = World::new().await;
    let billing = w.app_with_secret(1, "billing", "Bil~value");
    let config = format!(
        "defaults:\n  checks:\n    token: {{ schedule: 1h }}\n    graph: {{ enabled: false }}\napps:\n{billing}"
    );
    let fifo = w.dir.path().join("config.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let log = w.dir.path().join("agent.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_smtp-oauth-exporter"))
        .args(["--config.file", fifo.to_str().unwrap()])
        .args(["--web.listen-address", "127.0.0.1:0"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let log_file = log.clone();
    let feeder = tokio::task::spawn_blocking(move || -> Result<(), String> {
        // The agent is reading its configuration: it waits for these bytes.
        let mut f = open_fifo(&fifo, Duration::from_secs(10))?;
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .map_err(|e| e.to_string())?;
        assert!(hup.success());
        f.write_all(config.as_bytes()).map_err(|e| e.to_string())?;
        drop(f);
        // The reload the SIGHUP asked for reads the file again, once the agent runs.
        let start = std::time::Instant::now();
        while !std::fs::read_to_string(&log_file)
            .unwrap_or_default()
            .contains("SIGHUP during start-up")
        {
            if start.elapsed() > Duration::from_secs(10) {
                return Err("no SIGHUP logged".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut f = open_fifo(&fifo, Duration::from_secs(10))?;
        f.write_all(config.as_bytes()).map_err(|e| e.to_string())
    });
    let port = listen_port(&log).await;
    let mut agent = Process { child, log, port };
    feeder
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_text()));
    let start = std::time::Instant::now();
    while !agent.log_text().contains("configuration reloaded") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the SIGHUP was not applied:\n{}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(agent.log_text().contains("SIGHUP during start-up"));
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died");
    let ready = reqwest::get(agent.url("/-/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(agent.stop().success());
}
