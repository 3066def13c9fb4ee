//! The configuration loader (`config::from_yaml`): YAML parsed into the raw structs (unknown
//! fields refused), then validated into the plan. Relative paths resolve from `examples/`, so
//! the shipped secret, certificate and key files load; errors must name the file.
//!
//! Input: the YAML text (invalid UTF-8 is skipped: the loader reads text).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match smtp_oauth_exporter::config::from_yaml(text, "fuzz.yml", base()) {
        Ok(plan) => {
            for m in &plan.mailboxes {
                assert!(plan.apps.iter().any(|a| a.name == m.app.name));
            }
            let _ = plan.jobs.len();
        }
        Err(e) => {
            assert_eq!(e.file, "fuzz.yml");
            let _ = e.to_string();
        }
    }
});
