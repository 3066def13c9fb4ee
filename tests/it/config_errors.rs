//! Table test of invalid configuration files: each `testdata/config/invalid-*.yml` beside its
//! exact error message in the `.err` file of the same name.

use std::path::Path;

use smtp_oauth_exporter::config::Config;

#[test]
fn invalid_config_files_give_their_exact_error() {
    std::env::remove_var("SMTP_OAUTH_TEST_UNSET_VARIABLE");
    let dir = Path::new("tests/testdata/config");
    let mut cases: Vec<_> = std::fs::read_dir(dir)
        .expect("testdata dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("invalid-") && n.ends_with(".yml"))
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected the whole table, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for yml in &cases {
        let expected_path = yml.with_extension("err");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} has no .err file", yml.display()))
            .trim_end()
            .to_string();
        match Config::load(yml) {
            Ok(_) => failures.push(format!(
                "{}: loaded, expected error {expected:?}",
                yml.display()
            )),
            Err(e) if e.to_string() == expected => {}
            Err(e) => failures.push(format!(
                "{}:\n  expected: {expected}\n  actual:   {e}",
                yml.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_example_config_is_valid() {
    // examples/config.yml documents every field; it must stay loadable.
    std::env::set_var("BILLING_CLIENT_SECRET", "example-secret-value");
    let c = Config::load(Path::new("examples/config.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.apps.is_empty());
}

#[test]
fn every_failure_reason_is_documented_in_the_readme() {
    use smtp_oauth_exporter::auth::TokenReason;
    use smtp_oauth_exporter::checks::graph::GraphReason;
    use smtp_oauth_exporter::checks::smtp::SmtpReason;
    let readme = std::fs::read_to_string("README.md").expect("README.md");
    let reasons = TokenReason::ALL
        .iter()
        .map(|r| r.as_str())
        .chain(SmtpReason::ALL.iter().map(|r| r.as_str()))
        .chain(GraphReason::ALL.iter().map(|r| r.as_str()))
        .chain([smtp_oauth_exporter::checks::INTERNAL_ERROR]);
    let missing: Vec<&str> = reasons
        .filter(|r| !readme.contains(&format!("`{r}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "reasons missing from the README: {missing:?}"
    );
}
