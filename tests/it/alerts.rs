//! The alerting that ships: the rules file is generated from the alert table (and equal to
//! it), promtool checks and unit-tests it, every runbook_url points at a section of
//! docs/runbooks.md, amtool and promtool accept the example Alertmanager and Prometheus
//! configurations. promtool and amtool are installed by scripts/test.sh; a missing one fails.

use std::process::Command;

const RULES: &str = "alerts/smtp-oauth-exporter.rules.yml";

fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is required (scripts/test.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_file_is_the_alert_tables() {
    let generated = smtp_oauth_exporter::alerts::rules_yaml(&Default::default());
    if std::env::var_os("UPDATE_ALERTS").is_some() {
        std::fs::write(RULES, &generated).unwrap();
    }
    let shipped = std::fs::read_to_string(RULES).expect("the rules file");
    assert!(
        shipped == generated,
        "{RULES} differs from src/alerts/rules.rs: regenerate with UPDATE_ALERTS=1 cargo test --test it alerts"
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let report = run("promtool", &["check", "rules", RULES]);
    assert!(report.contains("SUCCESS"), "{report}");
    let mut tests: Vec<String> = std::fs::read_dir("tests/alerts")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yml"))
        .collect();
    tests.sort();
    assert!(!tests.is_empty());
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    run("promtool", &args);
}

#[test]
fn every_alert_has_a_unit_test_and_a_runbook_section() {
    let tests: String = std::fs::read_dir("tests/alerts")
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    let runbook = std::fs::read_to_string("docs/runbooks.md").expect("docs/runbooks.md");
    // GitHub's anchors: the heading in lower case, spaces as dashes, punctuation dropped.
    let anchors: Vec<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .collect::<String>()
                .replace(' ', "-")
        })
        .collect();
    let rules = smtp_oauth_exporter::alerts::rules(&Default::default());
    for r in &rules {
        assert!(
            tests.contains(&format!("alertname: {}", r.name)),
            "no promtool test for {}",
            r.name
        );
        assert!(
            anchors.contains(&r.anchor),
            "docs/runbooks.md has no section #{} for {}",
            r.anchor,
            r.name
        );
    }
    // Every rule links its runbook on the agent that raised it (its instance); the one about
    // no agent at all has no instance to link to, and a self-contained description.
    let shipped = std::fs::read_to_string(RULES).unwrap();
    let urls = shipped
        .matches("runbook_url: http://{{ $labels.instance }}/runbooks#")
        .count();
    assert_eq!(
        urls,
        rules.len() - 1,
        "every rule but ExporterAbsent has a runbook_url"
    );
    // With alerts.runbook_base_url, every one links there.
    let settings = smtp_oauth_exporter::plan::AlertSettings {
        runbook_base_url: Some("https://wiki.example/smtp/runbooks.html".into()),
        ..Default::default()
    };
    let custom = smtp_oauth_exporter::alerts::rules_yaml(&settings);
    assert_eq!(
        custom
            .matches("runbook_url: https://wiki.example/smtp/runbooks.html#smtpoauth")
            .count(),
        rules.len()
    );
}

#[test]
fn the_example_configurations_are_valid() {
    run(
        "amtool",
        &["check-config", "deploy/alertmanager/alertmanager.yml"],
    );
    run(
        "promtool",
        &["check", "config", "deploy/prometheus/prometheus.yml"],
    );
}

/// `smtp-oauth-exporter rules`: the shipped file with `--defaults`; from a configuration, its
/// thresholds and `alerts.runbook_base_url` (which the agent's own alerts use too).
#[test]
fn the_rules_command_writes_the_configurations_rules() {
    let (out, err, code) = crate::common::run_binary(&["rules", "--defaults"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, std::fs::read_to_string(RULES).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yml");
    std::fs::write(
        &config,
        "alerts:\n  failing_for: 20m\n  runbook_base_url: https://wiki.example/smtp/runbooks.html\napps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: \"Abc~x\" }\n",
    )
    .unwrap();
    let (out, err, code) =
        crate::common::run_binary(&["rules", "--config.file", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("for: 20m"), "{out}");
    assert!(
        out.contains("runbook_url: https://wiki.example/smtp/runbooks.html#smtpoauthtokenfailing")
    );
    assert!(!out.contains("{{ $labels.instance }}/runbooks"));
    // A base that is no http(s) URL is refused at load.
    std::fs::write(
        &config,
        "alerts:\n  runbook_base_url: wiki/runbooks\napps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: \"Abc~x\" }\n",
    )
    .unwrap();
    let (_, err, code) =
        crate::common::run_binary(&["rules", "--config.file", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("alerts.runbook_base_url"), "{err}");
}
