//! Why a token request failed: a reason from a fixed set (a metric label), the AADSTS code when
//! Microsoft's table knows it, and the ids Microsoft support asks for.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The fixed set of token failure reasons exported as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenReason {
    /// AADSTS7000222: the client secret expired (setup step 2).
    SecretExpired,
    /// AADSTS7000215: wrong secret value, often the secret's ID pasted instead (step 2).
    SecretInvalid,
    /// AADSTS7000218: neither secret nor assertion sent (step 5).
    CredentialMissing,
    /// AADSTS700027 / 700024: client assertion signature or time window invalid (step 2, certificate).
    AssertionInvalid,
    /// AADSTS700016: no such application in the tenant (step 1).
    AppNotFound,
    /// AADSTS7000112 / 70001: application disabled (step 1).
    AppDisabled,
    /// AADSTS90002 / 900023: tenant not found or invalid (step 5, or the wrong cloud).
    TenantNotFound,
    /// AADSTS70011 / 1002012 / 700022: scope invalid (step 5).
    InvalidScope,
    /// AADSTS500011: resource principal not found in the tenant (step 3).
    ResourceNotFound,
    /// AADSTS65001 / 650056 / 90094: admin consent missing (step 3).
    ConsentMissing,
    /// AADSTS53003: blocked by Conditional Access.
    ConditionalAccess,
    /// AADSTS90055 or HTTP 429: throttled (transient).
    Throttled,
    /// Any other HTTP status without a known AADSTS code.
    HttpError,
    /// The endpoint did not answer in time.
    Timeout,
    /// A reply that is not the JSON the protocol promises.
    InvalidResponse,
    /// Anything else (connection refused, TLS failure, unknown AADSTS code).
    Other,
}

impl TokenReason {
    pub const ALL: [TokenReason; 16] = [
        TokenReason::SecretExpired,
        TokenReason::SecretInvalid,
        TokenReason::CredentialMissing,
        TokenReason::AssertionInvalid,
        TokenReason::AppNotFound,
        TokenReason::AppDisabled,
        TokenReason::TenantNotFound,
        TokenReason::InvalidScope,
        TokenReason::ResourceNotFound,
        TokenReason::ConsentMissing,
        TokenReason::ConditionalAccess,
        TokenReason::Throttled,
        TokenReason::HttpError,
        TokenReason::Timeout,
        TokenReason::InvalidResponse,
        TokenReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenReason::SecretExpired => "secret_expired",
            TokenReason::SecretInvalid => "secret_invalid",
            TokenReason::CredentialMissing => "credential_missing",
            TokenReason::AssertionInvalid => "assertion_invalid",
            TokenReason::AppNotFound => "app_not_found",
            TokenReason::AppDisabled => "app_disabled",
            TokenReason::TenantNotFound => "tenant_not_found",
            TokenReason::InvalidScope => "invalid_scope",
            TokenReason::ResourceNotFound => "resource_not_found",
            TokenReason::ConsentMissing => "consent_missing",
            TokenReason::ConditionalAccess => "conditional_access",
            TokenReason::Throttled => "throttled",
            TokenReason::HttpError => "http_error",
            TokenReason::Timeout => "timeout",
            TokenReason::InvalidResponse => "invalid_response",
            TokenReason::Other => "other",
        }
    }

    /// The reason for a known AADSTS code; `None` for codes outside the reference table.
    pub fn from_aadsts(code: u32) -> Option<TokenReason> {
        Some(match code {
            7000222 => TokenReason::SecretExpired,
            7000215 => TokenReason::SecretInvalid,
            7000218 => TokenReason::CredentialMissing,
            700027 | 700024 => TokenReason::AssertionInvalid,
            700016 => TokenReason::AppNotFound,
            7000112 | 70001 => TokenReason::AppDisabled,
            90002 | 900023 => TokenReason::TenantNotFound,
            70011 | 1002012 | 700022 => TokenReason::InvalidScope,
            500011 => TokenReason::ResourceNotFound,
            65001 | 650056 | 90094 => TokenReason::ConsentMissing,
            53003 => TokenReason::ConditionalAccess,
            90055 => TokenReason::Throttled,
            _ => return None,
        })
    }
}

impl fmt::Display for TokenReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error body of the Microsoft identity platform (RFC 6749 section 5.2 plus Microsoft's fields).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AadErrorResponse {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

impl fmt::Display for AadErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if let Some(d) = &self.error_description {
            // Only the first line: the rest repeats the trace and correlation ids.
            write!(f, ": {}", d.lines().next().unwrap_or_default())?;
        }
        Ok(())
    }
}

impl oauth2::ErrorResponse for AadErrorResponse {}

/// A failed token request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct TokenError {
    pub reason: TokenReason,
    /// The first AADSTS code of the reply, whatever it is (the metric keeps only known ones).
    pub aadsts: Option<u32>,
    pub http_status: Option<u16>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    /// How long the server asked us to wait (HTTP 429 `Retry-After`).
    pub retry_after: Option<Duration>,
    /// Human-readable detail for the log; never contains a secret or a token.
    pub message: String,
}

impl TokenError {
    pub fn new(reason: TokenReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            aadsts: None,
            http_status: None,
            trace_id: None,
            correlation_id: None,
            retry_after: None,
            message: message.into(),
        }
    }

    /// The AADSTS code when it is one of the reference table's codes (safe as a label value).
    pub fn known_aadsts(&self) -> Option<u32> {
        self.aadsts
            .filter(|c| TokenReason::from_aadsts(*c).is_some())
    }
}
