//! `smtp-oauth-exporter check [NAME…]`: runs the checks of the named mailboxes and apps now, in
//! process, through the same `checks::run` as the scheduler, into a state of its own, and prints
//! the status document as a person reads it (text), for scripts (JSON) or as a Nagios plugin.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use futures::StreamExt;

use crate::checks::{self, RunOptions};
use crate::diagnosis::StepStatus;
use crate::plan::{CheckKind, Job, Plan, Target};
use crate::state::StateStore;
use crate::status::{CheckStatus, Document, VerdictStatus};

mod nagios;
mod text;
use nagios::nagios;
use text::text;

/// How the result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people: each setup step, each check, the verdict and the fix.
    Text,
    /// The status document (the schema of `/status`), for scripts.
    Json,
    /// The Nagios plugin convention: one status line with perfdata, exit 0/1/2/3.
    Nagios,
}

/// What was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub names: Vec<String>,
    pub output: Output,
    pub send_test_to: Option<String>,
    /// Run the delivery canaries of the mailboxes that have one (each sends one message).
    pub canary: bool,
}

/// What to print and the exit code.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: String,
    pub exit_code: u8,
}

/// Nagios exit codes (plugin guidelines).
const NAGIOS_OK: u8 = 0;
const NAGIOS_WARNING: u8 = 1;
const NAGIOS_CRITICAL: u8 = 2;
const NAGIOS_UNKNOWN: u8 = 3;

/// A request that cannot be run (unknown name, test mail without exactly one mailbox).
pub fn usage_error(output: Output, message: &str) -> Outcome {
    match output {
        Output::Nagios => Outcome {
            stdout: format!("SMTP-OAUTH UNKNOWN - {message}\n"),
            exit_code: NAGIOS_UNKNOWN,
        },
        _ => Outcome {
            stdout: format!("error: {message}\n"),
            exit_code: 2,
        },
    }
}

/// Runs the checks and renders the result.
pub async fn run(plan: Arc<Plan>, req: &Request) -> Outcome {
    // The targets: named ones (each must exist), or every mailbox and every app without one
    // (the targets the agent gives a verdict).
    let mut targets: Vec<Target> = Vec::new();
    if req.names.is_empty() {
        targets.extend(plan.verdict_targets());
    } else {
        for n in &req.names {
            match plan.target(n) {
                Some(t) => targets.push(t.clone()),
                None => {
                    return usage_error(
                        req.output,
                        &format!("no app or mailbox is named {n:?} in the configuration"),
                    )
                }
            }
        }
    }
    let mailboxes: Vec<&Target> = targets.iter().filter(|t| t.mailbox().is_some()).collect();
    if req.send_test_to.is_some() && mailboxes.len() != 1 {
        return usage_error(
            req.output,
            "--send-test-to sends one message from one mailbox: name exactly one mailbox",
        );
    }
    let send_test_to = match req.send_test_to.as_deref() {
        None => None,
        Some(to) => match crate::plan::MailAddress::parse(to) {
            Some(a) => Some(a),
            None => {
                return usage_error(
                    req.output,
                    &format!("--send-test-to {to:?} is not a plain address user@domain"),
                )
            }
        },
    };

    // The jobs: each target's enabled checks, and the token, Graph and service health checks
    // of each mailbox's app (its verdict needs them), once per app; a mailbox's canary unless
    // --no-canary.
    let mut app_jobs: Vec<Job> = Vec::new();
    let mut smtp_jobs: Vec<Job> = Vec::new();
    let mut seen_apps = BTreeSet::new();
    let mut seen_tenants = BTreeSet::new();
    for t in &targets {
        let app = t.app();
        if seen_apps.insert(app.name.clone()) {
            for kind in crate::plan::APP_KINDS {
                if let Some(j) = Job::new(kind, Target::App(app.clone())) {
                    if j.settings.enabled {
                        app_jobs.push(j);
                    }
                }
            }
        }
        // The reads of its tenant (message trace, the inventory), once per tenant.
        let tenant = plan
            .tenants
            .iter()
            .find(|x| x.name.eq_ignore_ascii_case(&app.tenant));
        if let Some(tenant) = tenant.filter(|x| seen_tenants.insert(x.name.clone())) {
            for kind in [CheckKind::Traffic, CheckKind::Discovery] {
                app_jobs.extend(
                    Job::new(kind, Target::Tenant(tenant.clone())).filter(|j| j.settings.enabled),
                );
            }
        }
        // `--send-test-to` on a mailbox with a canary: the canary's run, to that address, so
        // that its reader finds the message and the latency is printed.
        let canary_test = match (&send_test_to, t.mailbox()) {
            (Some(to), Some(m)) => m.canary.as_ref().map(|c| {
                let mut m = (**m).clone();
                m.canary = Some(crate::plan::Canary {
                    to: to.clone(),
                    ..c.clone()
                });
                Target::Mailbox(Arc::new(m))
            }),
            _ => None,
        };
        if let Some(target) = canary_test {
            smtp_jobs.extend(Job::new(CheckKind::Canary, target));
        } else if let Some(j) = Job::new(CheckKind::Smtp, t.clone()) {
            if j.settings.enabled || req.send_test_to.is_some() {
                smtp_jobs.push(j);
            }
            // The configured canary, as the agent runs it (a test message replaces it).
            if req.canary && req.send_test_to.is_none() {
                smtp_jobs
                    .extend(Job::new(CheckKind::Canary, t.clone()).filter(|j| j.settings.enabled));
            }
        }
    }

    let state = StateStore::new();
    let tokens = Arc::new(crate::auth::TokenCache::new());
    let ctx = crate::checks::Context::new(tokens);
    let limit = plan.settings.scheduler.max_concurrent_checks;
    // Token and Graph first, so that the SMTP checks use the token just fetched.
    for (jobs, opts) in [
        (&app_jobs, RunOptions::default()),
        (
            &smtp_jobs,
            RunOptions {
                send_test_to: send_test_to.clone(),
                ..RunOptions::default()
            },
        ),
    ] {
        let reports: Vec<_> = futures::stream::iter(jobs.iter())
            .map(|j| checks::run(j, &ctx, &opts))
            .buffer_unordered(limit)
            .collect()
            .await;
        for r in reports {
            state.record(r);
        }
    }
    let now = chrono::Utc::now();
    for t in &targets {
        state.update_verdict(&plan, t, now);
    }
    // The document lists the targets and the apps whose checks ran for them.
    let names: Vec<String> = targets
        .iter()
        .map(|t| t.name().to_string())
        .chain(seen_apps)
        .collect();
    let doc = crate::status::document(&plan, &state, Some(&names));
    // Exit 1 when a check failed or a verdict is critical (consent revoked shows in a token
    // that succeeds without the role; an expired secret in Graph's dates).
    let any_failed = doc
        .apps
        .iter()
        .flat_map(|a| a.checks.values())
        .chain(doc.mailboxes.iter().flat_map(|m| m.checks.values()))
        .any(|c| c.success == Some(false))
        || doc
            .apps
            .iter()
            .filter_map(|a| a.verdict.as_ref())
            .chain(doc.mailboxes.iter().filter_map(|m| m.verdict.as_ref()))
            .any(|v| v.severity == "critical");
    match req.output {
        Output::Json => Outcome {
            stdout: serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
            exit_code: u8::from(any_failed),
        },
        Output::Text => Outcome {
            stdout: text(&doc),
            exit_code: u8::from(any_failed),
        },
        Output::Nagios => nagios(&doc),
    }
}
