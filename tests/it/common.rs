//! Shared test helpers: a simulator with a tenant, configs written to a temp dir, an agent on
//! 127.0.0.1:0, scraping and reading series from the live `/metrics`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use smtp_oauth_exporter::agent::{Agent, ServeOptions};
use smtp_oauth_exporter::plan::Plan;
use smtp_oauth_exporter::sim::Simulator;

pub const TENANT: &str = "11111111-2222-3333-4444-555555555555";
pub const TENANT_DOMAIN: &str = "contoso.onmicrosoft.com";

/// A client ID made from a small number, so tests can name many apps.
pub fn client_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A simulator with one tenant, plus a temp dir holding its CA file.
pub struct World {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

impl World {
    pub async fn new() -> World {
        let sim = Simulator::start().await.expect("start simulator");
        sim.add_tenant(TENANT, &[TENANT_DOMAIN]);
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &sim.ca_pem).expect("write CA");
        World { sim, dir, ca_file }
    }

    /// Writes a file into the temp dir and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write file");
        p.display().to_string()
    }

    /// The endpoint fields every app in a test needs: login/Graph URLs and the CA file.
    pub fn endpoints(&self) -> String {
        format!(
            "login_url: {base}\n    graph_url: {base}\n    ca_file: {ca}",
            base = self.sim.base_url(),
            ca = self.ca_file.display()
        )
    }

    /// Parses a config written by a test (relative paths resolve in the temp dir).
    pub fn config(&self, yaml: &str) -> Plan {
        match smtp_oauth_exporter::config::from_yaml(yaml, "test.yml", self.dir.path()) {
            Ok(c) => c,
            Err(e) => panic!("test config is invalid: {e}\n{yaml}"),
        }
    }

    pub async fn agent(&self, yaml: &str) -> Agent {
        Agent::start(self.config(yaml), &ServeOptions::default())
            .await
            .expect("start agent")
    }
}

/// GET `/metrics` over HTTP from a running agent.
pub async fn scrape(agent: &Agent) -> String {
    let url = format!("http://{}/metrics", agent.local_addr());
    let resp = reqwest::get(&url).await.expect("scrape");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("scrape body")
}

/// The value of the series `name{labels}` (labels given as `k="v"` pairs, any order, subset).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (series, v) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, val)| rest.contains(&format!("{k}=\"{val}\"")))
        {
            return v.parse().ok();
        }
    }
    None
}

/// Scrapes until `pred` holds on the text, or panics with the last scrape after `limit`.
pub async fn wait_for(
    agent: &Agent,
    limit: Duration,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = scrape(agent).await;
        if pred(&text) {
            return text;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}; last scrape:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A secret-credential app block for a config.
pub fn secret_app(
    world: &World,
    name: &str,
    client: &str,
    secret_file: &str,
    extra: &str,
) -> String {
    format!(
        "  - name: {name}\n    tenant: {TENANT}\n    client_id: {client}\n    client_secret_file: {secret_file}\n    {}\n{extra}",
        world.endpoints()
    )
}
