//! The shipped alerting against the real thing, on loopback: the demo (simulator and agent, in
//! this process), Prometheus scraping it with the shipped rules, Alertmanager with the example
//! routing, and a webhook receiver standing in for the pager and the team channel.
//!
//! Only timings are shortened: scrape and evaluation every second, every rule's `for:` to 2 s
//! and the slow-canary threshold to half a second (in a copy of the rules), Alertmanager's group
//! waits to 1 s, the agent's `failing_for` to 2 s. Routing, matchers, grouping and inhibition are the example's own. Bounded at three
//! minutes; Debian's `prometheus` and `prometheus-alertmanager` (installed by scripts/test.sh)
//! are required, a missing one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use smtp_oauth_exporter::agent::{Agent, ServeOptions};
use smtp_oauth_exporter::demo::Demo;

use crate::common::{http_receiver, Inbox};

const LIMIT: Duration = Duration::from_secs(180);

/// The demo's scenarios whose verdict is critical: each must page.
const CRITICAL: [&str; 16] = [
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
];
/// Healthy ones (and throttling alone): no alert about them or about their own app.
const QUIET: [&str; 3] = ["healthy-secret", "healthy-certificate", "graph-throttled"];

/// Alerts Prometheus must show (pending or firing) for a scenario: (mailbox, alert name,
/// whether the alert is about the mailbox or about its app).
const EXPECTED: [(&str, &str, About); 24] = [
    (
        "secret-expiring",
        "SmtpOAuthCredentialExpiringSoon",
        About::App,
    ),
    (
        "secret-expiring",
        "SmtpOAuthAppCredentialExpiring",
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
    ("canary-delivered", "SmtpOAuthCanarySlow", About::Mailbox),
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

/// The shipped rules with every `for:` shortened to 2 s, and the slow-canary threshold to half
/// a second (the demo's canary takes 2 s).
fn fast_rules() -> String {
    let rules = std::fs::read_to_string("alerts/smtp-oauth-exporter.rules.yml").unwrap();
    let slow = "smtp_oauth_canary_last_delivery_seconds > 600";
    assert!(rules.contains(slow), "the slow-canary rule changed: {slow}");
    rules
        .replace(slow, "smtp_oauth_canary_last_delivery_seconds > 0.5")
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

/// The example Alertmanager configuration with its receivers pointed at the test's webhook
/// (one path per receiver) and its group waits shortened; everything else as shipped.
fn test_alertmanager_config(receiver: u16) -> String {
    let text = std::fs::read_to_string("deploy/alertmanager/alertmanager.yml").unwrap();
    let mut config: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    let route = config.get_mut("route").unwrap();
    route["group_wait"] = "1s".into();
    route["group_interval"] = "1s".into();
    let receivers = config
        .get_mut("receivers")
        .and_then(|r| r.as_sequence_mut())
        .unwrap();
    for r in receivers.iter_mut() {
        let name = r["name"].as_str().unwrap().to_string();
        let mut webhook = yaml_serde::Mapping::new();
        webhook.insert(
            "url".into(),
            format!("http://127.0.0.1:{receiver}/{name}").into(),
        );
        webhook.insert("send_resolved".into(), true.into());
        let mut replaced = yaml_serde::Mapping::new();
        replaced.insert("name".into(), name.into());
        replaced.insert(
            "webhook_configs".into(),
            yaml_serde::Value::Sequence(vec![webhook.into()]),
        );
        *r = replaced.into();
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

/// Alerts in notifications to one receiver: (generatorURL, labels), firing ones only.
fn notified(inbox: &Inbox, path: &str) -> Vec<(String, BTreeMap<String, String>)> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == path)
        .flat_map(|r| r["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["status"] == "firing")
        .map(|a| {
            (
                a["generatorURL"].as_str().unwrap_or("").to_string(),
                serde_json::from_value(a["labels"].clone()).unwrap(),
            )
        })
        .collect()
}

/// Whether an alert is about a scenario: its mailbox, or its app (app-level alerts carry the
/// app's name as `target`).
fn about(labels: &BTreeMap<String, String>, mailbox: &str, app: &str) -> bool {
    let target = labels.get("target").map(String::as_str);
    target == Some(mailbox) || target == Some(app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_through_prometheus_and_alertmanager_and_the_dashboard_has_data() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The pager and the team channel.
    let (hook, inbox) = http_receiver().await;

    // Alertmanager with the example routing.
    let am_port = free_port();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(&am_config, test_alertmanager_config(hook)).unwrap();
    std::fs::create_dir(dir.path().join("am-data")).unwrap();
    let am = Tool::start(
        &["prometheus-alertmanager", "alertmanager"],
        &[
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        dir.path().join("alertmanager.log"),
    );

    // The demo, its agent pushing its own alerts to that Alertmanager.
    let demo = Demo::start().await.expect("demo");
    let yaml = format!(
        "{}\nalerts:\n  failing_for: 2s\n  evaluation_interval: 1s\nalertmanager:\n  urls: ['http://127.0.0.1:{am_port}']\n  resend_interval: 5s\n",
        demo.yaml
    );
    let base = demo.dir().to_path_buf();
    let plan = tokio::task::spawn_blocking(move || {
        smtp_oauth_exporter::config::from_yaml(&yaml, "live.yml", &base)
    })
    .await
    .unwrap()
    .expect("the demo's configuration with alerting");
    let agent = Agent::start(plan, &ServeOptions::default())
        .await
        .expect("agent");
    let agent_url = format!("http://{}/", agent.local_addr());

    // Prometheus with the shipped rules (for: shortened) scraping the agent.
    let prom_port = free_port();
    std::fs::write(dir.path().join("rules.yml"), fast_rules()).unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: smtp-oauth\n    static_configs:\n      - targets: ['{}']\n",
            agent.local_addr()
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
    wait_ready(&client, &format!("http://127.0.0.1:{am_port}/-/ready"), &am).await;
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{prom_port}/-/ready"),
        &prom,
    )
    .await;

    // Each mailbox's app, from the agent's verdicts once they are all in.
    let apps: BTreeMap<String, String> = loop {
        let status = get_json(&client, &format!("{agent_url}status")).await;
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
        let pending = text.contains("cause=\"pending\"") || !status.is_object();
        if CRITICAL
            .iter()
            .chain(&QUIET)
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

    // Wait until every expected alert is active in Prometheus, and every critical scenario
    // has paged, from Prometheus and (where Alertmanager does not inhibit it) from the agent.
    let from_prometheus = |url: &str| url.contains("/graph?g0.expr=");
    let from_agent = |url: &str| url.starts_with(&agent_url);
    let (active, pages) = loop {
        let active = prometheus_alerts(&client, prom_port).await;
        let pages = notified(&inbox, "/pager");
        let missing: Vec<String> = EXPECTED
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
            .chain(CRITICAL.iter().flat_map(|m| {
                let app = app_of(m);
                let paged = |src: &dyn Fn(&str) -> bool| {
                    pages.iter().any(|(u, l)| src(u) && about(l, m, &app))
                };
                let mut out = Vec::new();
                if !paged(&from_prometheus) {
                    out.push(format!("a page from Prometheus for {m}"));
                }
                // The agent's token alert for an expired secret is inhibited by the
                // credential-expired alert when that reaches Alertmanager first.
                if *m != "secret-expired" && !paged(&from_agent) {
                    out.push(format!("a page from the agent for {m}"));
                }
                out
            }))
            .collect();
        if missing.is_empty() {
            break (active, pages);
        }
        if started.elapsed() > LIMIT - Duration::from_secs(20) {
            panic!(
                "after {:?}, still missing: {missing:#?}\nPrometheus alerts: {:#?}\npages: {pages:#?}\nPrometheus log:\n{}\nAlertmanager log:\n{}",
                started.elapsed(),
                active
                    .iter()
                    .map(|a| format!("{} {} {:?}", a.name, a.state, a.labels.get("target")))
                    .collect::<Vec<_>>(),
                prom.log_text(),
                am.log_text()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    // Nothing for the healthy scenarios, nor for throttling alone: not in Prometheus, not at
    // the pager, not from the agent.
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
        for (url, l) in &pages {
            assert!(
                !about(l, m, &app),
                "page for quiet scenario {m}: {url} {l:?}"
            );
        }
    }
    // Microsoft's incident: an info alert naming it, and the failing mailbox's page names it.
    let incident = active
        .iter()
        .find(|a| a.name == "SmtpOAuthMicrosoftIncident")
        .expect("the incident alert");
    assert_eq!(incident.labels["id"], INCIDENT);
    assert_eq!(incident.labels["severity"], "info");
    assert_eq!(incident.labels["service"], "exchange_online");
    let unreachable = active
        .iter()
        .find(|a| {
            a.name == "SmtpOAuthSmtpUnreachable"
                && a.labels.get("target").map(String::as_str) == Some("exchange-incident")
        })
        .unwrap();
    assert_eq!(unreachable.labels["cause"], "microsoft_incident");
    assert!(
        unreachable.annotations["description"].contains(&format!(
            "Microsoft reports incident {INCIDENT} on Exchange Online"
        )),
        "{:?}",
        unreachable.annotations
    );
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
    let agent_alerts = get_json(&client, &format!("{agent_url}alerts")).await;
    let agent_alerts = agent_alerts.as_array().expect("GET /alerts is a list");
    assert!(!agent_alerts.is_empty());
    for a in agent_alerts {
        let l: BTreeMap<String, String> = serde_json::from_value(a["labels"].clone()).unwrap();
        for m in QUIET {
            assert!(!about(&l, m, &app_of(m)), "agent alert for {m}: {l:?}");
        }
    }
    // Only critical alerts page; the warnings go to the team channel.
    for (url, l) in &pages {
        assert_eq!(
            l.get("severity").map(String::as_str),
            Some("critical"),
            "a non-critical alert paged: {url} {l:?}"
        );
    }
    let team = loop {
        let team = notified(&inbox, "/team");
        let has = |name: &str, severity: &str| {
            team.iter()
                .any(|(_, l)| l["alertname"] == name && l["severity"] == severity)
        };
        if has("SmtpOAuthCredentialExpiringSoon", "warning")
            && has("SmtpOAuthCanaryJunk", "warning")
            && has("SmtpOAuthMicrosoftIncident", "info")
        {
            break team;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the credential-expiring and canary-junk warnings and the incident never all reached the team receiver: {team:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(team.iter().all(|(_, l)| l["severity"] != "critical"));

    // Every dashboard query parses and returns series against this Prometheus.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(crate::dashboards::DASHBOARD).unwrap())
            .unwrap();
    let prom_api = format!("http://127.0.0.1:{prom_port}/api/v1");
    for q in crate::dashboards::dashboard_queries(&dashboard) {
        let q = q
            .replace("$__rate_interval", "15s")
            .replace("$job", ".*")
            .replace("$app", ".*")
            .replace("$mailbox", ".*");
        let result = loop {
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
                break series;
            }
            assert!(
                started.elapsed() < LIMIT,
                "dashboard query returns no data: {q}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert!(result > 0);
    }
    let names = |v: &[(String, BTreeMap<String, String>)], src: &dyn Fn(&str) -> bool| {
        v.iter()
            .filter(|(u, _)| src(u))
            .map(|(_, l)| format!("{}/{}", l["alertname"], l.get("target").map_or("", |t| t)))
            .collect::<BTreeSet<_>>()
    };
    eprintln!(
        "live: {} Prometheus alerts ({} firing); pages from Prometheus {:?}; from the agent {:?}; team {:?}; {:?}",
        active.len(),
        active.iter().filter(|a| a.state == "firing").count(),
        names(&pages, &from_prometheus),
        names(&pages, &from_agent),
        names(&team, &|_| true),
        started.elapsed()
    );
    agent.stop().await;
    drop(prom);
    drop(am);
    assert!(started.elapsed() < LIMIT, "took {:?}", started.elapsed());
}
