//! Micro-benchmarks of the paths the heap and CPU profiles of a 10,000-mailbox agent show:
//! rendering `/metrics`, recording a report and re-diagnosing its mailbox (the scheduler's sink,
//! 10,000 times per round), diagnosing one mailbox, and reading an SMTP reply.
//! Run with `bench/micro.sh` (criterion; not part of the tests).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use smtp_oauth_exporter::auth::Resource;
use smtp_oauth_exporter::checks::smtp::{CertFacts, Phase, SmtpDetails, TlsFacts};
use smtp_oauth_exporter::checks::token::TokenDetails;
use smtp_oauth_exporter::checks::{Details, Report};
use smtp_oauth_exporter::metrics::{self, AgentInfo};
use smtp_oauth_exporter::plan::{CheckKind, Plan};
use smtp_oauth_exporter::state::StateStore;

const APPS: usize = 1_000;
const PER_APP: usize = 10;

fn plan() -> Plan {
    let mut yaml = String::from("apps:\n");
    for a in 0..APPS {
        yaml += &format!(
            "  - {{ name: app-{a}, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-{a:012}, client_secret: s }}\n"
        );
    }
    yaml += "mailboxes:\n";
    for a in 0..APPS {
        for m in 0..PER_APP {
            yaml += &format!(
                "  - {{ name: mb-{a}-{m}, app: app-{a}, address: mb-{a}-{m}@contoso.com }}\n"
            );
        }
    }
    smtp_oauth_exporter::config::from_yaml(&yaml, "bench.yml", std::path::Path::new("."))
        .expect("bench config")
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn tls() -> Arc<TlsFacts> {
    Arc::new(TlsFacts {
        version: "TLS 1.3".into(),
        chain: vec![CertFacts {
            subject: "CN=smtp.office365.com".into(),
            issuer: "CN=Example CA".into(),
            serial: "0a1b".into(),
            not_after: at(),
            fingerprint_sha256: "ab".repeat(32),
        }],
    })
}

fn smtp_report(mailbox: &str, app: &str) -> Report {
    Report {
        kind: CheckKind::Smtp,
        target: mailbox.into(),
        started_at: at(),
        duration: Duration::from_millis(12),
        failure: None,
        details: Details::Smtp(SmtpDetails {
            app: app.into(),
            address: format!("{mailbox}@contoso.com"),
            phases: Phase::ALL
                .iter()
                .map(|p| (*p, Duration::from_micros(900)))
                .collect(),
            host: "smtp.office365.com".into(),
            port: 587,
            failed_phase: None,
            failed_reply: None,
            tls: Some(tls()),
            insecure_skip_verify: false,
            token_has_role: Some(true),
            sent: None,
        }),
        retry_after: None,
    }
}

fn token_report(app: &str) -> Report {
    Report {
        kind: CheckKind::Token,
        target: app.into(),
        started_at: at(),
        duration: Duration::from_millis(40),
        failure: None,
        details: Details::Token(TokenDetails {
            resource: Resource::Exchange,
            expires_at: Some(at()),
            lifetime_seconds: Some(4000),
            smtp_role: Some(true),
            claims: None,
            http_status: None,
        }),
        retry_after: None,
    }
}

fn filled(plan: &Plan) -> StateStore {
    let state = StateStore::new();
    state.retain(plan);
    for a in 0..APPS {
        state.record(token_report(&format!("app-{a}")));
        for m in 0..PER_APP {
            state.record(smtp_report(&format!("mb-{a}-{m}"), &format!("app-{a}")));
        }
    }
    for t in plan.verdict_targets() {
        state.update_verdict(plan, &t, at());
    }
    state
}

fn benches(c: &mut Criterion) {
    let plan = plan();
    let state = filled(&plan);
    let agent = AgentInfo {
        config_reload_successful: true,
        config_reload_success_at: Some(at()),
    };
    let page = metrics::PageSettings {
        detail: false,
        stale_intervals: 3,
        now: at(),
    };
    let size = state
        .with_view(|v| metrics::render(&agent, v, &[], page, 0))
        .len();
    c.bench_function("render /metrics, 10,000 mailboxes", |b| {
        b.iter(|| state.with_view(|v| black_box(metrics::render(&agent, v, &[], page, size))))
    });
    let target = plan.target("mb-500-5").unwrap().clone();
    let report = smtp_report("mb-500-5", "app-500");
    c.bench_function("record a report and re-diagnose its mailbox", |b| {
        b.iter(|| {
            state.record(black_box(report.clone()));
            black_box(state.update_verdict(&plan, &target, at()))
        })
    });
    let evidence = state.evidence(&target);
    c.bench_function("diagnose a mailbox", |b| {
        b.iter(|| {
            black_box(smtp_oauth_exporter::diagnosis::diagnose(&evidence.inputs(
                &target,
                &plan,
                at(),
            )))
        })
    });
    let ehlo: Vec<u8> = [
        "250-SIM01.prod.outlook.office365.com Hello [127.0.0.1]",
        "250-SIZE 157286400",
        "250-PIPELINING",
        "250-DSN",
        "250-ENHANCEDSTATUSCODES",
        "250-AUTH LOGIN XOAUTH2",
        "250-8BITMIME",
        "250-BINARYMIME",
        "250-CHUNKING",
        "250 SMTPUTF8",
    ]
    .iter()
    .flat_map(|l| format!("{l}\r\n").into_bytes())
    .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    c.bench_function("read a 10-line EHLO reply", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut r = tokio::io::BufReader::new(&ehlo[..]);
                black_box(
                    smtp_oauth_exporter::checks::smtp::reply::read_reply(&mut r)
                        .await
                        .unwrap(),
                )
            })
        })
    });
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
