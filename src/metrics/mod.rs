//! The only writer of metric series: turns per-target state, per-endpoint state, token cache
//! counters and agent facts into the Prometheus text exposition at scrape time, so no series
//! outlives its target. Written a family at a time into one buffer (see [`text`]).
//!
//! The cardinality budget: a healthy mailbox costs five series by default (success, duration,
//! last run, last success, verdict); what is the same for every mailbox of one SMTP endpoint
//! (TLS facts, the per-phase latency distribution) is exported once per endpoint. Per-mailbox
//! phase detail is on `/probe`, and on `/metrics` with `metrics.detail: true`.

pub mod text;

use crate::plan::CheckKind;
use chrono::{DateTime, Utc};

use crate::auth::cache::EntryStats;
use crate::checks::graph::GraphDetails;
use crate::checks::smtp::{SmtpDetails, TlsFacts};
use crate::checks::token::TokenDetails;
use crate::checks::{Details, Report};
use crate::diagnosis::Verdict;
use crate::state::View;
pub use text::{Exposition, Histogram, Kind};

/// Metric name prefix.
pub const NAMESPACE: &str = "smtp_oauth";

/// Facts about the agent itself.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub config_reload_successful: bool,
    pub config_reload_success_at: Option<DateTime<Utc>>,
}

fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// Seconds rounded to the microsecond: no reader needs more, and it keeps the page small.
fn secs(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

/// Base labels plus more.
fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

/// Which names the TLS facts take: the agent's (`smtp_oauth_smtp_ssl_*`, per endpoint), or
/// blackbox_exporter's (`probe_ssl_*`, `probe_tls_version_info`) on `/probe`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Naming {
    Agent,
    Probe,
}

/// Check facts with their base labels (the target; none on `/probe`).
struct Item<'a> {
    base: Vec<(&'a str, &'a str)>,
    details: &'a Details,
}

impl<'a> Item<'a> {
    fn smtp(&self) -> Option<&'a SmtpDetails> {
        match self.details {
            Details::Smtp(d) => Some(d),
            _ => None,
        }
    }
    fn token(&self) -> Option<&'a TokenDetails> {
        match self.details {
            Details::Token(d) => Some(d),
            _ => None,
        }
    }
    fn graph(&self) -> Option<&'a GraphDetails> {
        match self.details {
            Details::Graph(d) => Some(d),
            _ => None,
        }
    }
}

/// What the page shows beyond the state.
#[derive(Debug, Clone, Copy)]
pub struct PageSettings {
    /// `metrics.detail`.
    pub detail: bool,
    /// `alerts.stale_intervals`: a check that has not succeeded for this many intervals is
    /// overdue.
    pub stale_intervals: u32,
    pub now: DateTime<Utc>,
}

/// The whole `/metrics` page.
pub fn render(
    agent: &AgentInfo,
    view: &View,
    tokens: &[EntryStats],
    page: PageSettings,
    capacity: usize,
) -> String {
    let detail = page.detail;
    let mut f = Exposition::new(NAMESPACE, capacity);
    write_agent(&mut f, agent);
    write_verdicts(&mut f, view);
    write_checks(&mut f, view, page);
    write_endpoints(&mut f, view);
    write_scheduler(&mut f, view);
    write_token_cache(&mut f, tokens, detail);
    f.encode()
}

/// Build and configuration facts.
pub fn write_agent(f: &mut Exposition, info: &AgentInfo) {
    f.one(
        "build_info",
        "Build facts of the running agent; always 1.",
        Kind::Gauge,
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", crate::version::REVISION),
            ("rustversion", crate::version::RUSTC),
        ],
        1.0,
    );
    f.one(
        "config_last_reload_successful",
        "Whether the last configuration (re)load succeeded.",
        Kind::Gauge,
        &[],
        b(info.config_reload_successful),
    );
    if let Some(t) = info.config_reload_success_at {
        f.one(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            Kind::Gauge,
            &[],
            ts(t),
        );
    }
}

const VERDICT_HELP: &str = "The diagnosis of a mailbox (or of an app without one): the broken setup step (1-5, policy, network, transient, unknown, ok), the cause and its severity; always 1.";

fn verdict_labels<'a>(base: &[(&'a str, &'a str)], v: &'a Verdict) -> Vec<(&'a str, &'a str)> {
    with(
        base,
        &[
            ("step", v.step().as_str()),
            ("cause", v.cause.label()),
            ("severity", v.severity().as_str()),
        ],
    )
}

/// One series per target that has a verdict: its app, step, cause and severity (fixed sets).
pub fn write_verdicts(f: &mut Exposition, view: &View) {
    f.family("verdict", VERDICT_HELP, Kind::Gauge);
    for (target, v) in view.verdicts {
        f.sample(
            &verdict_labels(&[("target", target), ("app", &v.app)], v),
            1.0,
        );
    }
    f.family(
        "verdict_incident_info",
        "The Microsoft 365 incident a verdict names (cause microsoft_incident): its id and service; present while it does; always 1.",
        Kind::Gauge,
    );
    for (target, v) in view.verdicts {
        if let Some((id, service)) = &v.incident {
            f.sample(
                &[
                    ("target", target.as_str()),
                    ("id", id.as_str()),
                    ("service", service.as_str()),
                ],
                1.0,
            );
        }
    }
}

/// The series of every (check, target), then the check-specific facts.
fn write_checks(f: &mut Exposition, view: &View, page: PageSettings) {
    let detail = page.detail;
    let jobs = view.jobs;
    fn label(k: &crate::plan::JobKey) -> [(&'static str, &str); 2] {
        [("check", k.kind.as_str()), ("target", k.target.as_str())]
    }
    f.family(
        "check_success",
        "Whether the last run of the check succeeded (1) or failed (0).",
        Kind::Gauge,
    );
    for (k, st) in jobs {
        if let Some(r) = &st.last {
            f.sample(&label(k), b(r.success()));
        }
    }
    // A canary's duration and start say little beyond its delivery latency and last success:
    // within the cardinality budget (8 series for a mailbox with a canary) they wait for
    // metrics.detail.
    let in_budget = |k: &crate::plan::JobKey| detail || k.kind != CheckKind::Canary;
    f.family(
        "check_duration_seconds",
        "How long the last run took.",
        Kind::Gauge,
    );
    for (k, st) in jobs.iter().filter(|(k, _)| in_budget(k)) {
        if let Some(r) = &st.last {
            f.sample(&label(k), secs(r.duration));
        }
    }
    f.family(
        "check_last_run_timestamp_seconds",
        "When the last run started.",
        Kind::Gauge,
    );
    for (k, st) in jobs.iter().filter(|(k, _)| in_budget(k)) {
        if let Some(r) = &st.last {
            f.sample(&label(k), ts(r.started_at));
        }
    }
    f.family(
        "check_last_success_timestamp_seconds",
        "When the check last succeeded (start of the run).",
        Kind::Gauge,
    );
    for (k, st) in jobs {
        if let Some(t) = st.last_success {
            f.sample(&label(k), ts(t));
        }
    }
    f.family(
        "check_failure_info",
        "Present (1) while the last run failed: the reason from the check's fixed set and the AADSTS code when it is a known one.",
        Kind::Gauge,
    );
    for (k, st) in jobs {
        if let Some(fail) = st.last.as_ref().and_then(|r| r.failure.as_ref()) {
            let aadsts = fail.aadsts.map(|c| c.to_string()).unwrap_or_default();
            f.sample(
                &with(
                    &label(k),
                    &[("reason", fail.reason.as_str()), ("aadsts", &aadsts)],
                ),
                1.0,
            );
        }
    }
    f.family(
        "check_failures_total",
        "Failed runs of a check on a target, by reason (from the first failure of each).",
        Kind::Counter,
    );
    for (k, st) in jobs {
        for (reason, n) in &st.failures_by_reason {
            f.sample(&with(&label(k), &[("reason", reason.as_str())]), *n as f64);
        }
    }
    f.family(
        "check_overdue",
        "Present (1) while a check has not succeeded for alerts.stale_intervals (3) of its intervals.",
        Kind::Gauge,
    );
    for (k, st) in jobs {
        if st.overdue(page.stale_intervals, page.now) {
            f.sample(&label(k), 1.0);
        }
    }
    f.family(
        "check_runs_total",
        "Runs of a check on a target, by result (apps; mailboxes too with metrics.detail).",
        Kind::Counter,
    );
    for (k, st) in jobs {
        if k.kind.is_per_app() || detail {
            for (result, n) in [("success", st.runs_success), ("failure", st.runs_failure)] {
                f.sample(&with(&label(k), &[("result", result)]), n as f64);
            }
        }
    }
    // Facts that a failed run could not re-read stay as the last successful run saw them
    // (Graph runs every few hours; one 429 must not resolve an expiry alert).
    let items: Vec<Item> = jobs
        .iter()
        .filter_map(|(k, st)| {
            let r = st.last.as_ref()?;
            let details = match (&r.details, &st.last_ok) {
                (Details::Graph(g), Some(ok)) if g.registration.is_none() => &ok.details,
                _ => &r.details,
            };
            Some(Item {
                base: vec![("target", k.target.as_str())],
                details,
            })
        })
        .collect();
    write_facts(f, &items, detail, Naming::Agent);
    write_canary(f, view);
    write_health(f, view);
}

/// The canary's last delivery: its latency, and whether it landed in Junk Email (from the last
/// run that found its message).
fn write_canary(f: &mut Exposition, view: &View) {
    let found = || {
        view.jobs
            .iter()
            .filter(|(k, _)| k.kind == CheckKind::Canary)
            .filter_map(|(k, st)| {
                fn found(
                    r: &crate::checks::Report,
                ) -> Option<&crate::checks::canary::CanaryDetails> {
                    r.canary().filter(|c| c.found.is_some())
                }
                let c = st.last_found.as_deref().and_then(found)?;
                Some((k.target.as_str(), c))
            })
    };
    f.family(
        "canary_last_delivery_seconds",
        "The canary's last delivery: seconds from the server accepting it (after DATA) to Graph's receivedDateTime.",
        Kind::Gauge,
    );
    for (target, c) in found() {
        if let Some(s) = c.delivery_seconds() {
            f.sample(&[("target", target)], s);
        }
    }
    f.family(
        "canary_in_junk",
        "Present (1) while the canary's last found message was in Junk Email.",
        Kind::Gauge,
    );
    for (target, c) in found() {
        if c.found.as_ref().is_some_and(|x| x.junk) {
            f.sample(&[("target", target)], 1.0);
        }
    }
}

/// Open Microsoft 365 service health issues of the watched tenants: one series each, labels
/// from fixed sets (the title and impact go to /status, / and the log, never to a label).
fn write_health(f: &mut Exposition, view: &View) {
    f.family(
        "service_health_issue_info",
        "An open Microsoft 365 service health issue of a watched tenant (Exchange Online, Microsoft Entra): its id, service, classification (incident, advisory) and status; always 1.",
        Kind::Gauge,
    );
    for (tenant, issues) in view.health {
        for x in issues.iter() {
            f.sample(
                &[
                    ("tenant", tenant.as_str()),
                    ("id", x.id.as_str()),
                    ("service", x.service.as_str()),
                    ("classification", x.classification()),
                    ("status", x.status.as_str()),
                ],
                1.0,
            );
        }
    }
}

/// The check-specific families of a set of reports' facts.
fn write_facts(f: &mut Exposition, items: &[Item], detail: bool, naming: Naming) {
    write_smtp(f, items, detail, naming);
    write_token(f, items, detail);
    write_graph(f, items, detail);
}

fn write_smtp(f: &mut Exposition, items: &[Item], detail: bool, naming: Naming) {
    let smtp = || items.iter().filter_map(|i| i.smtp().map(|d| (&i.base, d)));
    if naming == Naming::Agent {
        f.family(
            "smtp_tls_insecure_skip_verify",
            "Present (1) for a mailbox whose server certificate verification is switched off (dangerous).",
            Kind::Gauge,
        );
        for (base, d) in smtp() {
            if d.insecure_skip_verify {
                f.sample(base, 1.0);
            }
        }
    }
    if detail {
        if naming == Naming::Agent {
            f.family(
                "mailbox_info",
                "A configured mailbox: its app and address; always 1 (with metrics.detail).",
                Kind::Gauge,
            );
            for (base, d) in smtp() {
                f.sample(
                    &with(base, &[("app", &d.app), ("address", &d.address)]),
                    1.0,
                );
            }
        }
        f.family(
            "smtp_duration_seconds",
            "Time spent in each phase of the last SMTP run (both EHLOs count as ehlo).",
            Kind::Gauge,
        );
        for (base, d) in smtp() {
            for (phase, dur) in &d.phases {
                f.sample(&with(base, &[("phase", phase.as_str())]), secs(*dur));
            }
        }
    }
    f.family(
        "smtp_status_code",
        "Present while the last SMTP run failed: the reply code of the step that failed (0 when the server gave none), by phase.",
        Kind::Gauge,
    );
    for (base, d) in smtp() {
        if let Some(phase) = d.failed_phase {
            let code = d.failed_reply.as_ref().map_or(0, |r| r.code);
            f.sample(&with(base, &[("phase", phase.as_str())]), f64::from(code));
        }
    }
    f.family(
        "smtp_enhanced_status_code_info",
        "Present while the last SMTP run failed: the enhanced status code (RFC 3463) of the reply; always 1.",
        Kind::Gauge,
    );
    for (base, d) in smtp() {
        let enhanced = d.failed_reply.as_ref().and_then(|r| r.enhanced.as_deref());
        if let (Some(phase), Some(e)) = (d.failed_phase, enhanced) {
            f.sample(
                &with(
                    base,
                    &[("phase", phase.as_str()), ("enhanced_status_code", e)],
                ),
                1.0,
            );
        }
    }
    if naming == Naming::Probe {
        let tls: Vec<(&[(&str, &str)], &TlsFacts)> = smtp()
            .filter_map(|(base, d)| Some((base.as_slice(), d.tls.as_deref()?)))
            .collect();
        write_tls(f, &tls, Naming::Probe);
    }
}

fn write_token(f: &mut Exposition, items: &[Item], detail: bool) {
    let token = || items.iter().filter_map(|i| i.token().map(|d| (&i.base, d)));
    f.family(
        "token_expiry_timestamp_seconds",
        "When the token from the last successful token check expires.",
        Kind::Gauge,
    );
    for (base, d) in token() {
        if let Some(t) = d.expires_at {
            f.sample(&with(base, &[("resource", d.resource.as_str())]), ts(t));
        }
    }
    f.family(
        "token_smtp_role_present",
        "Whether the last SMTP token carries the SMTP.SendAsApp role (admin consent, setup step 3).",
        Kind::Gauge,
    );
    for (base, d) in token() {
        if let Some(has) = d.smtp_role {
            f.sample(base, b(has));
        }
    }
    if detail {
        f.family(
            "token_lifetime_seconds",
            "The expires_in of the last token (60 to 90 minutes at Entra ID; with metrics.detail).",
            Kind::Gauge,
        );
        for (base, d) in token() {
            if let Some(s) = d.lifetime_seconds {
                f.sample(&with(base, &[("resource", d.resource.as_str())]), s as f64);
            }
        }
    }
}

/// A label value from Graph data (a display name): no control characters, at most 128 characters.
fn graph_label(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(128)
        .collect()
}

/// The app registration's credentials, keyed by `key_id` (display names repeat), and the one
/// the agent uses. Nothing is written for a run that did not read the registration.
fn write_graph(f: &mut Exposition, items: &[Item], detail: bool) {
    let regs = || {
        items.iter().filter_map(|i| {
            i.graph()
                .and_then(|g| g.registration.as_ref())
                .map(|r| (&i.base, r))
        })
    };
    let credentials =
        |f: &mut Exposition, want: fn(&crate::checks::graph::CredentialInfo) -> Option<f64>| {
            for (base, reg) in regs() {
                for c in &reg.credentials {
                    if let Some(v) = want(c) {
                        let key_id = graph_label(&c.key_id);
                        let name = graph_label(c.display_name.as_deref().unwrap_or(""));
                        f.sample(
                            &with(
                                base,
                                &[
                                    ("key_id", key_id.as_str()),
                                    ("type", c.kind.as_str()),
                                    ("display_name", name.as_str()),
                                ],
                            ),
                            v,
                        );
                    }
                }
            }
        };
    f.family(
        "credential_expiry_timestamp_seconds",
        "When a secret or certificate of the app registration expires (Graph endDateTime).",
        Kind::Gauge,
    );
    credentials(f, |c| c.end.map(ts));
    f.family(
        "credential_in_use",
        "Present (1) for the credential that matches the one the agent signs in with (secret hint or certificate thumbprint); several when ambiguous.",
        Kind::Gauge,
    );
    credentials(f, |c| c.in_use.then_some(1.0));
    if detail {
        f.family(
            "credential_start_timestamp_seconds",
            "When a secret or certificate of the app registration becomes valid (Graph startDateTime; with metrics.detail).",
            Kind::Gauge,
        );
        credentials(f, |c| c.start.map(ts));
        f.family(
            "app_credential_earliest_expiry_timestamp_seconds",
            "The earliest expiry among all secrets and certificates of the app registration, expired ones included (with metrics.detail).",
            Kind::Gauge,
        );
        for (base, reg) in regs() {
            if let Some(t) = reg.earliest_expiry {
                f.sample(base, ts(t));
            }
        }
    }
    f.family(
        "app_credential_next_expiry_timestamp_seconds",
        "The earliest expiry among the secrets and certificates of the app registration not yet expired at the last successful Graph run; absent when all have expired.",
        Kind::Gauge,
    );
    for (base, reg) in regs() {
        if let Some(t) = reg.next_expiry {
            f.sample(base, ts(t));
        }
    }
    f.family(
        "credential_in_use_expiry_timestamp_seconds",
        "When the credential the agent signs in with expires; only when exactly one credential matches.",
        Kind::Gauge,
    );
    for (base, reg) in regs() {
        if let Some((c, t)) = reg.in_use().and_then(|c| Some((c, c.end?))) {
            f.sample(&with(base, &[("type", c.kind.as_str())]), ts(t));
        }
    }
    f.family(
        "credential_in_use_ambiguous",
        "Present (1) when several credentials match the agent's own (secrets sharing the first three characters), so none is picked.",
        Kind::Gauge,
    );
    for (base, reg) in regs() {
        if reg.hint_ambiguous {
            f.sample(base, 1.0);
        }
    }
    f.family(
        "credential_in_use_found",
        "Whether any credential of the app registration matches the one the agent signs in with (0: the configured secret or certificate is not on the app).",
        Kind::Gauge,
    );
    for (base, reg) in regs() {
        f.sample(base, b(reg.in_use_matches > 0));
    }
}

/// The SMTP endpoints: per-phase latency over every mailbox's runs, and the TLS facts of the
/// last run, once per endpoint (host:port).
pub fn write_endpoints(f: &mut Exposition, view: &View) {
    f.family(
        "smtp_phase_duration_seconds",
        "Time per phase of the SMTP runs to an endpoint (host:port), over every mailbox checked there (both EHLOs count as ehlo).",
        Kind::Histogram,
    );
    for (endpoint, e) in view.endpoints {
        for (phase, h) in &e.phases {
            f.histogram(&[("endpoint", endpoint), ("phase", phase.as_str())], h);
        }
    }
    f.family(
        "canary_delivery_seconds",
        "Delivery latency of the canaries sent through an endpoint: the server accepting the message (after DATA) to Graph's receivedDateTime.",
        Kind::Histogram,
    );
    for (endpoint, e) in view.endpoints {
        if let Some(h) = &e.canary_delivery {
            f.histogram(&[("endpoint", endpoint)], h);
        }
    }
    let bases: Vec<[(&str, &str); 1]> = view
        .endpoints
        .keys()
        .map(|e| [("endpoint", e.as_str())])
        .collect();
    let tls: Vec<(&[(&str, &str)], &TlsFacts)> = view
        .endpoints
        .values()
        .zip(&bases)
        .filter_map(|(e, base)| Some((base.as_slice(), e.tls.as_deref()?)))
        .collect();
    write_tls(f, &tls, Naming::Agent);
}

fn write_tls(f: &mut Exposition, items: &[(&[(&str, &str)], &TlsFacts)], naming: Naming) {
    let (version, earliest, chain_info) = match naming {
        Naming::Agent => (
            "smtp_tls_version_info",
            "smtp_ssl_earliest_cert_expiry",
            "smtp_ssl_last_chain_info",
        ),
        Naming::Probe => (
            "tls_version_info",
            "ssl_earliest_cert_expiry",
            "ssl_last_chain_info",
        ),
    };
    f.family(
        version,
        "TLS version negotiated in the last SMTP run; always 1.",
        Kind::Gauge,
    );
    for (base, tls) in items {
        f.sample(&with(base, &[("version", &tls.version)]), 1.0);
    }
    f.family(
        earliest,
        "Earliest notAfter (Unix seconds) in the certificate chain the SMTP server presented.",
        Kind::Gauge,
    );
    for (base, tls) in items {
        if let Some(e) = tls.earliest_expiry() {
            f.sample(base, ts(e));
        }
    }
    if naming == Naming::Probe {
        f.family(
            "ssl_last_chain_expiry_timestamp_seconds",
            "Earliest notAfter (Unix seconds) of the chain the SMTP server presented in this probe.",
            Kind::Gauge,
        );
        for (base, tls) in items {
            if let Some(e) = tls.earliest_expiry() {
                f.sample(base, ts(e));
            }
        }
    }
    f.family(
        chain_info,
        "The SMTP server's leaf certificate in the last run; always 1.",
        Kind::Gauge,
    );
    for (base, tls) in items {
        if let Some(leaf) = tls.chain.first() {
            f.sample(
                &with(
                    base,
                    &[
                        ("subject", &leaf.subject),
                        ("issuer", &leaf.issuer),
                        ("serialnumber", &leaf.serial),
                        ("fingerprint_sha256", &leaf.fingerprint_sha256),
                    ],
                ),
                1.0,
            );
        }
    }
    if naming == Naming::Agent {
        f.family(
            "smtp_ssl_cert_not_after_timestamp_seconds",
            "notAfter of each certificate the SMTP server presented, by position in the chain (0 = leaf).",
            Kind::Gauge,
        );
        for (base, tls) in items {
            for (depth, c) in tls.chain.iter().enumerate() {
                f.sample(
                    &with(
                        base,
                        &[("depth", &depth.to_string()), ("subject", &c.subject)],
                    ),
                    ts(c.not_after),
                );
            }
        }
    }
}

/// The scheduler: runs by check kind and result, and how late runs start.
pub fn write_scheduler(f: &mut Exposition, view: &View) {
    f.family(
        "scheduler_runs_total",
        "Runs of every target's check, by check kind and result.",
        Kind::Counter,
    );
    for (kind, (ok, failed)) in &view.scheduler.runs {
        for (result, n) in [("success", ok), ("failure", failed)] {
            f.sample(&[("check", kind.as_str()), ("result", result)], *n as f64);
        }
    }
    f.family(
        "scheduler_delay_seconds",
        "How late runs start after their planned time (a slot, the concurrency bound, a busy runtime), by check kind.",
        Kind::Histogram,
    );
    for (kind, h) in &view.scheduler.delay {
        f.histogram(&[("check", kind.as_str())], h);
    }
}

/// Token requests the cache made (token checks and cache refreshes alike): in total by
/// resource and result, and per app with `detail`.
pub fn write_token_cache(f: &mut Exposition, stats: &[EntryStats], detail: bool) {
    let mut totals: std::collections::BTreeMap<(&str, &str), u64> = Default::default();
    for s in stats {
        for (result, n) in [("success", s.requests_ok), ("failure", s.requests_failed)] {
            *totals.entry((s.resource.as_str(), result)).or_default() += n;
        }
    }
    f.family(
        "token_requests_total",
        "Requests sent to the token endpoint by every app, by resource and result.",
        Kind::Counter,
    );
    for ((resource, result), n) in totals {
        f.sample(&[("resource", resource), ("result", result)], n as f64);
    }
    if detail {
        f.family(
            "token_requests_by_app_total",
            "Requests sent to the token endpoint, per app and resource, by result (with metrics.detail).",
            Kind::Counter,
        );
        // Apps no longer configured (app "") count in the totals only.
        for s in stats.iter().filter(|s| !s.app.is_empty()) {
            for (result, n) in [("success", s.requests_ok), ("failure", s.requests_failed)] {
                f.sample(
                    &[
                        ("target", &s.app),
                        ("resource", s.resource.as_str()),
                        ("result", result),
                    ],
                    n as f64,
                );
            }
        }
    }
}

/// A `/probe` answer: that run's series only, without a `target` label (Prometheus adds the
/// target through relabelling), in blackbox_exporter's names where they exist, with the SMTP
/// phases in full.
pub fn render_probe(
    reports: &[Report],
    verdict: Option<&Verdict>,
    duration: std::time::Duration,
) -> String {
    let mut f = Exposition::new("probe", 8 * 1024);
    f.one(
        "success",
        "Whether every check of the probe succeeded.",
        Kind::Gauge,
        &[],
        b(!reports.is_empty() && reports.iter().all(|r| r.success())),
    );
    f.one(
        "duration_seconds",
        "How long the probe took.",
        Kind::Gauge,
        &[],
        secs(duration),
    );
    f.family(
        "check_success",
        "Whether the check succeeded in this probe.",
        Kind::Gauge,
    );
    for r in reports {
        f.sample(&[("check", r.kind.as_str())], b(r.success()));
    }
    f.family(
        "check_duration_seconds",
        "How long the check took in this probe.",
        Kind::Gauge,
    );
    for r in reports {
        f.sample(&[("check", r.kind.as_str())], secs(r.duration));
    }
    f.family(
        "failure_info",
        "Present (1) when the check failed: the reason from the check's fixed set and the AADSTS code when it is a known one.",
        Kind::Gauge,
    );
    for r in reports {
        if let Some(fail) = &r.failure {
            let aadsts = fail.aadsts.map(|c| c.to_string()).unwrap_or_default();
            f.sample(
                &[
                    ("check", r.kind.as_str()),
                    ("reason", fail.reason.as_str()),
                    ("aadsts", &aadsts),
                ],
                1.0,
            );
        }
    }
    if let Some(v) = verdict {
        f.one(
            "verdict",
            VERDICT_HELP,
            Kind::Gauge,
            &verdict_labels(&[], v),
            1.0,
        );
    }
    let items: Vec<Item> = reports
        .iter()
        .map(|r| Item {
            base: Vec::new(),
            details: &r.details,
        })
        .collect();
    write_facts(&mut f, &items, true, Naming::Probe);
    f.encode()
}
