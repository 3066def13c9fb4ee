//! The status page `/`: a page of mailboxes and apps (the worst first, the healthy rest
//! summarised with a link) with verdict, checks, credential expiry and fix, rendered on the
//! server from the status document. No script, no external asset; every
//! value is escaped; a narrow screen (a phone at 3 a.m.) gets one card per target.

use std::fmt::Write as _;

use crate::status::{
    ActivityStatus, CheckStatus, CredentialStatus, Document, PageInfo, RunMark, TrafficStatus,
    VerdictStatus, DEFAULT_LIMIT,
};

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;padding:1rem;color:#1b1b1b;background:#fafafa}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
a{color:#0b57d0}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:.4rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f0f0f0}
code{font-size:.85rem;overflow-wrap:anywhere}
.fix{overflow-wrap:anywhere}
.badge{display:inline-block;padding:.1rem .45rem;border-radius:.6rem;font-weight:600;font-size:.8rem;color:#fff}
.ok{background:#1e8e3e}.warning{background:#e37400}.critical{background:#c5221f}.pending{background:#777}
.fail{color:#c5221f}.pass{color:#1e8e3e}
.summary{font-size:1rem}
.chart{display:block;margin-top:.2rem}.chart .sent{fill:#1a73e8}.chart .failed{fill:#a50e0e}.chart .none{fill:#ddd}
.beats{display:flex;gap:2px;margin-top:.35rem}.beat{display:inline-block;width:6px;height:16px;border-radius:2px}
.beat.ok{background:#34a853}.beat.warning{background:#fbbc04}.beat.critical{background:#ea4335}.beat.pending{background:#9aa0a6}
.fix{font-size:.85rem}
@media (max-width:700px){
 table,thead,tbody,tr,th,td{display:block}
 thead{display:none}
 tr{margin:0 0 1rem;border:1px solid #ccc;background:#fff}
 td{border:none;border-bottom:1px solid #eee}
 td::before{content:attr(data-label);display:block;font-weight:600;font-size:.75rem;color:#555}
}
";

fn badge(severity: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        escape(severity),
        escape(severity)
    )
}

fn check_cell(name: &str, c: &CheckStatus) -> String {
    let state = match (c.enabled, c.success) {
        (false, _) => "<span>off</span>".to_string(),
        (true, None) => "<span>not run yet</span>".to_string(),
        (true, Some(true)) => "<span class=\"pass\">✔ ok</span>".to_string(),
        (true, Some(false)) => format!(
            "<span class=\"fail\">✘ {}{}</span>",
            escape(c.reason.unwrap_or("failed")),
            c.aadsts
                .map(|a| format!(" (AADSTS{a})"))
                .unwrap_or_default()
        ),
    };
    format!("<div><b>{}</b> {state}</div>", escape(name))
}

fn credential_cell(c: Option<&CredentialStatus>) -> String {
    match c {
        None => "unknown".into(),
        Some(c) => {
            let what = if c.kind == "certificate" {
                "certificate"
            } else {
                "secret"
            };
            let name = c
                .display_name
                .as_deref()
                .map(|n| format!(" {}", escape(n)))
                .unwrap_or_default();
            match (c.days_left, c.expires_at) {
                (Some(d), Some(at)) if d < 0 => format!(
                    "{what}{name}: <span class=\"fail\">expired {}</span>",
                    at.format("%Y-%m-%d")
                ),
                (Some(d), Some(at)) => {
                    format!("{what}{name}: {d} days left ({})", at.format("%Y-%m-%d"))
                }
                _ => format!("{what}{name}: no expiry"),
            }
        }
    }
}

/// A watched mailbox's traffic: its summary, and its last 24 hours as a small bar chart (one bar
/// an hour, failed and quarantined in red), inline SVG: no script.
fn traffic_cell(t: Option<&TrafficStatus>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let last = match (t.last_message, t.watched_since) {
        (Some(l), _) => format!("last {}", l.format("%Y-%m-%d %H:%M UTC")),
        (None, Some(w)) => format!("none since {}", w.format("%Y-%m-%d %H:%M UTC")),
        (None, None) => "not read yet".into(),
    };
    let max = t
        .hourly
        .iter()
        .map(|h| h.messages)
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h) = (4u64, 24u64);
    let mut bars = String::new();
    for (i, hour) in t.hourly.iter().enumerate() {
        let x = i as u64 * w;
        if hour.messages == 0 {
            let _ = write!(
                bars,
                "<rect class=\"none\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"1\"/>",
                h - 1,
                w - 1
            );
            continue;
        }
        let total = (hour.messages * h).div_ceil(max).max(1);
        let failed = (hour.failed * h).div_ceil(max).min(total);
        let title = format!(
            "{} UTC: {} sent, {} failed or quarantined",
            hour.hour.format("%H:00"),
            hour.messages,
            hour.failed
        );
        let _ = write!(
            bars,
            "<g><title>{}</title><rect class=\"sent\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            escape(&title),
            h - total,
            w - 1,
            total - failed
        );
        if failed > 0 {
            let _ = write!(
                bars,
                "<rect class=\"failed\" x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{failed}\"/>",
                h - failed,
                w - 1
            );
        }
        bars.push_str("</g>");
    }
    format!(
        "<div class=\"traffic{}\" data-sent=\"{}\"><b>traffic</b> {}{} · {}<svg class=\"chart\" role=\"img\" aria-label=\"messages per hour, last 24 h\" width=\"{}\" height=\"{h}\" viewBox=\"0 0 {} {h}\">{bars}</svg></div>",
        if t.silent { " fail" } else { "" },
        t.last_24h,
        escape(&t.summary),
        if t.silent { " · <b>silent</b>" } else { "" },
        escape(&last),
        w * 24,
        w * 24,
    )
}

/// What the credential activity adds to the credential cell: the credentials the application
/// signs in with besides the agent's, stale ones, or why the activity is not available.
fn activity_lines(a: Option<&ActivityStatus>) -> String {
    let Some(a) = a else {
        return String::new();
    };
    if let Some(why) = &a.unavailable {
        return format!(
            "<div><small>sign-in activity not available: {}</small></div>",
            escape(why)
        );
    }
    let mut out = String::new();
    for c in &a.credentials {
        let what = if c.kind == "certificate" {
            "certificate"
        } else {
            "secret"
        };
        let name = c.display_name.as_deref().unwrap_or(&c.key_id);
        let last = c
            .last_sign_in
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        let expires = c
            .expires_at
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "no expiry".into());
        match (c.agent, c.state) {
            (false, "active") => {
                let _ = write!(
                    out,
                    "<div class=\"active-credential\" data-key-id=\"{}\"><b>the application signs in with {what} {}</b> (last sign-in {last}), expires {expires}</div>",
                    escape(&c.key_id),
                    escape(name)
                );
            }
            (_, "stale") => {
                let _ = write!(
                    out,
                    "<div><small>stale: {what} {} (last sign-in {last})</small></div>",
                    escape(name)
                );
            }
            _ => {}
        }
    }
    out
}

/// The target's recent runs as a heartbeat bar: one mark a run, coloured by the verdict after
/// it, oldest first (the status page's take on Uptime Kuma's bar).
fn beats(runs: &[RunMark]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let marks: String = runs
        .iter()
        .map(|r| {
            format!(
                "<span class=\"beat {}\" title=\"{} UTC: {}\"></span>",
                escape(r.severity),
                r.at.format("%Y-%m-%d %H:%M:%S"),
                escape(r.cause)
            )
        })
        .collect();
    format!(
        "<div class=\"beats\" role=\"img\" aria-label=\"the last {} runs\" data-runs=\"{}\">{marks}</div>",
        runs.len(),
        runs.len()
    )
}

fn verdict_cells(v: Option<&VerdictStatus>, runs: &[RunMark]) -> String {
    match v {
        None => "<td data-label=\"Verdict\">(see its mailboxes)</td><td data-label=\"What to do\"></td>".into(),
        Some(v) => format!(
            "<td data-label=\"Verdict\" class=\"verdict\">{} {}<br><small>step {} · <code>{}</code></small>{}</td><td data-label=\"What to do\" class=\"fix\">{}</td>",
            badge(v.severity),
            escape(&v.summary),
            escape(v.step_title),
            escape(v.cause),
            beats(runs),
            escape(&v.remediation)
        ),
    }
}

/// Sort rank of a verdict on the page: the worst first.
fn rank(v: Option<&VerdictStatus>) -> u8 {
    match v.map(|v| v.severity) {
        Some("critical") => 0,
        Some("warning") => 1,
        Some("pending") => 2,
        Some("ok") => 3,
        _ => 4,
    }
}

fn row_attrs(name: &str, v: Option<&VerdictStatus>) -> String {
    match v {
        Some(v) => format!(
            " data-target=\"{}\" data-step=\"{}\" data-cause=\"{}\" data-severity=\"{}\"",
            escape(name),
            escape(v.step),
            escape(v.cause),
            escape(v.severity)
        ),
        None => format!(" data-target=\"{}\"", escape(name)),
    }
}

/// The page.
pub fn render(doc: &Document, telemetry_path: &str) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let s = &doc.summary;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"30\">\
<title>smtp-oauth-exporter: {} critical, {} warning</title><style>{STYLE}</style></head><body>\n\
<header><h1>smtp-oauth-exporter</h1>\
<p>Microsoft 365 SMTP with OAuth 2.0: token, SMTP AUTH XOAUTH2, credential expiry. Version {} · {} UTC · \
<a href=\"{}\">Metrics</a> · <a href=\"/status\">Status (JSON)</a> · <a href=\"/alerts\">Alerts</a> · <a href=\"/runbooks\">Runbooks</a> · <a href=\"/-/healthy\">Health</a> · <a href=\"/-/ready\">Readiness</a></p>\
<p class=\"summary\" id=\"summary\">{} targets: {} ok, {} warning, {} critical, {} pending</p>{}</header>\n<main>\n",
        s.critical,
        s.warning,
        escape(crate::version::long()),
        doc.generated_at.format("%Y-%m-%d %H:%M:%S"),
        escape(telemetry_path),
        s.targets,
        s.ok,
        s.warning,
        s.critical,
        s.pending,
        page_line(doc),
    );
    h.push_str("<h2>Mailboxes</h2>\n");
    if doc.mailboxes.is_empty() {
        h.push_str("<p>No mailbox is configured.</p>\n");
    } else {
        h.push_str("<table id=\"mailboxes\"><thead><tr><th>Mailbox</th><th>Verdict</th><th>What to do</th><th>Checks</th><th>Credential in use</th></tr></thead><tbody>\n");
        // Problems first: critical, warning, pending, then ok; by name within each.
        let mut rows: Vec<_> = doc.mailboxes.iter().collect();
        rows.sort_by_key(|m| (rank(m.verdict.as_ref()), &m.name));
        for m in rows {
            let checks: String = m
                .checks
                .iter()
                .map(|(k, c)| check_cell(k.as_str(), c))
                .collect::<String>()
                + &traffic_cell(m.traffic.as_ref());
            let _ = writeln!(
                h,
                "<tr{}><td data-label=\"Mailbox\"><b>{}</b><br><small>{} · app {} · {}:{}</small></td>{}<td data-label=\"Checks\">{checks}</td><td data-label=\"Credential in use\">{}</td></tr>",
                row_attrs(&m.name, m.verdict.as_ref()),
                escape(&m.name),
                escape(&m.address),
                escape(&m.app),
                escape(&m.smtp_host),
                m.smtp_port,
                verdict_cells(m.verdict.as_ref(), &m.recent_runs),
                credential_cell(m.credential_in_use.as_ref())
                    + &activity_lines(m.credential_activity.as_ref()),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str("<h2>Apps</h2>\n");
    if doc.apps.is_empty() {
        h.push_str("<p>No app is configured.</p>\n");
    } else {
        h.push_str("<table id=\"apps\"><thead><tr><th>App</th><th>Verdict</th><th>What to do</th><th>Checks</th><th>Credential in use</th></tr></thead><tbody>\n");
        let mut rows: Vec<_> = doc.apps.iter().collect();
        rows.sort_by_key(|a| (rank(a.verdict.as_ref()), &a.name));
        for a in rows {
            let checks: String = a
                .checks
                .iter()
                .map(|(k, c)| check_cell(k.as_str(), c))
                .collect();
            let _ = writeln!(
                h,
                "<tr{}><td data-label=\"App\"><b>{}</b><br><small>client ID {} · tenant {} · {} · {}</small></td>{}<td data-label=\"Checks\">{checks}</td><td data-label=\"Credential in use\">{}</td></tr>",
                row_attrs(&a.name, a.verdict.as_ref()),
                escape(&a.name),
                escape(&a.client_id),
                escape(&a.tenant),
                escape(a.credential_type),
                if a.mailboxes.is_empty() {
                    "no mailbox".to_string()
                } else if a.mailbox_count > a.mailboxes.len() {
                    format!(
                        "mailboxes: {}, … ({} in all)",
                        escape(&a.mailboxes.join(", ")),
                        a.mailbox_count
                    )
                } else {
                    format!("mailboxes: {}", escape(&a.mailboxes.join(", ")))
                },
                verdict_cells(a.verdict.as_ref(), &a.recent_runs),
                credential_cell(a.credential_in_use.as_ref())
                    + &activity_lines(a.credential_activity.as_ref()),
            );
        }
        h.push_str("</tbody></table>\n");
    }
    for t in &doc.discovery {
        let _ = writeln!(
            h,
            "<h2>Apps that can send SMTP: tenant {}</h2>\n<p class=\"summary\" data-tenant=\"{}\">{}</p>",
            escape(&t.tenant),
            escape(&t.tenant),
            escape(&t.summary)
        );
        h.push_str("<table class=\"discovery\"><thead><tr><th>App</th><th>Watched by</th><th>Credentials</th></tr></thead><tbody>\n");
        for a in &t.apps {
            let watched = match &a.configured {
                Some(name) => format!("its own checks (app {})", escape(name)),
                None => "<b>discovered</b>: the inventory (credential expiry and sign-ins)".into(),
            };
            let creds: String = a
                .credentials
                .iter()
                .map(|c| {
                    format!(
                        "<div>{} {}: expires {}{}{}</div>",
                        if c.kind == "certificate" {
                            "certificate"
                        } else {
                            "secret"
                        },
                        escape(c.display_name.as_deref().unwrap_or(&c.key_id)),
                        c.expires_at
                            .map(|e| e.format("%Y-%m-%d").to_string())
                            .unwrap_or_else(|| "never".into()),
                        c.last_sign_in
                            .map(|l| format!(", last sign-in {}", l.format("%Y-%m-%d %H:%M UTC")))
                            .unwrap_or_default(),
                        if c.state == "unknown" {
                            String::new()
                        } else {
                            format!(" ({})", escape(c.state))
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                h,
                "<tr data-app-id=\"{}\" data-discovered=\"{}\"><td data-label=\"App\"><b>{}</b><br><small>client ID {}</small></td><td data-label=\"Watched by\">{watched}</td><td data-label=\"Credentials\">{}{}</td></tr>",
                escape(&a.app_id),
                a.discovered,
                escape(&a.display_name),
                escape(&a.app_id),
                creds,
                a.note
                    .as_deref()
                    .map(|n| format!("<div><small>{}</small></div>", escape(n)))
                    .unwrap_or_default()
            );
        }
        h.push_str("</tbody></table>\n");
    }
    h.push_str(&rest_line(doc));
    h.push_str("</main></body></html>\n");
    h
}

/// A link to the page of `p` that starts at `offset`, or has these severities.
fn link(p: &PageInfo, severity: &[&str], offset: usize) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(app) = &p.app {
        q.append_pair("app", app);
    }
    if !severity.is_empty() {
        q.append_pair("severity", &severity.join(","));
    }
    if p.limit != DEFAULT_LIMIT {
        q.append_pair("limit", &p.limit.to_string());
    }
    if offset > 0 {
        q.append_pair("offset", &offset.to_string());
    }
    escape(&format!("/?{}", q.finish()))
}

/// What the page holds of the fleet, with links to the rest and to the problems alone.
fn page_line(doc: &Document) -> String {
    let p = &doc.page;
    let mut out = format!(
        "<p class=\"page\" id=\"page\">The worst first: {} to {} of {} targets",
        if p.returned == 0 { 0 } else { p.offset + 1 },
        p.offset + p.returned,
        p.matched
    );
    if let Some(app) = &p.app {
        let _ = write!(out, " of app {}", escape(app));
    }
    if !p.severity.is_empty() {
        let _ = write!(out, " ({})", escape(&p.severity.join(", ")));
    }
    if let Some(next) = p.next_offset {
        let _ = write!(
            out,
            " · <a href=\"{}\">next</a>",
            link(p, &p.severity, next)
        );
    }
    let _ = write!(
        out,
        " · <a href=\"{}\">problems only</a> · <a href=\"{}\">ok only</a> · <a href=\"/\">all</a></p>",
        link(p, &["critical", "warning", "pending"], 0),
        link(p, &["ok"], 0)
    );
    out
}

/// The healthy rest, summarised: the targets after this page (the worst come first, so once
/// an ok one is shown, all that follow are ok).
fn rest_line(doc: &Document) -> String {
    let p = &doc.page;
    let Some(next) = p.next_offset else {
        return String::new();
    };
    let rest = p.matched - next;
    let healthy = |v: Option<&VerdictStatus>| v.is_none_or(|v| v.severity == "ok");
    let last_ok = doc.mailboxes.iter().any(|m| healthy(m.verdict.as_ref()))
        || doc.apps.iter().any(|a| healthy(a.verdict.as_ref()));
    format!(
        "<p class=\"rest\" id=\"rest\">{rest} more {}: <a href=\"{}\">show them</a></p>\n",
        if last_ok && rest > 0 {
            "targets, all ok"
        } else {
            "targets"
        },
        link(p, &p.severity, next)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }
}
