//! smtp-oauth-exporter: watches the Microsoft 365 SMTP OAuth 2.0 chain end to end, says which
//! setup step broke and how to fix it, and exports Prometheus metrics. Data flows one way:
//! config → plan → scheduler → check → report → sink (state, log) → verdict → metrics / HTTP.
//!
//! The modules stand in layers, listed below from the ground up. A module imports from its own
//! layer or the ones under it, never from above; no two files import each other, directly or
//! round a cycle (a file and its own parent module excepted: a module's `mod.rs` holds what its
//! files share); the simulator imports nothing of the agent. In particular the plan imports
//! nothing but `secret`; config never imports checks, alerts, state or the server; checks never
//! import state, metrics or the server; state never imports metrics. `tests/it/layering.rs`
//! reads `src/` and fails on any import that breaks these rules.
#![forbid(unsafe_code)]

// ── layer 0, ground floor: the value types every layer shares.
/// Histograms and their bucket sets.
pub mod histogram;
/// The immutable plan: apps, mailboxes, jobs, settings, clouds, schedules, addresses.
pub mod plan;
/// Redacting newtypes for secrets and tokens.
pub mod secret;
/// Build facts.
pub mod version;

// ── layer 1, words and wires: the fixed reasons of failure, and the network under every check.
/// HTTP clients with bounded replies.
pub mod http_client;
/// Files, YAML and quoted values taken with bounds.
pub mod input;
/// Network failures in the words every check shares.
pub mod net;
/// The one table of failure reasons.
pub mod reasons;
/// TLS client configurations (system roots once, CA files, the dangerous variant).
pub mod tls;

// ── layer 2, configuration: the YAML file parsed, then validated into the plan.
/// YAML configuration parsed then validated into the plan.
pub mod config;

// ── layer 3, protocols: tokens, and the checks that return reports.
/// Token acquisition, the shared token cache, claim decoding.
pub mod auth;
/// One module per check kind behind one signature; the report every run returns.
pub mod checks;

// ── layer 4, judgement: reports become a verdict.
/// Reports → verdict: broken setup step, cause, remediation.
pub mod diagnosis;

// ── layer 5, memory: what the agent keeps and writes down of each run.
/// What the agent keeps of each target over time: watched mailboxes' traffic.
pub mod history;
/// Log set-up and the lines the agent writes.
pub mod logging;
/// Where reports go: state and log, or a collector.
pub mod sink;
/// Per-target state kept across runs and reloads.
pub mod state;

// ── layer 6, running: checks on their schedules.
/// Per-target schedules, concurrency bound, shutdown.
pub mod scheduler;

// ── layer 7, rendering: state shown as metrics, status and alerts.
/// The alerts: Prometheus rules generated from one table, and the agent's own evaluation.
pub mod alerts;
/// The only writer of metric series.
pub mod metrics;
/// The status document behind `/status`, `/` and `check`.
pub mod status;

// ── layer 8, serving: the HTTP endpoint.
/// The HTTP endpoint.
pub mod server;

// ── layer 9, the program: the agent wired together, the commands, the demo.
/// Wires plan, cache, checks, scheduler, state and HTTP into a running agent.
pub mod agent;
/// The `check` command: run checks now, print them for people, scripts or Nagios.
pub mod check_command;
/// Command-line flags and subcommands.
pub mod cli;
/// The built-in demo: simulator plus a configuration pointing at it.
pub mod demo;

// ── apart, the simulator: a Microsoft 365 of its own, which imports nothing of the agent.
/// The loopback Microsoft 365 simulator (token endpoint, Graph, SMTP).
pub mod sim;
