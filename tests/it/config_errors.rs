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

/// The first backticked word of each table row of a README section (`| `label` | ...`).
fn labels_in(section: &str) -> Vec<(Option<String>, String, Vec<String>)> {
    let mut check = None;
    let mut rows = Vec::new();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("| reason (`check=\"") {
            check = rest.split('"').next().map(str::to_string);
            continue;
        }
        if let Some(rest) = line.strip_prefix("| `") {
            let label = rest.split('`').next().unwrap_or("").to_string();
            let cells = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect();
            rows.push((check.clone(), label, cells));
        }
    }
    rows
}

/// The text comparison above is with the generator; this reads the README's tables as a person
/// does and holds them against the code's enums themselves, both ways: every reason of every
/// check kind and every cause has its row (with its step, and for reasons whether it is
/// transient), no row names anything the code does not have, and each generated section is in
/// the README exactly once.
#[test]
fn the_readme_tables_name_every_reason_and_cause_of_the_code_and_nothing_else() {
    use smtp_oauth_exporter::diagnosis::Cause;
    use smtp_oauth_exporter::plan::CheckKind;
    use smtp_oauth_exporter::reasons::Reason;
    use std::collections::BTreeSet;

    let readme = std::fs::read_to_string("README.md").expect("README.md");
    for name in ["reasons", "causes"] {
        for marker in ["BEGIN", "END"] {
            let m = format!("<!-- {marker} generated: {name} -->");
            assert_eq!(readme.matches(&m).count(), 1, "{m}");
        }
    }
    let (a, b) = section(&readme, "reasons").unwrap();
    let rows = labels_in(&readme[a..b]);
    let mut documented = BTreeSet::new();
    for (check, label, cells) in &rows {
        let check = check
            .clone()
            .expect("a reason row before any table heading");
        assert!(
            documented.insert((check.clone(), label.clone())),
            "{check}: {label} twice"
        );
        let kind: CheckKind = check.parse().unwrap();
        match Reason::of(kind).into_iter().find(|r| r.as_str() == label) {
            None => panic!("README: {check} has no reason {label}"),
            Some(r) => {
                assert_eq!(cells[2], r.step().title(), "{check}: {label}'s step");
                let transient = if r.is_transient() { "yes" } else { "no" };
                assert_eq!(cells[3], transient, "{check}: {label}'s transient");
            }
        }
    }
    let code: BTreeSet<(String, String)> = CheckKind::ALL
        .into_iter()
        .flat_map(|k| {
            Reason::of(k)
                .into_iter()
                .map(move |r| (k.to_string(), r.as_str().to_string()))
        })
        .collect();
    let missing: Vec<_> = code.difference(&documented).collect();
    assert!(missing.is_empty(), "not in the README: {missing:?}");
    assert_eq!(documented, code);

    let (a, b) = section(&readme, "causes").unwrap();
    let causes: Vec<(String, String)> = labels_in(&readme[a..b])
        .into_iter()
        .map(|(_, label, cells)| (label, cells[1].clone()))
        .collect();
    let want: Vec<(String, String)> = Cause::ALL
        .iter()
        .map(|c| (c.label().to_string(), c.step().as_str().to_string()))
        .collect();
    assert_eq!(
        causes, want,
        "README causes (label, step) against the code's, in order"
    );
}

/// What a configuration file can make the agent do is bounded: an endless file (`/dev/zero`) is
/// read up to the cap, not until memory runs out; 196 KB of nested flow collections (22 s in
/// the YAML parser) are refused at once; a megabyte-long bad value is quoted in part.
#[test]
fn a_configuration_cannot_make_the_agent_read_or_parse_for_ever() {
    let started = std::time::Instant::now();
    let e = config::load(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("larger than 16 MiB"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("deep.yml");
    std::fs::write(
        &deep,
        format!("apps: {}{}\n", "[".repeat(98_000), "]".repeat(98_000)),
    )
    .unwrap();
    let e = config::load(&deep).unwrap_err().to_string();
    assert!(e.contains(":1:39: flow collections"), "{e}");

    let long = dir.path().join("long.yml");
    std::fs::write(
        &long,
        format!(
            "apps:\n  - name: a\n    tenant: contoso.onmicrosoft.com\n    client_id: 00000000-0000-4000-8000-000000000001\n    client_secret: x\n    graph_url: 'ftp://{}'\n",
            "v".repeat(1_000_000)
        ),
    )
    .unwrap();
    let e = config::load(&long).unwrap_err().to_string();
    assert!(
        e.len() < 1000,
        "the error repeats the value: {} bytes",
        e.len()
    );
    assert!(e.contains("(1000006 characters)"), "{e}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}
