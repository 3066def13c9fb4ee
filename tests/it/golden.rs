//! Golden test of the `/metrics` text (node_exporter's e2e-output style): fixed reports of every
//! check kind go through the state store and the metrics module, and the exposition must match
//! `tests/testdata/metrics.golden` (and `metrics-detail.golden` with `metrics.detail`) byte for
//! byte (build_info aside). A renamed metric, a changed label or help text shows up here.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test --test it golden`.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use smtp_oauth_exporter::auth::cache::EntryStats;
use smtp_oauth_exporter::auth::Resource;
use smtp_oauth_exporter::checks::activity::{ActivityDetails, KeyActivity};
use smtp_oauth_exporter::checks::canary::{CanaryDetails, Found};
use smtp_oauth_exporter::checks::discovery::{DiscoveredApp, DiscoveryDetails};
use smtp_oauth_exporter::checks::graph::{
    policy::{SecretPolicy, SecretRules},
    CredentialInfo, CredentialOrigin, CredentialType, GraphDetails, Registration,
};
use smtp_oauth_exporter::checks::health::{HealthDetails, Issue, Service};
use smtp_oauth_exporter::checks::smtp::{CertFacts, Phase, ReplyFacts, SmtpDetails, TlsFacts};
use smtp_oauth_exporter::checks::token::TokenDetails;
use smtp_oauth_exporter::checks::traffic::{SenderTraffic, TraceStatus, TrafficDetails};
use smtp_oauth_exporter::checks::{Details, Failure, Report};
use smtp_oauth_exporter::metrics::{self, AgentInfo};
use smtp_oauth_exporter::plan::CheckKind;
use smtp_oauth_exporter::reasons::{CanaryReason, Reason, SmtpReason, TokenReason};
use smtp_oauth_exporter::state::StateStore;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn report(kind: CheckKind, target: &str, failure: Option<Failure>, details: Details) -> Report {
    Report {
        kind,
        target: target.into(),
        started_at: at(0),
        duration: Duration::from_millis(250),
        failure,
        details,
        retry_after: None,
    }
}

fn token(expires: Option<i64>) -> Details {
    Details::Token(TokenDetails {
        resource: Resource::Exchange,
        expires_at: expires.map(at),
        lifetime_seconds: expires.map(|e| e as u64),
        smtp_role: expires.map(|_| true),
        claims: None,
        http_status: if expires.is_some() { None } else { Some(401) },
    })
}

fn smtp(failed: Option<(Phase, u16, &str)>) -> Details {
    let phases: Vec<(Phase, Duration)> = Phase::ALL
        .iter()
        .take(if failed.is_some() { 7 } else { 9 })
        .map(|p| (*p, Duration::from_millis(10)))
        .collect();
    Details::Smtp(SmtpDetails {
        app: "billing".into(),
        address: "invoices@contoso.com".into(),
        phases,
        host: "smtp.office365.com".into(),
        port: 587,
        failed_phase: failed.map(|f| f.0),
        failed_reply: failed.map(|f| ReplyFacts {
            code: f.1,
            enhanced: Some(f.2.to_string()),
            text: "not in metrics".into(),
        }),
        token_has_role: Some(true),
        sent: None,
        tls: Some(std::sync::Arc::new(TlsFacts {
            version: "TLS 1.3".into(),
            chain: vec![
                CertFacts {
                    subject: "CN=smtp.office365.com".into(),
                    issuer: "CN=Example CA".into(),
                    serial: "0a1b".into(),
                    not_after: at(86_400 * 90),
                    fingerprint_sha256: "ab".repeat(32),
                },
                CertFacts {
                    subject: "CN=Example CA".into(),
                    issuer: "CN=Example Root".into(),
                    serial: "01".into(),
                    not_after: at(86_400 * 900),
                    fingerprint_sha256: "cd".repeat(32),
                },
            ],
        })),
        insecure_skip_verify: false,
    })
}

fn graph() -> Details {
    let cred = |key: &str, kind, name: Option<&str>, end: i64, in_use| CredentialInfo {
        key_id: key.into(),
        kind,
        origin: CredentialOrigin::Application,
        display_name: name.map(str::to_string),
        start: Some(at(-86_400)),
        end: Some(at(end)),
        in_use,
    };
    Details::Graph(GraphDetails {
        reader: "billing".into(),
        http_status: Some(200),
        registration: Some(Registration {
            object_id: Some("obj".into()),
            created: None,
            credentials: vec![
                cred(
                    "key-1",
                    CredentialType::Password,
                    Some("erp"),
                    86_400 * 20,
                    true,
                ),
                cred(
                    "key-2",
                    CredentialType::Password,
                    Some("erp"),
                    86_400 * 5,
                    false,
                ),
                cred(
                    "key-3",
                    CredentialType::Certificate,
                    None,
                    86_400 * 300,
                    false,
                ),
            ],
            earliest_expiry: Some(at(86_400 * 5)),
            next_expiry: Some(at(86_400 * 5)),
            in_use_matches: 1,
            hint_ambiguous: false,
        }),
        // The tenant forbids new secrets and caps their lifetime (app_management_policy).
        secret_policy: Some(SecretPolicy {
            known: Some(SecretRules {
                addition_blocked: true,
                max_lifetime: Some(std::time::Duration::from_secs(90 * 86_400)),
                from_app_policy: false,
            }),
            unknown: None,
        }),
    })
}

#[test]
fn metrics_exposition_matches_the_golden_file() {
    let state = StateStore::new();
    let failed = |reason: Reason, aadsts| Failure {
        reason,
        token_reason: None,
        cert_problem: None,
        aadsts,
        message: "not in metrics".into(),
        trace_id: Some("not in metrics".into()),
        correlation_id: None,
    };
    // The plan first, as the agent does: jobs count from an hour before, so the legacy app's
    // never-successful token check is overdue and `check_overdue` has a sample.
    let plan = smtp_oauth_exporter::config::from_yaml(
        "apps:\n  - { name: billing, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: x, checks: { activity: { enabled: true }, traffic: { enabled: true }, discovery: { enabled: true } } }\n  - { name: legacy, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000002, client_secret: y }\nmailboxes:\n  - { name: invoices, app: billing, address: invoices@contoso.com, expect_traffic_within: 30m }\n  - { name: scans, app: billing, address: scans@contoso.com }\n",
        "golden.yml",
        std::path::Path::new("."),
    )
    .unwrap();
    state.retain_at(&plan, at(-3600));
    state.record_delay(CheckKind::Smtp, Duration::from_millis(30));
    state.record(report(CheckKind::Token, "billing", None, token(Some(4000))));
    state.record(report(
        CheckKind::Token,
        "legacy",
        Some(failed(TokenReason::SecretExpired.into(), Some(7000222))),
        token(None),
    ));
    state.record(report(CheckKind::Smtp, "invoices", None, smtp(None)));
    state.record(report(
        CheckKind::Smtp,
        "scans",
        Some(failed(SmtpReason::AuthRejected.into(), None)),
        // Certificate verification switched off for this one (`smtp_tls_insecure_skip_verify`).
        match smtp(Some((Phase::Auth, 535, "5.7.3"))) {
            Details::Smtp(mut d) => {
                d.insecure_skip_verify = true;
                Details::Smtp(d)
            }
            _ => unreachable!(),
        },
    ));
    state.record(report(CheckKind::Graph, "billing", None, graph()));
    // A canary that found its message in Junk Email after 12.5 s.
    let mut canary_smtp = match smtp(None) {
        Details::Smtp(d) => d,
        _ => unreachable!(),
    };
    canary_smtp.tls = None;
    state.record(report(
        CheckKind::Canary,
        "invoices",
        Some(failed(CanaryReason::DeliveredToJunk.into(), None)),
        Details::Canary(Box::new(CanaryDetails {
            smtp: canary_smtp,
            to: "invoices@contoso.com".into(),
            reader: "billing".into(),
            message_id: Some("<not-in-metrics@smtp-oauth-exporter>".into()),
            accepted_at: Some(at(0)),
            found: Some(Found {
                received: at(0) + chrono::Duration::milliseconds(12_500),
                first_seen: at(14),
                junk: true,
                deleted: true,
            }),
            polls: 3,
            cleaned_up: 0,
            trace: None,
        })),
    ));
    // Credential activity: the secret in use signed in a minute ago, the other one (which
    // expires in 5 days) an hour ago, the certificate never.
    let key = |key_id: &str, kind, last: Option<i64>| KeyActivity {
        key_id: key_id.into(),
        kind,
        origin: CredentialOrigin::Application,
        expires: None,
        last_sign_in: last.map(at),
    };
    state.record(report(
        CheckKind::Activity,
        "billing",
        None,
        Details::Activity(ActivityDetails {
            reader: "billing".into(),
            http_status: Some(200),
            keys: vec![
                key("key-1", CredentialType::Password, Some(-60)),
                key("key-2", CredentialType::Password, Some(-3600)),
                key("key-3", CredentialType::Certificate, None),
            ],
            unavailable: None,
        }),
    ));
    // Message trace: invoices sent 40 messages in the hour before, the last 45 minutes ago (it
    // sends every 30 minutes: silent); scans 12, 3 of them quarantined.
    let counts = |pairs: &[(TraceStatus, u32)]| {
        let mut c = [0u32; 7];
        for (s, n) in pairs {
            c[s.index()] = *n;
        }
        c
    };
    let hour = at(-3600).timestamp() / 3600 * 3600;
    state.record(report(
        CheckKind::Traffic,
        "contoso.onmicrosoft.com",
        None,
        Details::Traffic(TrafficDetails {
            tenant: "contoso.onmicrosoft.com".into(),
            reader: "billing".into(),
            http_status: Some(200),
            window: Some((at(-7200), at(-60))),
            pages: 1,
            rows: 60,
            senders: vec![
                SenderTraffic {
                    mailbox: "invoices".into(),
                    hours: vec![(hour, counts(&[(TraceStatus::Delivered, 40)]))],
                    newest: Some(at(-2700)),
                    expect_within: Some(Duration::from_secs(1800)),
                },
                SenderTraffic {
                    mailbox: "scans".into(),
                    hours: vec![(
                        hour,
                        counts(&[(TraceStatus::Delivered, 9), (TraceStatus::Quarantined, 3)]),
                    )],
                    newest: Some(at(-600)),
                    expect_within: None,
                },
            ],
        }),
    ));
    // The inventory: the configured app, and one nobody configured whose secret signed in
    // two hours ago.
    let discovered_key = |key_id: &str, last: i64| KeyActivity {
        key_id: key_id.into(),
        kind: CredentialType::Password,
        origin: CredentialOrigin::ServicePrincipal,
        expires: None,
        last_sign_in: Some(at(last)),
    };
    state.record(report(
        CheckKind::Discovery,
        "contoso.onmicrosoft.com",
        None,
        Details::Discovery(DiscoveryDetails {
            tenant: "contoso.onmicrosoft.com".into(),
            reader: "billing".into(),
            http_status: Some(200),
            apps: vec![
                DiscoveredApp {
                    app_id: "00000000-0000-4000-8000-000000000001".into(),
                    display_name: "Billing".into(),
                    configured: Some("billing".into()),
                    credentials: None,
                    activity: Vec::new(),
                    note: None,
                },
                DiscoveredApp {
                    app_id: "00000000-0000-4000-8000-0000000000d1".into(),
                    display_name: "Intranet".into(),
                    configured: None,
                    credentials: Some(Registration {
                        object_id: Some("sp".into()),
                        created: None,
                        credentials: vec![CredentialInfo {
                            key_id: "key-d1".into(),
                            kind: CredentialType::Password,
                            origin: CredentialOrigin::ServicePrincipal,
                            display_name: Some("intranet".into()),
                            start: Some(at(-86_400)),
                            end: Some(at(86_400 * 20)),
                            in_use: false,
                        }],
                        earliest_expiry: Some(at(86_400 * 20)),
                        next_expiry: Some(at(86_400 * 20)),
                        in_use_matches: 0,
                        hint_ambiguous: false,
                    }),
                    activity: vec![discovered_key("key-d1", -7200)],
                    note: None,
                },
            ],
            activity_unavailable: None,
            activity_read: true,
        }),
    ));
    // Service health: an Exchange Online incident and an Entra advisory.
    state.record(report(
        CheckKind::Health,
        "billing",
        None,
        Details::Health(HealthDetails {
            tenant: "contoso.onmicrosoft.com".into(),
            http_status: Some(200),
            issues: vec![
                Issue {
                    id: "EX123456".into(),
                    service: Service::ExchangeOnline,
                    incident: true,
                    status: "service_degradation".into(),
                    title: "not in metrics".into(),
                    impact: "not in metrics".into(),
                    start: Some(at(-600)),
                },
                Issue {
                    id: "AD7".into(),
                    service: Service::MicrosoftEntra,
                    incident: false,
                    status: "investigating".into(),
                    title: "not in metrics".into(),
                    impact: "not in metrics".into(),
                    start: None,
                },
            ],
        }),
    ));
    // The verdicts, from those reports, for the plan they belong to.
    for t in plan.verdict_targets() {
        state.update_verdict(&plan, &t, at(60));
    }

    for (detail, file) in [(false, "metrics.golden"), (true, "metrics-detail.golden")] {
        let text = render(&state, detail);
        assert!(
            !text.contains("not in metrics"),
            "log text leaked into the metrics"
        );
        compare(&text, file);
    }
}

fn render(state: &StateStore, detail: bool) -> String {
    let agent = AgentInfo {
        config_reload_successful: true,
        config_reload_success_at: Some(at(-60)),
    };
    let tokens = [EntryStats {
        app: "billing".into(),
        resource: Resource::Exchange,
        requests_ok: 3,
        requests_failed: 1,
    }];
    state
        .with_view(|v| {
            metrics::render(
                &agent,
                v,
                &tokens,
                metrics::PageSettings {
                    detail,
                    stale_intervals: 3,
                    now: at(60),
                },
                0,
            )
        })
        .lines()
        .filter(|l| !l.contains("smtp_oauth_build_info"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn compare(text: &str, file: &str) {
    let path = std::path::Path::new("tests/testdata").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if text != golden {
        let diff: Vec<String> = golden
            .lines()
            .zip(text.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "the /metrics exposition changed ({file}: {} golden lines, {} now); first differences:\n{}",
            golden.lines().count(),
            text.lines().count(),
            diff.join("\n")
        );
    }
}
