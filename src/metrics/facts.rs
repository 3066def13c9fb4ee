//! The check-specific families: what the SMTP, token and Graph reports say (phases, TLS facts,
//! token lifetime and role, every credential and its expiry), written for the targets of
//! `/metrics` or without a target on `/probe`, and the per-endpoint SMTP families.

use super::{b, secs, ts, Exposition, Kind};
use crate::checks::graph::GraphDetails;
use crate::checks::smtp::{SmtpDetails, TlsFacts};
use crate::checks::token::TokenDetails;
use crate::checks::Details;
use crate::state::View;

/// Which names the TLS facts take: the agent's (`smtp_oauth_smtp_ssl_*`, per endpoint), or
/// blackbox_exporter's (`probe_ssl_*`, `probe_tls_version_info`) on `/probe`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Naming {
    Agent,
    Probe,
}

/// Check facts with their base labels (escaped as a sample writes them: `target="…"`, empty on
/// `/probe`), sorted by kind as they are added. Each family then reads only the reports of its
/// kind, and what the families of every target read is copied out while the report is at hand:
/// at 10,000 apps, reading every report again for each family was most of a scrape's time.
#[derive(Default)]
pub(super) struct Facts<'a> {
    smtp: Vec<SmtpRow<'a>>,
    token: Vec<TokenRow<'a>>,
    graph: Of<'a, GraphDetails>,
    /// Apps the inventory discovered: the agent does not sign in with their credentials, so
    /// nothing is said of a credential in use.
    discovered: Of<'a, GraphDetails>,
    activity: Of<'a, crate::checks::activity::ActivityDetails>,
}

struct SmtpRow<'a> {
    base: &'a str,
    d: &'a SmtpDetails,
    insecure_skip_verify: bool,
    failed: bool,
}

struct TokenRow<'a> {
    base: &'a str,
    d: &'a TokenDetails,
    resource: &'static str,
    expires_at: Option<f64>,
    smtp_role: Option<bool>,
}

/// The reports of one kind with their base labels.
type Of<'a, D> = Vec<(&'a str, &'a D)>;

impl<'a> Facts<'a> {
    /// A report's details, with its escaped base labels; `discovered` for an app the inventory
    /// found.
    pub fn push(&mut self, base: &'a str, details: &'a Details, discovered: bool) {
        match details {
            Details::Smtp(d) => self.smtp.push(SmtpRow {
                base,
                d,
                insecure_skip_verify: d.insecure_skip_verify,
                failed: d.failed_phase.is_some(),
            }),
            Details::Token(d) => self.token.push(TokenRow {
                base,
                d,
                resource: d.resource.as_str(),
                expires_at: d.expires_at.map(ts),
                smtp_role: d.smtp_role,
            }),
            Details::Graph(d) if discovered => self.discovered.push((base, d)),
            Details::Graph(d) => self.graph.push((base, d)),
            Details::Activity(d) => self.activity.push((base, d)),
            _ => {}
        }
    }
}

/// The check-specific families of a set of reports' facts.
pub(super) fn write_facts(f: &mut Exposition, facts: &Facts, detail: bool, naming: Naming) {
    write_smtp(f, &facts.smtp, detail, naming);
    write_token(f, &facts.token, detail);
    write_graph(f, &facts.graph, &facts.discovered, detail);
    write_activity(f, &facts.activity);
}

/// The credential activity report: whether it could be read, and the last sign-in of each
/// credential, keyed as the expiry series are (`key_id`, `type`, `origin`).
fn write_activity(f: &mut Exposition, reads: &Of<crate::checks::activity::ActivityDetails>) {
    f.family(
        "credential_activity_available",
        "Whether the credential sign-in activity report could be read (0: not available, a 403 for want of AuditLog.Read.All or of the Entra ID P1 licence).",
        Kind::Gauge,
    );
    for (base, d) in reads {
        f.sample_escaped(base, &[], b(d.unavailable.is_none()));
    }
    f.family(
        "credential_last_sign_in_timestamp_seconds",
        "The last sign-in with a secret or certificate of the app (Graph beta appCredentialSignInActivities; may count partial or failed sign-ins); absent when none is reported.",
        Kind::Gauge,
    );
    for (base, d) in reads {
        for k in &d.keys {
            if let Some(t) = k.last_sign_in {
                let key_id = graph_label(&k.key_id);
                f.sample_escaped(
                    base,
                    &[
                        ("key_id", &key_id),
                        ("type", k.kind.as_str()),
                        ("origin", k.origin.as_str()),
                    ],
                    ts(t),
                );
            }
        }
    }
}

fn write_smtp(f: &mut Exposition, smtp: &[SmtpRow], detail: bool, naming: Naming) {
    if naming == Naming::Agent {
        f.family(
            "smtp_tls_insecure_skip_verify",
            "Present (1) for a mailbox whose server certificate verification is switched off (dangerous).",
            Kind::Gauge,
        );
        for r in smtp.iter().filter(|r| r.insecure_skip_verify) {
            f.sample_escaped(r.base, &[], 1.0);
        }
    }
    if detail {
        if naming == Naming::Agent {
            f.family(
                "mailbox_info",
                "A configured mailbox: its app and address; always 1 (with metrics.detail).",
                Kind::Gauge,
            );
            for SmtpRow { base, d, .. } in smtp {
                f.sample_escaped(base, &[("app", &d.app), ("address", &d.address)], 1.0);
            }
        }
        f.family(
            "smtp_duration_seconds",
            "Time spent in each phase of the last SMTP run (both EHLOs count as ehlo).",
            Kind::Gauge,
        );
        for SmtpRow { base, d, .. } in smtp {
            for (phase, dur) in &d.phases {
                f.sample_escaped(base, &[("phase", phase.as_str())], secs(*dur));
            }
        }
    }
    f.family(
        "smtp_status_code",
        "Present while the last SMTP run failed: the reply code of the step that failed (0 when the server gave none), by phase.",
        Kind::Gauge,
    );
    let failed = || smtp.iter().filter(|r| r.failed).map(|r| (r.base, r.d));
    for (base, d) in failed() {
        if let Some(phase) = d.failed_phase {
            let code = d.failed_reply.as_ref().map_or(0, |r| r.code);
            f.sample_escaped(base, &[("phase", phase.as_str())], f64::from(code));
        }
    }
    f.family(
        "smtp_enhanced_status_code_info",
        "Present while the last SMTP run failed: the enhanced status code (RFC 3463) of the reply; always 1.",
        Kind::Gauge,
    );
    for (base, d) in failed() {
        let enhanced = d.failed_reply.as_ref().and_then(|r| r.enhanced.as_deref());
        if let (Some(phase), Some(e)) = (d.failed_phase, enhanced) {
            f.sample_escaped(
                base,
                &[("phase", phase.as_str()), ("enhanced_status_code", e)],
                1.0,
            );
        }
    }
    if naming == Naming::Probe {
        let tls: Vec<(&str, &TlsFacts)> = smtp
            .iter()
            .filter_map(|r| Some((r.base, r.d.tls.as_deref()?)))
            .collect();
        write_tls(f, &tls, Naming::Probe);
    }
}

fn write_token(f: &mut Exposition, token: &[TokenRow], detail: bool) {
    f.family(
        "token_expiry_timestamp_seconds",
        "When the token from the last successful token check expires.",
        Kind::Gauge,
    );
    for r in token {
        if let Some(t) = r.expires_at {
            f.sample_escaped(r.base, &[("resource", r.resource)], t);
        }
    }
    f.family(
        "token_smtp_role_present",
        "Whether the last SMTP token carries the SMTP.SendAsApp role (admin consent, setup step 3).",
        Kind::Gauge,
    );
    for r in token {
        if let Some(has) = r.smtp_role {
            f.sample_escaped(r.base, &[], b(has));
        }
    }
    if detail {
        f.family(
            "token_lifetime_seconds",
            "The expires_in of the last token (60 to 90 minutes at Entra ID; with metrics.detail).",
            Kind::Gauge,
        );
        for r in token {
            if let Some(s) = r.d.lifetime_seconds {
                f.sample_escaped(r.base, &[("resource", r.resource)], s as f64);
            }
        }
    }
}

/// A label value from Graph data (a display name): no control characters, at most 128 characters.
fn graph_label(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= 128 && !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(128)
        .collect::<String>()
        .into()
}

/// A credential of a registration as its families write it: labels (in a shared buffer) and
/// figures.
struct Credential {
    labels: std::ops::Range<usize>,
    end: Option<f64>,
    in_use: bool,
    start: Option<f64>,
}

/// A registration's own figures, with its base labels.
struct App<'a> {
    base: &'a str,
    /// A configured app (not one the inventory discovered).
    configured: bool,
    earliest: Option<f64>,
    next: Option<f64>,
    /// The credential in use when exactly one matches: its type, origin and expiry.
    in_use: Option<(&'static str, &'static str, f64)>,
    ambiguous: bool,
    found: bool,
}

/// The app registration's credentials, keyed by `key_id` (display names repeat), and the one
/// the agent uses. Nothing is written for a run that did not read the registration.
fn write_graph(
    f: &mut Exposition,
    graph: &Of<GraphDetails>,
    discovered: &Of<GraphDetails>,
    detail: bool,
) {
    // Read once, for the families below: each credential's labels (escaped) and figures, and
    // each app's. At 10,000 apps, reading the registrations again for each family was most of
    // the time these families took.
    let mut labels = String::new();
    let mut credentials = Vec::new();
    let mut apps = Vec::new();
    let registrations = (graph.iter().map(|g| (g, true)))
        .chain(discovered.iter().map(|g| (g, false)))
        .filter_map(|((base, g), configured)| Some((*base, g.registration.as_ref()?, configured)));
    for (base, reg, configured) in registrations {
        for c in &reg.credentials {
            let from = labels.len();
            labels.push_str(base);
            if !base.is_empty() {
                labels.push(',');
            }
            super::text::escaped_labels(
                &mut labels,
                &[
                    ("key_id", &graph_label(&c.key_id)),
                    ("type", c.kind.as_str()),
                    ("origin", c.origin.as_str()),
                    (
                        "display_name",
                        &graph_label(c.display_name.as_deref().unwrap_or("")),
                    ),
                ],
            );
            credentials.push(Credential {
                labels: from..labels.len(),
                end: c.end.map(ts),
                in_use: c.in_use,
                start: c.start.map(ts),
            });
        }
        apps.push(App {
            base,
            configured,
            earliest: reg.earliest_expiry.map(ts),
            next: reg.next_expiry.map(ts),
            in_use: reg
                .in_use()
                .and_then(|c| Some((c.kind.as_str(), c.origin.as_str(), ts(c.end?)))),
            ambiguous: reg.hint_ambiguous,
            found: reg.in_use_matches > 0,
        });
    }
    let by_credential = |f: &mut Exposition, want: fn(&Credential) -> Option<f64>| {
        for c in &credentials {
            if let Some(v) = want(c) {
                f.sample_escaped(&labels[c.labels.clone()], &[], v);
            }
        }
    };
    f.family(
        "credential_expiry_timestamp_seconds",
        "When a secret or certificate of the app expires (Graph endDateTime); origin: on the app registration (application) or its service principal.",
        Kind::Gauge,
    );
    by_credential(f, |c| c.end);
    f.family(
        "credential_in_use",
        "Present (1) for the credential that matches the one the agent signs in with (secret hint or certificate thumbprint); several when ambiguous.",
        Kind::Gauge,
    );
    by_credential(f, |c| c.in_use.then_some(1.0));
    if detail {
        f.family(
            "credential_start_timestamp_seconds",
            "When a secret or certificate of the app registration becomes valid (Graph startDateTime; with metrics.detail).",
            Kind::Gauge,
        );
        by_credential(f, |c| c.start);
        f.family(
            "app_credential_earliest_expiry_timestamp_seconds",
            "The earliest expiry among all secrets and certificates of the app registration, expired ones included (with metrics.detail).",
            Kind::Gauge,
        );
        for app in &apps {
            if let Some(t) = app.earliest {
                f.sample_escaped(app.base, &[], t);
            }
        }
    }
    f.family(
        "app_credential_next_expiry_timestamp_seconds",
        "The earliest expiry among the secrets and certificates of the app registration not yet expired at the last successful Graph run; absent when all have expired.",
        Kind::Gauge,
    );
    for app in &apps {
        if let Some(t) = app.next {
            f.sample_escaped(app.base, &[], t);
        }
    }
    f.family(
        "credential_in_use_expiry_timestamp_seconds",
        "When the credential the agent signs in with expires; only when exactly one credential matches.",
        Kind::Gauge,
    );
    for app in &apps {
        if let Some((kind, origin, t)) = app.in_use {
            f.sample_escaped(app.base, &[("type", kind), ("origin", origin)], t);
        }
    }
    // The configured apps' only: a discovered app's credentials are none the agent uses.
    f.family(
        "credential_in_use_ambiguous",
        "Present (1) when several credentials match the agent's own (secrets sharing the first three characters), so none is picked.",
        Kind::Gauge,
    );
    for app in apps.iter().filter(|a| a.configured && a.ambiguous) {
        f.sample_escaped(app.base, &[], 1.0);
    }
    f.family(
        "credential_in_use_found",
        "Whether any credential of the app registration matches the one the agent signs in with (0: the configured secret or certificate is not on the app).",
        Kind::Gauge,
    );
    for app in apps.iter().filter(|a| a.configured) {
        f.sample_escaped(app.base, &[], b(app.found));
    }
    let policies = || {
        graph.iter().chain(discovered).filter_map(|(base, g)| {
            g.secret_policy
                .as_ref()
                .and_then(|p| p.known)
                .map(|r| (*base, r))
        })
    };
    f.family(
        "app_secret_addition_blocked",
        "Whether an app management policy forbids adding client secrets to the app (with app_management_policy; absent while unknown).",
        Kind::Gauge,
    );
    for (base, r) in policies() {
        f.sample_escaped(base, &[], b(r.addition_blocked));
    }
    f.family(
        "app_secret_max_lifetime_seconds",
        "The longest lifetime an app management policy allows a new client secret of the app (with app_management_policy; absent when none caps it).",
        Kind::Gauge,
    );
    for (base, r) in policies() {
        if let Some(m) = r.max_lifetime {
            f.sample_escaped(base, &[], m.as_secs_f64());
        }
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
    let bases: Vec<String> = view
        .endpoints
        .keys()
        .map(|e| {
            let mut base = String::new();
            super::text::escaped_labels(&mut base, &[("endpoint", e.as_str())]);
            base
        })
        .collect();
    let tls: Vec<(&str, &TlsFacts)> = view
        .endpoints
        .values()
        .zip(&bases)
        .filter_map(|(e, base)| Some((base.as_str(), e.tls.as_deref()?)))
        .collect();
    write_tls(f, &tls, Naming::Agent);
}

fn write_tls(f: &mut Exposition, items: &[(&str, &TlsFacts)], naming: Naming) {
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
        f.sample_escaped(base, &[("version", &tls.version)], 1.0);
    }
    f.family(
        earliest,
        "Earliest notAfter (Unix seconds) in the certificate chain the SMTP server presented.",
        Kind::Gauge,
    );
    for (base, tls) in items {
        if let Some(e) = tls.earliest_expiry() {
            f.sample_escaped(base, &[], ts(e));
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
                f.sample_escaped(base, &[], ts(e));
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
            f.sample_escaped(
                base,
                &[
                    ("subject", &leaf.subject),
                    ("issuer", &leaf.issuer),
                    ("serialnumber", &leaf.serial),
                    ("fingerprint_sha256", &leaf.fingerprint_sha256),
                ],
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
                f.sample_escaped(
                    base,
                    &[("depth", &depth.to_string()), ("subject", &c.subject)],
                    ts(c.not_after),
                );
            }
        }
    }
}
