//! Secrets and tokens never reach logs, metrics or any other output: the real binary runs
//! against the simulator with a fleet that succeeds and fails, at debug level, in both log
//! formats; everything it prints, every scrape, `/status`, the status page, every `/probe`
//! answer and every output of the `check` command (text, JSON, Nagios, a test message) is
//! searched for the client secrets, the private key and every access token the simulator issued.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use crate::common::*;
use crate::fixtures::fleet;

/// Every line is one record of the format: JSON objects with `ts`, a lower-case `level`, `msg`
/// and numbers as numbers; logfmt lines with the same keys and no `\'` escapes.
fn check_log_lines(format: &str, log: &str) {
    let mut n = 0;
    for line in log.lines() {
        n += 1;
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(v["ts"].is_string() && v["msg"].is_string(), "{line}");
            assert!(
                ["debug", "info", "warn", "error"].contains(&v["level"].as_str().unwrap_or("")),
                "{line}"
            );
            if let Some(d) = v.get("duration_seconds") {
                assert!(d.is_number(), "{line}");
            }
        } else {
            assert!(
                line.starts_with("ts=") && line.contains(" level="),
                "{line}"
            );
            assert!(!line.contains("\\'"), "an escaped apostrophe: {line}");
        }
    }
    assert!(n > 10, "{format}: {n} lines");
}

/// The fleet's apps and mailboxes.
const TARGETS: [&str; 10] = [
    "good", "stale", "wrong", "cert", "inline", "ok", "cert-mb", "denied", "stale-mb", "plain",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_key_or_token_in_any_output() {
    let w = World::new().await;
    let f = fleet(&w).await;
    let config = w.file("fleet.yml", &f.yaml);
    let mut printed = String::new();
    let mut scrapes = Vec::new();
    for format in ["logfmt", "json"] {
        let out = w.dir.path().join(format!("{format}.log"));
        let log = std::fs::File::create(&out).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_smtp-oauth-exporter"))
            .args([
                "--config.file",
                &config,
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.level",
                "debug",
                "--log.format",
                format,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the agent binary");
        // The agent picks its port (no bind-release-rebind race) and logs it.
        let port = listen_port(&out).await;
        let url = format!("http://127.0.0.1:{port}/metrics");
        let start = std::time::Instant::now();
        // Scrape for a few seconds: every check runs several times, failures included.
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(r) = reqwest::get(&url).await {
                scrapes.push(r.text().await.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Every other path: the status document, the page, and a probe of every target and
        // check (failures included).
        let mut paths = vec!["/status".to_string(), "/".to_string()];
        for t in TARGETS {
            paths.push(format!("/probe?target={t}"));
            for c in ["token", "graph"] {
                paths.push(format!("/probe?target={t}&check={c}"));
            }
        }
        for p in &paths {
            let r = reqwest::get(format!("http://127.0.0.1:{port}{p}"))
                .await
                .expect("the agent answers");
            assert_eq!(r.status(), 200, "{p}");
            scrapes.push(r.text().await.unwrap_or_default());
        }
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "the agent did not stop cleanly on SIGTERM: {status}"
        );
        let log = std::fs::read_to_string(&out).unwrap();
        check_log_lines(format, &log);
        printed += &log;
    }
    // The check command, in every output, at debug level, and sending a test message.
    for args in [
        vec!["check", "--output", "text"],
        vec!["check", "--output", "json"],
        vec!["check", "--output", "nagios"],
        vec!["check", "ok", "--send-test-to", "helpdesk@contoso.com"],
        vec!["check", "stale-mb", "denied", "--log.format", "json"],
    ] {
        let mut all = args.clone();
        all.extend(["--config.file", &config, "--log.level", "debug"]);
        let (out, err, _) = run_binary_async(&all).await;
        assert!(!out.is_empty(), "{args:?} printed nothing: {err}");
        printed += &out;
        printed += &err;
    }
    assert_eq!(w.sim.messages().len(), 1, "the test message went out");
    let all_scrapes = scrapes.join("\n");
    assert!(
        scrapes.len() >= 10,
        "expected many scrapes, got {}",
        scrapes.len()
    );

    // The run had failures and successes of each kind, so the search below covers error paths.
    for (target, check) in [("good", "token"), ("ok", "smtp"), ("cert-mb", "smtp")] {
        assert!(
            all_scrapes.contains(&format!(
                "smtp_oauth_check_success{{check=\"{check}\",target=\"{target}\"}} 1"
            )),
            "{target}"
        );
    }
    for reason in [
        "secret_expired",
        "secret_invalid",
        "http_error",
        "auth_rejected",
        "token_unavailable",
        "starttls_missing",
    ] {
        assert!(
            all_scrapes.contains(&format!("reason=\"{reason}\"")),
            "no {reason} in the run"
        );
    }
    assert!(
        printed.contains("check failed") && printed.contains("check succeeded"),
        "logs:\n{printed}"
    );
    assert!(
        printed.contains("client secret inline"),
        "the inline secret is warned about"
    );

    let tokens = w.sim.issued_tokens();
    assert!(tokens.len() >= 3, "tokens were issued: {}", tokens.len());
    let mut needles: Vec<(String, String)> = Vec::new();
    for s in &f.secrets {
        needles.push(("client secret".into(), s.clone()));
        // ... and as it goes on the wire, form-encoded (`~` becomes %7E).
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        needles.push(("form-encoded client secret".into(), encoded));
    }
    let assertions = w.sim.received_assertions();
    assert!(
        !assertions.is_empty(),
        "the certificate app sent client assertions"
    );
    for a in assertions {
        needles.push((
            "client assertion signature".into(),
            a.rsplit('.').next().unwrap().to_string(),
        ));
        needles.push(("client assertion".into(), a));
    }
    for line in f.cert.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        needles.push(("private key line".into(), line.to_string()));
    }
    for t in &tokens {
        needles.push(("access token".into(), t.clone()));
        // The signature part alone, and the XOAUTH2 blob as it goes on the wire.
        needles.push((
            "token signature".into(),
            t.rsplit('.').next().unwrap().to_string(),
        ));
        for user in ["ok@contoso.com", "cert@contoso.com", "denied@contoso.com"] {
            let blob = base64::engine::general_purpose::STANDARD
                .encode(format!("user={user}\x01auth=Bearer {t}\x01\x01"));
            needles.push(("XOAUTH2 blob".into(), blob));
        }
    }
    for (what, needle) in &needles {
        assert!(
            !printed.contains(needle.as_str()),
            "a {what} appears in the log or command output"
        );
        assert!(
            !all_scrapes.contains(needle.as_str()),
            "a {what} appears in a scrape, /status, the page or a probe"
        );
    }
}
