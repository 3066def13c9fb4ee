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

fn mark(success: Option<bool>) -> &'static str {
    match success {
        Some(true) => "✔",
        Some(false) => "✘",
        None => "·",
    }
}

/// The mark of a verdict's severity.
fn severity_mark(severity: Option<&str>) -> &'static str {
    match severity {
        Some("ok") => "✔",
        Some("warning") => "⚠",
        Some("critical") => "✘",
        _ => "·",
    }
}

fn check_line(out: &mut String, name: &str, c: &CheckStatus) {
    if !c.enabled && c.success.is_none() {
        let _ = writeln!(out, "  {name:<8} off");
        return;
    }
    let dur = c
        .duration_seconds
        .map(|d| format!("{d:.3}s"))
        .unwrap_or_default();
    let mut facts: Vec<String> = Vec::new();
    if let Some(reason) = c.reason {
        let aadsts = c.aadsts.map(|a| format!(" AADSTS{a}")).unwrap_or_default();
        facts.push(format!("{reason}{aadsts}"));
    }
    if let Some(t) = c.token.as_ref().filter(|_| c.success == Some(true)) {
        facts.push(format!(
            "aud {} · roles {} · {} · expires {}",
            t.audience.as_deref().unwrap_or("?"),
            if t.roles.is_empty() {
                "none".to_string()
            } else {
                t.roles.join(",")
            },
            t.credential.unwrap_or("?"),
            t.expires_at
                .map(|e| format!(
                    "{} (in {} min)",
                    e.format("%Y-%m-%d %H:%M UTC"),
                    (e - chrono::Utc::now()).num_minutes()
                ))
                .unwrap_or_else(|| "?".into())
        ));
    }
    if let Some(g) = &c.graph {
        if let Some(n) = g.credentials {
            facts.push(format!(
                "read by {}: {n} credential(s), the one in use {}",
                g.reader,
                match (g.in_use_found, g.in_use_ambiguous) {
                    (_, Some(true)) => "ambiguous (shared hint)",
                    (Some(true), _) => "found",
                    _ => "NOT found on the app",
                }
            ));
        }
        if let Some(p) = &g.secret_policy {
            facts.push(format!("app management policy: {p}"));
        }
    }
    let _ = writeln!(
        out,
        "{}",
        format!(
            "  {name:<8} {} {dur:<8} {}",
            mark(c.success),
            facts.join(" · ")
        )
        .trim_end()
    );
    if let Some(s) = &c.smtp {
        let phases: Vec<String> = s
            .phases
            .iter()
            .map(|p| {
                let fail = if Some(p.phase) == s.failed_phase {
                    " ✘"
                } else {
                    ""
                };
                format!("{} {:.1}ms{fail}", p.phase, p.seconds * 1000.0)
            })
            .collect();
        let _ = writeln!(
            out,
            "  {:<8}   {}:{} · {} · {}",
            "",
            s.host,
            s.port,
            s.tls_version.as_deref().unwrap_or("no TLS"),
            phases.join(" · ")
        );
        if let Some(r) = &s.reply {
            let _ = writeln!(out, "  {:<8}   reply: {}", "", r.text);
        }
        if let Some(m) = &s.sent {
            let _ = writeln!(
                out,
                "  {:<8}   test message {} to {}: {}",
                "", m.message_id, m.to, m.reply
            );
        }
    }
    if let Some(k) = &c.canary {
        let line =
            match (&k.message_id, k.delivery_seconds, k.folder) {
                (None, ..) => format!("no message accepted for {}", k.to),
                (Some(id), Some(s), Some(folder)) => {
                    format!(
                "message {id} to {}: arrived in {s:.1} s ({}){}, found with {}'s Graph token",
                k.to,
                if folder == "junkemail" { "Junk Email" } else { "Inbox" },
                if k.deleted == Some(true) { ", deleted" } else { "" },
                k.reader
            )
                }
                (Some(id), ..) => format!(
                    "message {id} to {}: not found with {}'s Graph token",
                    k.to, k.reader
                ),
            };
        let _ = writeln!(out, "  {:<8}   {line}", "");
    }
    if let Some(d) = &c.detail {
        let _ = writeln!(out, "  {:<8}   {d}", "");
    }
}

/// Each credential's last sign-in (credential activity), or why it is not available.
fn activity_lines(out: &mut String, a: Option<&crate::status::ActivityStatus>) {
    let Some(a) = a else { return };
    if let Some(why) = &a.unavailable {
        let _ = writeln!(out, "  {:<8} not available: {why}", "signs in");
        return;
    }
    for c in &a.credentials {
        let _ = writeln!(
            out,
            "  {:<8} {} {} · {} · last sign-in {} · expires {}",
            "signs in",
            if c.kind == "password" {
                "secret"
            } else {
                c.kind
            },
            c.display_name.as_deref().unwrap_or(&c.key_id),
            if c.agent {
                format!("{} (the agent's)", c.state)
            } else {
                c.state.to_string()
            },
            c.last_sign_in
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "none".into()),
            c.expires_at
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "never".into())
        );
    }
}

fn verdict_lines(out: &mut String, v: &VerdictStatus) {
    let steps: Vec<String> = v
        .steps
        .iter()
        .map(|s| format!("{} {}", s.status.mark(), s.title))
        .collect();
    let _ = writeln!(out, "  {:<8} {}", "steps", steps.join("  "));
    if v.severity == "ok" {
        let _ = writeln!(out, "  {:<8} OK · {}", "verdict", v.summary);
        return;
    }
    let _ = writeln!(
        out,
        "  {:<8} {} · step {} · {}",
        "verdict",
        v.severity.to_uppercase(),
        v.step_title,
        v.cause
    );
    let _ = writeln!(out, "  {:<8} {}", "", v.summary);
    let _ = writeln!(out, "  {:<8} {}", "fix", v.remediation);
}

fn text(doc: &Document) -> String {
    let mut out = String::new();
    for m in &doc.mailboxes {
        let sev = m.verdict.as_ref().map(|v| v.severity).unwrap_or("pending");
        let _ = writeln!(
            out,
            "{} {}  mailbox {} · app {} · {}",
            severity_mark(Some(sev)),
            m.name,
            m.address,
            m.app,
            sev.to_uppercase()
        );
        for (k, c) in &m.checks {
            check_line(&mut out, k.as_str(), c);
        }
        if let Some(c) = &m.credential_in_use {
            let _ = writeln!(
                out,
                "  {:<8} {} {} expires in {} days ({})",
                "credential",
                if c.kind == "password" {
                    "secret"
                } else {
                    c.kind
                },
                c.display_name.as_deref().unwrap_or(&c.key_id),
                c.days_left.unwrap_or_default(),
                c.expires_at
                    .map(|e| e.format("%Y-%m-%d").to_string())
                    .unwrap_or_default()
            );
        }
        activity_lines(&mut out, m.credential_activity.as_ref());
        if let Some(t) = &m.traffic {
            let _ = writeln!(
                out,
                "  {:<8} {} · last message {}{}{}",
                "sent",
                t.summary,
                t.last_message
                    .map(|l| l.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| "none seen".into()),
                t.expect_within_seconds
                    .map(|s| format!(
                        " · expected every {}",
                        crate::plan::format_duration(std::time::Duration::from_secs(s))
                    ))
                    .unwrap_or_default(),
                if t.silent { " · SILENT" } else { "" }
            );
        }
        if let Some(v) = &m.verdict {
            verdict_lines(&mut out, v);
        }
        out.push('\n');
    }
    for a in &doc.apps {
        let sev = a.verdict.as_ref().map(|v| v.severity);
        let _ = writeln!(
            out,
            "{} {}  app {} · tenant {}{}",
            severity_mark(sev),
            a.name,
            a.client_id,
            a.tenant,
            sev.map(|s| format!(" · {}", s.to_uppercase()))
                .unwrap_or_default()
        );
        for (k, c) in &a.checks {
            check_line(&mut out, k.as_str(), c);
        }
        activity_lines(&mut out, a.credential_activity.as_ref());
        if let Some(v) = &a.verdict {
            verdict_lines(&mut out, v);
        }
        out.push('\n');
    }
    for t in doc.service_health.iter().filter(|t| !t.issues.is_empty()) {
        let _ = writeln!(out, "Microsoft 365 service health of {}:", t.tenant);
        for i in &t.issues {
            let _ = writeln!(
                out,
                "  {} {} {} ({}): {}{}",
                i.id,
                i.service,
                i.classification,
                i.status,
                i.title,
                i.start
                    .map(|s| format!(", since {}", s.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            );
        }
        out.push('\n');
    }
    for t in &doc.discovery {
        let _ = writeln!(
            out,
            "Apps that can send SMTP in tenant {}: {}",
            t.tenant, t.summary
        );
        for a in &t.apps {
            let _ = writeln!(
                out,
                "  {} {} · {}",
                a.display_name,
                a.app_id,
                match &a.configured {
                    Some(n) => format!("configured as {n}"),
                    None => "discovered".to_string(),
                }
            );
            for c in &a.credentials {
                let _ = writeln!(
                    out,
                    "    {} {} · expires {} · last sign-in {} · {}",
                    if c.kind == "password" {
                        "secret"
                    } else {
                        c.kind
                    },
                    c.display_name.as_deref().unwrap_or(&c.key_id),
                    c.expires_at
                        .map(|e| e.format("%Y-%m-%d").to_string())
                        .unwrap_or_else(|| "never".into()),
                    c.last_sign_in
                        .map(|l| l.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|| "none".into()),
                    c.state
                );
            }
        }
        out.push('\n');
    }
    let s = &doc.summary;
    let _ = writeln!(
        out,
        "{} targets: {} ok, {} warning, {} critical, {} pending",
        s.targets, s.ok, s.warning, s.critical, s.pending
    );
    out
}

/// Text for a Nagios output line: a `|` would start perfdata there, a line break a new line.
fn nagios_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '|' => '¦',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A perfdata label: no quotes or equals signs (plugin guidelines), single-quoted.
fn perf_label(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| match c {
            '\'' | '=' | '|' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    format!("'{clean}'")
}

fn nagios(doc: &Document) -> Outcome {
    let verdicts: Vec<(&str, &VerdictStatus)> = doc
        .mailboxes
        .iter()
        .filter_map(|m| m.verdict.as_ref().map(|v| (m.name.as_str(), v)))
        .chain(
            doc.apps
                .iter()
                .filter_map(|a| a.verdict.as_ref().map(|v| (a.name.as_str(), v))),
        )
        .collect();
    let worst = |sev: &str| verdicts.iter().filter(|(_, v)| v.severity == sev).count();
    let (critical, warning, pending) = (worst("critical"), worst("warning"), worst("pending"));
    let (state, code) = if verdicts.is_empty() || pending == verdicts.len() {
        ("UNKNOWN", NAGIOS_UNKNOWN)
    } else if critical > 0 {
        ("CRITICAL", NAGIOS_CRITICAL)
    } else if warning > 0 {
        ("WARNING", NAGIOS_WARNING)
    } else if pending > 0 {
        ("UNKNOWN", NAGIOS_UNKNOWN)
    } else {
        ("OK", NAGIOS_OK)
    };
    let mut failing: Vec<String> = verdicts
        .iter()
        .filter(|(_, v)| v.severity != "ok")
        .map(|(n, v)| format!("{} ({})", nagios_text(n), v.cause))
        .collect();
    // The status line stays short; the long output lists every one.
    if failing.len() > 5 {
        let more = failing.len() - 4;
        failing.truncate(4);
        failing.push(format!("and {more} more"));
    }
    let headline = if failing.is_empty() {
        format!("{} targets ok", verdicts.len())
    } else {
        format!(
            "{critical} critical, {warning} warning of {} targets: {}",
            verdicts.len(),
            failing.join(", ")
        )
    };
    let mut perf: Vec<String> = Vec::new();
    let perf_check = |perf: &mut Vec<String>, target: &str, kind: CheckKind, c: &CheckStatus| {
        if let Some(d) = c.duration_seconds {
            perf.push(format!(
                "{}={d:.3}s;;;0",
                perf_label(&format!("{target} {kind}"))
            ));
        }
    };
    for m in &doc.mailboxes {
        if let Some(c) = m.checks.get(&CheckKind::Smtp) {
            perf_check(&mut perf, &m.name, CheckKind::Smtp, c);
        }
    }
    for a in &doc.apps {
        for kind in [CheckKind::Token, CheckKind::Graph] {
            if let Some(c) = a.checks.get(&kind) {
                perf_check(&mut perf, &a.name, kind, c);
            }
        }
        if let Some(days) = a.credential_in_use.as_ref().and_then(|c| c.days_left) {
            // Ranges per the plugin guidelines: warn below 30 days, critical below 7.
            perf.push(format!(
                "{}={days};30:;7:;;",
                perf_label(&format!("{} credential days left", a.name))
            ));
        }
    }
    let mut out = format!("SMTP-OAUTH {state} - {headline}");
    if !perf.is_empty() {
        out += " | ";
        out += &perf.join(" ");
    }
    out.push('\n');
    // Long output: one line per target that needs attention, with its fix.
    for (n, v) in &verdicts {
        if v.severity != "ok" {
            let failed = v
                .steps
                .iter()
                .find(|s| s.status == StepStatus::Failed)
                .map(|s| s.title)
                .unwrap_or(v.step_title);
            let _ = writeln!(
                out,
                "{}: {} {} ({failed}): {} Fix: {}",
                nagios_text(n),
                v.severity.to_uppercase(),
                v.cause,
                nagios_text(&v.summary),
                nagios_text(&v.remediation)
            );
        }
    }
    Outcome {
        stdout: out,
        exit_code: code,
    }
}
