//! Table test of invalid configuration files: each `testdata/config/invalid-*.yml` beside its
//! exact error message in the `.err` file of the same name.

use std::path::Path;

use smtp_oauth_exporter::config;

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
        match config::load(yml) {
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
fn the_example_config_is_valid_as_shipped() {
    // examples/config.yml documents every field; it must load as shipped, with no environment.
    let c = config::load(Path::new("examples/config.yml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.apps.is_empty() && !c.mailboxes.is_empty());
}

/// Replaces the text between `<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->`.
fn section(doc: &str, name: &str) -> Option<(usize, usize)> {
    let begin = format!("<!-- BEGIN generated: {name} -->\n");
    let end = format!("<!-- END generated: {name} -->");
    let a = doc.find(&begin)? + begin.len();
    let b = a + doc[a..].find(&end)?;
    Some((a, b))
}

/// The README's reason and cause tables are generated from the code's tables, in both
/// directions: every reason and cause is documented, and nothing else is. Regenerate with
/// `UPDATE_README=1 cargo test --test it readme`.
#[test]
fn the_readme_reason_and_cause_tables_equal_the_code() {
    let mut readme = std::fs::read_to_string("README.md").expect("README.md");
    let mut stale = Vec::new();
    for (name, table) in [
        ("reasons", smtp_oauth_exporter::reasons::markdown_tables()),
        ("causes", smtp_oauth_exporter::diagnosis::markdown_table()),
    ] {
        let (a, b) = section(&readme, name)
            .unwrap_or_else(|| panic!("README.md has no generated section {name:?}"));
        if readme[a..b] != table {
            stale.push(name);
            readme.replace_range(a..b, &table);
        }
    }
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write("README.md", &readme).unwrap();
        return;
    }
    assert!(
        stale.is_empty(),
        "README.md sections {stale:?} differ from the code's tables (UPDATE_README=1 rewrites them)"
    );
}
