//! The delivery canary against the simulator over real sockets (STARTTLS, XOAUTH2, HTTPS): a
//! run sends, finds by `internetMessageId`, deletes and exports its latency; each scripted
//! rejection, Junk delivery, loss and a reader without the permission gives its reason and
//! verdict; messages of earlier runs are cleaned up; nothing is sent without a canary; the Graph
//! requests only ever name the canary's message.

use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::checks::{self, Context, RunOptions};
use smtp_oauth_exporter::plan::{CheckKind, Job, Target};
use smtp_oauth_exporter::sim::{Delivery, SimApp, SmtpStep, ROLE_MAIL_READ, ROLE_MAIL_READ_WRITE};

use crate::common::*;

const SECRET: &str = "Cnr~canary-test-secret-value";

/// Apps: `sender` (SMTP.SendAsApp, FullAccess on every mailbox), `reader` (Mail.ReadWrite),
/// `blind` (no Graph role) and `peek` (Mail.Read: it finds, it may not delete); the mailboxes
/// given; returns the apps' YAML.
fn setup(w: &World, mailboxes: &[&str]) -> String {
    setup_in(w, mailboxes, "")
}

/// [`setup`], with `extra` YAML in every app (a cloud).
fn setup_in(w: &World, mailboxes: &[&str], extra: &str) -> String {
    let now = Utc::now();
    let file = w.file("s.secret", SECRET);
    let mut yaml = String::new();
    for (n, name, role) in [
        (1, "sender", None),
        (2, "reader", Some(ROLE_MAIL_READ_WRITE)),
        (3, "blind", None),
        (4, "peek", Some(ROLE_MAIL_READ)),
    ] {
        let id = client_id(n);
        let mut a = SimApp::new(TENANT, &id, name).with_secret(
            SECRET,
            None,
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(90),
        );
        if let Some(r) = role {
            a = a.with_graph_role(r);
        }
        w.sim.add_app(a);
        yaml += &secret_app(w, name, &id, &file, extra);
    }
    for m in mailboxes {
        w.sim.add_mailbox(m, &[&client_id(1)]);
    }
    format!("scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    graph: {{ enabled: false }}\napps:\n{yaml}")
}

fn mailbox(w: &World, name: &str, address: &str, canary: &str) -> String {
    format!(
        "  - {{ name: {name}, app: sender, address: {address}, smtp_host: 127.0.0.1, smtp_port: {}{canary} }}\n",
        w.sim.smtp_addr.port()
    )
}

/// Every Graph mail request names one message: a search filtered by `internetMessageId`, the
/// Junk Email folder's id, or the permanent delete of a message found that way. No listing, no
/// message read by id (which would return a body), no plain DELETE (which leaves the message
/// in Deleted Items).
pub fn assert_only_the_canarys_messages(w: &World) {
    let calls = w.sim.graph_mail_calls();
    assert!(!calls.is_empty(), "the canary used Graph");
    for (method, path) in calls {
        let ok = match method.as_str() {
            "GET" => {
                (path.contains("/messages?") && path.contains("%24filter=internetMessageId+eq+"))
                    || path.contains("/mailFolders/junkemail?")
            }
            // permanentDelete of a message found so (the global cloud has it).
            "POST" => path.contains("/messages/") && path.ends_with("/permanentDelete"),
            _ => false,
        };
        assert!(
            ok,
            "a Graph request that does not name the canary: {method} {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_run_delivers_finds_deletes_and_exports_its_latency() {
    let w = World::new().await;
    let apps = setup(&w, &["canary@contoso.com"]);
    w.sim.set_delivery(
        "canary@contoso.com",
        Some(Delivery::Inbox(Duration::from_millis(2500))),
    );
    let yaml = format!(
        "{apps}mailboxes:\n{}",
        mailbox(
            &w,
            "canary",
            "canary@contoso.com",
            ", canary: { reader: reader, timeout: 20s }"
        )
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(&agent, Duration::from_secs(30), "the canary to run", |t| {
        value(
            t,
            "smtp_oauth_check_success",
            &[("check", "canary"), ("target", "canary")],
        )
        .is_some()
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_success",
            &[("check", "canary"), ("target", "canary")]
        ),
        Some(1.0),
        "{text}"
    );
    // Received at acceptance plus 2.5 s, on Microsoft's clock in whole seconds.
    let latency = value(
        &text,
        "smtp_oauth_canary_last_delivery_seconds",
        &[("target", "canary")],
    )
    .expect("the latency of the last run");
    assert!((1.0..=4.0).contains(&latency), "latency {latency}");
    let endpoint = format!("127.0.0.1:{}", w.sim.smtp_addr.port());
    assert_eq!(
        value(
            &text,
            "smtp_oauth_canary_delivery_seconds_count",
            &[("endpoint", &endpoint)]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_canary_delivery_seconds_bucket",
            &[("endpoint", &endpoint), ("le", "1")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_canary_delivery_seconds_bucket",
            &[("endpoint", &endpoint), ("le", "5")]
        ),
        Some(1.0)
    );
    assert!(
        value(&text, "smtp_oauth_canary_in_junk", &[("target", "canary")]).is_none(),
        "not in Junk"
    );
    assert!(
        text.contains(
            "smtp_oauth_verdict{target=\"canary\",app=\"sender\",step=\"ok\",cause=\"ok\""
        ),
        "{text}"
    );
    // One message, the canary's: From and To the mailbox, a unique Message-ID, the tool named.
    assert_eq!(w.sim.data_commands(), 1);
    let sent = &w.sim.messages()[0];
    assert_eq!(sent.recipients, vec!["canary@contoso.com".to_string()]);
    for header in [
        "From: ",
        "To: ",
        "Date: ",
        "Message-ID: <",
        "Subject: ",
        "X-SMTP-OAuth-Exporter: canary <",
        "Auto-Submitted: auto-generated",
    ] {
        assert!(
            sent.data.lines().any(|l| l.starts_with(header)),
            "no {header:?} in\n{}",
            sent.data
        );
    }
    // Found and deleted: the store is empty again.
    assert!(w.sim.stored_messages("canary@contoso.com").is_empty());
    assert_only_the_canarys_messages(&w);

    // /status has the run: message id, folder, latency.
    let status: serde_json::Value = reqwest::get(format!("http://{}/status", agent.local_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = status.to_string();
    assert!(s.contains("\"folder\":\"inbox\""), "{s}");
    assert!(s.contains("\"deleted\":true"), "{s}");
}

/// Each way a canary fails, one mailbox each, all in one agent: the reason on the metrics and
/// the verdict's cause and setup step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_junk_loss_and_missing_permission_gives_its_reason_and_verdict() {
    let w = World::new().await;
    let reject = |at, code, text: &str| Delivery::Reject {
        at,
        code,
        text: text.into(),
    };
    // (mailbox, delivery, reader, reason, verdict step, cause)
    let cases = [
        (
            "restricted",
            reject(SmtpStep::Data, 550, "5.1.8 Access denied, bad outbound sender"),
            "reader",
            "sender_restricted",
            "policy",
            "sender_restricted",
        ),
        (
            "threshold",
            reject(
                SmtpStep::Data,
                550,
                "5.7.705 Access denied, tenant has exceeded threshold",
            ),
            "reader",
            "tenant_sending_blocked",
            "policy",
            "tenant_sending_blocked",
        ),
        (
            "blocked",
            reject(
                SmtpStep::RcptTo,
                550,
                "5.7.708 Access denied, traffic not accepted from this IP",
            ),
            "reader",
            "tenant_sending_blocked",
            "policy",
            "tenant_sending_blocked",
        ),
        (
            "sendas",
            reject(
                SmtpStep::Data,
                554,
                "5.2.252 SendAsDenied; sendas@contoso.com not allowed to send as sendas@contoso.com",
            ),
            "reader",
            "send_as_denied",
            "4",
            "send_as_denied",
        ),
        (
            "junk",
            Delivery::Junk(Duration::ZERO),
            "reader",
            "delivered_to_junk",
            "policy",
            "canary_junk",
        ),
        (
            "lost",
            Delivery::Lost,
            "reader",
            "not_delivered",
            "unknown",
            "canary_not_delivered",
        ),
        (
            "unread",
            Delivery::Inbox(Duration::ZERO),
            "blind",
            "reader_permission_missing",
            "3",
            "canary_reader_permission_missing",
        ),
    ];
    let addresses: Vec<String> = cases
        .iter()
        .map(|c| format!("{}@contoso.com", c.0))
        .collect();
    let refs: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let apps = setup(&w, &refs);
    let mut mailboxes = String::new();
    for (i, (name, delivery, reader, ..)) in cases.iter().enumerate() {
        w.sim.set_delivery(&addresses[i], Some(delivery.clone()));
        mailboxes += &mailbox(
            &w,
            name,
            &addresses[i],
            &format!(", canary: {{ reader: {reader}, timeout: 4s }}"),
        );
    }
    let agent = w.agent(&format!("{apps}mailboxes:\n{mailboxes}")).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(30),
        "every canary to fail",
        |t| {
            cases.iter().all(|c| {
                value(
                    t,
                    "smtp_oauth_check_success",
                    &[("check", "canary"), ("target", c.0)],
                ) == Some(0.0)
            })
        },
    )
    .await;
    for (name, _, _, reason, step, cause) in &cases {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_check_failure_info",
                &[("check", "canary"), ("target", name), ("reason", reason)]
            ),
            Some(1.0),
            "{name}: reason {reason}\n{text}"
        );
        let verdict = format!("smtp_oauth_verdict{{target=\"{name}\",app=\"sender\",step=\"{step}\",cause=\"{cause}\"");
        assert!(text.contains(&verdict), "{name}: {verdict}\n{text}");
    }
    assert_eq!(
        value(&text, "smtp_oauth_canary_in_junk", &[("target", "junk")]),
        Some(1.0)
    );
    // Refused messages were not stored; the Junk one was found and deleted; the lost one never
    // arrived; the unread one stays (the blind reader could not delete it), to be cleaned up
    // once the reader may.
    for a in &addresses {
        let stored = w.sim.stored_messages(a);
        if a.starts_with("unread@") {
            assert_eq!(stored.len(), 1, "{a}");
        } else {
            assert!(stored.is_empty(), "{a}: {stored:?}");
        }
    }
    // The status page explains them in the admin's terms.
    let page = reqwest::get(format!("http://{}/", agent.local_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Defender portal"), "5.1.8's remediation");
    assert!(
        page.contains("Message trace"),
        "the lost canary's remediation"
    );
    assert_only_the_canarys_messages(&w);
}

/// The canary job of one mailbox `{name}@contoso.com` with this reader and timeout, and a
/// context of its own, to run it twice by hand (the scheduler waits a minute between runs).
fn canary_job(w: &World, name: &str, reader: &str, timeout: &str) -> (Job, Context) {
    canary_job_in(w, name, reader, timeout, "")
}

/// [`canary_job`], with `extra` YAML in every app (a cloud).
fn canary_job_in(
    w: &World,
    name: &str,
    reader: &str,
    timeout: &str,
    extra: &str,
) -> (Job, Context) {
    let address = format!("{name}@contoso.com");
    let apps = setup_in(w, &[&address], extra);
    let plan = w.config(&format!(
        "{apps}mailboxes:\n{}",
        mailbox(
            w,
            name,
            &address,
            &format!(", canary: {{ reader: {reader}, timeout: {timeout} }}")
        )
    ));
    let job = Job::new(
        CheckKind::Canary,
        Target::Mailbox(plan.mailboxes[0].clone()),
    )
    .expect("a canary job");
    let ctx = Context::new(std::sync::Arc::new(
        smtp_oauth_exporter::auth::TokenCache::new(),
    ));
    (job, ctx)
}

/// A message not found within the timeout is remembered and deleted by a later run once it
/// has arrived; a canary found at once leaves the store as it found it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_message_of_an_earlier_run_is_cleaned_up_by_the_next() {
    let w = World::new().await;
    let (job, ctx) = canary_job(&w, "late", "reader", "2s");
    w.sim.set_delivery(
        "late@contoso.com",
        Some(Delivery::Inbox(Duration::from_secs(3))),
    );
    let first = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert_eq!(
        first.reason().map(|r| r.as_str()),
        Some("not_delivered"),
        "{:?}",
        first.failure
    );
    assert_eq!(ctx.canary.pending("late"), 1);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(
        w.sim.stored_messages("late@contoso.com").len(),
        1,
        "it arrived late"
    );

    w.sim.set_delivery("late@contoso.com", None);
    let second = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert!(second.success(), "{:?}", second.failure);
    let d = second.canary().expect("canary details");
    assert_eq!(d.cleaned_up, 1, "the earlier message was deleted");
    assert_eq!(ctx.canary.pending("late"), 0);
    assert!(w.sim.stored_messages("late@contoso.com").is_empty());
    assert_eq!(w.sim.data_commands(), 2);
    assert_only_the_canarys_messages(&w);
}

/// In a national cloud, whose Graph has no `permanentDelete`, the canary deletes its message with
/// two DELETEs of its immutable id: to Deleted Items, then out of Graph's sight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_national_cloud_the_canary_deletes_through_deleted_items() {
    let w = World::new().await;
    let (job, ctx) = canary_job_in(&w, "gov", "reader", "10s", "    cloud: usgov\n");
    let run = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert!(run.success(), "{:?}", run.failure);
    let d = run.canary().expect("canary details");
    assert!(d.found.as_ref().is_some_and(|f| f.deleted), "{d:?}");
    assert!(
        w.sim.stored_messages("gov@contoso.com").is_empty(),
        "nothing left in Deleted Items"
    );
    let calls = w.sim.graph_mail_calls();
    let writes: Vec<&(String, String)> = calls.iter().filter(|(m, _)| m != "GET").collect();
    assert_eq!(writes.len(), 2, "{calls:#?}");
    assert!(
        writes
            .iter()
            .all(|(m, p)| m == "DELETE" && p == &writes[0].1 && p.contains("/messages/")),
        "{calls:#?}"
    );
}

/// A message found but not deleted (the reader may read, not delete) is kept for later runs;
/// once the admin grants Mail.ReadWrite, the refused token is not used again and the next run
/// deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_found_but_not_deleted_is_deleted_once_the_reader_may() {
    let w = World::new().await;
    let (job, ctx) = canary_job(&w, "kept", "peek", "5s");
    let first = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert_eq!(
        first.reason().map(|r| r.as_str()),
        Some("reader_permission_missing"),
        "{:?}",
        first.failure
    );
    let d = first.canary().unwrap();
    assert!(d.found.as_ref().is_some_and(|f| !f.deleted), "{d:?}");
    assert_eq!(w.sim.stored_messages("kept@contoso.com").len(), 1);
    assert_eq!(ctx.canary.pending("kept"), 1, "kept for a later run");

    // The admin grants Mail.ReadWrite: the next run's token carries it.
    w.sim
        .directory
        .lock()
        .unwrap()
        .apps
        .get_mut(&client_id(4))
        .unwrap()
        .graph_roles = vec![ROLE_MAIL_READ_WRITE.into()];
    let second = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert!(second.success(), "{:?}", second.failure);
    assert_eq!(second.canary().unwrap().cleaned_up, 1);
    assert_eq!(ctx.canary.pending("kept"), 0);
    assert!(w.sim.stored_messages("kept@contoso.com").is_empty());
    assert_only_the_canarys_messages(&w);
}

/// Without a canary (none, or `enabled: false`) the agent never sends DATA, however often the
/// SMTP check runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_sent_without_a_canary() {
    let w = World::new().await;
    let apps = setup(&w, &["plain@contoso.com", "off@contoso.com"]);
    let yaml = format!(
        "{}mailboxes:\n{}{}",
        apps.replace(
            "graph: { enabled: false }",
            "graph: { enabled: false }\n    smtp: { schedule: 1s, timeout: 5s }"
        ),
        mailbox(&w, "plain", "plain@contoso.com", ""),
        mailbox(
            &w,
            "off",
            "off@contoso.com",
            ", canary: { enabled: false, reader: reader }"
        ),
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(30),
        "three SMTP runs of each",
        |t| {
            w.sim.smtp_sessions() >= 6
                && ["plain", "off"].iter().all(|m| {
                    value(
                        t,
                        "smtp_oauth_check_success",
                        &[("check", "smtp"), ("target", m)],
                    ) == Some(1.0)
                })
        },
    )
    .await;
    assert_eq!(w.sim.data_commands(), 0);
    assert!(w.sim.messages().is_empty());
    assert!(w.sim.graph_mail_calls().is_empty());
    assert!(!text.contains("check=\"canary\""), "{text}");
}

/// `check --send-test-to` on a mailbox with a canary waits for the message with the reader and
/// prints where it landed and the latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_send_test_to_waits_for_arrival_and_prints_the_latency() {
    let w = World::new().await;
    let apps = setup(&w, &["canary@contoso.com", "helpdesk@contoso.com"]);
    w.sim.set_delivery(
        "canary@contoso.com",
        Some(Delivery::Inbox(Duration::from_millis(1500))),
    );
    let config = w.file(
        "check.yml",
        &format!(
            "{apps}mailboxes:\n{}",
            mailbox(
                &w,
                "canary",
                "canary@contoso.com",
                ", canary: { reader: reader, timeout: 20s }"
            )
        ),
    );
    let (out, err, code) = run_binary_async(&[
        "check",
        "--config.file",
        &config,
        "canary",
        "--send-test-to",
        "helpdesk@contoso.com",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("to helpdesk@contoso.com")
            && out.contains("arrived in ")
            && out.contains("(Inbox), deleted"),
        "{out}"
    );
    let secs: f64 = out
        .split("arrived in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("the latency is printed");
    assert!((0.5..=4.0).contains(&secs), "{secs}\n{out}");
    assert_eq!(w.sim.messages().len(), 1);
    assert_eq!(
        w.sim.messages()[0].recipients,
        vec!["helpdesk@contoso.com".to_string()]
    );
    assert!(w.sim.stored_messages("helpdesk@contoso.com").is_empty());
}

/// A message that arrives after the last regular search but before the timeout is found: the
/// canary searches once more at the timeout itself. With a 10 s timeout the searches fall at
/// about 0, 1, 3 and 7 s; the message arrives at 8.5 s; before, the run gave up at 7 s and
/// reported it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_arriving_just_before_the_timeout_is_found() {
    let w = World::new().await;
    let apps = setup(&w, &["late@contoso.com"]);
    w.sim.set_delivery(
        "late@contoso.com",
        Some(Delivery::Inbox(Duration::from_millis(8500))),
    );
    let yaml = format!(
        "{apps}mailboxes:\n{}",
        mailbox(
            &w,
            "late",
            "late@contoso.com",
            ", canary: { reader: reader, timeout: 10s }"
        )
    );
    let plan = w.config(&yaml);
    let job = Job::new(CheckKind::Canary, plan.target("late").unwrap().clone()).unwrap();
    let ctx = Context::new(std::sync::Arc::new(
        smtp_oauth_exporter::auth::TokenCache::new(),
    ));
    let report = checks::run(&job, &ctx, &RunOptions::default()).await;
    assert!(report.success(), "{:?}", report.failure);
    let c = report.canary().expect("canary details");
    let seen = c.seen_seconds().expect("found");
    assert!((8.5..10.0).contains(&seen), "seen after {seen} s");
}

/// Two messages of one mailbox are never closer than its canary's schedule: a reload that
/// restarts the canary's job (a changed timeout) does not send again at once; its run waits
/// for the schedule counted from the last message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_does_not_send_a_canary_sooner_than_its_schedule() {
    let w = World::new().await;
    let apps = setup(&w, &["spaced@contoso.com"]);
    let yaml = |timeout: &str| {
        format!(
            "{apps}mailboxes:\n{}",
            mailbox(
                &w,
                "spaced",
                "spaced@contoso.com",
                &format!(", canary: {{ reader: reader, schedule: 1m, timeout: {timeout} }}")
            )
        )
    };
    let path = w.dir.path().join("config.yml");
    std::fs::write(&path, yaml("20s")).unwrap();
    let agent = smtp_oauth_exporter::agent::Agent::start(
        w.config(&yaml("20s")),
        &smtp_oauth_exporter::agent::ServeOptions {
            config_file: Some(path.clone()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let sent = |w: &World| {
        w.sim
            .messages()
            .iter()
            .filter(|m| m.sender == "spaced@contoso.com")
            .count()
    };
    let start = std::time::Instant::now();
    while sent(&w) == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "no canary sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&path, yaml("25s")).unwrap();
    let summary = agent.reload().await.expect("reload");
    // The mailbox's SMTP and canary jobs: its digest covers the canary.
    assert_eq!(summary.restarted, 2, "{summary:?}");
    // The restarted job's first run would fall within the startup spread (200 ms).
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sent(&w), 1, "a second canary within 5 s of the first");
    agent.stop().await;
}
