//! `check`'s text output: a line per check, the credentials and their sign-ins, and each
//! verdict with its fix, as a person reads it in a terminal.

use super::*;

pub(super) fn mark(success: Option<bool>) -> &'static str {
    match success {
        Some(true) => "✔",
        Some(false) => "✘",
        None => "·",
    }
}

/// The mark of a verdict's severity.
pub(super) fn severity_mark(severity: Option<&str>) -> &'static str {
    match severity {
        Some("ok") => "✔",
        Some("warning") => "⚠",
        Some("critical") => "✘",
        _ => "·",
    }
}

pub(super) fn check_line(out: &mut String, name: &str, c: &CheckStatus) {
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
pub(super) fn activity_lines(out: &mut String, a: Option<&crate::status::ActivityStatus>) {
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

pub(super) fn verdict_lines(out: &mut String, v: &VerdictStatus) {
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

pub(super) fn text(doc: &Document) -> String {
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
