//! The demo end to end, as a newcomer meets it: the `demo` command as a process, each failure
//! mode's verdict (step and cause) on `/metrics`, `/status` and the status page `/` within 15 s
//! of start, the page as headless Chromium renders it, and `check --demo` printing the same
//! verdicts (text, JSON, and the Nagios convention's exit codes and perfdata).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::*;

/// Each scenario of the demo catalogue and the verdict the agent must reach: (step, cause).
const EXPECTED: [(&str, &str, &str); 31] = [
    ("healthy-secret", "ok", "ok"),
    ("healthy-certificate", "ok", "ok"),
    ("secret-expiring", "2", "credential_expiring"),
    ("secret-expired", "2", "secret_expired"),
    ("secret-id-pasted", "2", "secret_id_pasted"),
    ("consent-missing", "3", "consent_missing"),
    (
        "service-principal-missing",
        "4",
        "service_principal_or_permission_missing",
    ),
    (
        "mailbox-permission-missing",
        "4",
        "mailbox_permission_missing",
    ),
    ("smtp-auth-off-tenant", "5", "smtp_auth_disabled_tenant"),
    ("smtp-auth-off-mailbox", "5", "smtp_auth_disabled_mailbox"),
    ("certificate-not-uploaded", "2", "certificate_not_uploaded"),
    ("graph-throttled", "transient", "graph_unavailable"),
    ("starttls-stripped", "network", "starttls_stripped"),
    ("tls-inspection", "network", "tls_inspection"),
    ("canary-delivered", "ok", "ok"),
    ("canary-junk", "policy", "canary_junk"),
    ("canary-lost", "unknown", "canary_not_delivered"),
    (
        "canary-reader-denied",
        "3",
        "canary_reader_permission_missing",
    ),
    ("sender-restricted", "policy", "sender_restricted"),
    ("tenant-threshold", "policy", "tenant_sending_blocked"),
    ("tenant-ip-blocked", "policy", "tenant_sending_blocked"),
    ("canary-send-as-denied", "4", "send_as_denied"),
    ("exchange-incident", "transient", "microsoft_incident"),
    ("rbac-in-scope", "ok", "ok"),
    ("rbac-outside-scope", "4", "rbac_mailbox_out_of_scope"),
    (
        "service-principal-missing-in-entra",
        "1",
        "enterprise_app_missing",
    ),
    ("secret-on-service-principal", "ok", "ok"),
    ("old-secret-in-use", "2", "active_credential_expiring"),
    ("traffic-healthy", "ok", "ok"),
    ("sender-silent", "unknown", "traffic_silent"),
    ("traffic-quarantined", "policy", "traffic_failing"),
];

#[test]
fn the_catalogue_is_the_demos() {
    let names: Vec<&str> = smtp_oauth_exporter::demo::SCENARIOS
        .iter()
        .map(|s| s.0)
        .collect();
    let expected: Vec<&str> = EXPECTED.iter().map(|e| e.0).collect();
    assert_eq!(names, expected);
}

/// Every verdict series of a scrape: target → (step, cause).
fn verdicts(text: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("smtp_oauth_verdict{"))
    {
        let label = |k: &str| {
            let start = line.find(&format!("{k}=\""))? + k.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_string())
        };
        if let (Some(t), Some(s), Some(c)) = (label("target"), label("step"), label("cause")) {
            out.insert(t, (s, c));
        }
    }
    out
}

fn mismatches(seen: &BTreeMap<String, (String, String)>) -> Vec<String> {
    EXPECTED
        .iter()
        .filter(|(t, s, c)| seen.get(*t) != Some(&(s.to_string(), c.to_string())))
        .map(|(t, s, c)| format!("{t}: expected step {s} cause {c}, saw {:?}", seen.get(*t)))
        .collect()
}

/// The verdicts in the status page's rows (`data-target`, `data-step`, `data-cause`).
fn page_verdicts(html: &str) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    for row in html.split("<tr").skip(1) {
        let attr = |k: &str| {
            let start = row.find(&format!("{k}=\""))? + k.len() + 2;
            let end = start + row[start..].find('"')?;
            Some(row[start..end].to_string())
        };
        if let (Some(t), Some(s), Some(c)) =
            (attr("data-target"), attr("data-step"), attr("data-cause"))
        {
            // The visible text says the cause too, not only the attribute.
            assert!(
                row.contains(&format!("<code>{c}</code>")),
                "row of {t} does not show its cause: {row}"
            );
            out.insert(t, (s, c));
        }
    }
    out
}

/// Headless Chromium (Debian's package, installed by scripts/test.sh): the DOM after loading
/// the page. A missing Chromium fails the test.
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium is required (scripts/test.sh installs Debian's chromium): {e}")
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_shows_its_verdict_on_metrics_status_and_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let demo = Process::start(&["demo"], dir.path().join("demo.log")).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(demo.url(path)).send();

    // /metrics: every verdict within 15 s of start.
    let text = loop {
        let text = get("/metrics").await.unwrap().text().await.unwrap();
        let seen = verdicts(&text);
        if mismatches(&seen).is_empty() {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not every verdict within 15 s of start:\n{}\n{}",
            mismatches(&seen).join("\n"),
            demo.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (t, _, _) in EXPECTED {
        assert!(
            text.contains(&format!(
                "smtp_oauth_check_success{{check=\"smtp\",target=\"{t}\"}}"
            )),
            "{t} has an SMTP result"
        );
    }

    // /status: the same verdicts, with their fix.
    let status: serde_json::Value = get("/status").await.unwrap().json().await.unwrap();
    assert_eq!(status["schema_version"], 1);
    let mut seen = BTreeMap::new();
    for m in status["mailboxes"].as_array().unwrap() {
        let v = &m["verdict"];
        seen.insert(
            m["name"].as_str().unwrap().to_string(),
            (
                v["step"].as_str().unwrap().to_string(),
                v["cause"].as_str().unwrap().to_string(),
            ),
        );
        if v["severity"] != "ok" {
            assert!(
                v["remediation"].as_str().unwrap().len() > 20,
                "{} has a fix: {v}",
                m["name"]
            );
        }
        assert_eq!(v["steps"].as_array().unwrap().len(), 5);
    }
    assert!(mismatches(&seen).is_empty(), "{:?}", mismatches(&seen));
    let expiring = status["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "secret-expiring")
        .unwrap();
    assert_eq!(expiring["credential_in_use"]["days_left"], 10);
    // The scenarios and the canaries' reader app (an app without a mailbox has a verdict).
    assert_eq!(status["summary"]["targets"], 32);
    assert_eq!(status["summary"]["ok"], 7);
    // The secret on the service principal is the one in use, its expiry known (once the app's
    // first Graph read is in: a tenant's first reads are spread at one a second).
    loop {
        let status: serde_json::Value = get("/status?app=payments")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let on_sp = status["mailboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "secret-on-service-principal")
            .cloned()
            .unwrap();
        if !on_sp["credential_in_use"].is_null() {
            assert_eq!(on_sp["credential_in_use"]["days_left"], 399, "{on_sp}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no credential in use for the secret on the service principal: {on_sp}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The incident, with its title, on /status.
    let health = status["service_health"].to_string();
    assert!(
        health.contains("EX1024351") && health.contains("unable to send email using SMTP AUTH"),
        "{health}"
    );

    // The page, as served and as Chromium renders it.
    let html = get("/").await.unwrap().text().await.unwrap();
    let on_page = page_verdicts(&html);
    assert!(
        mismatches(&on_page).is_empty(),
        "{:?}",
        mismatches(&on_page)
    );
    let url = demo.url("/");
    let dom = tokio::task::spawn_blocking(move || chromium_dom(&url))
        .await
        .unwrap();
    let rendered = page_verdicts(&dom);
    assert!(
        mismatches(&rendered).is_empty(),
        "as Chromium renders the page: {:?}",
        mismatches(&rendered)
    );
    assert!(dom.contains("id=\"summary\""), "{dom}");
    // The inventory: the apps nobody configured, marked discovered.
    assert!(
        dom.contains(
            "14 apps can send SMTP (12 configured); 1 credential in use expires this month"
        ) && dom.contains("data-discovered=\"true\"")
            && dom.contains("Intranet portal"),
        "{dom}"
    );
    // Traffic beside the checks, with its chart.
    assert!(
        dom.contains("sent 40 in 24 h, 2 failed, 8 quarantined") && dom.contains("class=\"chart\""),
        "{dom}"
    );
    assert!(demo.stop().success());
}

#[test]
fn check_demo_prints_every_verdict() {
    // JSON: the status document's verdicts.
    let (out, err, code) = run_binary(&["check", "--demo", "--output", "json"]);
    assert_eq!(code, 1, "checks fail in the demo, so exit 1: {err}");
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let mut seen = BTreeMap::new();
    for m in doc["mailboxes"].as_array().unwrap() {
        let v = &m["verdict"];
        seen.insert(
            m["name"].as_str().unwrap().to_string(),
            (
                v["step"].as_str().unwrap().to_string(),
                v["cause"].as_str().unwrap().to_string(),
            ),
        );
    }
    assert!(mismatches(&seen).is_empty(), "{:?}", mismatches(&seen));

    // Text: each scenario's block names its cause and, when broken, the fix.
    let (text, _, code) = run_binary(&["check", "--demo"]);
    assert_eq!(code, 1);
    for (t, _, cause) in EXPECTED {
        let block = text
            .split("\n\n")
            .find(|b| b.contains(&format!(" {t}  mailbox")))
            .unwrap_or_else(|| panic!("no block for {t}:\n{text}"));
        if cause == "ok" {
            assert!(block.contains("verdict  OK"), "{block}");
        } else {
            assert!(block.contains(&format!("· {cause}")), "{block}");
            assert!(block.contains("  fix "), "{block}");
        }
        assert!(block.contains("steps"), "{block}");
    }
    assert!(
        text.contains("32 targets: 7 ok, 7 warning, 18 critical, 0 pending"),
        "{text}"
    );
    // The canary's delivery, and the incident with its title.
    assert!(
        text.contains("to receipts@contoso.com: arrived in ")
            && text.contains("(Inbox), deleted, found with mail-reader's Graph token"),
        "{text}"
    );
    assert!(
        text.contains("EX1024351 exchange_online incident (service_degradation): Users may be unable to send email using SMTP AUTH"),
        "{text}"
    );
    // The inventory, and the lost canary looked up in message trace.
    assert!(
        text.contains("Apps that can send SMTP in tenant contoso.onmicrosoft.com: 14 apps can send SMTP (12 configured); 1 credential in use expires this month")
            && text.contains("Intranet portal 2ae95b0c-38b3-4a82-b5f4-7834d6c35f91 · discovered"),
        "{text}"
    );
    assert!(text.contains("message trace: still pending"), "{text}");
    // --no-canary: nothing sent, the canary scenarios show their login's verdict.
    let (text, _, _) = run_binary(&["check", "--demo", "--no-canary", "canary-lost"]);
    assert!(
        text.contains("verdict  OK")
            && text.contains("canary   ·\n")
            && !text.contains("message <"),
        "{text}"
    );

    // Exit 0 when every check passes.
    let (_, _, code) = run_binary(&[
        "check",
        "--demo",
        "healthy-secret",
        "healthy-certificate",
        "canary-delivered",
    ]);
    assert_eq!(code, 0);
    // An unknown name is a usage error.
    let (_, err, code) = run_binary(&["check", "--demo", "no-such-mailbox"]);
    assert_eq!(code, 2, "{err}");
}

/// Perfdata items, split on the spaces outside quoted labels.
fn perf_items(perf: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in perf.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                cur.push(c);
            }
            ' ' if !quoted => {
                if !cur.is_empty() {
                    items.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

/// `'label'=value[UOM];[warn];[crit];[min];[max]` (Nagios plugin guidelines).
fn valid_perfdata(item: &str) -> bool {
    let Some(rest) = item.strip_prefix('\'') else {
        return false;
    };
    let Some((label, rest)) = rest.split_once("'=") else {
        return false;
    };
    if label.is_empty() || label.contains('=') {
        return false;
    }
    let fields: Vec<&str> = rest.split(';').collect();
    let value = fields[0].trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '%');
    fields.len() <= 5 && value.parse::<f64>().is_ok()
}

#[test]
fn check_nagios_exit_codes_and_perfdata() {
    for (names, code, state) in [
        (vec!["healthy-secret"], 0, "OK"),
        (vec!["secret-expiring"], 1, "WARNING"),
        (vec!["healthy-secret", "consent-missing"], 2, "CRITICAL"),
        (vec!["no-such-mailbox"], 3, "UNKNOWN"),
    ] {
        let mut args = vec!["check", "--demo", "--output", "nagios"];
        args.extend(names.iter().copied());
        let (out, err, got) = run_binary(&args);
        assert_eq!(got, code, "{names:?}: {out}{err}");
        let first = out.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("SMTP-OAUTH {state} - ")),
            "{names:?}: {first}"
        );
        if code == 3 {
            continue;
        }
        let (_, perf) = first.split_once(" | ").expect("perfdata after |");
        let items = perf_items(perf);
        assert!(items.len() >= 3, "{perf}");
        for item in &items {
            assert!(valid_perfdata(item), "{item} in {perf}");
        }
        if names.contains(&"secret-expiring") {
            assert!(
                perf.contains("'crm credential days left'=10;30:;7:;;"),
                "{perf}"
            );
        }
    }
    // A broken target's long output carries its fix.
    let (out, _, _) = run_binary(&["check", "--demo", "--output", "nagios", "consent-missing"]);
    assert!(
        out.lines().nth(1).unwrap().contains("Grant admin consent"),
        "{out}"
    );
}
