//! The token check: asks Entra ID for an SMTP (Exchange) token with the app's credential, every
//! scheduled time, and refills the shared cache with it (a probe reads the cache instead). Failures keep the AADSTS code and Microsoft's ids.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Context, Details, Failure, Outcome};
use crate::auth::claims::TokenClaims;
use crate::auth::Resource;
use crate::plan::Target;
use crate::reasons::CommonReason;

/// The role an app needs for SMTP AUTH with client credentials (setup step 3).
pub const SMTP_ROLE: &str = "SMTP.SendAsApp";

/// What a token run learned.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenDetails {
    pub resource: Resource,
    /// When the token expires (from `expires_in`).
    pub expires_at: Option<DateTime<Utc>>,
    pub lifetime_seconds: Option<u64>,
    /// Whether the token's `roles` claim has `SMTP.SendAsApp`; `None` if the token is not a JWT.
    pub smtp_role: Option<bool>,
    /// The token's decoded claims, for diagnosis (never the token).
    pub claims: Option<TokenClaims>,
    /// The HTTP status of a failed request.
    pub http_status: Option<u16>,
}

impl TokenDetails {
    fn empty(http_status: Option<u16>) -> Self {
        Self {
            resource: Resource::Exchange,
            expires_at: None,
            lifetime_seconds: None,
            smtp_role: None,
            claims: None,
            http_status,
        }
    }
}

/// The check: a new token from Entra ID, or with `cached` the shared cache's (which asks Entra
/// ID only when it holds no token outside its refresh margin).
pub async fn run(target: &Target, ctx: &Context, deadline: Instant, cached: bool) -> Outcome {
    let app = target.app();
    let fetch = async {
        if cached {
            ctx.tokens.get(app, Resource::Exchange).await
        } else {
            ctx.tokens.fetch(app, Resource::Exchange).await
        }
    };
    let result = match tokio::time::timeout_at(deadline, fetch).await {
        Ok(r) => r,
        Err(_) => {
            return Outcome::failure(
                Failure::new(
                    CommonReason::Timeout,
                    format!(
                        "no reply from {} before the check's timeout",
                        app.token_url()
                    ),
                ),
                Details::Token(TokenDetails::empty(None)),
            )
        }
    };
    match result {
        Ok(token) => Outcome::success(Details::Token(TokenDetails {
            resource: Resource::Exchange,
            expires_at: Some(token.expires_at_wall),
            lifetime_seconds: Some(token.lifetime.as_secs()),
            smtp_role: token.claims.as_ref().map(|c| c.has_role(SMTP_ROLE)),
            claims: token.claims.clone(),
            http_status: None,
        })),
        Err(e) => {
            let mut o = Outcome::failure(
                Failure::from_token_error(e.reason, &e),
                Details::Token(TokenDetails::empty(e.http_status)),
            );
            o.retry_after = e.retry_after;
            o
        }
    }
}
