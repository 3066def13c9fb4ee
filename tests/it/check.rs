//! The `check` command against a configuration file: `--send-test-to` delivers exactly one
//! message through the authenticated session (the simulator records it), nothing is sent
//! without it, and the scheduler never sends.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_to_delivers_one_message_and_nothing_else_ever_sends() {
    let w = World::new().await;
    let id = client_id(1);
    let mailer = w.app_with_secret(1, "mailer", "Snd~secret-value");
    w.sim.add_mailbox("invoices@contoso.com", &[&id]);
    w.sim.add_mailbox("other@contoso.com", &[&id]);
    let port = w.sim.smtp_addr.port();
    let yaml = format!(
        "scheduler: {{ startup_spread: 100ms }}\nmetrics: {{ detail: true }}\ndefaults:\n  checks:\n    token: {{ schedule: 1s }}\n    smtp: {{ schedule: 1s, timeout: 5s }}\n    graph: {{ enabled: false }}\napps:\n{}mailboxes:\n  - {{ name: invoices, app: mailer, address: invoices@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n  - {{ name: other, app: mailer, address: other@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n",
        mailer
    );
    let config = w.file("check.yml", &yaml);

    // A check without --send-test-to sends nothing.
    let (out, err, code) = run_binary_async(&["check", "--config.file", &config]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(w.sim.messages().is_empty());

    // Sending needs exactly one mailbox.
    let (_, err, code) = run_binary_async(&[
        "check",
        "--config.file",
        &config,
        "--send-test-to",
        "someone@contoso.com",
    ])
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(w.sim.messages().is_empty());

    let (out, err, code) = run_binary_async(&[
        "check",
        "--config.file",
        &config,
        "invoices",
        "--send-test-to",
        "helpdesk@contoso.com",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let messages = w.sim.messages();
    assert_eq!(messages.len(), 1, "exactly one message");
    let m = &messages[0];
    assert_eq!(m.sender, "invoices@contoso.com");
    assert_eq!(m.mail_from, "invoices@contoso.com");
    assert_eq!(m.recipients, vec!["helpdesk@contoso.com".to_string()]);
    for header in [
        "Date: ",
        "From: <invoices@contoso.com>",
        "To: <helpdesk@contoso.com>",
        "Message-ID: <",
        "Subject: smtp-oauth-exporter test message",
    ] {
        assert!(m.data.contains(header), "{header} in\n{}", m.data);
    }
    // The reply with the queue ID is printed.
    assert!(
        out.contains(&m.queue_id) && out.contains("Queued mail for delivery"),
        "{out}"
    );
    // The same again as JSON: the sent message is in the document.
    let (json, _, code) = run_binary_async(&[
        "check",
        "--config.file",
        &config,
        "invoices",
        "--send-test-to",
        "helpdesk@contoso.com",
        "--output",
        "json",
    ])
    .await;
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sent = &doc["mailboxes"][0]["checks"]["smtp"]["smtp"]["sent"];
    assert_eq!(sent["to"], "helpdesk@contoso.com", "{json}");
    assert_eq!(w.sim.messages().len(), 2);

    // The agent's scheduler never sends, however long it runs.
    let agent = w.agent(&yaml).await;
    wait_for(
        &agent,
        Duration::from_secs(10),
        "three runs of each mailbox",
        |t| {
            ["invoices", "other"].iter().all(|m| {
                value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[("check", "smtp"), ("target", m), ("result", "success")],
                )
                .unwrap_or(0.0)
                    >= 3.0
            })
        },
    )
    .await;
    agent.stop().await;
    assert_eq!(w.sim.messages().len(), 2, "the scheduler sent a message");
    let datas = w
        .sim
        .smtp_transcripts()
        .iter()
        .filter(|t| t.lines.iter().any(|l| l.eq_ignore_ascii_case("DATA")))
        .count();
    assert_eq!(datas, 2, "DATA only in the two asked-for sessions");
}

/// `check | head -1`, `check-config | true`: a reader that goes away before the output is
/// written ends the command with its own exit code, never a panic (exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_check_and_check_config_cleanly() {
    let w = World::new().await;
    let id = client_id(1);
    let mailer = w.app_with_secret(1, "mailer", "Pipe~secret-value");
    w.sim.add_mailbox("invoices@contoso.com", &[&id]);
    let yaml = format!(
        "defaults:\n  checks:\n    graph: {{ enabled: false }}\napps:\n{mailer}mailboxes:\n{}",
        mailbox_line(
            "invoices",
            "mailer",
            "invoices@contoso.com",
            w.sim.smtp_addr.port()
        )
    );
    let config = w.file("pipe.yml", &yaml);
    for (args, want) in [
        (vec!["check", "--config.file", &config], 0),
        (
            vec!["check", "--config.file", &config, "--output", "json"],
            0,
        ),
        (
            vec!["check", "--config.file", &config, "--output", "nagios"],
            0,
        ),
        (vec!["check-config", "--config.file", &config], 0),
        (
            vec![
                "check",
                "--config.file",
                "/nonexistent.yml",
                "--output",
                "nagios",
            ],
            3,
        ),
    ] {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (code, err) = tokio::task::spawn_blocking(move || {
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_smtp-oauth-exporter"))
                .args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // The reader is gone before anything is written.
            drop(child.stdout.take());
            let out = child.wait_with_output().unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap();
        assert_eq!(code, want, "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
