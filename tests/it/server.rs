//! The HTTP endpoint over a real socket: landing page, health and readiness, gzip for
//! Prometheus, and clear answers to requests it does not serve.

use std::io::Read;
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_as_exporters_do() {
    let w = World::new().await;
    let agent = w.agent("allow_empty: true\napps: []\n").await;
    let base = format!("http://{}", agent.local_addr());
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    let landing = get("/").await.unwrap();
    assert_eq!(landing.status(), 200);
    let html = landing.text().await.unwrap();
    assert!(
        html.contains("href=\"/metrics\"") && html.contains("/-/healthy"),
        "{html}"
    );
    assert_eq!(get("/-/healthy").await.unwrap().status(), 200);
    assert_eq!(get("/-/ready").await.unwrap().status(), 200);
    assert_eq!(get("/nope").await.unwrap().status(), 404);
    let post = client.post(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    let plain = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(plain.contains("smtp_oauth_build_info{"));
    let gz = client
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let bytes = gz.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains("build_info")).count(),
        plain.lines().filter(|l| l.contains("build_info")).count()
    );
    let refused = client
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get("content-encoding").is_none());
    agent.stop().await;
}

/// `/status` and `/` are pages of the fleet, whatever its size: the worst first, `limit`
/// targets at a time (100 by default, 500 at most), filtered by app and severity, the summary
/// counting everyone; a page asked for again within a second is the same render, shared (four
/// requests at once cost one render). Before, each request rendered every target (26.7 MB of
/// JSON at 10,000 mailboxes), four at once took 365 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pages_are_bounded_filtered_worst_first_and_shared() {
    let w = World::new().await;
    let id = client_id(1);
    let mut yaml = format!(
        "scheduler: {{ startup_spread: 1s }}\ndefaults:\n  checks:\n    token: {{ schedule: 1h }}\n    graph: {{ enabled: false }}\n    smtp: {{ schedule: 1h }}\napps:\n{}{}mailboxes:\n",
        w.app_with_secret(1, "big", "Pg~secret-value"),
        w.app_with_secret(2, "small", "Pg~secret-value"),
    );
    let port = w.sim.smtp_addr.port();
    // 240 mailboxes of `big`, one in eight without FullAccess (critical); 5 of `small`.
    for n in 0..240 {
        let address = format!("big{n:03}@contoso.com");
        let granted: &[&str] = if n % 8 == 0 { &[] } else { &[&id] };
        w.sim.add_mailbox(&address, granted);
        yaml += &mailbox_line(&format!("big{n:03}"), "big", &address, port);
    }
    for n in 0..5 {
        let address = format!("small{n}@contoso.com");
        w.sim.add_mailbox(&address, &[&client_id(2)]);
        yaml += &mailbox_line(&format!("small{n}"), "small", &address, port);
    }
    let agent = w.agent(&yaml).await;
    wait_for(&agent, Duration::from_secs(20), "every SMTP run", |t| {
        t.matches("smtp_oauth_check_success{check=\"smtp\"").count() == 245
    })
    .await;
    let base = format!("http://{}", agent.local_addr());
    let client = reqwest::Client::new();
    let get = |q: &str| {
        let r = client.get(format!("{base}{q}")).send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();

    // The default page: 100 targets of 247, the 30 critical first, the summary of all.
    let (status, text) = get("/status").await;
    assert_eq!(status, 200);
    let doc = json(&text);
    assert_eq!(doc["summary"]["targets"], 245);
    assert_eq!(doc["summary"]["critical"], 30);
    assert_eq!(doc["page"]["matched"], 247);
    assert_eq!(doc["page"]["returned"], 100);
    assert_eq!(doc["page"]["next_offset"], 100);
    let mailboxes = doc["mailboxes"].as_array().unwrap();
    assert_eq!(mailboxes.len() + doc["apps"].as_array().unwrap().len(), 100);
    let severities: Vec<&str> = mailboxes
        .iter()
        .map(|m| m["verdict"]["severity"].as_str().unwrap())
        .collect();
    assert!(
        severities[..30].iter().all(|s| *s == "critical"),
        "{severities:?}"
    );
    assert!(
        severities[30..].iter().all(|s| *s == "ok"),
        "{severities:?}"
    );

    // Filters: one app, one severity; paging; a limit over the cap is the cap.
    let doc = json(&get("/status?app=small").await.1);
    assert_eq!(doc["page"]["matched"], 6);
    assert_eq!(doc["apps"][0]["name"], "small");
    assert_eq!(doc["apps"][0]["mailbox_count"], 5);
    let doc = json(&get("/status?severity=critical&limit=10&offset=25").await.1);
    assert_eq!(doc["page"]["matched"], 30);
    assert_eq!(doc["page"]["returned"], 5);
    assert!(doc["page"]["next_offset"].is_null());
    let doc = json(&get("/status?app=big&limit=100000").await.1);
    assert_eq!(doc["page"]["limit"], 500);
    assert_eq!(doc["page"]["returned"], 241);
    // The app lists some of its 240 mailbox names, and counts them all.
    let big = doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "big")
        .unwrap()
        .clone();
    assert_eq!(big["mailbox_count"], 240);
    assert_eq!(big["mailboxes"].as_array().unwrap().len(), 20);
    let doc = json(&get("/status?limit=0").await.1);
    assert_eq!(doc["page"]["returned"], 0);
    assert_eq!(doc["summary"]["targets"], 245);
    for (q, want) in [
        ("/status?app=nope", "unknown app"),
        ("/status?severity=bad", "severity"),
        ("/?limit=many", "limit"),
    ] {
        let (status, body) = get(q).await;
        assert_eq!(status, 400, "{q}");
        assert!(body.contains(want), "{q}: {body}");
    }

    // The page: the problems, then the healthy rest summarised with a link.
    let (status, html) = get("/").await;
    assert_eq!(status, 200);
    assert_eq!(
        html.matches("data-severity=\"critical\"").count(),
        30,
        "{html}"
    );
    assert!(
        html.contains("id=\"rest\">147 more targets, all ok"),
        "{html}"
    );
    assert!(html.contains("href=\"/?offset=100\""), "{html}");

    // Shared: four requests at once, and another within the second, get one render.
    let pages = futures::future::join_all((0..4).map(|_| get("/status?severity=critical"))).await;
    let again = get("/status?severity=critical").await;
    for (_, p) in pages.iter().chain([&again]) {
        assert_eq!(json(p)["generated_at"], json(&pages[0].1)["generated_at"]);
    }
    agent.stop().await;
}
