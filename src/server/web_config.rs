//! `--web.config.file`: TLS, mutual TLS and basic auth for the endpoint, in the format of the
//! Prometheus exporter-toolkit (`tls_server_config`, `http_server_config`, `basic_auth_users`
//! with bcrypt hashes), so that the file other exporters use works here too.
//!
//! Differences, all reported as errors rather than ignored: rustls offers TLS 1.2 and 1.3 only,
//! picks its own cipher suites and curves, and verifies every client certificate it asks for
//! (`RequestClientCert` and `RequireAnyClientCert`, which skip verification, are refused).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::Digest;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default, deserialize_with = "unique_users")]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

/// `basic_auth_users`, refusing a user listed twice: YAML keeps the last of two equal keys, so
/// the first password would silently stop working.
fn unique_users<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Users;
    impl<'de> serde::de::Visitor<'de> for Users {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of user names to bcrypt hashes")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut users = BTreeMap::new();
            while let Some((user, hash)) = map.next_entry::<String, String>()? {
                if users.contains_key(&user) {
                    return Err(serde::de::Error::custom(format!(
                        "user {user:?} is listed twice (YAML would keep only the last hash)"
                    )));
                }
                users.insert(user, hash);
            }
            Ok(Some(users))
        }
    }
    d.deserialize_any(Users)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    /// exporter-toolkit also takes the certificate and key inline.
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_ca: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers exporter-toolkit lets a web configuration set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Logins remembered, by outcome: a scrape every 15 s pays bcrypt once, and so does a client
/// that repeats a wrong password (exporter-toolkit caches both outcomes too).
const AUTH_CACHE: usize = 1024;

/// A loaded web configuration.
pub struct WebConfig {
    /// The TLS server configuration, when `tls_server_config` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name to bcrypt hash; empty: no basic auth.
    users: BTreeMap<String, String>,
    /// SHA-256 of (user, password, hash) of logins that passed.
    passed: Mutex<HashSet<[u8; 32]>>,
    /// ... and of logins that failed (a separate set: failures cannot push passes out).
    failed: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt at a time: a flood of wrong passwords takes one core, never all of them.
    bcrypt: Arc<tokio::sync::Mutex<()>>,
    /// Extra response headers.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The files it was read from, with their modification times, to notice a change.
    sources: Vec<(PathBuf, Option<SystemTime>)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A bcrypt hash (of a random password, cost 10) for unknown users: they cost the same time as
/// known ones, so response times do not tell which user names exist.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let password = uuid::Uuid::new_v4().to_string();
        bcrypt::hash(password, 10).unwrap_or_default()
    })
}

impl WebConfig {
    /// No TLS, no authentication: what the endpoint does without `--web.config.file`.
    pub fn open() -> Self {
        Self {
            tls: None,
            users: BTreeMap::new(),
            passed: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashSet::new()),
            bcrypt: Arc::new(tokio::sync::Mutex::new(())),
            headers: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Reads and checks the file; paths in it are relative to its directory. An error quotes
    /// at most a short part of any value.
    pub fn load(path: &Path) -> Result<Self, String> {
        Self::load_unclipped(path).map_err(|e| crate::input::clip_quoted(&e))
    }

    fn load_unclipped(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = crate::input::read_to_string_capped(path, crate::input::MAX_FILE_BYTES)
            .map_err(|e| format!("{shown}: cannot read: {e}"))?;
        if let Err(deep) = crate::input::yaml_nesting(&text, crate::input::MAX_YAML_NESTING) {
            return Err(format!(
                "{shown}:{}:{}: {}",
                deep.line,
                deep.column,
                deep.message()
            ));
        }
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            yaml_serde::from_str(&text).map_err(|e| format!("{shown}: {e}"))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut sources = vec![(path.to_path_buf(), modified(path))];
        let mut resolve = |f: &str| {
            let p = base.join(f);
            sources.push((p.clone(), modified(&p)));
            p
        };
        let tls = match raw.tls_server_config {
            Some(t) => Some(tls_config(t, &mut resolve).map_err(|e| format!("{shown}: {e}"))?),
            None => None,
        };
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!(
                    "{shown}: basic_auth_users: user name {user:?} contains ':'"
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(format!(
                    "{shown}: basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
                ));
            }
        }
        let mut headers = Vec::new();
        if let Some(http) = raw.http_server_config {
            // HTTP/2 is not served: `http2` is accepted for compatibility and has no effect.
            let _ = http.http2;
            for (k, v) in http.headers.unwrap_or_default() {
                let Some(name) = ALLOWED_HEADERS.iter().find(|h| h.eq_ignore_ascii_case(&k)) else {
                    return Err(format!(
                        "{shown}: http_server_config.headers: {k:?} cannot be set (allowed: {})",
                        ALLOWED_HEADERS.join(", ")
                    ));
                };
                let value = http::HeaderValue::from_str(&v).map_err(|_| {
                    format!("{shown}: http_server_config.headers.{k}: invalid header value")
                })?;
                headers.push((
                    http::HeaderName::from_bytes(name.as_bytes()).expect("static header name"),
                    value,
                ));
            }
        }
        Ok(Self {
            tls,
            users,
            passed: Mutex::new(HashSet::new()),
            failed: Mutex::new(HashSet::new()),
            bcrypt: Arc::new(tokio::sync::Mutex::new(())),
            headers,
            sources,
        })
    }

    /// Whether one of the files it was read from changed since.
    pub fn changed(&self) -> bool {
        self.sources.iter().any(|(p, t)| modified(p) != *t)
    }

    /// The modification times of the files it was read from, as they are now.
    pub fn stamps_now(&self) -> Vec<Option<SystemTime>> {
        self.sources.iter().map(|(p, _)| modified(p)).collect()
    }

    /// Whether basic auth is on.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header. bcrypt runs on the blocking pool, one at a time; the
    /// outcome is remembered (as a hash of the credential), so a scraper pays bcrypt once and a
    /// client repeating a wrong password pays it once too. bcrypt's own comparison is
    /// constant-time; an unknown user costs a bcrypt as a known one does.
    pub async fn authorized(&self, header: Option<&http::HeaderValue>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let hash = self
            .users
            .get(&user)
            .cloned()
            .unwrap_or_else(|| dummy_hash().to_string());
        let key: [u8; 32] = {
            let mut h = sha2::Sha256::new();
            for part in [
                user.as_bytes(),
                password.expose().as_bytes(),
                hash.as_bytes(),
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            h.finalize().into()
        };
        let known = |this: &Self| -> Option<bool> {
            if this.passed.lock().expect("auth cache lock").contains(&key) {
                Some(true)
            } else if this.failed.lock().expect("auth cache lock").contains(&key) {
                Some(false)
            } else {
                None
            }
        };
        if let Some(ok) = known(self) {
            return ok;
        }
        let one = self.bcrypt.clone().lock_owned().await;
        // The same credential may have been checked while this request waited.
        if let Some(ok) = known(self) {
            return ok;
        }
        let user_known = self.users.contains_key(&user);
        // The turn is held until bcrypt ends, even when the client gives up meanwhile.
        let ok = tokio::task::spawn_blocking(move || {
            let _one = one;
            bcrypt::verify(password.expose(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && user_known;
        let cache = if ok { &self.passed } else { &self.failed };
        let mut set = cache.lock().expect("auth cache lock");
        if set.len() >= AUTH_CACHE {
            set.clear();
        }
        set.insert(key);
        ok
    }
}

/// `Basic base64(user:password)`.
fn parse_basic(v: &http::HeaderValue) -> Option<(String, crate::secret::Secret)> {
    let v = v.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), crate::secret::Secret::new(password)))
}

fn tls_config(
    t: RawTls,
    resolve: &mut impl FnMut(&str) -> PathBuf,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let p = "tls_server_config";
    if t.cipher_suites.is_some() || t.curve_preferences.is_some() {
        return Err(format!(
            "{p}: cipher_suites and curve_preferences are not supported: rustls chooses (only modern, safe suites)"
        ));
    }
    if t.client_allowed_sans.is_some() {
        return Err(format!("{p}: client_allowed_sans is not supported"));
    }
    let read = |inline: Option<String>,
                file: Option<String>,
                field: &str,
                resolve: &mut dyn FnMut(&str) -> PathBuf|
     -> Result<Option<Vec<u8>>, String> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(format!("{p}: {field} and {field}_file exclude each other")),
            (Some(v), None) => Ok(Some(v.into_bytes())),
            (None, Some(f)) => {
                let path = resolve(&f);
                crate::input::read_capped(&path, crate::input::MAX_FILE_BYTES)
                    .map(Some)
                    .map_err(|e| format!("{p}.{field}_file: cannot read {}: {e}", path.display()))
            }
            (None, None) => Ok(None),
        }
    };
    let cert = read(t.cert, t.cert_file, "cert", resolve)?
        .ok_or_else(|| format!("{p}: cert_file is required"))?;
    let key = crate::secret::Secret::new(
        String::from_utf8(
            read(t.key, t.key_file, "key", resolve)?
                .ok_or_else(|| format!("{p}: key_file is required"))?,
        )
        .map_err(|_| format!("{p}: the key is not PEM text"))?,
    );
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{p}.cert_file: {e}"))?;
    if chain.is_empty() {
        return Err(format!("{p}.cert_file: no PEM certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
        .map_err(|_| format!("{p}.key_file: no PEM private key (PKCS#1, PKCS#8 or SEC1)"))?;

    let version = |v: &Option<String>, field: &str| -> Result<Option<u8>, String> {
        match v.as_deref() {
            None => Ok(None),
            Some("TLS12") => Ok(Some(12)),
            Some("TLS13") => Ok(Some(13)),
            Some("TLS10" | "TLS11") => Err(format!(
                "{p}.{field}: {} is not supported (TLS 1.2 and 1.3 only)",
                v.as_deref().unwrap_or_default()
            )),
            Some(other) => Err(format!(
                "{p}.{field}: unknown version {other:?}, expected TLS12 or TLS13"
            )),
        }
    };
    let min = version(&t.min_version, "min_version")?.unwrap_or(12);
    let max = version(&t.max_version, "max_version")?.unwrap_or(13);
    if min > max {
        return Err(format!("{p}: min_version is above max_version"));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(n, _)| (min..=max).contains(n))
            .map(|(_, v)| v)
            .collect();

    let client_ca = read(t.client_ca, t.client_ca_file, "client_ca", resolve)?;
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{p}: {e}"))?;
    let builder = match (auth_type, client_ca) {
        ("NoClientCert", None) => builder.with_no_client_auth(),
        ("NoClientCert", Some(_)) => {
            return Err(format!(
                "{p}: client_ca_file is set but client_auth_type is NoClientCert: set RequireAndVerifyClientCert"
            ))
        }
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", None) => {
            return Err(format!("{p}: client_auth_type {auth_type} needs client_ca_file"))
        }
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| format!("{p}.client_ca_file: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("{p}.client_ca_file: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("{p}.client_ca_file: no PEM certificate"));
            }
            let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            if auth_type == "VerifyClientCertIfGiven" {
                v = v.allow_unauthenticated();
            }
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("{p}: {e}"))?)
        }
        ("RequestClientCert" | "RequireAnyClientCert", _) => {
            return Err(format!(
                "{p}: client_auth_type {auth_type} accepts unverified client certificates and is not supported: use RequireAndVerifyClientCert with client_ca_file"
            ))
        }
        (other, _) => {
            return Err(format!(
                "{p}: unknown client_auth_type {other:?}, expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ))
        }
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{p}: the certificate and key do not make a pair: {e}"))?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_parsed_and_other_schemes_refused() {
        let h = |s: &str| http::HeaderValue::from_str(s).unwrap();
        let (u, p) = parse_basic(&h("Basic dXNlcjpwYTpzcw==")).unwrap();
        assert_eq!((u.as_str(), p.expose()), ("user", "pa:ss"));
        assert!(parse_basic(&h("Bearer dXNlcjpwYXNz")).is_none());
        assert!(parse_basic(&h("Basic !!!")).is_none());
        assert!(parse_basic(&h("Basic dXNlcg==")).is_none(), "no colon");
    }

    #[test]
    fn the_dummy_hash_is_a_bcrypt_hash_that_matches_nothing_obvious() {
        assert!(dummy_hash().parse::<bcrypt::HashParts>().is_ok());
        assert!(!bcrypt::verify("", dummy_hash()).unwrap());
    }
}
