//! Secret hygiene at load time: a configuration file that holds a client secret inline and is
//! readable by group or others gets a warning (and one that only names secret files does not),
//! and so does a secret file that group or others may read.

use std::os::unix::fs::PermissionsExt;

const INLINE: &str = "apps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: Inl~secret-value }\n";

fn warnings(text: &str, mode: u32) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).unwrap();
    let secret = dir.path().join("a.secret");
    std::fs::write(&secret, "File~secret").unwrap();
    // The secret file is its owner's alone: what is tested here is the configuration file.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    smtp_oauth_exporter::config::load(&path).unwrap().warnings
}

fn readable(w: &[String]) -> bool {
    w.iter().any(|w| w.contains("readable by group or others"))
}

#[test]
fn an_inline_secret_in_a_readable_file_is_warned_about() {
    let w = warnings(INLINE, 0o644);
    assert!(readable(&w), "{w:?}");
    let line = w.iter().find(|w| w.contains("readable")).unwrap();
    assert!(
        line.contains("mode 644") && line.contains("chmod 600"),
        "{line}"
    );
    assert!(
        !line.contains("Inl~secret-value"),
        "the warning shows the secret"
    );
    assert!(!readable(&warnings(INLINE, 0o600)));
    let by_file = INLINE.replace(
        "client_secret: Inl~secret-value",
        "client_secret_file: a.secret",
    );
    assert!(!readable(&warnings(&by_file, 0o644)));
}

/// A file holding a secret that other users of the host may read gets a warning, as an inline
/// secret in a readable configuration does; one readable by its owner alone does not.
#[test]
fn secret_files_readable_by_others_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("billing.secret");
    std::fs::write(&secret, "Bl~secret-value").unwrap();
    let yaml = "apps:\n  - name: billing\n    tenant: contoso.onmicrosoft.com\n    client_id: 00000000-0000-4000-8000-000000000001\n    client_secret_file: billing.secret\n";
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false), (0o400, false)] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let plan = smtp_oauth_exporter::config::from_yaml(yaml, "test.yml", dir.path()).unwrap();
        let warning = plan
            .warnings
            .iter()
            .find(|w| w.contains("readable by group or others"));
        assert_eq!(
            warning.is_some(),
            warned,
            "mode {mode:o}: {:?}",
            plan.warnings
        );
        if let Some(w) = warning {
            assert!(
                w.contains("apps[0].client_secret_file") && w.contains(&format!("{mode:o}")),
                "{w}"
            );
        }
    }
}
