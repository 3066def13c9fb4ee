//! The check kinds, one module each behind one signature, and the typed report every run returns.
//! Checks never touch metrics or HTTP serving: they return a [`Report`] and the caller decides.

pub mod graph;
pub mod smtp;
pub mod token;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::time::Instant;

use crate::auth::{TokenCache, TokenError};
use crate::config::{App, CheckSettings, Config, Mailbox};

/// Every kind of check the agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckKind {
    /// Client-credentials token for SMTP from Entra ID (per app).
    Token,
    /// Authenticated SMTP handshake: STARTTLS + AUTH XOAUTH2 (per mailbox).
    Smtp,
    /// Expiry of the app's secrets and certificates, read from Microsoft Graph (per app).
    Graph,
}

impl CheckKind {
    pub const ALL: [CheckKind; 3] = [CheckKind::Token, CheckKind::Smtp, CheckKind::Graph];

    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Token => "token",
            CheckKind::Smtp => "smtp",
            CheckKind::Graph => "graph",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check runs against.
#[derive(Debug, Clone)]
pub enum Target {
    App(Arc<App>),
    Mailbox {
        mailbox: Arc<Mailbox>,
        app: Arc<App>,
    },
}

impl Target {
    /// The configured name: the `target` label.
    pub fn name(&self) -> &str {
        match self {
            Target::App(a) => &a.name,
            Target::Mailbox { mailbox, .. } => &mailbox.name,
        }
    }

    pub fn app(&self) -> &Arc<App> {
        match self {
            Target::App(a) => a,
            Target::Mailbox { app, .. } => app,
        }
    }
}

/// One (check kind, target) pair with its schedule and timeout.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: CheckKind,
    pub target: Target,
    pub settings: CheckSettings,
}

impl Job {
    /// Stable identity of the job, for state that survives a reload.
    pub fn key(&self) -> JobKey {
        JobKey {
            kind: self.kind,
            target: self.target.name().to_string(),
        }
    }

    /// All enabled jobs of a configuration, in a stable order.
    pub fn all(config: &Config) -> Vec<Job> {
        let mut jobs = Vec::new();
        for app in &config.apps {
            if app.token_check.enabled {
                jobs.push(Job {
                    kind: CheckKind::Token,
                    target: Target::App(app.clone()),
                    settings: app.token_check.clone(),
                });
            }
            if app.graph_check.enabled {
                jobs.push(Job {
                    kind: CheckKind::Graph,
                    target: Target::App(app.clone()),
                    settings: app.graph_check.clone(),
                });
            }
        }
        let by_name: HashMap<&str, &Arc<App>> =
            config.apps.iter().map(|a| (a.name.as_str(), a)).collect();
        for mailbox in &config.mailboxes {
            let Some(app) = by_name.get(mailbox.app.as_str()).copied() else {
                continue; // validation guarantees the app exists
            };
            if mailbox.smtp_check.enabled {
                jobs.push(Job {
                    kind: CheckKind::Smtp,
                    target: Target::Mailbox {
                        mailbox: mailbox.clone(),
                        app: app.clone(),
                    },
                    settings: mailbox.smtp_check.clone(),
                });
            }
        }
        jobs
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub kind: CheckKind,
    pub target: String,
}

/// What checks share: the token cache, one HTTP client per app, and the apps by name.
pub struct Context {
    pub tokens: Arc<TokenCache>,
    clients: HashMap<String, AppClients>,
    apps: HashMap<String, Arc<App>>,
}

/// Per-app network set-up, built once (loading CA roots per run would cost 10,000 mailboxes dear).
#[derive(Clone)]
struct AppClients {
    http: reqwest::Client,
    smtp_tls: Arc<rustls::ClientConfig>,
}

impl Context {
    pub fn new(config: &Config, tokens: Arc<TokenCache>) -> Result<Self, String> {
        // Apps with the same CA file share one TLS configuration and one HTTP client (and its
        // connection pool): a fleet of 1,000 apps does not load the system roots 1,000 times.
        let mut by_ca: HashMap<Option<std::path::PathBuf>, AppClients> = HashMap::new();
        let mut clients = HashMap::new();
        for app in &config.apps {
            let shared = match by_ca.get(&app.ca_file) {
                Some(c) => c.clone(),
                None => {
                    let tls = crate::tls::client_config(app.ca_file.as_deref())
                        .map_err(|e| format!("app {:?}: {e}", app.name))?;
                    let http = crate::http_client::client(&tls)
                        .map_err(|e| format!("app {:?}: {e}", app.name))?;
                    let c = AppClients {
                        http,
                        smtp_tls: tls,
                    };
                    by_ca.insert(app.ca_file.clone(), c.clone());
                    c
                }
            };
            clients.insert(app.name.clone(), shared);
        }
        let apps = config
            .apps
            .iter()
            .map(|a| (a.name.clone(), a.clone()))
            .collect();
        Ok(Self {
            tokens,
            clients,
            apps,
        })
    }

    fn clients(&self, app: &App) -> &AppClients {
        self.clients
            .get(&app.name)
            .expect("every configured app has its clients")
    }

    /// A configured app by name (such as another app's `graph_reader`).
    pub fn app_by_name(&self, name: &str) -> Option<&Arc<App>> {
        self.apps.get(name)
    }

    /// The HTTP client of an app (built from its CA file).
    pub fn http(&self, app: &App) -> &reqwest::Client {
        &self.clients(app).http
    }

    /// The verifying TLS configuration for SMTP to an app's mailboxes (system roots + CA file).
    pub fn smtp_tls(&self, app: &App) -> Arc<rustls::ClientConfig> {
        self.clients(app).smtp_tls.clone()
    }
}

/// Why a run failed: a reason from the check's fixed set and the detail for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    /// AADSTS code, only when it is in the reference table (safe as a label value).
    pub aadsts: Option<u32>,
    /// Full text for the log: never a secret or a token.
    pub message: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            aadsts: None,
            message: message.into(),
            trace_id: None,
            correlation_id: None,
        }
    }

    /// A failure caused by a token error, keeping the ids Microsoft support asks for.
    pub fn from_token_error(reason: &'static str, e: &TokenError) -> Self {
        Self {
            reason,
            aadsts: e.known_aadsts(),
            message: e.to_string(),
            trace_id: e.trace_id.clone(),
            correlation_id: e.correlation_id.clone(),
        }
    }
}

/// Check-specific facts of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    None,
    Token(token::TokenDetails),
    Smtp(smtp::SmtpDetails),
    Graph(graph::GraphDetails),
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

    pub fn reason(&self) -> Option<&'static str> {
        self.failure.as_ref().map(|f| f.reason)
    }
}

/// Reason of a run that ended in a panic: common to every check kind, like `timeout`.
pub const INTERNAL_ERROR: &str = "internal_error";

/// Runs one job now, within its timeout. The scheduler, `/probe` and the `check` command all
/// come through here, so they measure the same thing.
pub async fn run(job: &Job, ctx: &Context) -> Report {
    let started_at = Utc::now();
    let start = Instant::now();
    let deadline = start + job.settings.timeout;
    let work = async {
        match job.kind {
            CheckKind::Token => token::run(&job.target, ctx, deadline).await,
            CheckKind::Smtp => smtp::run(&job.target, ctx, deadline).await,
            CheckKind::Graph => graph::run(&job.target, ctx, deadline).await,
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
                INTERNAL_ERROR,
                "the check failed with an internal error (a bug: please report it with this log)",
            ),
            Details::None,
        ),
        Err(_) => Outcome::failure(
            Failure::new(
                "timeout",
                format!(
                    "the check did not finish within its timeout of {:?}",
                    job.settings.timeout
                ),
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
