//! Integration tests: one binary (link once), a module per area. Everything runs over real
//! loopback sockets against the simulator, with TLS certificates generated per run.

mod activity;
mod agent_alerts;
mod alert_parity;
mod alerts;
mod authorization;
mod canary;
mod cardinality;
mod check;
mod common;
mod config_errors;
mod dashboards;
mod demo;
mod deploy;
mod faults;
mod fixtures;
mod golden;
mod graph;
mod health;
mod hygiene;
mod independent;
mod layering;
mod live;
mod probe;
mod promtool;
mod reasons;
mod reload;
mod retries;
mod scheduler;
mod secrets;
mod server;
mod shard;
mod sim_mail;
mod smtp;
mod token;
mod web;
