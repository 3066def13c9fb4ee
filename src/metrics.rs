//! The only writer of metric series: turns per-target state, token cache counters and agent facts
//! into the Prometheus text exposition at scrape time, so no series outlives its target.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::Encoder;

use crate::auth::cache::EntryStats;
use crate::checks::Details;
use crate::diagnosis::Verdict;
use crate::plan::JobKey;
use crate::state::TargetState;

/// Metric name prefix.
pub const NAMESPACE: &str = "smtp_oauth";

/// Facts about the agent itself.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    pub config_reload_successful: bool,
    pub config_reload_success_at: Option<DateTime<Utc>>,
}

/// Collects families by name while rendering.
pub struct Families {
    prefix: &'static str,
    map: BTreeMap<String, MetricFamily>,
}

impl Default for Families {
    /// The agent's own series, named `smtp_oauth_*`.
    fn default() -> Self {
        Self::with_prefix(NAMESPACE)
    }
}

impl Families {
    /// Series named `{prefix}_*` (`probe` for `/probe`, as blackbox_exporter names them).
    pub fn with_prefix(prefix: &'static str) -> Self {
        Self {
            prefix,
            map: BTreeMap::new(),
        }
    }

    fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let full = format!("{}_{name}", self.prefix);
        let fam = self.map.entry(full.clone()).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(full);
            f.set_help(help.to_string());
            f.set_field_type(kind);
            f
        });
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).to_string());
                    l.set_value((*v).to_string());
                    l
                })
                .collect(),
        );
        match kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        fam.mut_metric().push(m);
    }

    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, MetricType::GAUGE, labels, value)
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.add(name, help, MetricType::COUNTER, labels, value)
    }

    /// The text exposition format (version 0.0.4).
    pub fn encode(self) -> String {
        let fams: Vec<MetricFamily> = self
            .map
            .into_values()
            .filter(|f| !f.get_metric().is_empty())
            .collect();
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&fams, &mut buf)
            .expect("text encoding of well-formed families");
        String::from_utf8(buf).expect("exposition is UTF-8")
    }
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

/// Writes the series of the given targets' state.
pub fn write_targets(f: &mut Families, targets: &[(JobKey, TargetState)]) {
    for (key, st) in targets {
        let check = key.kind.as_str();
        let target = key.target.as_str();
        let l = [("check", check), ("target", target)];
        for (result, n) in [("success", st.runs_success), ("failure", st.runs_failure)] {
            f.counter(
                "check_runs_total",
                "Runs of a check on a target, by result.",
                &[("check", check), ("target", target), ("result", result)],
                n as f64,
            );
        }
        for (reason, n) in &st.failures_by_reason {
            f.counter(
                "check_failures_total",
                "Failed runs of a check on a target, by reason.",
                &[
                    ("check", check),
                    ("target", target),
                    ("reason", reason.as_str()),
                ],
                *n as f64,
            );
        }
        if let Some(t) = st.last_success {
            f.gauge(
                "check_last_success_timestamp_seconds",
                "When the check last succeeded (start of the run).",
                &l,
                ts(t),
            );
        }
        let Some(r) = &st.last else { continue };
        f.gauge(
            "check_success",
            "Whether the last run of the check succeeded (1) or failed (0).",
            &l,
            b(r.success()),
        );
        f.gauge(
            "check_duration_seconds",
            "How long the last run took.",
            &l,
            r.duration.as_secs_f64(),
        );
        f.gauge(
            "check_last_run_timestamp_seconds",
            "When the last run started.",
            &l,
            ts(r.started_at),
        );
        if let Some(fail) = &r.failure {
            let aadsts = fail.aadsts.map(|c| c.to_string()).unwrap_or_default();
            f.gauge(
                "check_failure_info",
                "Present (1) while the last run failed: the reason from the check's fixed set and the AADSTS code when it is a known one.",
                &[("check", check), ("target", target), ("reason", fail.reason.as_str()), ("aadsts", &aadsts)],
                1.0,
            );
        }
        // Facts that a failed run could not re-read stay as the last successful run saw them
        // (Graph runs every few hours; one 429 must not resolve an expiry alert).
        let details = match (&r.details, &st.last_ok) {
            (Details::Graph(g), Some(ok)) if g.registration.is_none() => &ok.details,
            _ => &r.details,
        };
        write_details(f, &[("target", target)], details, Naming::Agent);
    }
}

/// Which names the TLS facts take: the agent's (`smtp_oauth_smtp_ssl_*`), or blackbox_exporter's
/// (`probe_ssl_*`, `probe_tls_version_info`) on `/probe`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    Agent,
    Probe,
}

/// Base labels plus more.
fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

fn write_details(f: &mut Families, base: &[(&str, &str)], details: &Details, naming: Naming) {
    match details {
        Details::None => {}
        Details::Smtp(d) => write_smtp(f, base, d, naming),
        Details::Graph(d) => write_graph(f, base, d),
        Details::Token(d) => {
            let l = with(base, &[("resource", d.resource.as_str())]);
            if let Some(t) = d.expires_at {
                f.gauge(
                    "token_expiry_timestamp_seconds",
                    "When the token from the last successful token check expires.",
                    &l,
                    ts(t),
                );
            }
            if let Some(s) = d.lifetime_seconds {
                f.gauge(
                    "token_lifetime_seconds",
                    "The expires_in of the last token (60 to 90 minutes at Entra ID).",
                    &l,
                    s as f64,
                );
            }
            if let Some(has) = d.smtp_role {
                f.gauge(
                    "token_smtp_role_present",
                    "Whether the last SMTP token carries the SMTP.SendAsApp role (admin consent, setup step 3).",
                    base,
                    b(has),
                );
            }
        }
    }
}

/// One series per target that has a verdict: its step, cause and severity (fixed sets).
pub fn write_verdicts(f: &mut Families, verdicts: &BTreeMap<String, Verdict>) {
    for (target, v) in verdicts {
        write_verdict(f, &[("target", target)], v);
    }
}

fn write_verdict(f: &mut Families, base: &[(&str, &str)], v: &Verdict) {
    f.gauge(
        "verdict",
        "The diagnosis of a mailbox (or of an app without one): the broken setup step (1-5, policy, network, transient, unknown, ok), the cause and its severity; always 1.",
        &with(
            base,
            &[
                ("step", v.step().as_str()),
                ("cause", v.cause.label()),
                ("severity", v.severity().as_str()),
            ],
        ),
        1.0,
    );
}

/// A `/probe` answer: that run's series only, without a `target` label (Prometheus adds the
/// target through relabelling), in blackbox_exporter's names where they exist.
pub fn write_probe(
    f: &mut Families,
    reports: &[crate::checks::Report],
    verdict: Option<&Verdict>,
    duration: std::time::Duration,
) {
    f.gauge(
        "success",
        "Whether every check of the probe succeeded.",
        &[],
        b(!reports.is_empty() && reports.iter().all(|r| r.success())),
    );
    f.gauge(
        "duration_seconds",
        "How long the probe took.",
        &[],
        duration.as_secs_f64(),
    );
    for r in reports {
        let check = r.kind.as_str();
        f.gauge(
            "check_success",
            "Whether the check succeeded in this probe.",
            &[("check", check)],
            b(r.success()),
        );
        f.gauge(
            "check_duration_seconds",
            "How long the check took in this probe.",
            &[("check", check)],
            r.duration.as_secs_f64(),
        );
        if let Some(fail) = &r.failure {
            let aadsts = fail.aadsts.map(|c| c.to_string()).unwrap_or_default();
            f.gauge(
                "failure_info",
                "Present (1) when the check failed: the reason from the check's fixed set and the AADSTS code when it is a known one.",
                &[("check", check), ("reason", fail.reason.as_str()), ("aadsts", &aadsts)],
                1.0,
            );
        }
        write_details(f, &[], &r.details, Naming::Probe);
    }
    if let Some(v) = verdict {
        write_verdict(f, &[], v);
    }
}

fn write_smtp(
    f: &mut Families,
    base: &[(&str, &str)],
    d: &crate::checks::smtp::SmtpDetails,
    naming: Naming,
) {
    if naming == Naming::Agent {
        f.gauge(
            "mailbox_info",
            "A configured mailbox: its app and address; always 1.",
            &with(base, &[("app", &d.app), ("address", &d.address)]),
            1.0,
        );
        f.gauge(
            "smtp_tls_insecure_skip_verify",
            "Whether server certificate verification is switched off for this mailbox (dangerous).",
            base,
            b(d.insecure_skip_verify),
        );
    }
    for (phase, dur) in &d.phases {
        f.gauge(
            "smtp_duration_seconds",
            "Time spent in each phase of the last SMTP run (both EHLOs count as ehlo).",
            &with(base, &[("phase", phase.as_str())]),
            dur.as_secs_f64(),
        );
    }
    if let Some(phase) = d.failed_phase {
        let (code, enhanced) = match &d.failed_reply {
            Some(r) => (r.code, r.enhanced.clone().unwrap_or_default()),
            None => (0, String::new()),
        };
        f.gauge(
            "smtp_status_code",
            "Reply code of the step that failed in the last SMTP run (0 when the server gave none).",
            &with(base, &[("phase", phase.as_str())]),
            f64::from(code),
        );
        if !enhanced.is_empty() {
            f.gauge(
                "smtp_enhanced_status_code_info",
                "Enhanced status code (RFC 3463) of the reply that failed the last SMTP run; always 1.",
                &with(
                    base,
                    &[("phase", phase.as_str()), ("enhanced_status_code", &enhanced)],
                ),
                1.0,
            );
        }
    }
    let Some(tls) = &d.tls else { return };
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
    f.gauge(
        version,
        "TLS version negotiated in the last SMTP run; always 1.",
        &with(base, &[("version", &tls.version)]),
        1.0,
    );
    if let Some(e) = tls.earliest_expiry() {
        f.gauge(
            earliest,
            "Earliest notAfter (Unix seconds) in the certificate chain the SMTP server presented.",
            base,
            ts(e),
        );
        if naming == Naming::Probe {
            f.gauge(
                "ssl_last_chain_expiry_timestamp_seconds",
                "Earliest notAfter (Unix seconds) of the chain the SMTP server presented in this probe.",
                base,
                ts(e),
            );
        }
    }
    if let Some(leaf) = tls.chain.first() {
        f.gauge(
            chain_info,
            "The SMTP server's leaf certificate in the last run; always 1.",
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
    if naming == Naming::Agent {
        for (depth, c) in tls.chain.iter().enumerate() {
            f.gauge(
                "smtp_ssl_cert_not_after_timestamp_seconds",
                "notAfter of each certificate the SMTP server presented, by position in the chain (0 = leaf).",
                &with(base, &[("depth", &depth.to_string()), ("subject", &c.subject)]),
                ts(c.not_after),
            );
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
/// the agent uses. Nothing is written when the run did not read the registration.
fn write_graph(f: &mut Families, base: &[(&str, &str)], d: &crate::checks::graph::GraphDetails) {
    let Some(reg) = &d.registration else { return };
    for c in &reg.credentials {
        let key_id = graph_label(&c.key_id);
        let name = graph_label(c.display_name.as_deref().unwrap_or(""));
        let l = with(
            base,
            &[
                ("key_id", key_id.as_str()),
                ("type", c.kind.as_str()),
                ("display_name", name.as_str()),
            ],
        );
        if let Some(t) = c.end {
            f.gauge(
                "credential_expiry_timestamp_seconds",
                "When a secret or certificate of the app registration expires (Graph endDateTime).",
                &l,
                ts(t),
            );
        }
        if let Some(t) = c.start {
            f.gauge(
                "credential_start_timestamp_seconds",
                "When a secret or certificate of the app registration becomes valid (Graph startDateTime).",
                &l,
                ts(t),
            );
        }
        f.gauge(
            "credential_in_use",
            "Whether this credential matches the one the agent signs in with (secret hint or certificate thumbprint); several are 1 when ambiguous.",
            &l,
            b(c.in_use),
        );
    }
    if let Some(t) = reg.earliest_expiry {
        f.gauge(
            "app_credential_earliest_expiry_timestamp_seconds",
            "The earliest expiry among all secrets and certificates of the app registration, expired ones included.",
            base,
            ts(t),
        );
    }
    if let Some(t) = reg.next_expiry {
        f.gauge(
            "app_credential_next_expiry_timestamp_seconds",
            "The earliest expiry among the secrets and certificates of the app registration not yet expired at the last successful Graph run; absent when all have expired.",
            base,
            ts(t),
        );
    }
    if let Some(c) = reg.in_use() {
        if let Some(t) = c.end {
            f.gauge(
                "credential_in_use_expiry_timestamp_seconds",
                "When the credential the agent signs in with expires; only when exactly one credential matches.",
                &with(base, &[("type", c.kind.as_str())]),
                ts(t),
            );
        }
    }
    f.gauge(
        "credential_in_use_ambiguous",
        "1 when several credentials match the agent's own (secrets sharing the first three characters), so none is picked.",
        base,
        b(reg.hint_ambiguous),
    );
    f.gauge(
        "credential_in_use_found",
        "Whether any credential of the app registration matches the one the agent signs in with (0: the configured secret or certificate is not on the app).",
        base,
        b(reg.in_use_matches > 0),
    );
}
/// Token requests the cache made (token check and cache refreshes alike).
pub fn write_token_cache(f: &mut Families, stats: &[EntryStats]) {
    for s in stats {
        for (result, n) in [("success", s.requests_ok), ("failure", s.requests_failed)] {
            f.counter(
                "token_requests_total",
                "Requests sent to the token endpoint, per app and resource, by result.",
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

/// Build and configuration facts.
pub fn write_agent(f: &mut Families, info: &AgentInfo) {
    f.gauge(
        "build_info",
        "Build facts of the running agent; always 1.",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", crate::version::REVISION),
            ("rustversion", crate::version::RUSTC),
        ],
        1.0,
    );
    f.gauge(
        "config_last_reload_successful",
        "Whether the last configuration (re)load succeeded.",
        &[],
        b(info.config_reload_successful),
    );
    if let Some(t) = info.config_reload_success_at {
        f.gauge(
            "config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            &[],
            ts(t),
        );
    }
}
