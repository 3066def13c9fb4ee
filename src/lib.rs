//! smtp-oauth-exporter: watches the Microsoft 365 SMTP OAuth 2.0 chain end to end and exports
//! Prometheus metrics. Data flows one way: config → scheduler → check → report → state → metrics.
#![forbid(unsafe_code)]

/// Wires cache, checks, scheduler, state and HTTP into a running agent.
pub mod agent;
/// Token acquisition, the shared token cache, claim decoding.
pub mod auth;
/// One module per check kind behind one signature.
pub mod checks;
/// Command-line flags and subcommands.
pub mod cli;
/// YAML configuration parsed then validated into types.
pub mod config;
/// The built-in demo: simulator plus a configuration pointing at it.
pub mod demo;
/// HTTP clients with bounded replies.
pub mod http_client;
/// Log set-up and the per-run log line.
pub mod logging;
/// The only writer of metric series.
pub mod metrics;
/// Per-target schedules, concurrency bound, shutdown.
pub mod scheduler;
/// Redacting newtypes for secrets and tokens.
pub mod secret;
/// The HTTP endpoint.
pub mod server;
/// The loopback Microsoft 365 simulator (token endpoint, Graph, SMTP).
pub mod sim;
/// Per-target state kept across runs.
pub mod state;
/// TLS client configurations (system roots once, CA files, the dangerous variant).
pub mod tls;
/// Build facts.
pub mod version;
