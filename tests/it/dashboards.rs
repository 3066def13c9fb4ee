//! The Grafana dashboard that ships: valid JSON wired to a data source variable, with job, app
//! and mailbox filters, and every query (panels, variables, and the alert rules too) names only
//! metrics the agent exports. The catalogue of exported metrics is the golden exposition
//! (tests/testdata/*.golden), which covers every family, conditional ones included, plus
//! `smtp_oauth_build_info` and Prometheus' own `up`. The live test (live.rs) runs every query
//! against a real Prometheus scraping the demo.

use std::collections::BTreeSet;

pub const DASHBOARD: &str = "dashboards/smtp-oauth-exporter.json";

/// Names a query may use: every family of the golden exposition, histograms with their
/// `_bucket`, `_sum` and `_count` series.
fn catalogue() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["smtp_oauth_build_info", "up"].map(String::from).into();
    for file in ["metrics.golden", "metrics-detail.golden"] {
        let text = std::fs::read_to_string(format!("tests/testdata/{file}")).unwrap();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let (name, kind) = rest.split_once(' ').unwrap();
            names.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

/// The metric names a PromQL expression mentions: identifiers starting with `smtp_oauth_`, and
/// `up` as a selector.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("smtp_oauth_") || (word == "up" && bytes.get(i) == Some(&b'{')) {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets and query variables.
pub fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(
                t["expr"]
                    .as_str()
                    .expect("a target without expr")
                    .to_string(),
            );
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            out.push(v["query"]["query"].as_str().unwrap().to_string());
        }
    }
    out
}

fn load() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).expect("valid JSON")
}

#[test]
fn dashboard_and_alerts_query_only_exported_metrics() {
    let known = catalogue();
    let mut exprs = dashboard_queries(&load());
    assert!(exprs.len() >= 15, "{} queries", exprs.len());
    for r in smtp_oauth_exporter::alerts::rules(&Default::default()) {
        exprs.push(r.expr.clone());
    }
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "a query that names no metric: {e}");
        for n in names {
            assert!(
                known.contains(&n),
                "{n} is not exported by the agent (in {e})"
            );
            used.insert(n);
        }
    }
    // The headline families are on the dashboard.
    for m in [
        "smtp_oauth_verdict",
        "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
        "smtp_oauth_smtp_phase_duration_seconds_bucket",
        "smtp_oauth_check_failures_total",
        "smtp_oauth_smtp_ssl_earliest_cert_expiry",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
}

#[test]
fn dashboard_is_wired_to_its_variables() {
    let d = load();
    assert_eq!(d["uid"], "smtp-oauth-exporter");
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["datasource", "job", "app", "mailbox"]);
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate panel id");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {} does not use the data source variable",
            p["title"]
        );
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            assert!(
                e.contains("job=~\"$job\""),
                "panel {} ignores the job filter: {e}",
                p["title"]
            );
        }
        assert!(
            p["description"].as_str().is_some_and(|s| s.len() > 20),
            "panel {} has no description",
            p["title"]
        );
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.95, sum by (le) (rate(smtp_oauth_x_bucket{job=~\"$job\"}[5m]))) or up{job=\"a\"} - time()"
        ),
        ["smtp_oauth_x_bucket", "up"]
    );
}

/// A legend names labels its series have: each `{{label}}` of a panel's legendFormat is a label
/// of the metrics its query reads (in the golden pages) or one it groups by. (The server
/// certificate panel's bars were labelled by `target`, which that series does not carry.)
#[test]
fn legends_name_labels_the_series_have() {
    let golden: String = ["metrics.golden", "metrics-detail.golden"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("tests/testdata/{f}")).unwrap())
        .collect();
    let mut checked = 0;
    for p in load()["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let (Some(legend), Some(expr)) = (t["legendFormat"].as_str(), t["expr"].as_str())
            else {
                continue;
            };
            for label in legend
                .split("{{")
                .skip(1)
                .filter_map(|s| s.split_once("}}"))
                .map(|(l, _)| l.trim())
            {
                // Prometheus adds job and instance to every scraped series.
                let scraped = matches!(label, "job" | "instance");
                let grouped = expr.contains(&format!("by ({label}"))
                    || expr.contains(&format!(", {label})"))
                    || expr.contains(&format!(", {label},"));
                let carried = metric_names(expr).iter().any(|m| {
                    let family = m.trim_end_matches("_bucket");
                    golden.lines().any(|l| {
                        l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{m}{{"))
                    }) && golden.lines().any(|l| {
                        (l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{m}{{")))
                            && l.contains(&format!("{label}=\""))
                    })
                });
                assert!(
                    scraped || grouped || carried,
                    "panel {}: legend {{{{{label}}}}} is no label of {expr}",
                    p["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "{checked} legends");
}
