//! The client assertion for certificate credentials (RFC 7523 private-key JWT): signed with the
//! app's private key, `x5t#S256` naming the certificate, a fresh `jti` and a 10-minute lifetime.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

use crate::plan::{AssertionAlgorithm, CertificateCredential};
use crate::secret::Secret;

/// `client_assertion_type` for a JWT bearer assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: Entra ID accepts at most 10 minutes.
const LIFETIME_SECONDS: i64 = 600;

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// Builds a signed assertion for `client_id` at `token_url`.
pub fn client_assertion(
    cert: &CertificateCredential,
    client_id: &str,
    token_url: &str,
) -> Result<Secret, String> {
    let alg = match cert.algorithm {
        AssertionAlgorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
        AssertionAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(cert.thumbprint_sha256));
    // Older Entra ID documentation names the SHA-1 thumbprint; sending both is accepted.
    header.x5t = Some(URL_SAFE_NO_PAD.encode(cert.thumbprint_sha1));
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + LIFETIME_SECONDS,
    };
    // The key was parsed once, when the configuration was loaded.
    jsonwebtoken::encode(&header, &claims, &cert.key.0)
        .map(Secret::new)
        .map_err(|e| format!("cannot sign the client assertion: {}", e.kind_name()))
}

trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind as K;
        match self.kind() {
            K::InvalidRsaKey(_) | K::InvalidKeyFormat => "invalid RSA key",
            K::InvalidAlgorithm | K::InvalidAlgorithmName => "invalid algorithm",
            _ => "signing error",
        }
    }
}
