//! Secret hygiene at load time: a configuration file that holds a client secret inline and is
//! readable by group or others gets a warning (and one that only names secret files does not).

use std::os::unix::fs::PermissionsExt;

const INLINE: &str = "apps:\n  - { name: a, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: Inl~secret-value }\n";

fn warnings(text: &str, mode: u32) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("a.secret"), "File~secret").unwrap();
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
