//! The check kinds, one module each behind one signature, and the typed report every run returns.
//! Checks never touch metrics, logs or HTTP serving: [`run`] hands back a [`Report`] and the
//! caller sends it where it belongs (state and log for the scheduler, a one-shot page for
//! `/probe`, a printer for the `check` command).

pub mod activity;
pub mod canary;
pub mod discovery;
pub mod graph;
pub mod graph_call;
pub mod health;
pub mod sessions;
pub mod smtp;
pub mod token;
pub mod traffic;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::time::Instant;

use crate::auth::{TokenCache, TokenError};
use crate::net::CertProblem;
use crate::plan::{CheckKind, Job};
use crate::reasons::{CommonReason, Reason};

/// What checks share: the token cache, the SMTP sessions open per mailbox.
pub struct Context {
    pub tokens: Arc<TokenCache>,
    /// Canary messages sent but not found yet, to clean up later.
    pub canary: canary::Ledger,
    /// At most two SMTP sessions per mailbox, the scheduler's and the probes' together.
    pub sessions: sessions::Sessions,
    /// Message trace's budget per tenant and where each tenant's next read starts.
    pub trace: traffic::TraceLedger,
}

impl Context {
    pub fn new(tokens: Arc<TokenCache>) -> Self {
        Self {
            tokens,
            canary: canary::Ledger::default(),
            sessions: sessions::Sessions::default(),
            trace: traffic::TraceLedger::default(),
        }
    }
}

/// How one run differs from a scheduled one.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A shorter timeout than the job's (`/probe` under Prometheus' scrape timeout).
    pub timeout: Option<Duration>,
    /// Send one test message to this address after AUTH (`check --send-test-to`). The
    /// scheduler never sets it: nothing is sent unless a person asks (or a canary is
    /// configured, whose own check sends).
    pub send_test_to: Option<crate::plan::MailAddress>,
    /// The token check reads the shared cache instead of asking Entra ID (`/probe`: a probe
    /// never requests a token the cache holds; the scheduled token check measures the request).
    pub cached_token: bool,
}

/// Why a run failed: a reason from the table and the detail for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: Reason,
    /// For `token_unavailable`: why the token request failed.
    pub token_reason: Option<Reason>,
    /// For `tls_cert_invalid`: what is wrong with the certificate.
    pub cert_problem: Option<CertProblem>,
    /// AADSTS code, only when it is in the reference table (safe as a label value).
    pub aadsts: Option<u32>,
    /// Full text for the log: never a secret or a token.
    pub message: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl Failure {
    pub fn new(reason: impl Into<Reason>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            token_reason: None,
            cert_problem: None,
            aadsts: None,
            message: message.into(),
            trace_id: None,
            correlation_id: None,
        }
    }

    /// A failure caused by a token error, keeping the ids Microsoft support asks for.
    pub fn from_token_error(reason: impl Into<Reason>, e: &TokenError) -> Self {
        let reason = reason.into();
        Self {
            reason,
            token_reason: (reason != e.reason).then_some(e.reason),
            cert_problem: e.cert_problem,
            aadsts: e.known_aadsts(),
            message: e.to_string(),
            trace_id: e.trace_id.clone(),
            correlation_id: e.correlation_id.clone(),
        }
    }

    /// The reason that explains the failure best: the token's, when the check failed for want
    /// of a token.
    pub fn root_reason(&self) -> Reason {
        self.token_reason.unwrap_or(self.reason)
    }
}

/// Check-specific facts of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    None,
    Token(token::TokenDetails),
    Smtp(smtp::SmtpDetails),
    Graph(graph::GraphDetails),
    /// Boxed: the largest details (384 bytes) would size every report of every kind.
    Canary(Box<canary::CanaryDetails>),
    Health(health::HealthDetails),
    Activity(activity::ActivityDetails),
    Traffic(traffic::TrafficDetails),
    Discovery(discovery::DiscoveryDetails),
}

/// What a check module returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub failure: Option<Failure>,
    pub details: Details,
    /// The server asked us to wait this long before the next try (HTTP 429).
    pub retry_after: Option<Duration>,
}

impl Outcome {
    pub fn success(details: Details) -> Self {
        Self {
            failure: None,
            details,
            retry_after: None,
        }
    }

    pub fn failure(failure: Failure, details: Details) -> Self {
        Self {
            failure: Some(failure),
            details,
            retry_after: None,
        }
    }
}

/// One finished run.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: CheckKind,
    pub target: String,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub failure: Option<Failure>,
    pub details: Details,
    pub retry_after: Option<Duration>,
}

impl Report {
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    pub fn reason(&self) -> Option<Reason> {
        self.failure.as_ref().map(|f| f.reason)
    }

    pub fn token(&self) -> Option<&token::TokenDetails> {
        match &self.details {
            Details::Token(t) => Some(t),
            _ => None,
        }
    }

    pub fn smtp(&self) -> Option<&smtp::SmtpDetails> {
        match &self.details {
            Details::Smtp(s) => Some(s),
            _ => None,
        }
    }

    pub fn graph(&self) -> Option<&graph::GraphDetails> {
        match &self.details {
            Details::Graph(g) => Some(g),
            _ => None,
        }
    }

    pub fn canary(&self) -> Option<&canary::CanaryDetails> {
        match &self.details {
            Details::Canary(c) => Some(c),
            _ => None,
        }
    }

    pub fn health(&self) -> Option<&health::HealthDetails> {
        match &self.details {
            Details::Health(h) => Some(h),
            _ => None,
        }
    }

    pub fn activity(&self) -> Option<&activity::ActivityDetails> {
        match &self.details {
            Details::Activity(a) => Some(a),
            _ => None,
        }
    }

    pub fn traffic(&self) -> Option<&traffic::TrafficDetails> {
        match &self.details {
            Details::Traffic(t) => Some(t),
            _ => None,
        }
    }

    pub fn discovery(&self) -> Option<&discovery::DiscoveryDetails> {
        match &self.details {
            Details::Discovery(d) => Some(d),
            _ => None,
        }
    }
}

/// Runs one job now, within its timeout. The scheduler, `/probe` and the `check` command all
/// come through here, so they measure the same thing; what happens to the report is theirs.
pub async fn run(job: &Job, ctx: &Context, opts: &RunOptions) -> Report {
    let started_at = Utc::now();
    let start = Instant::now();
    let timeout = opts
        .timeout
        .map_or(job.settings.timeout, |t| t.min(job.settings.timeout));
    let deadline = start + timeout;
    let work = async {
        match job.kind {
            CheckKind::Token => token::run(&job.target, ctx, deadline, opts.cached_token).await,
            CheckKind::Smtp => smtp::run(&job.target, ctx, deadline, opts).await,
            CheckKind::Graph => graph::run(&job.target, ctx, deadline).await,
            CheckKind::Canary => canary::run(&job.target, ctx, deadline).await,
            CheckKind::Health => health::run(&job.target, ctx, deadline).await,
            CheckKind::Activity => activity::run(&job.target, ctx, deadline).await,
            CheckKind::Traffic => traffic::run(&job.target, ctx, deadline).await,
            CheckKind::Discovery => discovery::run(&job.target, ctx, deadline).await,
        }
    };
    // Each check respects the deadline itself (so it can say which step was slow); this is the
    // backstop that makes a hung run end whatever the check does.
    // A bug in a check (a panic) fails that run, not the scheduler's loop for the target.
    let work = std::panic::AssertUnwindSafe(work).catch_unwind();
    let outcome = match tokio::time::timeout_at(deadline + Duration::from_millis(500), work).await {
        Ok(Ok(o)) => o,
        Ok(Err(_)) => Outcome::failure(
            Failure::new(
                CommonReason::InternalError,
                "the check failed with an internal error (a bug: please report it with this log)",
            ),
            Details::None,
        ),
        Err(_) => Outcome::failure(
            Failure::new(
                CommonReason::Timeout,
                format!("the check did not finish within its timeout of {timeout:?}"),
            ),
            Details::None,
        ),
    };
    Report {
        kind: job.kind,
        target: job.target.name().to_string(),
        started_at,
        duration: start.elapsed(),
        failure: outcome.failure,
        details: outcome.details,
        retry_after: outcome.retry_after,
    }
}
