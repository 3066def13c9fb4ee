//! Decodes an access token's payload for diagnosis only (audience, roles, expiry).
//! The agent never verifies or trusts these claims and never fails a check on parsing them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// The claims the agent looks at to explain failures.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
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
    /// How the app authenticated, v1 (`appidacr`) and v2 (`azpacr`): 1 secret, 2 certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azpacr: Option<String>,
}

impl TokenClaims {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// `secret` or `certificate`, from `appidacr` / `azpacr`.
    pub fn credential_kind(&self) -> Option<&'static str> {
        match self.appidacr.as_deref().or(self.azpacr.as_deref()) {
            Some("1") => Some("secret"),
            Some("2") => Some("certificate"),
            _ => None,
        }
    }

    /// The client ID the token was issued to (`appid` in v1 tokens, `azp` in v2).
    pub fn client_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }
}

/// Decodes the middle part of a JWT; `None` when the token is not JWT-shaped.
pub fn decode(token: &str) -> Option<TokenClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}
