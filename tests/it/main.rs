//! Integration tests: one binary (link once), a module per area. Everything runs over real
//! loopback sockets against the simulator, with TLS certificates generated per run.

mod agent_alerts;
mod alerts;
mod cardinality;
mod check;
mod common;
mod config_errors;
mod dashboards;
mod demo;
mod fixtures;
mod golden;
mod graph;
mod independent;
mod live;
mod probe;
mod promtool;
mod secrets;
mod server;
mod smtp;
mod token;
