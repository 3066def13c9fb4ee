//! Integration tests: one binary (link once), a module per area. Everything runs over real
//! loopback sockets against the simulator, with TLS certificates generated per run.

mod common;
mod config_errors;
mod fixtures;
mod golden;
mod graph;
mod independent;
mod promtool;
mod scale;
mod secrets;
mod server;
mod smtp;
mod token;
