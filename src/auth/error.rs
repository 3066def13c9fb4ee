//! Why a token request failed: a reason from the reason table, the AADSTS code when Microsoft's
//! table knows it, and the ids Microsoft support asks for.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::net::CertProblem;
use crate::reasons::{Reason, TokenReason};

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
    /// A token reason, or a common one (network, timeout).
    pub reason: Reason,
    /// For `tls_cert_invalid`: what is wrong with the certificate.
    pub cert_problem: Option<CertProblem>,
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
    pub fn new(reason: impl Into<Reason>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            cert_problem: None,
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
