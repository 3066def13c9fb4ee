//! `check --output nagios`: one status line with performance data and the plugin's exit
//! code, for Nagios, Icinga and their kin.

use super::*;

/// Text for a Nagios output line: a `|` would start perfdata there, a line break a new line.
pub(super) fn nagios_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '|' => '¦',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// A perfdata label: no quotes or equals signs (plugin guidelines), single-quoted.
pub(super) fn perf_label(s: &str) -> String {
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

pub(super) fn nagios(doc: &Document) -> Outcome {
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
