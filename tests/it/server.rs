//! The HTTP endpoint over a real socket: landing page, health and readiness, gzip for
//! Prometheus, and clear answers to requests it does not serve.

use std::io::Read;

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
