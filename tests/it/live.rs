//! The shipped alerting against the real thing, on loopback, read where the pager reads it: the
//! demo (simulator and agent, in this process), Prometheus scraping it with the shipped rules,
//! and two Alertmanagers with the shipped configuration and templates, untouched but for where
//! they send: one pages through its PagerDuty receiver, the other through its Opsgenie one,
//! both posting to a local endpoint that keeps the exact PagerDuty Events v2 and Opsgenie JSON;
//! the team channel's webhook posts there too.
//!
//! It asserts what on-call receives: a page for every critical scenario, one per problem
//! (grouped by app and cause), from Prometheus and from the agent's push; every page with a
//! summary, a description and a runbook link that names the mailbox and opens (200) on the
//! agent; the warnings in the team channel, one message per problem; nothing for the healthy.
//! Then the agent is killed for a minute and started again: no page of a still-broken target
//! resolves meanwhile, on either path.
//!
//! Only timings are shortened: scrape and evaluation every second, every rule's `for:` to 2 s
//! and the slow-canary threshold to half a second (in a copy of the rules), Alertmanager's group
//! waits to 1 s, the agent's `failing_for` to 2 s. Bounded at six minutes; Debian's
//! `prometheus` and `prometheus-alertmanager` (installed by scripts/test.sh) are required, a
//! missing one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use smtp_oauth_exporter::agent::{Agent, ServeOptions};
use smtp_oauth_exporter::demo::Demo;

use crate::common::{http_receiver, Inbox};

const LIMIT: Duration = Duration::from_secs(360);

/// The demo's scenarios whose verdict is critical: each must page.
const CRITICAL: [&str; 18] = [
    "secret-expired",
    "secret-id-pasted",
    "consent-missing",
    "service-principal-missing",
    "mailbox-permission-missing",
    "smtp-auth-off-tenant",
    "smtp-auth-off-mailbox",
    "certificate-not-uploaded",
    "starttls-stripped",
    "tls-inspection",
    "canary-lost",
    "sender-restricted",
    "tenant-threshold",
    "tenant-ip-blocked",
    "canary-send-as-denied",
    "exchange-incident",
    "rbac-outside-scope",
    "service-principal-missing-in-entra",
];
/// Healthy ones (and throttling alone): no alert about them or about their own app.
const QUIET: [&str; 6] = [
    "healthy-secret",
    "traffic-healthy",
    "healthy-certificate",
    "graph-throttled",
    "rbac-in-scope",
    "secret-on-service-principal",
];
/// The warnings: a team message each, no page.
const WARNINGS: [&str; 7] = [
    "secret-expiring",
    "old-secret-in-use",
    "sender-silent",
    "traffic-quarantined",
    "canary-junk",
    "canary-reader-denied",
    "canary-delivered",
];

/// Alerts Prometheus must show (pending or firing) for a scenario: (mailbox, alert name,
/// whether the alert is about the mailbox or about its app).
const EXPECTED: [(&str, &str, About); 29] = [
    (
        "secret-expiring",
        "SmtpOAuthCredentialExpiringSoon",
        About::App,
    ),
    ("secret-expired", "SmtpOAuthTokenFailing", About::App),
    ("secret-expired", "SmtpOAuthCredentialExpired", About::App),
    ("secret-id-pasted", "SmtpOAuthTokenFailing", About::App),
    (
        "secret-id-pasted",
        "SmtpOAuthCredentialNotFound",
        About::App,
    ),
    ("consent-missing", "SmtpOAuthSendAsAppMissing", About::App),
    (
        "consent-missing",
        "SmtpOAuthSmtpAuthFailing",
        About::Mailbox,
    ),
    (
        "service-principal-missing",
        "SmtpOAuthSmtpAuthFailing",
        About::Mailbox,
    ),
    (
        "mailbox-permission-missing",
        "SmtpOAuthSmtpAuthFailing",
        About::Mailbox,
    ),
    (
        "smtp-auth-off-tenant",
        "SmtpOAuthSmtpAuthFailing",
        About::Mailbox,
    ),
    (
        "smtp-auth-off-mailbox",
        "SmtpOAuthSmtpAuthFailing",
        About::Mailbox,
    ),
    (
        "certificate-not-uploaded",
        "SmtpOAuthTokenFailing",
        About::App,
    ),
    (
        "certificate-not-uploaded",
        "SmtpOAuthCredentialNotFound",
        About::App,
    ),
    (
        "starttls-stripped",
        "SmtpOAuthStartTlsMissing",
        About::Mailbox,
    ),
    ("tls-inspection", "SmtpOAuthSmtpUnreachable", About::Mailbox),
    ("canary-lost", "SmtpOAuthCanaryFailing", About::Mailbox),
    (
        "sender-restricted",
        "SmtpOAuthCanaryFailing",
        About::Mailbox,
    ),
    ("tenant-threshold", "SmtpOAuthCanaryFailing", About::Mailbox),
    (
        "tenant-ip-blocked",
        "SmtpOAuthCanaryFailing",
        About::Mailbox,
    ),
    (
        "canary-send-as-denied",
        "SmtpOAuthCanaryFailing",
        About::Mailbox,
    ),
    ("canary-junk", "SmtpOAuthCanaryJunk", About::Mailbox),
    (
        "canary-reader-denied",
        "SmtpOAuthCanaryReaderDenied",
        About::Mailbox,
    ),
    (
        "rbac-outside-scope",
        "SmtpOAuthSmtpAuthFailing",
        About::Mailbox,
    ),
    (
        "service-principal-missing-in-entra",
        "SmtpOAuthTokenFailing",
        About::App,
    ),
    ("canary-delivered", "SmtpOAuthCanarySlow", About::Mailbox),
    (
        "old-secret-in-use",
        "SmtpOAuthActiveCredentialExpiringSoon",
        About::App,
    ),
    ("sender-silent", "SmtpOAuthTrafficSilent", About::Mailbox),
    (
        "traffic-quarantined",
        "SmtpOAuthTrafficFailing",
        About::Mailbox,
    ),
    (
        "exchange-incident",
        "SmtpOAuthSmtpUnreachable",
        About::Mailbox,
    ),
];

/// The demo's open Exchange Online incident (tenant Northwind).
const INCIDENT: &str = "EX1024351";

#[derive(Clone, Copy, PartialEq)]
enum About {
    Mailbox,
    App,
}

/// A child process killed on drop, with its log for failure messages.
struct Tool {
    child: Child,
    log: std::path::PathBuf,
}

impl Tool {
    fn start(names: &[&str], args: &[String], log: std::path::PathBuf) -> Tool {
        let file = std::fs::File::create(&log).unwrap();
        let mut last = None;
        for name in names {
            match Command::new(name)
                .args(args)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file.try_clone().unwrap())
                .spawn()
            {
                Ok(child) => return Tool { child, log },
                Err(e) => last = Some(e),
            }
        }
        panic!(
            "{names:?} is required (scripts/test.sh installs Debian's package): {:?}",
            last
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped rules with every `for:` shortened to 2 s, and the slow-canary threshold to 1 s
/// (the demo's delivered canary takes 2 s, its junk one 1 s; Graph dates are whole seconds).
fn fast_rules() -> String {
    let rules = std::fs::read_to_string("alerts/smtp-oauth-exporter.rules.yml").unwrap();
    let slow = "smtp_oauth_canary_last_delivery_seconds > 600";
    assert!(rules.contains(slow), "the slow-canary rule changed: {slow}");
    rules
        .replace(slow, "smtp_oauth_canary_last_delivery_seconds > 1")
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for: ") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}for: 2s\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Which receiver pages: the shipped configuration's PagerDuty one, or its Opsgenie one.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Pager {
    PagerDuty,
    Opsgenie,
}

/// The shipped Alertmanager configuration and its templates (copied beside it), changed only
/// where they send: every integration to the test's endpoint (a path per receiver and
/// Alertmanager), the critical route to the chosen pager, and the group waits shortened.
fn test_alertmanager_config(dir: &std::path::Path, receiver: u16, pager: Pager) -> String {
    std::fs::copy(
        "deploy/alertmanager/smtp-oauth.tmpl",
        dir.join("smtp-oauth.tmpl"),
    )
    .unwrap();
    let text = std::fs::read_to_string("deploy/alertmanager/alertmanager.yml").unwrap();
    let mut config: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let base = format!("http://127.0.0.1:{receiver}");
    let tag = match pager {
        Pager::PagerDuty => "pd",
        Pager::Opsgenie => "og",
    };
    let route = config.get_mut("route").unwrap();
    route["group_wait"] = "1s".into();
    route["group_interval"] = "1s".into();
    if pager == Pager::Opsgenie {
        route["routes"][0]["receiver"] = "pager-opsgenie".into();
    }
    for r in config["receivers"].as_sequence_mut().unwrap() {
        if let Some(pd) = r.get_mut("pagerduty_configs") {
            pd[0]["url"] = format!("{base}/pagerduty-{tag}").into();
        }
        if let Some(og) = r.get_mut("opsgenie_configs") {
            og[0]["api_url"] = format!("{base}/opsgenie-{tag}/").into();
        }
        if let Some(w) = r.get_mut("webhook_configs") {
            w[0]["url"] = format!("{base}/team-{tag}").into();
        }
    }
    yaml_serde::to_string(&config).unwrap()
}

async fn wait_ready(client: &reqwest::Client, url: &str, tool: &Tool) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} not ready after 30 s:\n{}",
            tool.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let resp = client.get(url).send().await.expect(url);
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.expect(url)
}

/// One active alert as Prometheus reports it.
#[derive(Debug, Clone)]
struct Active {
    name: String,
    state: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

async fn prometheus_alerts(client: &reqwest::Client, prom: u16) -> Vec<Active> {
    let v = get_json(client, &format!("http://127.0.0.1:{prom}/api/v1/alerts")).await;
    v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(a["labels"].clone()).unwrap();
            Active {
                name: labels["alertname"].clone(),
                state: a["state"].as_str().unwrap().to_string(),
                labels,
                annotations: serde_json::from_value(a["annotations"].clone()).unwrap(),
            }
        })
        .collect()
}

/// A notification as the pager got it: a PagerDuty Events v2 event or an Opsgenie request.
#[derive(Debug, Clone)]
struct Page {
    /// PagerDuty's dedup_key, Opsgenie's alias: one incident.
    key: String,
    /// `trigger` or `resolve` (PagerDuty), `create` or `close` (Opsgenie).
    action: String,
    summary: String,
    description: String,
    runbook: String,
    /// The firing alerts' `target` labels.
    targets: Vec<String>,
    /// The firing alerts' generator URLs: Prometheus' graph, or the agent.
    sources: Vec<String>,
    at: chrono::DateTime<chrono::Utc>,
}

fn words(v: &Value) -> Vec<String> {
    v.as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Every PagerDuty event the endpoint received from the Alertmanager paging through it.
fn pagerduty(inbox: &Inbox) -> Vec<Page> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/pagerduty-pd")
        .map(|r| {
            let d = &r.body["payload"]["custom_details"];
            Page {
                key: r.body["dedup_key"].as_str().unwrap_or_default().into(),
                action: r.body["event_action"].as_str().unwrap_or_default().into(),
                summary: r.body["payload"]["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                description: d["description"].as_str().unwrap_or_default().into(),
                runbook: d["runbook"].as_str().unwrap_or_default().into(),
                targets: words(&d["targets"]),
                sources: words(&d["sources"]),
                at: r.received_at,
            }
        })
        .collect()
}

/// Every Opsgenie request (create, close) from the Alertmanager paging through Opsgenie.
fn opsgenie(inbox: &Inbox) -> Vec<Page> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.starts_with("/opsgenie-og/"))
        .map(|r| {
            let close = r.path.contains("/close");
            let alias = if close {
                r.path
                    .trim_start_matches("/opsgenie-og/v2/alerts/")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            } else {
                r.body["alias"].as_str().unwrap_or_default().into()
            };
            Page {
                key: alias,
                action: if close { "close" } else { "create" }.into(),
                summary: r.body["message"].as_str().unwrap_or_default().into(),
                description: r.body["description"].as_str().unwrap_or_default().into(),
                runbook: r.body["details"]["runbook"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                targets: words(&r.body["details"]["targets"]),
                sources: Vec::new(),
                at: r.received_at,
            }
        })
        .collect()
}

/// A team-channel message (the generic webhook): its group, status and alerts' labels.
#[derive(Debug, Clone)]
struct Message {
    group: String,
    status: String,
    alerts: Vec<BTreeMap<String, String>>,
    at: chrono::DateTime<chrono::Utc>,
}

fn team(inbox: &Inbox) -> Vec<Message> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == "/team-pd")
        .map(|r| Message {
            group: r.body["groupKey"].as_str().unwrap_or_default().into(),
            status: r.body["status"].as_str().unwrap_or_default().into(),
            alerts: r.body["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|a| a["status"] == "firing")
                .map(|a| serde_json::from_value(a["labels"].clone()).unwrap())
                .collect(),
            at: r.received_at,
        })
        .collect()
}

/// Whether an alert is about a scenario: its mailbox, or its app (app-level alerts carry the
/// app's name as `target`).
fn about(labels: &BTreeMap<String, String>, mailbox: &str, app: &str) -> bool {
    let target = labels.get("target").map(String::as_str);
    target == Some(mailbox) || target == Some(app)
}

fn page_about(p: &Page, mailbox: &str, app: &str) -> bool {
    p.targets.iter().any(|t| t == mailbox || t == app)
}

/// The Alertmanager, Prometheus and agent of the test, and what they are pointed at.
struct Stack {
    dir: tempfile::TempDir,
    client: reqwest::Client,
    inbox: Inbox,
    ams: Vec<(Tool, u16)>,
    prom: Tool,
    prom_port: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_through_prometheus_and_alertmanager_and_the_dashboard_has_data() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The pagers and the team channel.
    let (hook, inbox) = http_receiver().await;

    // Two Alertmanagers with the shipped configuration: one pages through PagerDuty, the other
    // through Opsgenie.
    let mut ams = Vec::new();
    for pager in [Pager::PagerDuty, Pager::Opsgenie] {
        let port = free_port();
        let sub = dir.path().join(format!("am-{port}"));
        std::fs::create_dir(&sub).unwrap();
        let config = sub.join("alertmanager.yml");
        std::fs::write(&config, test_alertmanager_config(&sub, hook, pager)).unwrap();
        let am = Tool::start(
            &["prometheus-alertmanager", "alertmanager"],
            &[
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", sub.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".into(),
            ],
            sub.join("alertmanager.log"),
        );
        ams.push((am, port));
    }
    let am_urls: Vec<String> = ams
        .iter()
        .map(|(_, p)| format!("'http://127.0.0.1:{p}'"))
        .collect();

    // The demo, its agent pushing its own alerts to both (a resend interval long enough for
    // its endsAt to outlive the kill below).
    let demo = Demo::start().await.expect("demo");
    let yaml = format!(
        "{}\nalerts:\n  failing_for: 2s\n  evaluation_interval: 1s\nalertmanager:\n  urls: [{}]\n  resend_interval: 30s\n",
        demo.yaml,
        am_urls.join(", ")
    );
    let base = demo.dir().to_path_buf();
    let load = |yaml: String, base: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            smtp_oauth_exporter::config::from_yaml(&yaml, "live.yml", &base)
        })
        .await
        .unwrap()
        .expect("the demo's configuration with alerting")
    };
    let agent = Agent::start(
        load(yaml.clone(), base.clone()).await,
        &ServeOptions::default(),
    )
    .await
    .expect("agent");
    let agent_addr = agent.local_addr();
    let agent_url = format!("http://{agent_addr}/");

    // Prometheus with the shipped rules (for: shortened) scraping the agent, alerting both.
    let prom_port = free_port();
    std::fs::write(dir.path().join("rules.yml"), fast_rules()).unwrap();
    let targets: Vec<String> = ams
        .iter()
        .map(|(_, p)| format!("'127.0.0.1:{p}'"))
        .collect();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [{}]\nscrape_configs:\n  - job_name: smtp-oauth\n    static_configs:\n      - targets: ['{agent_addr}']\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let prom = Tool::start(
        &["prometheus"],
        &[
            format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        dir.path().join("prometheus.log"),
    );
    for (am, port) in &ams {
        wait_ready(&client, &format!("http://127.0.0.1:{port}/-/ready"), am).await;
    }
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        &prom,
    )
    .await;
    let stack = Stack {
        dir,
        client,
        inbox,
        ams,
        prom,
        prom_port,
    };
    let client = &stack.client;
    let logs = || {
        format!(
            "Prometheus log:\n{}\nAlertmanager logs:\n{}",
            stack.prom.log_text(),
            stack
                .ams
                .iter()
                .map(|(a, _)| a.log_text())
                .collect::<Vec<_>>()
                .join("\n")
        )
    };

    // Each mailbox's app, from the agent's verdicts once they are all in.
    let apps: BTreeMap<String, String> = loop {
        let text = reqwest::get(format!("{agent_url}metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let verdicts: BTreeMap<String, String> = text
            .lines()
            .filter(|l| l.starts_with("smtp_oauth_verdict{"))
            .filter_map(|l| {
                let label = |k: &str| {
                    let s = l.find(&format!("{k}=\""))? + k.len() + 2;
                    Some(l[s..s + l[s..].find('"')?].to_string())
                };
                Some((label("target")?, label("app")?))
            })
            .collect();
        let pending = text.contains("cause=\"pending\"");
        if CRITICAL
            .iter()
            .chain(&QUIET)
            .chain(&WARNINGS)
            .all(|m| verdicts.contains_key(*m))
            && !pending
        {
            break verdicts;
        }
        assert!(
            started.elapsed() < LIMIT,
            "verdicts incomplete: {verdicts:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let app_of = |m: &str| apps[m].clone();

    // Wait until every expected alert is active in Prometheus, every critical scenario has
    // paged through both pagers (from Prometheus and from the agent), and every warning has
    // reached the team channel.
    let from_prometheus = |url: &str| url.contains("/graph?g0.expr=");
    let from_agent = |url: &str| url.starts_with(&agent_url);
    let active = loop {
        let active = prometheus_alerts(client, stack.prom_port).await;
        let pd = pagerduty(&stack.inbox);
        let og = opsgenie(&stack.inbox);
        let messages = team(&stack.inbox);
        let mut missing: Vec<String> = EXPECTED
            .iter()
            .filter(|(m, name, about_what)| {
                let target = match about_what {
                    About::Mailbox => m.to_string(),
                    About::App => app_of(m),
                };
                !active
                    .iter()
                    .any(|a| a.name == *name && a.labels.get("target") == Some(&target))
            })
            .map(|(m, name, _)| format!("{name} for {m}"))
            .collect();
        for m in CRITICAL {
            let app = app_of(m);
            let sources: Vec<&String> = pd
                .iter()
                .filter(|p| p.action == "trigger" && page_about(p, m, &app))
                .flat_map(|p| &p.sources)
                .collect();
            if !sources.iter().any(|u| from_prometheus(u)) {
                missing.push(format!("a PagerDuty page from Prometheus for {m}"));
            }
            if !sources.iter().any(|u| from_agent(u)) {
                missing.push(format!("a PagerDuty page from the agent for {m}"));
            }
            if !og
                .iter()
                .any(|p| p.action == "create" && page_about(p, m, &app))
            {
                missing.push(format!("an Opsgenie page for {m}"));
            }
        }
        for m in WARNINGS {
            let app = app_of(m);
            if !messages
                .iter()
                .any(|t| t.alerts.iter().any(|l| about(l, m, &app)))
            {
                missing.push(format!("a team message for {m}"));
            }
        }
        if missing.is_empty() {
            break active;
        }
        if started.elapsed() > LIMIT / 2 {
            panic!(
                "after {:?}, still missing: {missing:#?}\nPrometheus alerts: {:#?}\nPagerDuty: {pd:#?}\n{}",
                started.elapsed(),
                active
                    .iter()
                    .map(|a| format!("{} {} {:?}", a.name, a.state, a.labels.get("target")))
                    .collect::<Vec<_>>(),
                logs()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // Let the groups settle (a second alert of a problem joins its group's next notification).
    tokio::time::sleep(Duration::from_secs(5)).await;

    // What the pager reads: every page has a summary, a description and a runbook that name
    // what is broken; the runbook opens on the agent.
    let pd = pagerduty(&stack.inbox);
    let og = opsgenie(&stack.inbox);
    let mut runbooks = BTreeSet::new();
    for p in pd
        .iter()
        .filter(|p| p.action == "trigger")
        .chain(og.iter().filter(|p| p.action == "create"))
    {
        assert!(
            !p.summary.trim().is_empty(),
            "a page without a summary: {p:#?}"
        );
        assert!(
            !p.description.trim().is_empty() && p.description.contains("Runbook: "),
            "a page without a description: {p:#?}"
        );
        assert!(!p.runbook.is_empty(), "a page without a runbook: {p:#?}");
        assert!(
            p.targets.iter().any(|t| p.summary.contains(t.as_str()))
                || p.summary.contains("smtp-oauth-exporter"),
            "the summary names none of its targets: {p:#?}"
        );
        for t in &p.targets {
            assert!(
                p.description.contains(t.as_str()),
                "the description does not name {t}: {p:#?}"
            );
        }
        runbooks.insert(p.runbook.clone());
    }
    for u in &runbooks {
        let resp = client.get(u).send().await.unwrap();
        assert_eq!(resp.status(), 200, "runbook {u}");
        let anchor = u.split('#').nth(1).unwrap_or_default();
        let html = resp.text().await.unwrap();
        assert!(
            html.contains(&format!("id=\"{anchor}\"")),
            "{u}: no such section"
        );
    }

    // One problem, one page: the PagerDuty incidents (dedup keys) about each critical
    // scenario, and the team messages (groups) about each warning.
    let incidents = |m: &str| -> BTreeSet<String> {
        let app = app_of(m);
        pd.iter()
            .filter(|p| p.action == "trigger" && page_about(p, m, &app))
            .map(|p| p.key.clone())
            .collect()
    };
    let messages = team(&stack.inbox);
    let groups = |m: &str| -> BTreeSet<String> {
        let app = app_of(m);
        messages
            .iter()
            .filter(|t| t.alerts.iter().any(|l| about(l, m, &app)))
            .map(|t| t.group.clone())
            .collect()
    };
    let mut table = String::from("| scenario | pages | team messages |\n|---|---|---|\n");
    for m in CRITICAL.iter().chain(&WARNINGS) {
        table += &format!("| {m} | {} | {} |\n", incidents(m).len(), groups(m).len());
    }
    let all_incidents: BTreeSet<&String> = pd
        .iter()
        .filter(|p| p.action == "trigger")
        .map(|p| &p.key)
        .collect();
    let all_groups: BTreeSet<&String> = messages.iter().map(|t| &t.group).collect();
    eprintln!(
        "live: per scenario, distinct pages (PagerDuty incidents) and team messages (groups):\n{table}in all {} pages and {} team messages",
        all_incidents.len(),
        all_groups.len()
    );
    for m in CRITICAL {
        assert_eq!(incidents(m).len(), 1, "{m} pages once:\n{table}");
        assert_eq!(groups(m).len(), 0, "{m} is no team message:\n{table}");
    }
    for m in WARNINGS {
        assert_eq!(incidents(m).len(), 0, "{m} pages nobody:\n{table}");
        assert_eq!(groups(m).len(), 1, "{m} is one team message:\n{table}");
    }
    // The inhibitions hold on both paths (the agent's alerts carry `app` too): the expired
    // secret's page is the expiry, not also the token failure it causes.
    let expired = pd
        .iter()
        .rev()
        .find(|p| p.action == "trigger" && p.targets.iter().any(|t| t == &app_of("secret-expired")))
        .unwrap();
    assert!(
        expired.description.contains("has expired")
            && !expired.description.contains("cannot get a token"),
        "{expired:#?}"
    );
    // The agent pushes its token failure (its `for:` is 2 s here, its expiry alert's 5 minutes):
    // Prometheus' expiry alert inhibits it, across the two paths.
    let pushed = get_json(client, &format!("{agent_url}alerts")).await;
    assert!(
        pushed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "SmtpOAuthTokenFailing"
                && a["labels"]["app"] == app_of("secret-expired").as_str()),
        "the agent's token failure for the expired secret: {pushed}"
    );
    assert!(
        expired.sources.iter().all(|u| from_prometheus(u)),
        "{expired:#?}"
    );
    // Nothing for the healthy scenarios, nor for throttling alone: not in Prometheus, not at
    // the pagers, not in the team channel, not from the agent.
    for m in QUIET {
        let app = app_of(m);
        for a in &active {
            // Alerts about a healthy mailbox's app are fine when another of its mailboxes is
            // broken (`target` then names that mailbox); the app itself must be quiet.
            assert!(
                !about(&a.labels, m, &app),
                "Prometheus alert {} ({}) for quiet scenario {m}: {:?}",
                a.name,
                a.state,
                a.labels
            );
        }
        for p in pd.iter().chain(&og) {
            assert!(
                !page_about(p, m, &app),
                "page for quiet scenario {m}: {p:#?}"
            );
        }
        assert!(groups(m).is_empty(), "team message for quiet scenario {m}");
    }
    // Microsoft's incident: an info message naming it, and the failing mailbox's page names it.
    let incident = active
        .iter()
        .find(|a| a.name == "SmtpOAuthMicrosoftIncident")
        .expect("the incident alert");
    assert_eq!(incident.labels["id"], INCIDENT);
    assert_eq!(incident.labels["severity"], "info");
    assert_eq!(incident.labels["service"], "exchange_online");
    assert!(messages.iter().any(|t| t
        .alerts
        .iter()
        .any(|l| l["alertname"] == "SmtpOAuthMicrosoftIncident")));
    let unreachable = active
        .iter()
        .find(|a| {
            a.name == "SmtpOAuthSmtpUnreachable"
                && a.labels.get("target").map(String::as_str) == Some("exchange-incident")
        })
        .unwrap();
    assert_eq!(unreachable.labels["cause"], "microsoft_incident");
    for text in [
        &unreachable.annotations["description"],
        &pd.iter()
            .find(|p| p.targets.iter().any(|t| t == "exchange-incident"))
            .unwrap()
            .description,
    ] {
        assert!(
            text.contains(&format!(
                "Microsoft reports incident {INCIDENT} on Exchange Online"
            )) && text.contains(&format!("follow {INCIDENT} in Microsoft 365 admin center")),
            "{text}"
        );
    }
    let canary = active
        .iter()
        .find(|a| {
            a.name == "SmtpOAuthCanaryFailing"
                && a.labels.get("target").map(String::as_str) == Some("sender-restricted")
        })
        .unwrap();
    assert!(
        canary.annotations["description"].contains("Restricted entities"),
        "{:?}",
        canary.annotations
    );
    let agent_alerts = get_json(client, &format!("{agent_url}alerts")).await;
    let agent_alerts = agent_alerts.as_array().expect("GET /alerts is a list");
    assert!(!agent_alerts.is_empty());
    for a in agent_alerts {
        let l: BTreeMap<String, String> = serde_json::from_value(a["labels"].clone()).unwrap();
        for m in QUIET {
            assert!(!about(&l, m, &app_of(m)), "agent alert for {m}: {l:?}");
        }
    }

    // Every dashboard query parses and returns series against this Prometheus.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::dashboards::DASHBOARD).unwrap())
            .unwrap();
    let prom_api = format!("http://127.0.0.1:{}/api/v1", stack.prom_port);
    for q in crate::dashboards::dashboard_queries(&dashboard) {
        let q = q
            .replace("$__rate_interval", "15s")
            .replace("$job", ".*")
            .replace("$app", ".*")
            .replace("$mailbox", ".*");
        loop {
            let url = if let Some(inner) = q.strip_prefix("label_values(") {
                // A Grafana variable query: label_values(selector, label).
                let (selector, label) = inner.trim_end_matches(')').rsplit_once(',').unwrap();
                reqwest::Url::parse_with_params(
                    &format!("{prom_api}/label/{}/values", label.trim()),
                    &[("match[]", selector.trim())],
                )
                .unwrap()
            } else {
                reqwest::Url::parse_with_params(&format!("{prom_api}/query"), &[("query", &q)])
                    .unwrap()
            };
            let resp = client.get(url).send().await.unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert!(status.is_success(), "dashboard query {q} failed: {v}");
            let data = &v["data"];
            let series = data
                .get("result")
                .and_then(Value::as_array)
                .or_else(|| data.as_array())
                .map(Vec::len)
                .unwrap_or(0);
            if series > 0 {
                break;
            }
            assert!(
                started.elapsed() < LIMIT,
                "dashboard query returns no data: {q}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    // The agent killed for a minute, then started again on its address: the pages of what is
    // still broken do not resolve, on the Prometheus path (its rules hold the last state while
    // the agent is not scraped, then until it has re-run the checks) nor on the push path (the
    // agent's endsAt outlives the gap).
    let killed = chrono::Utc::now();
    agent.stop().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let agent = Agent::start(
        load(yaml, base).await,
        &ServeOptions {
            listen_address: agent_addr.to_string(),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("the agent again");
    // Back, every check re-run, and its alerts pushed again.
    let back = Instant::now();
    loop {
        let text = reqwest::get(format!("{agent_url}metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !text.contains("smtp_oauth_check_pending{") && !text.contains("cause=\"pending\"") {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "checks still pending after the restart"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let broken_keys: BTreeSet<String> = CRITICAL.iter().flat_map(|m| incidents(m)).collect();
    let warning_groups: BTreeSet<String> = WARNINGS.iter().flat_map(|m| groups(m)).collect();
    for p in pagerduty(&stack.inbox)
        .iter()
        .chain(&opsgenie(&stack.inbox))
        .filter(|p| p.at >= killed && matches!(p.action.as_str(), "resolve" | "close"))
    {
        assert!(
            !broken_keys.contains(&p.key)
                && !p.targets.iter().any(|t| CRITICAL.contains(&t.as_str())),
            "a still-broken page resolved while the agent was away: {p:#?}"
        );
    }
    let og_broken: BTreeSet<String> = opsgenie(&stack.inbox)
        .iter()
        .filter(|p| p.action == "create" && CRITICAL.iter().any(|m| page_about(p, m, &app_of(m))))
        .map(|p| p.key.clone())
        .collect();
    for p in opsgenie(&stack.inbox)
        .iter()
        .filter(|p| p.at >= killed && p.action == "close")
    {
        assert!(!og_broken.contains(&p.key), "Opsgenie closed {p:#?}");
    }
    for t in team(&stack.inbox).iter().filter(|t| t.at >= killed) {
        assert!(
            !(warning_groups.contains(&t.group) && t.status == "resolved"),
            "a still-present warning resolved while the agent was away: {t:#?}"
        );
    }
    // The agent's absence paged, as it should.
    assert!(
        pagerduty(&stack.inbox)
            .iter()
            .any(|p| p.at >= killed && p.summary.contains("is down")),
        "no page for the agent being down"
    );
    eprintln!(
        "live: {} PagerDuty events, {} Opsgenie requests, {} team messages; {:?}",
        pagerduty(&stack.inbox).len(),
        opsgenie(&stack.inbox).len(),
        team(&stack.inbox).len(),
        started.elapsed()
    );
    agent.stop().await;
    drop(stack.dir);
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
}
