//! smtp-oauth-exporter: watches the Microsoft 365 SMTP OAuth 2.0 chain end to end, says which
//! setup step broke and how to fix it, and exports Prometheus metrics. Data flows one way:
//! config → plan → scheduler → check → report → sink (state, log) → verdict → metrics / HTTP.
#![forbid(unsafe_code)]

/// Wires plan, cache, checks, scheduler, state and HTTP into a running agent.
pub mod agent;
/// The alerts: Prometheus rules generated from one table, and the agent's own evaluation.
pub mod alerts;
/// Token acquisition, the shared token cache, claim decoding.
pub mod auth;
/// The `check` command: run checks now, print them for people, scripts or Nagios.
pub mod check_command;
/// One module per check kind behind one signature; the report every run returns.
pub mod checks;
/// Command-line flags and subcommands.
pub mod cli;
/// YAML configuration parsed then validated into the plan.
pub mod config;
/// The built-in demo: simulator plus a configuration pointing at it.
pub mod demo;
/// Reports → verdict: broken setup step, cause, remediation.
pub mod diagnosis;
/// Histograms and their bucket sets.
pub mod histogram;
/// HTTP clients with bounded replies.
pub mod http_client;
/// Log set-up and the lines the agent writes.
pub mod logging;
/// The only writer of metric series.
pub mod metrics;
/// Network failures in the words every check shares.
pub mod net;
/// The immutable plan: apps, mailboxes, jobs.
pub mod plan;
/// The one table of failure reasons.
pub mod reasons;
/// Per-target schedules, concurrency bound, shutdown.
pub mod scheduler;
/// Redacting newtypes for secrets and tokens.
pub mod secret;
/// The HTTP endpoint.
pub mod server;
/// The loopback Microsoft 365 simulator (token endpoint, Graph, SMTP).
pub mod sim;
/// Where reports go: state and log, or a collector.
pub mod sink;
/// Per-target state kept across runs and reloads.
pub mod state;
/// The status document behind `/status`, `/` and `check`.
pub mod status;
/// TLS client configurations (system roots once, CA files, the dangerous variant).
pub mod tls;
/// Build facts.
pub mod version;
