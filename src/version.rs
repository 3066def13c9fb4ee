//! Version facts captured at build time (see `build.rs`).

/// Git commit the binary was built from, or `unknown`.
pub const REVISION: &str = env!("SMTP_OAUTH_REVISION");
/// Build date (UTC, YYYY-MM-DD).
pub const BUILD_DATE: &str = env!("SMTP_OAUTH_BUILD_DATE");
/// Version of rustc that built the binary.
pub const RUSTC: &str = env!("SMTP_OAUTH_RUSTC");

/// The `--version` text: version, revision, build date, rustc.
pub fn long() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (revision: {REVISION}, build date: {BUILD_DATE}, rustc {RUSTC})",
            env!("CARGO_PKG_VERSION")
        )
    })
}
