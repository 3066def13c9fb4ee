//! One truth for alerts: the agent's own evaluator (`GET /alerts`, the push to Alertmanager) and
//! the shipped Prometheus rules must raise the same alerts with the same labels, minute by
//! minute. A timeline of reports (every alert on both sides of its threshold and of its `for:`)
//! goes through the real state store; each minute the agent's `/metrics` page is rendered from
//! that state, and becomes the series Prometheus would have scraped, while the agent's
//! evaluator and `for:` tracker say what fires. promtool then evaluates the shipped rules over
//! those series and must find exactly the agent's alerts at every minute, for every alert.
//! Annotations are left out of the comparison: they are text, each side words its own.
//! `SmtpOAuthExporterDown` and `SmtpOAuthExporterAbsent` are Prometheus' alone (an agent that is
//! down raises nothing): while the agent is scraped neither fires; a second timeline without
//! the agent checks them on Prometheus' side.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use smtp_oauth_exporter::alerts::{self, AlertName, Tracker};
use smtp_oauth_exporter::auth::Resource;
use smtp_oauth_exporter::checks::activity::{ActivityDetails, KeyActivity};
use smtp_oauth_exporter::checks::canary::{CanaryDetails, Found};
use smtp_oauth_exporter::checks::discovery::{DiscoveredApp, DiscoveryDetails};
use smtp_oauth_exporter::checks::graph::{
    CredentialInfo, CredentialOrigin, CredentialType, GraphDetails, Registration,
};
use smtp_oauth_exporter::checks::health::{HealthDetails, Issue, Service};
use smtp_oauth_exporter::checks::smtp::{CertFacts, Phase, ReplyFacts, SmtpDetails, TlsFacts};
use smtp_oauth_exporter::checks::token::TokenDetails;
use smtp_oauth_exporter::checks::traffic::{SenderTraffic, TraceStatus, TrafficDetails};
use smtp_oauth_exporter::checks::{Details, Failure, Report};
use smtp_oauth_exporter::metrics::{self, AgentInfo, PageSettings};
use smtp_oauth_exporter::plan::{AlertSettings, CheckKind, Plan};
use smtp_oauth_exporter::reasons::{
    CanaryReason, CommonReason, GraphReason, Reason, SmtpReason, TokenReason,
};
use smtp_oauth_exporter::state::StateStore;

/// The labels Prometheus adds to every series it scrapes from the agent.
const JOB: (&str, &str) = ("job", "smtp-oauth");
const INSTANCE: (&str, &str) = ("instance", "agent:9587");
/// Minutes of the timeline: past the longest `for:` (an hour) on both sides.
const MINUTES: i64 = 75;
/// The SMTP host of the mailbox checked without certificate verification.
const INSECURE: &str = "insecure.fabrikam.com";

/// promtool's clock starts at the Unix epoch: so does the timeline.
fn at(minute: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(minute * 60, 0).unwrap()
}

fn days(d: f64) -> chrono::Duration {
    chrono::Duration::seconds((d * 86_400.0) as i64)
}

const CONFIG: &str = r#"
apps:
  - { name: a-token, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000001, client_secret: "Abc~x" }
  - { name: a-throttled, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000002, client_secret: "Abc~x" }
  - { name: a-role, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000003, client_secret: "Abc~x", authorization: classic }
  - { name: a-rbac, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000009, client_secret: "Abc~x" }
  - { name: a-graph403, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000004, client_secret: "Abc~x" }
  - { name: a-cred, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000005, client_secret: "Abc~x" }
  - { name: a-expired, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000006, client_secret: "Abc~x" }
  - { name: a-notfound, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000007, client_secret: "Abc~x" }
  - { name: a-traffic, tenant: traffic.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000011, client_secret: "Abc~x", checks: { traffic: { enabled: true } } }
  - { name: a-inventory, tenant: inventory.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000012, client_secret: "Abc~x", checks: { graph: { enabled: false }, discovery: { enabled: true }, activity: { enabled: true } } }
  - { name: a-active, tenant: contoso.onmicrosoft.com, client_id: 00000000-0000-4000-8000-000000000010, client_secret: "Abc~x", checks: { activity: { enabled: true } } }
  - name: a-mail
    tenant: fabrikam.onmicrosoft.com
    client_id: 00000000-0000-4000-8000-000000000008
    client_secret: "Abc~x"
    checks: { health: { enabled: true } }
mailboxes:
  - { name: m-auth, app: a-mail, address: auth@fabrikam.com }
  - { name: m-unreachable, app: a-mail, address: unreachable@fabrikam.com }
  - { name: m-starttls, app: a-mail, address: starttls@fabrikam.com }
  - { name: m-flaky, app: a-mail, address: flaky@fabrikam.com }
  - { name: m-stale, app: a-mail, address: stale@fabrikam.com }
  - { name: m-proxy, app: a-mail, address: proxy@fabrikam.com, smtp_host: proxy.fabrikam.com }
  - { name: m-insecure, app: a-mail, address: insecure@fabrikam.com, smtp_host: insecure.fabrikam.com, tls_insecure_skip_verify: true }
  - { name: m-lost, app: a-mail, address: lost@fabrikam.com, canary: { schedule: 15m } }
  - { name: m-slow, app: a-mail, address: slow@fabrikam.com, canary: { schedule: 15m } }
  - { name: m-junk, app: a-mail, address: junk@fabrikam.com, canary: { schedule: 15m } }
  - { name: m-reader, app: a-mail, address: reader@fabrikam.com, canary: { schedule: 15m } }
  - { name: m-silent, app: a-traffic, address: silent@traffic.example, expect_traffic_within: 30m }
  - { name: m-failing, app: a-traffic, address: failing@traffic.example, expect_traffic_within: 1d }
"#;

fn report(
    kind: CheckKind,
    target: &str,
    minute: i64,
    failure: Option<Failure>,
    d: Details,
) -> Report {
    Report {
        kind,
        target: target.into(),
        started_at: at(minute),
        duration: Duration::from_millis(200),
        failure,
        details: d,
        retry_after: None,
    }
}

fn fail(reason: impl Into<Reason>) -> Option<Failure> {
    Some(Failure::new(reason, "scripted"))
}

fn token(role: bool) -> Details {
    Details::Token(TokenDetails {
        resource: Resource::Exchange,
        expires_at: None,
        lifetime_seconds: Some(3600),
        smtp_role: Some(role),
        claims: None,
        http_status: None,
    })
}

fn smtp(
    host: &str,
    failed: Option<(Phase, u16, &str)>,
    cert_days: f64,
    minute: i64,
) -> SmtpDetails {
    let tls = Arc::new(TlsFacts {
        version: "TLS 1.3".into(),
        chain: vec![CertFacts {
            subject: format!("CN={host}"),
            issuer: "CN=Example CA".into(),
            serial: "01".into(),
            not_after: at(minute) + days(cert_days),
            fingerprint_sha256: "ab".repeat(32),
        }],
    });
    SmtpDetails {
        app: "a-mail".into(),
        address: "x@fabrikam.com".into(),
        phases: Phase::ALL
            .iter()
            .map(|p| (*p, Duration::from_millis(5)))
            .collect(),
        host: host.into(),
        port: 587,
        failed_phase: failed.map(|f| f.0),
        failed_reply: failed.map(|f| ReplyFacts {
            code: f.1,
            enhanced: Some(f.2.into()),
            text: f.2.into(),
        }),
        tls: Some(tls),
        insecure_skip_verify: host == INSECURE,
        token_has_role: Some(true),
        sent: None,
    }
}

fn registration(creds: &[(&str, f64, bool)], now: DateTime<Utc>) -> Details {
    let credentials: Vec<CredentialInfo> = creds
        .iter()
        .map(|(key, d, in_use)| CredentialInfo {
            key_id: key.to_string(),
            kind: CredentialType::Password,
            origin: CredentialOrigin::Application,
            display_name: Some(format!("{key}-name")),
            start: Some(now - days(300.0)),
            end: Some(now + days(*d)),
            in_use: *in_use,
        })
        .collect();
    let matches = credentials.iter().filter(|c| c.in_use).count();
    Details::Graph(GraphDetails {
        reader: "x".into(),
        http_status: Some(200),
        registration: Some(Registration {
            object_id: Some("obj".into()),
            created: None,
            earliest_expiry: credentials.iter().filter_map(|c| c.end).min(),
            next_expiry: credentials.iter().filter_map(|c| c.end).min(),
            credentials,
            in_use_matches: matches,
            hint_ambiguous: matches > 1,
        }),
        secret_policy: None,
    })
}

fn canary(
    target: &str,
    minute: i64,
    failure: Option<Failure>,
    found: Option<(f64, bool)>,
) -> Report {
    let accepted = at(minute);
    let d = CanaryDetails {
        smtp: smtp("smtp.office365.com", None, 200.0, minute),
        to: format!("{target}@fabrikam.com"),
        reader: "a-mail".into(),
        message_id: Some(format!("<{minute}@x>")),
        accepted_at: Some(accepted),
        found: found.map(|(secs, junk)| Found {
            received: accepted + chrono::Duration::seconds(secs as i64),
            first_seen: accepted + chrono::Duration::seconds(secs as i64),
            junk,
            deleted: true,
        }),
        polls: 1,
        cleaned_up: 0,
        trace: None,
    };
    report(
        CheckKind::Canary,
        target,
        minute,
        failure,
        Details::Canary(Box::new(d)),
    )
}

/// The reports that finish at a minute: each check on its schedule, scripted to fail or not.
fn reports(minute: i64) -> Vec<Report> {
    let m = minute;
    let mut out = Vec::new();
    let every5 = m % 5 == 0;
    if every5 {
        // a-token: Entra refuses the expired secret until minute 40, then it works.
        out.push(if m < 40 {
            let mut f = Failure::new(TokenReason::SecretExpired, "AADSTS7000222");
            f.aadsts = Some(7000222);
            report(CheckKind::Token, "a-token", m, Some(f), Details::None)
        } else {
            report(CheckKind::Token, "a-token", m, None, token(true))
        });
        // a-throttled: throttled for good, which never pages (and is not stale).
        out.push(report(
            CheckKind::Token,
            "a-throttled",
            m,
            fail(TokenReason::Throttled),
            Details::None,
        ));
        // a-role: tokens without SMTP.SendAsApp, for an app configured as classic.
        out.push(report(CheckKind::Token, "a-role", m, None, token(false)));
        // a-rbac: the same tokens on `auto` (RBAC for Applications, say): no alert on either
        // side, ever.
        out.push(report(CheckKind::Token, "a-rbac", m, None, token(false)));
        for a in ["a-graph403", "a-cred", "a-expired", "a-notfound", "a-mail"] {
            out.push(report(CheckKind::Token, a, m, None, token(true)));
        }
        // Mailboxes: refused at AUTH, unreachable, downgraded, failing once, behind a proxy
        // whose certificate expires in 13.9 days, and one without verification; m-stale never runs.
        let ok = |name: &str, host: &str, cert: f64| {
            report(
                CheckKind::Smtp,
                name,
                m,
                None,
                Details::Smtp(smtp(host, None, cert, m)),
            )
        };
        out.push(report(
            CheckKind::Smtp,
            "m-auth",
            m,
            fail(SmtpReason::AuthRejected),
            Details::Smtp(smtp(
                "smtp.office365.com",
                Some((Phase::Auth, 535, "5.7.3")),
                200.0,
                m,
            )),
        ));
        out.push(report(
            CheckKind::Smtp,
            "m-unreachable",
            m,
            fail(CommonReason::Timeout),
            Details::Smtp(smtp("smtp.office365.com", None, 200.0, m)),
        ));
        out.push(report(
            CheckKind::Smtp,
            "m-starttls",
            m,
            if m < 30 {
                fail(SmtpReason::StarttlsMissing)
            } else {
                None
            },
            Details::Smtp(smtp("smtp.office365.com", None, 200.0, m)),
        ));
        out.push(if m == 0 {
            report(
                CheckKind::Smtp,
                "m-flaky",
                m,
                fail(SmtpReason::Throttled),
                Details::Smtp(smtp(
                    "smtp.office365.com",
                    Some((Phase::Auth, 432, "4.3.2")),
                    200.0,
                    m,
                )),
            )
        } else {
            ok("m-flaky", "smtp.office365.com", 200.0)
        });
        // The proxy's certificate: 14 days and 2 minutes left at minute 0, crossing 14 days.
        let left = 14.0 + 2.0 / 1440.0 - (m as f64) / 1440.0;
        out.push(ok("m-proxy", "proxy.fabrikam.com", left));
        out.push(ok("m-insecure", INSECURE, 200.0));
        // Service health: an Exchange incident open until minute 50.
        let issues = if m < 50 {
            vec![Issue {
                id: "EX1001".into(),
                service: Service::ExchangeOnline,
                incident: true,
                status: "service_degradation".into(),
                title: "Delays".into(),
                impact: "Mail is delayed".into(),
                start: Some(at(0)),
            }]
        } else {
            Vec::new()
        };
        out.push(report(
            CheckKind::Health,
            "a-mail",
            m,
            None,
            Details::Health(HealthDetails {
                tenant: "fabrikam.onmicrosoft.com".into(),
                http_status: Some(200),
                issues,
            }),
        ));
    }
    if m == 0 {
        // Graph, every 6 hours: once in the timeline.
        out.push(report(
            CheckKind::Graph,
            "a-graph403",
            m,
            fail(GraphReason::PermissionMissing),
            Details::Graph(GraphDetails::default()),
        ));
        // The in-use secret of a-cred expires in 7 days and 30 minutes, another in 29.5 days,
        // a third in 31; a-expired's in 20 minutes; a-notfound's matches none.
        let now = at(0);
        out.push(report(
            CheckKind::Graph,
            "a-cred",
            m,
            None,
            registration(
                &[
                    ("k-in-use", 7.0 + 30.0 / 1440.0, true),
                    ("k-soon", 29.5, false),
                    ("k-far", 31.0, false),
                ],
                now,
            ),
        ));
        out.push(report(
            CheckKind::Graph,
            "a-expired",
            m,
            None,
            registration(&[("k-ending", 20.0 / 1440.0, true)], now),
        ));
        out.push(report(
            CheckKind::Graph,
            "a-notfound",
            m,
            None,
            registration(&[("k-other", 300.0, false)], now),
        ));
        for a in ["a-token", "a-throttled", "a-role", "a-mail"] {
            out.push(report(
                CheckKind::Graph,
                a,
                m,
                None,
                registration(&[("k", 300.0, true)], now),
            ));
        }
        // a-active: the agent's secret, and one the application signed in with an hour ago
        // that expires in 7 days and 30 minutes (soon, then under 7 days); a third last signed
        // in 90 days less 10 minutes ago (stale from minute 10).
        out.push(report(
            CheckKind::Graph,
            "a-active",
            m,
            None,
            registration(
                &[
                    ("k-agent", 300.0, true),
                    ("k-app", 7.0 + 30.0 / 1440.0, false),
                    ("k-old", 200.0, false),
                ],
                now,
            ),
        ));
        let key = |k: &str, ago: f64| KeyActivity {
            key_id: k.into(),
            kind: CredentialType::Password,
            origin: CredentialOrigin::Application,
            expires: None,
            last_sign_in: Some(now - days(ago)),
        };
        out.push(report(
            CheckKind::Activity,
            "a-active",
            m,
            None,
            Details::Activity(ActivityDetails {
                reader: "a-active".into(),
                http_status: Some(200),
                keys: vec![
                    key("k-agent", 0.0),
                    key("k-app", 1.0 / 24.0),
                    key("k-old", 90.0 - 10.0 / 1440.0),
                ],
                unavailable: None,
            }),
        ));
    }
    if every5 {
        // Message trace, the last 5 minutes each time: m-silent sends once each until minute
        // 20 (then silent for more than its 30 minutes from minute 51); m-failing sends 20
        // messages and 5 failures at minute 0 (a share of 20%), then 30 more at minute 40
        // (9%).
        let counts = |pairs: &[(TraceStatus, u32)]| {
            let mut c = [0u32; 7];
            for (s, n) in pairs {
                c[s.index()] = *n;
            }
            c
        };
        let hour = |minute: i64| minute * 60 / 3600 * 3600;
        let silent = if m <= 20 {
            vec![(hour(m), counts(&[(TraceStatus::Delivered, 1)]))]
        } else {
            Vec::new()
        };
        let failing = match m {
            0 => vec![(
                0,
                counts(&[(TraceStatus::Delivered, 20), (TraceStatus::Failed, 5)]),
            )],
            40 => vec![(0, counts(&[(TraceStatus::Delivered, 30)]))],
            _ => Vec::new(),
        };
        out.push(report(
            CheckKind::Traffic,
            "traffic.onmicrosoft.com",
            m,
            None,
            Details::Traffic(TrafficDetails {
                tenant: "traffic.onmicrosoft.com".into(),
                reader: "a-traffic".into(),
                http_status: Some(200),
                window: Some((at(m - 5), at(m))),
                pages: 1,
                rows: 0,
                senders: vec![
                    SenderTraffic {
                        mailbox: "m-silent".into(),
                        newest: (m <= 20).then(|| at(m)),
                        hours: silent,
                        expect_within: Some(Duration::from_secs(1800)),
                    },
                    SenderTraffic {
                        mailbox: "m-failing".into(),
                        newest: (!failing.is_empty()).then(|| at(m)),
                        hours: failing,
                        expect_within: Some(Duration::from_secs(86_400)),
                    },
                ],
            }),
        ));
    }
    if m == 0 {
        // The inventory: an app nobody configured whose secret the application signed in with
        // two hours ago expires in 7 days and 20 minutes, another of its secrets last signed in
        // 90 days less 5 minutes ago, a third expires in 29.5 days unused.
        let now = at(0);
        let Details::Graph(g) = registration(
            &[
                ("k-d-active", 7.0 + 20.0 / 1440.0, false),
                ("k-d-stale", 200.0, false),
                ("k-d-info", 29.5, false),
            ],
            now,
        ) else {
            unreachable!()
        };
        let key = |k: &str, ago: f64| KeyActivity {
            key_id: k.into(),
            kind: CredentialType::Password,
            origin: CredentialOrigin::Application,
            expires: None,
            last_sign_in: Some(now - days(ago)),
        };
        out.push(report(
            CheckKind::Discovery,
            "inventory.onmicrosoft.com",
            m,
            None,
            Details::Discovery(DiscoveryDetails {
                tenant: "inventory.onmicrosoft.com".into(),
                reader: "a-inventory".into(),
                http_status: Some(200),
                apps: vec![
                    DiscoveredApp {
                        app_id: "00000000-0000-4000-8000-000000000012".into(),
                        display_name: "Inventory".into(),
                        configured: Some("a-inventory".into()),
                        credentials: None,
                        activity: Vec::new(),
                        note: None,
                    },
                    DiscoveredApp {
                        app_id: "00000000-0000-4000-8000-0000000000d1".into(),
                        display_name: "Intranet".into(),
                        configured: None,
                        credentials: g.registration,
                        activity: vec![
                            key("k-d-active", 2.0 / 24.0),
                            key("k-d-stale", 90.0 - 5.0 / 1440.0),
                        ],
                        note: None,
                    },
                ],
                activity_unavailable: None,
                activity_read: true,
            }),
        ));
    }
    if m % 15 == 0 {
        // Canaries: one lost until minute 45, one taking 700 s, one landing in Junk Email.
        out.push(if m < 45 {
            canary("m-lost", m, fail(CanaryReason::NotDelivered), None)
        } else {
            canary("m-lost", m, None, Some((3.0, false)))
        });
        out.push(canary("m-slow", m, None, Some((700.0, false))));
        // A reader without Mail.ReadWrite until minute 45.
        out.push(if m < 45 {
            canary(
                "m-reader",
                m,
                fail(CanaryReason::ReaderPermissionMissing),
                None,
            )
        } else {
            canary("m-reader", m, None, Some((2.0, false)))
        });
        out.push(canary(
            "m-junk",
            m,
            fail(CanaryReason::DeliveredToJunk),
            Some((4.0, true)),
        ));
    }
    out
}

/// Whether the agent's last reload failed, at a minute: from 20 to 40.
fn reload_failed(minute: i64) -> bool {
    (20..40).contains(&minute)
}

/// A series of the exposition: name and labels (without the value).
type Series = BTreeMap<String, String>;

/// The samples of a text exposition: (labels with `__name__`, value).
fn parse_exposition(text: &str) -> Vec<(Series, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value.parse().expect("a number");
        let mut labels = Series::new();
        let (name, rest) = match series.split_once('{') {
            Some((n, r)) => (n, r.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        labels.insert("__name__".into(), name.into());
        let c: Vec<char> = rest.chars().collect();
        let mut i = 0;
        while i < c.len() {
            let key: String = c[i..].iter().take_while(|ch| **ch != '=').collect();
            i += key.len() + 2; // ="
            let mut v = String::new();
            while c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                    v.push(match c[i] {
                        'n' => '\n',
                        o => o,
                    });
                } else {
                    v.push(c[i]);
                }
                i += 1;
            }
            i += 2; // ",
            labels.insert(key, v);
        }
        out.push((labels, value));
    }
    out
}

fn selector(s: &Series) -> String {
    let labels: Vec<String> = s
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    format!("{}{{{}}}", s["__name__"], labels.join(","))
}

/// The alert rules as shipped, without annotations, as promtool reads them (JSON is YAML).
fn rules_without_annotations() -> serde_json::Value {
    // The shipped rules file as generated (its recording rules and blind holds included), with
    // the annotations left out: the agent words its own.
    let mut file: serde_json::Value =
        yaml_serde::from_str(&alerts::rules_yaml(&AlertSettings::default())).unwrap();
    for rule in file["groups"][0]["rules"].as_array_mut().unwrap() {
        if let Some(r) = rule.as_object_mut() {
            r.remove("annotations");
        }
    }
    file
}

/// The series values over the timeline in promtool's notation: `_` before a series appears,
/// `stale` once it is gone (as a scrape without it leaves a staleness marker).
fn values(samples: &[Option<f64>]) -> String {
    let mut seen = false;
    samples
        .iter()
        .map(|v| match v {
            Some(v) => {
                seen = true;
                format!("{v}")
            }
            None if seen => "stale".into(),
            None => "_".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn promtool_test(test: serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        rules_without_annotations().to_string(),
    )
    .unwrap();
    let path = dir.path().join("parity.test.yml");
    std::fs::write(&path, test.to_string()).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("promtool is required (scripts/test.sh installs it): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the shipped rules and the agent's evaluator disagree (exp: the agent's alerts; got: Prometheus'):\n{text}"
    );
}

#[test]
fn the_agents_alerts_are_the_rules_alerts_minute_by_minute() {
    let plan: Plan =
        smtp_oauth_exporter::config::from_yaml(CONFIG, "parity.yml", std::path::Path::new("."))
            .expect("the timeline's configuration loads");
    let settings = AlertSettings::default();
    let state = StateStore::new();
    state.retain_at(&plan, at(0));
    let mut tracker = Tracker::default();
    // Every series of the timeline: its values by minute.
    let mut history: BTreeMap<Series, Vec<Option<f64>>> = BTreeMap::new();
    // What the agent fires, by minute and alert.
    let mut fired: Vec<BTreeMap<AlertName, Vec<Series>>> = Vec::new();
    let names: Vec<String> = alerts::rules(&settings)
        .iter()
        .flat_map(|r| {
            // The alert's expression with its blind hold (which reads checks_settled).
            format!("{} {}", r.expr, r.held_expr())
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("smtp_oauth_"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    for minute in 0..=MINUTES {
        let now = at(minute);
        for r in reports(minute) {
            state.record(r);
        }
        for t in plan.verdict_targets() {
            state.update_verdict(&plan, &t, now);
        }
        let agent = AgentInfo {
            config_reload_successful: !reload_failed(minute),
            config_reload_success_at: Some(at(0)),
        };
        let page = state.with_view(|view| {
            metrics::render(
                &agent,
                view,
                &[],
                PageSettings {
                    detail: false,
                    stale_intervals: settings.stale_intervals,
                    now,
                },
                0,
            )
        });
        let mut scraped: Vec<(Series, f64)> = parse_exposition(&page)
            .into_iter()
            .filter(|(s, _)| names.contains(&s["__name__"]))
            .collect();
        scraped.push(([("__name__".to_string(), "up".to_string())].into(), 1.0));
        for (mut s, v) in scraped {
            s.insert(JOB.0.into(), JOB.1.into());
            s.insert(INSTANCE.0.into(), INSTANCE.1.into());
            let row = history
                .entry(s)
                .or_insert_with(|| vec![None; minute as usize]);
            row.push(Some(v));
        }
        for row in history.values_mut() {
            row.resize(minute as usize + 1, None);
        }
        let candidates =
            state.with_view(|view| alerts::evaluate(&plan, view, &agent, &settings, now, ""));
        let update = tracker.update(candidates, now);
        let mut by_name: BTreeMap<AlertName, Vec<Series>> = BTreeMap::new();
        for a in update.firing {
            let name = AlertName::ALL
                .into_iter()
                .find(|n| n.as_str() == a.labels["alertname"])
                .expect("a known alert");
            let mut labels: Series = a.labels.clone().into_iter().collect();
            labels.remove("alertname");
            labels.insert(JOB.0.into(), JOB.1.into());
            labels.insert(INSTANCE.0.into(), INSTANCE.1.into());
            by_name.entry(name).or_default().push(labels);
        }
        fired.push(by_name);
    }

    // Both sides of every threshold and `for:` are in the timeline: each alert the agent
    // evaluates fires at some minute and is silent at another.
    for name in AlertName::ALL {
        let firing = fired.iter().filter(|m| m.contains_key(&name)).count();
        if matches!(name, AlertName::ExporterDown | AlertName::ExporterAbsent) {
            assert_eq!(firing, 0, "{name} is Prometheus' alone");
        } else if name == AlertName::TlsVerificationOff {
            // A configuration fact: on for m-insecure all along, off for every other mailbox.
            assert_eq!(firing, fired.len(), "{name}");
        } else {
            assert!(
                firing > 0 && firing < fired.len(),
                "{name} fires at {firing} of {} minutes: the timeline must cover both sides",
                fired.len()
            );
        }
    }

    let input_series: Vec<serde_json::Value> = history
        .iter()
        .map(|(s, v)| serde_json::json!({"series": selector(s), "values": values(v)}))
        .collect();
    let mut tests = Vec::new();
    for (minute, by_name) in fired.iter().enumerate() {
        for name in AlertName::ALL {
            let exp: Vec<serde_json::Value> = by_name
                .get(&name)
                .into_iter()
                .flatten()
                .map(|labels| serde_json::json!({"exp_labels": labels}))
                .collect();
            tests.push(serde_json::json!({
                "eval_time": format!("{minute}m"),
                "alertname": name.as_str(),
                "exp_alerts": exp,
            }));
        }
    }
    promtool_test(serde_json::json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": tests}],
    }));
}

/// The two alerts about the agent itself, which only Prometheus can raise: nothing is scraped
/// (`up` 0, no series), down after 5 minutes, absent after 10.
#[test]
fn only_prometheus_sees_the_agent_down_or_gone() {
    let expect = |minute: i64, name: AlertName| -> Vec<serde_json::Value> {
        let labels = match name {
            AlertName::ExporterDown if minute >= 5 => {
                serde_json::json!({"severity": "critical", "cause": "exporter_down", "job": JOB.1, "instance": INSTANCE.1})
            }
            AlertName::ExporterAbsent if minute >= 10 => {
                serde_json::json!({"severity": "critical", "cause": "exporter_absent"})
            }
            _ => return Vec::new(),
        };
        vec![serde_json::json!({"exp_labels": labels})]
    };
    let mut tests = Vec::new();
    for minute in 0..=15 {
        for name in AlertName::ALL {
            tests.push(serde_json::json!({
                "eval_time": format!("{minute}m"),
                "alertname": name.as_str(),
                "exp_alerts": expect(minute, name),
            }));
        }
    }
    let up = format!("up{{job=\"{}\",instance=\"{}\"}}", JOB.1, INSTANCE.1);
    promtool_test(serde_json::json!({
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [{"series": up, "values": "0x15"}], "alert_rule_test": tests}],
    }));
}
