//! Decodes an access token's payload for diagnosis only (audience, roles, expiry).
//! The agent never verifies or trusts these claims and never fails a check on parsing them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// The claims the agent looks at to explain failures.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct TokenClaims {
    #[serde(default)]
    pub aud: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub tid: Option<String>,
    /// v1 tokens (Exchange) name the client `appid`, v2 tokens `azp`.
    #[serde(default)]
    pub appid: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
}

impl TokenClaims {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Decodes the middle part of a JWT; `None` when the token is not JWT-shaped.
pub fn decode(token: &str) -> Option<TokenClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
