//! Interoperability: the SMTP check against an SMTP server that someone else wrote (aiosmtpd,
//! with STARTTLS and an XOAUTH2 handler), so that our client and our simulator cannot share a
//! misunderstanding of the protocol. python3 with aiosmtpd is installed by scripts/test.sh; if
//! it is missing the test fails, it does not skip.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::checks::smtp::Phase;
use smtp_oauth_exporter::sim::SimApp;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_path_against_aiosmtpd() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim
        .add_app(SimApp::new(TENANT, &id, "interop").with_secret(
            "In7~interop-secret",
            None,
            now,
            now + chrono::Duration::days(30),
        ));
    let cert = w.sim.ca.loopback_cert();
    let crt = w.file("aiosmtpd.crt", &cert.chain_pem());
    let key = w.file("aiosmtpd.key", &cert.key_pem());
    let record = w.dir.path().join("tokens.txt");
    // scripts/test.sh names the interpreter that has aiosmtpd (a virtual environment if needed).
    let python = std::env::var("SMTP_OAUTH_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut server = Command::new(&python)
        .args([
            "tests/independent/xoauth2_server.py",
            "--cert",
            &crt,
            "--key",
            &key,
            "--mailbox",
            "interop@contoso.com",
            "--record",
            &record.display().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is required for the interoperability test");
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = match first.trim().strip_prefix("READY ") {
        Some(p) => p.parse().unwrap(),
        None => {
            let _ = server.kill();
            panic!("the aiosmtpd server did not start (is aiosmtpd installed? scripts/test.sh installs it): {first:?}");
        }
    };

    let file = w.file("interop.secret", "In7~interop-secret");
    let yaml = format!(
        "scheduler:\n  startup_spread: 100ms\nmetrics:\n  detail: true\ndefaults:\n  checks:\n    token: {{ enabled: false }}\n    graph: {{ enabled: false }}\n    smtp: {{ schedule: 1s, timeout: 5s }}\napps:\n{}mailboxes:\n  - name: interop-mailbox\n    app: interop-app\n    address: interop@contoso.com\n    smtp_host: 127.0.0.1\n    smtp_port: {port}\n",
        secret_app(&w, "interop-app", &id, &file, "")
    );
    let agent = w.agent(&yaml).await;
    let result = std::panic::AssertUnwindSafe(wait_for(
        &agent,
        Duration::from_secs(15),
        "two successful runs against aiosmtpd",
        |t| {
            value(
                t,
                "smtp_oauth_check_runs_total",
                &[("target", "interop-mailbox"), ("result", "success")],
            )
            .unwrap_or(0.0)
                >= 2.0
        },
    ));
    let text = futures::FutureExt::catch_unwind(result).await;
    agent.stop().await;
    let _ = server.kill();
    let _ = server.wait();
    let text = text.unwrap_or_else(|e| std::panic::resume_unwind(e));
    // The phases of the SMTP dialog with aiosmtpd (resolve and connect speak no SMTP).
    let phases = Phase::ALL
        .into_iter()
        .filter(|p| !matches!(p, Phase::Resolve | Phase::Connect));
    for phase in phases.map(Phase::as_str) {
        assert!(
            value(
                &text,
                "smtp_oauth_smtp_duration_seconds",
                &[("target", "interop-mailbox"), ("phase", phase)]
            )
            .is_some(),
            "{phase}"
        );
    }
    // The token aiosmtpd received is one the simulator issued, for Exchange, with the SMTP role.
    let received = std::fs::read_to_string(&record).expect("aiosmtpd recorded the tokens it got");
    let token = received.lines().next().expect("a token");
    let claims = w
        .sim
        .verify_token(token)
        .expect("a simulator-issued, unexpired token");
    assert_eq!(claims.aud, "https://outlook.office365.com");
    assert!(claims.roles.iter().any(|r| r == "SMTP.SendAsApp"));
    assert_eq!(claims.appid, id);
}
