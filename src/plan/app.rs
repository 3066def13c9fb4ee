//! An Entra ID app registration as the plan holds it: tenant, client ID, cloud and endpoints,
//! its credential (a secret, or a certificate with its signing key), its checks and its
//! network clients, with the digest that tells a reload whether it changed.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::Digest;
use url::Url;

use super::{CheckSettings, Cloud};
use crate::secret::Secret;

/// An app's network set-up, built once per plan: apps with the same CA file share one (and its
/// connection pool), so 1,000 apps do not load the system roots 1,000 times.
#[derive(Clone)]
pub struct NetClients {
    /// For the token endpoint and Graph.
    pub http: reqwest::Client,
    /// The verifying TLS configuration for SMTP (system roots + CA file).
    pub smtp_tls: Arc<rustls::ClientConfig>,
    /// SHA-256 of the CA file's content (zero without one): a changed CA file changes the
    /// set-up of its apps on reload.
    pub ca_digest: [u8; 32],
}

impl fmt::Debug for NetClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetClients")
    }
}

/// An Entra ID app registration (a client of the token endpoint).
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub tenant: String,
    pub client_id: String,
    pub cloud: Cloud,
    pub credential: Credential,
    /// Base of the token endpoint: `{login_url}/{tenant}/oauth2/v2.0/token`.
    pub login_url: Url,
    /// Base of Microsoft Graph: `{graph_url}/v1.0/...`.
    pub graph_url: Url,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// Another app whose Graph token reads this app's credentials.
    pub graph_reader: Option<Arc<App>>,
    /// How Exchange lets the app send as its mailboxes (`authorization:`).
    pub authorization: Authorization,
    /// Whether the Graph check also reads the tenant's app management policies (needs
    /// `Policy.Read.All`; `app_management_policy:`, off by default).
    pub app_management_policy: bool,
    pub token_check: CheckSettings,
    pub graph_check: CheckSettings,
    /// Microsoft 365 service health of the app's tenant (`enabled: false` unless configured).
    pub health_check: CheckSettings,
    /// The last sign-in of each of the app's credentials (Graph beta, global cloud;
    /// `enabled: false` unless configured).
    pub activity_check: CheckSettings,
    /// Its mailboxes' traffic in message trace (global cloud; `enabled: false` unless
    /// configured); its tenant's first app with it enabled reads the trace for all.
    pub traffic_check: CheckSettings,
    /// The inventory of its tenant's apps that can send SMTP (`enabled: false` unless
    /// configured); its tenant's first app with it enabled reads it.
    pub discovery_check: CheckSettings,
    pub net: Arc<NetClients>,
}

impl App {
    /// The v2 token endpoint of this app's tenant.
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.login_url.as_str().trim_end_matches('/'),
            self.tenant
        )
    }

    pub fn exchange_scope(&self) -> &'static str {
        self.cloud.exchange_scope()
    }

    pub fn graph_scope(&self) -> String {
        self.cloud.graph_scope()
    }

    /// The app whose Graph token reads this app's registration: its reader, or itself.
    pub fn graph_reader_or_self(self: &Arc<Self>) -> Arc<App> {
        self.graph_reader.clone().unwrap_or_else(|| self.clone())
    }

    /// What the app's checks depend on, hashed: every setting, the credential (by its
    /// fingerprint), the CA file's content and the Graph reader's digest. Equal digests across
    /// a reload mean its checks keep running as they were.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        let settings = format!(
            "{}\0{}\0{}\0{:?}\0{}\0{}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{:?}\0{}\0{:?}\0{}",
            self.name,
            self.tenant,
            self.client_id,
            self.cloud,
            self.login_url,
            self.graph_url,
            self.ca_file,
            self.token_check,
            self.graph_check,
            self.health_check,
            self.activity_check,
            self.traffic_check,
            self.discovery_check,
            match &self.credential {
                Credential::ClientSecret(_) => "secret".to_string(),
                Credential::Certificate(c) => format!("{:?}", c.algorithm),
            },
            self.authorization,
            self.app_management_policy,
        );
        h.update(settings.as_bytes());
        h.update(self.credential.fingerprint());
        h.update(self.net.ca_digest);
        if let Some(r) = &self.graph_reader {
            h.update(r.digest());
        }
        h.finalize().into()
    }
}

/// How Exchange Online lets an app send as a mailbox over SMTP with client credentials (both
/// current; `shared/reference/microsoft-365.md`, "Two authorization models").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Authorization {
    /// Decide from what is seen: a token with `SMTP.SendAsApp` is the classic model; one without
    /// it that gets past AUTH is RBAC for Applications; a token without it is no failure alone.
    #[default]
    Auto,
    /// `SMTP.SendAsApp` with admin consent, and FullAccess on each mailbox (the seed guide's).
    Classic,
    /// Exchange RBAC for Applications: no API permission, a role assignment "Application
    /// SMTP.SendAsApp" scoped to the mailboxes; the token carries no `roles`.
    AppRbac,
}

impl Authorization {
    pub const ALL: [Authorization; 3] = [
        Authorization::Auto,
        Authorization::Classic,
        Authorization::AppRbac,
    ];

    /// The configuration value, and the `setting` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Authorization::Auto => "auto",
            Authorization::Classic => "classic",
            Authorization::AppRbac => "app_rbac",
        }
    }
}

impl std::str::FromStr for Authorization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Authorization::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown authorization {s:?}, expected auto, classic or app_rbac")
            })
    }
}

/// How an app proves who it is to the token endpoint.
#[derive(Debug, Clone)]
pub enum Credential {
    ClientSecret(Secret),
    Certificate(Arc<CertificateCredential>),
}

impl Credential {
    /// SHA-256 identifying the credential without revealing it (a token cache key part: two
    /// apps with the same client ID but different secrets must not share tokens or failures).
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        match self {
            Credential::ClientSecret(s) => {
                h.update(b"secret\0");
                h.update(s.expose().as_bytes());
            }
            Credential::Certificate(c) => {
                h.update(b"certificate\0");
                h.update(c.thumbprint_sha256);
            }
        }
        h.finalize().into()
    }

    /// `password` or `certificate`, as Graph's credential kinds are labelled.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret(_) => "password",
            Credential::Certificate(_) => "certificate",
        }
    }
}

/// Signing algorithm of the client assertion (RFC 7523).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    Ps256,
    Rs256,
}

/// An RSA private key, parsed once at load time, that signs client assertions. It cannot be
/// printed.
#[derive(Clone)]
pub struct SigningKey(pub(crate) jsonwebtoken::EncodingKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A certificate credential: the certificate registered on the app and its private key.
#[derive(Debug, Clone)]
pub struct CertificateCredential {
    pub cert_der: Vec<u8>,
    pub key: SigningKey,
    pub algorithm: AssertionAlgorithm,
    /// SHA-1 of the certificate DER (the thumbprint Entra ID shows).
    pub thumbprint_sha1: [u8; 20],
    /// SHA-256 of the certificate DER (the `x5t#S256` header).
    pub thumbprint_sha256: [u8; 32],
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` with hex digits: a tenant, client or key ID.
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && p.chars().all(|c| c.is_ascii_hexdigit()))
}
