//! Graph credential check over loopback: one series per credential keyed by keyId, the credential
//! in use found by secret hint or certificate thumbprint, ambiguity, the earliest and the next
//! expiry, the reader app, every failure reason, and a 429's Retry-After holding back the next
//! Graph call.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sha1::Digest;
use smtp_oauth_exporter::auth::TokenCache;
use smtp_oauth_exporter::checks::Context;
use smtp_oauth_exporter::plan::{CheckKind, JobKey};
use smtp_oauth_exporter::scheduler::Scheduler;
use smtp_oauth_exporter::sim::{
    app_certificate, GraphFault, SimApp, TokenFault, ROLE_APPLICATION_READ_ALL,
};
use smtp_oauth_exporter::sink::StateSink;
use smtp_oauth_exporter::state::StateStore;
use tokio_util::sync::CancellationToken;

use crate::common::*;

const HEADER: &str = "scheduler:\n  startup_spread: 200ms\nmetrics:\n  detail: true\ndefaults:\n  checks:\n    token: { enabled: false }\n    graph: { schedule: 1s, timeout: 2s }\napps:\n";

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

fn graph_ok(t: &str, target: &str) -> bool {
    value(
        t,
        "smtp_oauth_check_success",
        &[("check", "graph"), ("target", target)],
    ) == Some(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_has_a_series_and_the_secret_in_use_is_found_by_its_hint() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    let long_name = format!("line one\nline two\t{}", "x".repeat(200));
    let app = SimApp::new(TENANT, &id, "Mailer")
        .with_secret(
            "Abc~current-value",
            Some("smtp"),
            now - days(10),
            now + days(20),
        )
        // Same display name as the one in use: still its own series (keyed by keyId).
        .with_secret(
            "Xyz~previous-value",
            Some("smtp"),
            now - days(400),
            now + days(3),
        )
        .with_secret("Qrs~unnamed", None, now - days(1), now + days(700))
        .with_secret(
            "Lmn~long-name",
            Some(&long_name),
            now - days(1),
            now + days(100),
        )
        .with_graph_role(ROLE_APPLICATION_READ_ALL);
    w.sim.add_app(app.clone());
    let file = w.file("mailer.secret", "Abc~current-value\n");
    let agent = w
        .agent(&format!(
            "{HEADER}{}",
            secret_app(&w, "mailer", &id, &file, "")
        ))
        .await;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "a successful Graph check",
        |t| graph_ok(t, "mailer"),
    )
    .await;

    for (i, s) in app.secrets.iter().enumerate() {
        let l = [
            ("target", "mailer"),
            ("key_id", s.key_id.as_str()),
            ("type", "password"),
        ];
        assert_eq!(
            value(&text, "smtp_oauth_credential_expiry_timestamp_seconds", &l),
            Some(s.end.timestamp() as f64),
            "{i}\n{text}"
        );
        assert_eq!(
            value(&text, "smtp_oauth_credential_start_timestamp_seconds", &l),
            Some(s.start.timestamp() as f64),
            "{i}"
        );
        // Present for the credential in use only.
        let in_use = if i == 0 { Some(1.0) } else { None };
        assert_eq!(
            value(&text, "smtp_oauth_credential_in_use", &l),
            in_use,
            "{i}"
        );
    }
    let series = |name: &str, needle: &str| {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(needle))
            .count()
    };
    assert_eq!(
        series(
            "smtp_oauth_credential_expiry_timestamp_seconds",
            "target=\"mailer\""
        ),
        4
    );
    assert_eq!(
        series(
            "smtp_oauth_credential_expiry_timestamp_seconds",
            "display_name=\"smtp\""
        ),
        2,
        "both secrets named smtp are kept"
    );
    // A missing display name is an empty label; a hostile one loses its control characters and
    // is cut at 128 characters.
    let unnamed = [
        ("key_id", app.secrets[2].key_id.as_str()),
        ("display_name", ""),
    ];
    assert!(value(
        &text,
        "smtp_oauth_credential_expiry_timestamp_seconds",
        &unnamed
    )
    .is_some());
    let cleaned: String = long_name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(128)
        .collect();
    assert!(cleaned.starts_with("line one line two x"));
    let long = [
        ("key_id", app.secrets[3].key_id.as_str()),
        ("display_name", cleaned.as_str()),
    ];
    assert!(
        value(
            &text,
            "smtp_oauth_credential_expiry_timestamp_seconds",
            &long
        )
        .is_some(),
        "{text}"
    );

    let t = [("target", "mailer")];
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
            &[("target", "mailer"), ("type", "password")]
        ),
        Some(app.secrets[0].end.timestamp() as f64)
    );
    assert_eq!(
        value(&text, "smtp_oauth_credential_in_use_found", &t),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "smtp_oauth_credential_in_use_ambiguous", &t),
        None,
        "present only when ambiguous"
    );
    // The earliest expiry is the older secret's, which is not the one in use.
    assert_eq!(
        value(
            &text,
            "smtp_oauth_app_credential_earliest_expiry_timestamp_seconds",
            &t
        ),
        Some(app.secrets[1].end.timestamp() as f64)
    );
    // The secret itself appears nowhere; its three-character hint is not a label either.
    assert!(!text.contains("Abc~current-value"));

    // A failed read (Graph throttles) keeps the facts of the last successful one: an expiry
    // alert must not resolve because one call was refused.
    w.sim.set_graph_fault(&id, Some(GraphFault::ServerError));
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "a failed Graph check",
        |t| {
            value(
                t,
                "smtp_oauth_check_success",
                &[("check", "graph"), ("target", "mailer")],
            ) == Some(0.0)
        },
    )
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
            &[("target", "mailer"), ("type", "password")]
        ),
        Some(app.secrets[0].end.timestamp() as f64),
        "{text}"
    );
    assert!(value(
        &text,
        "smtp_oauth_check_failure_info",
        &[("target", "mailer"), ("reason", "http_error")]
    )
    .is_some());
    agent.stop().await;
}

/// Entra keeps expired credentials listed: the earliest expiry includes them (and so sits in the
/// past), the next expiry is the soonest among those still valid, absent when none is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_expiry_skips_expired_credentials_the_earliest_does_not() {
    let w = World::new().await;
    let now = Utc::now();
    let (rotated, lapsed) = (client_id(1), client_id(2));
    let rotated_app = SimApp::new(TENANT, &rotated, "Rotated")
        // Replaced a month ago, still listed.
        .with_secret(
            "Old~expired-value",
            Some("old"),
            now - days(400),
            now - days(30),
        )
        .with_secret(
            "New~current-value",
            Some("new"),
            now - days(31),
            now + days(90),
        )
        .with_certificate(
            b"a certificate, valid for three more weeks".to_vec(),
            Some("CN=rotated"),
            now - days(1),
            now + days(21),
        )
        .with_graph_role(ROLE_APPLICATION_READ_ALL);
    // Every credential expired: read through the other app's token (its own cannot sign in).
    let lapsed_app = SimApp::new(TENANT, &lapsed, "Lapsed")
        .with_secret("Lap~expired-value", None, now - days(200), now - days(10))
        .with_secret("Lap~older-value", None, now - days(400), now - days(200));
    w.sim.add_app(rotated_app.clone());
    w.sim.add_app(lapsed_app.clone());
    let rf = w.file("rotated.secret", "New~current-value");
    let lf = w.file("lapsed.secret", "Lap~expired-value");
    let agent = w
        .agent(&format!(
            "{HEADER}{}{}",
            secret_app(&w, "rotated", &rotated, &rf, ""),
            secret_app(&w, "lapsed", &lapsed, &lf, "    graph_reader: rotated\n")
        ))
        .await;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "both Graph checks to succeed",
        |t| graph_ok(t, "rotated") && graph_ok(t, "lapsed"),
    )
    .await;
    let at = |target: &str, name: &str| value(&text, name, &[("target", target)]);
    const EARLIEST: &str = "smtp_oauth_app_credential_earliest_expiry_timestamp_seconds";
    const NEXT: &str = "smtp_oauth_app_credential_next_expiry_timestamp_seconds";
    assert_eq!(
        at("rotated", EARLIEST),
        Some(rotated_app.secrets[0].end.timestamp() as f64),
        "{text}"
    );
    // The certificate (three weeks) comes before the secret in use (90 days).
    assert_eq!(
        at("rotated", NEXT),
        Some(rotated_app.certificates[0].end.timestamp() as f64),
        "{text}"
    );
    assert_eq!(
        at("lapsed", EARLIEST),
        Some(lapsed_app.secrets[1].end.timestamp() as f64),
        "{text}"
    );
    assert_eq!(at("lapsed", NEXT), None, "{text}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_in_use_is_found_by_its_thumbprint_in_base64_or_hex() {
    let w = World::new().await;
    let now = Utc::now();
    let cert = app_certificate("mailer.contoso.example");
    let thumb_hex: String = sha1::Sha1::digest(&cert.cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let (b64_id, hex_id) = (client_id(1), client_id(2));
    let mut apps = Vec::new();
    for id in [&b64_id, &hex_id] {
        let mut app = SimApp::new(TENANT, id, "Cert mailer")
            .with_certificate(
                b"an older certificate, not the one in use".to_vec(),
                Some("CN=old"),
                now - days(400),
                now + days(10),
            )
            .with_certificate(
                cert.cert_der.clone(),
                Some("CN=mailer.contoso.example"),
                now - days(1),
                now + days(300),
            )
            .with_secret(
                "Abc~also-registered",
                Some("spare"),
                now - days(1),
                now + days(30),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL);
        if id == &hex_id {
            // Graph serves base64 of the SHA-1; the portal and the CLI show hex. Both must match.
            app.certificates[1].custom_key_identifier = Some(thumb_hex.clone());
        }
        w.sim.add_app(app.clone());
        apps.push(app);
    }
    let crt = w.file("app.crt", &cert.cert_pem);
    let key = w.file("app.key", &cert.key_pem);
    let block = |name: &str, id: &str| {
        format!(
            "  - name: {name}\n    tenant: {TENANT}\n    client_id: {id}\n    certificate: {{ cert_file: {crt}, key_file: {key} }}\n    {}\n",
            w.endpoints()
        )
    };
    let yaml = format!(
        "{HEADER}{}{}",
        block("cert-b64", &b64_id),
        block("cert-hex", &hex_id)
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(15),
        "both Graph checks to succeed",
        |t| graph_ok(t, "cert-b64") && graph_ok(t, "cert-hex"),
    )
    .await;
    for (target, app) in [("cert-b64", &apps[0]), ("cert-hex", &apps[1])] {
        let in_use = |key_id: &str, kind: &str| {
            value(
                &text,
                "smtp_oauth_credential_in_use",
                &[("target", target), ("key_id", key_id), ("type", kind)],
            )
        };
        assert_eq!(
            in_use(&app.certificates[1].key_id, "certificate"),
            Some(1.0),
            "{target}\n{text}"
        );
        assert_eq!(
            in_use(&app.certificates[0].key_id, "certificate"),
            None,
            "{target}"
        );
        assert_eq!(in_use(&app.secrets[0].key_id, "password"), None, "{target}");
        assert_eq!(
            value(
                &text,
                "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
                &[("target", target), ("type", "certificate")]
            ),
            Some(app.certificates[1].end.timestamp() as f64),
            "{target}"
        );
        assert_eq!(
            value(
                &text,
                "smtp_oauth_credential_in_use_found",
                &[("target", target)]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "smtp_oauth_credential_in_use_ambiguous",
                &[("target", target)]
            ),
            None
        );
        assert_eq!(
            value(
                &text,
                "smtp_oauth_app_credential_earliest_expiry_timestamp_seconds",
                &[("target", target)]
            ),
            Some(app.certificates[0].end.timestamp() as f64)
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_sharing_a_hint_are_reported_ambiguous_not_guessed() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    let app = SimApp::new(TENANT, &id, "Twins")
        .with_secret(
            "Abc~first-value",
            Some("first"),
            now - days(10),
            now + days(20),
        )
        .with_secret(
            "Abc~second-value",
            Some("second"),
            now - days(5),
            now + days(200),
        )
        .with_secret(
            "Def~other-value",
            Some("other"),
            now - days(5),
            now + days(200),
        )
        .with_graph_role(ROLE_APPLICATION_READ_ALL);
    w.sim.add_app(app.clone());
    let file = w.file("twins.secret", "Abc~first-value");
    let agent = w
        .agent(&format!(
            "{HEADER}{}",
            secret_app(&w, "twins", &id, &file, "")
        ))
        .await;
    let text = wait_for(
        &agent,
        Duration::from_secs(10),
        "a successful Graph check",
        |t| graph_ok(t, "twins"),
    )
    .await;
    let t = [("target", "twins")];
    assert_eq!(
        value(&text, "smtp_oauth_credential_in_use_ambiguous", &t),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "smtp_oauth_credential_in_use_found", &t),
        Some(1.0)
    );
    // Both candidates are marked, the third is not, and no single expiry is claimed.
    for (s, expected) in app.secrets.iter().zip([Some(1.0), Some(1.0), None]) {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_credential_in_use",
                &[("target", "twins"), ("key_id", s.key_id.as_str())]
            ),
            expected
        );
    }
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
            &t
        ),
        None,
        "{text}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_app_reads_the_credentials_of_apps_without_graph_permission() {
    let w = World::new().await;
    let now = Utc::now();
    let (reader, sender, stranger) = (client_id(1), client_id(2), client_id(3));
    let reader_app = SimApp::new(TENANT, &reader, "Directory reader")
        .with_secret(
            "Rdr~reader-value",
            Some("reader"),
            now - days(1),
            now + days(365),
        )
        .with_graph_role(ROLE_APPLICATION_READ_ALL);
    // Neither app may read Graph itself.
    let sender_app = SimApp::new(TENANT, &sender, "Sender").with_secret(
        "Snd~sender-value",
        Some("sender"),
        now - days(1),
        now + days(15),
    );
    // The configured secret is not among the app's credentials (say, the secret's ID was pasted).
    let stranger_app = SimApp::new(TENANT, &stranger, "Stranger").with_secret(
        "Reg~registered-value",
        Some("registered"),
        now - days(1),
        now + days(90),
    );
    for a in [&reader_app, &sender_app, &stranger_app] {
        w.sim.add_app(a.clone());
    }
    let rf = w.file("reader.secret", "Rdr~reader-value");
    let sf = w.file("sender.secret", "Snd~sender-value");
    let xf = w.file("stranger.secret", "0b5e7c1d-the-secret-id");
    let via_reader = "    graph_reader: reader\n";
    let yaml = format!(
        "{HEADER}{}{}{}",
        secret_app(&w, "reader", &reader, &rf, ""),
        secret_app(&w, "sender", &sender, &sf, via_reader),
        secret_app(&w, "stranger", &stranger, &xf, via_reader),
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(15),
        "two successful Graph runs of every app",
        |t| {
            ["reader", "sender", "stranger"].iter().all(|n| {
                value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[("check", "graph"), ("target", n), ("result", "success")],
                )
                .unwrap_or(0.0)
                    >= 2.0
            })
        },
    )
    .await;
    // The sender's own secret is the one in use, not the reader's.
    let key = sender_app.secrets[0].key_id.as_str();
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use",
            &[("target", "sender"), ("key_id", key)]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
            &[("target", "sender"), ("type", "password")]
        ),
        Some(sender_app.secrets[0].end.timestamp() as f64)
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("smtp_oauth_credential_in_use{")
                && l.contains("target=\"sender\""))
            .count(),
        1
    );
    // The stranger's registered secret is listed, and the configured one is on no credential.
    let key = stranger_app.secrets[0].key_id.as_str();
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use",
            &[("target", "stranger"), ("key_id", key)]
        ),
        None
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_found",
            &[("target", "stranger")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
            &[("target", "stranger")]
        ),
        None
    );
    // All Graph calls used the reader's token: one token request for six or more Graph calls
    // (the cache), and none with the other apps' credentials.
    assert_eq!(w.sim.token_requests(&reader), 1);
    assert_eq!(w.sim.token_requests(&sender), 0);
    assert_eq!(w.sim.token_requests(&stranger), 0);
    assert!(w.sim.graph_requests(&sender) >= 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_has_its_reason() {
    let w = World::new().await;
    let now = Utc::now();
    // (app, registered in the directory, Graph role, Graph fault, token fault, reason, AADSTS)
    type Case = (
        &'static str,
        bool,
        bool,
        Option<GraphFault>,
        Option<TokenFault>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        ("reader", true, true, None, None, "", ""),
        (
            "no-permission",
            true,
            false,
            None,
            None,
            "graph_permission_missing",
            "",
        ),
        (
            "scripted-forbidden",
            true,
            true,
            Some(GraphFault::Forbidden),
            None,
            "graph_permission_missing",
            "",
        ),
        (
            "scripted-not-found",
            true,
            true,
            Some(GraphFault::NotFound),
            None,
            "app_not_found",
            "",
        ),
        // Not in the directory at all: the reader's token gets Graph's 404.
        ("deleted", false, false, None, None, "app_not_found", ""),
        (
            "throttled",
            true,
            true,
            Some(GraphFault::TooManyRequests {
                retry_after_seconds: 120,
            }),
            None,
            "throttled",
            "",
        ),
        (
            "server-error",
            true,
            true,
            Some(GraphFault::ServerError),
            None,
            "http_error",
            "",
        ),
        (
            "unavailable",
            true,
            true,
            // Graph's other way to throttle: 503 with Retry-After.
            Some(GraphFault::Unavailable {
                retry_after_seconds: 1,
            }),
            None,
            "throttled",
            "",
        ),
        (
            "slow",
            true,
            true,
            Some(GraphFault::Slow(Duration::from_secs(30))),
            None,
            "timeout",
            "",
        ),
        (
            "malformed",
            true,
            true,
            Some(GraphFault::MalformedJson),
            None,
            "invalid_response",
            "",
        ),
        (
            "no-token",
            true,
            true,
            None,
            Some(TokenFault::ExpiredSecret),
            "token_unavailable",
            "7000222",
        ),
    ];
    let mut yaml = HEADER.to_string();
    let mut ids = Vec::new();
    for (i, (name, registered, role, graph_fault, token_fault, _, _)) in cases.iter().enumerate() {
        let id = client_id(100 + i as u32);
        let value = format!("Sec~{name}-value");
        if *registered {
            let mut app = SimApp::new(TENANT, &id, name).with_secret(
                &value,
                Some(name),
                now - days(1),
                now + days(90),
            );
            if *role {
                app = app.with_graph_role(ROLE_APPLICATION_READ_ALL);
            }
            w.sim.add_app(app);
        }
        w.sim.set_graph_fault(&id, graph_fault.clone());
        w.sim.set_token_fault(&id, token_fault.clone());
        let file = w.file(&format!("{name}.secret"), &value);
        let extra = if *name == "deleted" {
            "    graph_reader: reader\n"
        } else {
            ""
        };
        yaml += &secret_app(&w, name, &id, &file, extra);
        ids.push(id);
    }
    // Nothing listens on the Graph URL: connection refused.
    let closed = RefusingPort::new();
    let refused = client_id(99);
    w.sim.add_app(
        SimApp::new(TENANT, &refused, "refused")
            .with_secret("Sec~refused", None, now, now + days(9))
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
    );
    let file = w.file("refused.secret", "Sec~refused");
    yaml += &format!(
        "  - name: refused\n    tenant: {TENANT}\n    client_id: {refused}\n    client_secret_file: {file}\n    login_url: {base}\n    graph_url: https://127.0.0.1:{}\n    ca_file: {ca}\n",
        closed.port,
        base = w.sim.base_url(),
        ca = w.ca_file.display()
    );
    let agent = w.agent(&yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(20),
        "every failing app to have failed, the server error three times",
        |t| {
            cases.iter().skip(1).all(|c| {
                value(
                    t,
                    "smtp_oauth_check_success",
                    &[("check", "graph"), ("target", c.0)],
                ) == Some(0.0)
            }) && value(
                t,
                "smtp_oauth_check_success",
                &[("check", "graph"), ("target", "refused")],
            ) == Some(0.0)
                && value(
                    t,
                    "smtp_oauth_check_runs_total",
                    &[
                        ("check", "graph"),
                        ("target", "server-error"),
                        ("result", "failure"),
                    ],
                )
                .unwrap_or(0.0)
                    >= 3.0
        },
    )
    .await;
    assert!(graph_ok(&text, "reader"), "{text}");
    let mut expected: Vec<(&str, &str, &str)> =
        cases.iter().skip(1).map(|c| (c.0, c.5, c.6)).collect();
    expected.push(("refused", "connect_refused", ""));
    for (name, reason, aadsts) in expected {
        let l = [
            ("check", "graph"),
            ("target", name),
            ("reason", reason),
            ("aadsts", aadsts),
        ];
        assert_eq!(
            value(&text, "smtp_oauth_check_failure_info", &l),
            Some(1.0),
            "{name}: expected {reason} {aadsts:?}\n{text}"
        );
        assert!(
            value(
                &text,
                "smtp_oauth_check_failures_total",
                &[("check", "graph"), ("target", name), ("reason", reason)]
            )
            .unwrap_or(0.0)
                >= 1.0
        );
        // A failed run reports no credential facts.
        assert_eq!(
            value(
                &text,
                "smtp_oauth_credential_in_use_found",
                &[("target", name)]
            ),
            None,
            "{name}"
        );
    }
    // The slow Graph reply failed at the 2 s timeout, not after the simulator's 30 s.
    let d = value(
        &text,
        "smtp_oauth_check_duration_seconds",
        &[("check", "graph"), ("target", "slow")],
    )
    .unwrap();
    assert!((1.9..5.0).contains(&d), "slow check took {d}s");
    // Retry-After: 120 kept the throttled app at one Graph call while the server error (no
    // Retry-After) was tried on its one-second schedule at least three times.
    let throttled = &ids[cases.iter().position(|c| c.0 == "throttled").unwrap()];
    assert_eq!(w.sim.graph_requests(throttled), 1);
    agent.stop().await;
}

/// Proves that a 429's `Retry-After: 30` delays the next Graph call of a job scheduled every
/// second by at least 30 s, through the real scheduler (`job_loop` honouring
/// `Report.retry_after`), without waiting 30 real seconds.
///
/// Why not `start_paused`: a paused clock auto-advances whenever the runtime idles, also while a
/// request waits on the loopback socket for real time (TCP delayed ACKs, for instance), so the
/// check's own 2 s timeout fired in a few real milliseconds. Instead the clock runs for real
/// while there is I/O and is paused only while the scheduler sleeps: first run in real time;
/// pause; `advance` 29 s, during which no Graph call may happen; resume, and the second call
/// comes about one real second later, 30 s after the first on tokio's clock.
#[tokio::test]
async fn retry_after_holds_back_the_next_graph_call() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim.add_app(
        SimApp::new(TENANT, &id, "throttled")
            .with_secret("Thr~value", None, now - days(1), now + days(30))
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
    );
    w.sim.set_graph_fault(
        &id,
        Some(GraphFault::TooManyRequests {
            retry_after_seconds: 30,
        }),
    );
    let file = w.file("t.secret", "Thr~value");
    let plan = Arc::new(w.config(&format!(
        "{HEADER}{}",
        secret_app(&w, "throttled", &id, &file, "")
    )));
    assert_eq!(plan.jobs.len(), 1, "only the Graph job runs");
    let ctx = Arc::new(Context::new(Arc::new(TokenCache::new())));
    let state = Arc::new(StateStore::new());
    let sink = Arc::new(StateSink::new(
        Arc::new(smtp_oauth_exporter::plan::CurrentPlan::new(plan.clone())),
        state.clone(),
    ));
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(&plan, ctx, sink, &shutdown);

    let step = Duration::from_millis(10);
    let key = JobKey {
        kind: CheckKind::Graph,
        target: "throttled".into(),
    };
    let started = std::time::Instant::now();
    // The first run, in real time: throttled, and the report says to wait 30 s.
    let first = loop {
        if let Some(r) = state.get(&key).and_then(|s| s.last) {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no first Graph run"
        );
        tokio::time::sleep(step).await;
    };
    assert_eq!(
        first.reason().map(|r| r.as_str()),
        Some("throttled"),
        "{:?}",
        first.failure
    );
    assert_eq!(first.retry_after, Some(Duration::from_secs(30)));
    let times = w.sim.graph_request_times(&id);
    assert_eq!(times.len(), 1);
    let first_call = times[0];

    // Up to 29 s after the first call on the paused clock, a second at a time (29 slots of the
    // 1 s schedule): no new call. (Measured from the first call, so a slow test machine cannot
    // push the paused phase past the scheduler's wake-up and put I/O under a paused clock.)
    tokio::time::pause();
    let hold = Duration::from_secs(29);
    while first_call.elapsed() < hold {
        let left = hold - first_call.elapsed();
        tokio::time::advance(left.min(Duration::from_secs(1))).await;
        assert_eq!(
            w.sim.graph_requests(&id),
            1,
            "Graph called again {:?} after the first call",
            first_call.elapsed()
        );
    }
    // Real time again: the scheduler wakes 30 s after the first run and the second call goes out.
    tokio::time::resume();
    let resumed = std::time::Instant::now();
    while w.sim.graph_requests(&id) < 2 {
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "no second Graph call"
        );
        tokio::time::sleep(step).await;
    }
    // Both times were taken by the simulator as the requests arrived, on tokio's clock.
    let times = w.sim.graph_request_times(&id);
    assert_eq!(times.len(), 2);
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_secs(30),
        "second call {gap:?} after the first"
    );
    assert!(
        gap < Duration::from_secs(32),
        "second call {gap:?} after the first: Retry-After over-honoured"
    );
    scheduler.stop(Duration::from_secs(1)).await;
}

/// A secret added to the service principal (Enterprise application) signs in like one on the
/// app registration, but only `servicePrincipals(appId=…)` lists it. Before, the check read the
/// registration only: "the credential in use is not found", and the expiry exported was
/// another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_on_the_service_principal_is_found_in_use_and_its_expiry_exported() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    w.sim.add_app(
        SimApp::new(TENANT, &id, "Payments")
            // An old secret on the registration, expiring sooner.
            .with_secret(
                "Old~registration",
                Some("old"),
                now - days(300),
                now + days(15),
            )
            .with_service_principal_secret(
                "Spx~in-use",
                Some("on-sp"),
                now - days(1),
                now + days(200),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
    );
    let file = w.file("p.secret", "Spx~in-use");
    let agent = w
        .agent(&format!(
            "{HEADER}{}",
            secret_app(&w, "payments", &id, &file, "")
        ))
        .await;
    let text = wait_for(&agent, Duration::from_secs(10), "the Graph check", |t| {
        graph_ok(t, "payments")
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_found",
            &[("target", "payments")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use",
            &[
                ("target", "payments"),
                ("origin", "service_principal"),
                ("display_name", "on-sp")
            ]
        ),
        Some(1.0),
        "{text}"
    );
    let in_use = value(
        &text,
        "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
        &[("target", "payments"), ("origin", "service_principal")],
    )
    .expect("the in-use expiry");
    assert!(((in_use - (now + days(200)).timestamp() as f64).abs()) < 5.0);
    // Both credentials have their series, each saying where it lives.
    for (name, origin) in [("old", "application"), ("on-sp", "service_principal")] {
        assert!(
            value(
                &text,
                "smtp_oauth_credential_expiry_timestamp_seconds",
                &[
                    ("target", "payments"),
                    ("display_name", name),
                    ("origin", origin)
                ]
            )
            .is_some(),
            "{name}: {text}"
        );
    }
    // The verdict warns of nothing: the one in use has 200 days.
    let status = agent.status();
    let app = status.apps.iter().find(|a| a.name == "payments").unwrap();
    assert_eq!(app.verdict.as_ref().unwrap().cause, "ok");
    agent.stop().await;

    // Two secrets sharing their first three characters, one on each object: ambiguous.
    let id2 = client_id(2);
    w.sim.add_app(
        SimApp::new(TENANT, &id2, "Twins")
            .with_secret("Twn~on-registration", None, now, now + days(50))
            .with_service_principal_secret("Twn~on-sp", None, now, now + days(60))
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
    );
    let file = w.file("t.secret", "Twn~on-sp");
    let agent = w
        .agent(&format!(
            "{HEADER}{}",
            secret_app(&w, "twins", &id2, &file, "")
        ))
        .await;
    let text = wait_for(&agent, Duration::from_secs(10), "the Graph check", |t| {
        graph_ok(t, "twins")
    })
    .await;
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_ambiguous",
            &[("target", "twins")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_credential_in_use_expiry_timestamp_seconds",
            &[("target", "twins")]
        ),
        None
    );
    agent.stop().await;
}

/// `app_management_policy: true`: a tenant default policy that forbids new secrets for apps
/// created after a date, or caps their lifetime under the warning window, makes the verdict warn
/// that the next rotation will be refused; a reader without `Policy.Read.All` (403) leaves the
/// policy unknown and the check green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_management_policy_that_blocks_rotation_is_a_warning_and_a_403_is_unknown() {
    use smtp_oauth_exporter::sim::{SimAppPolicy, ROLE_POLICY_READ_ALL};
    let w = World::new().await;
    let now = Utc::now();
    let (blocked, capped, denied) = (client_id(1), client_id(2), client_id(3));
    let secret_app_of = |id: &str, name: &str, value: &str, policy_role: bool| {
        let mut a = SimApp::new(TENANT, id, name)
            .with_secret(value, None, now - days(10), now + days(300))
            .with_graph_role(ROLE_APPLICATION_READ_ALL);
        if policy_role {
            a = a.with_graph_role(ROLE_POLICY_READ_ALL);
        }
        a
    };
    w.sim
        .add_app(secret_app_of(&blocked, "blocked", "Blk~v", true));
    // The app's own policy caps secrets at 14 days (under the 30-day warning window); it was
    // created in 2019, before the tenant's restriction date.
    let mut capped_app =
        secret_app_of(&capped, "capped", "Cap~v", true).with_policy(SimAppPolicy {
            enabled: true,
            password_max_lifetime: Some("P14D".into()),
            ..SimAppPolicy::default()
        });
    capped_app.created = chrono::DateTime::from_timestamp(1_559_347_200, 0).unwrap();
    w.sim.add_app(capped_app);
    w.sim
        .add_app(secret_app_of(&denied, "denied", "Den~v", false));
    // The tenant forbids new secrets for apps created after 2020 (the simulator's apps are
    // from 2023, but for the capped one).
    w.sim.set_default_app_policy(
        TENANT,
        Some(SimAppPolicy {
            enabled: true,
            password_addition_blocked: true,
            restrict_for_apps_created_after: chrono::DateTime::from_timestamp(1_600_000_000, 0),
            ..SimAppPolicy::default()
        }),
    );
    let mut apps = String::new();
    for (name, id, v) in [
        ("blocked", &blocked, "Blk~v"),
        ("capped", &capped, "Cap~v"),
        ("denied", &denied, "Den~v"),
    ] {
        let file = w.file(&format!("{name}.secret"), v);
        apps += &secret_app(&w, name, id, &file, "    app_management_policy: true\n");
    }
    let agent = w.agent(&format!("{HEADER}{apps}")).await;
    let text = wait_for(&agent, Duration::from_secs(10), "three Graph checks", |t| {
        ["blocked", "capped", "denied"]
            .iter()
            .all(|a| graph_ok(t, a))
    })
    .await;
    for (app, blocked_v, lifetime) in [
        ("blocked", 1.0, None),
        ("capped", 0.0, Some(14.0 * 86_400.0)),
    ] {
        assert_eq!(
            value(
                &text,
                "smtp_oauth_app_secret_addition_blocked",
                &[("target", app)]
            ),
            Some(blocked_v),
            "{app}: {text}"
        );
        assert_eq!(
            value(
                &text,
                "smtp_oauth_app_secret_max_lifetime_seconds",
                &[("target", app)]
            ),
            lifetime,
            "{app}"
        );
        assert_eq!(
            value(
                &text,
                "smtp_oauth_verdict",
                &[
                    ("target", app),
                    ("step", "2"),
                    ("cause", "secret_rotation_restricted"),
                    ("severity", "warning")
                ]
            ),
            Some(1.0),
            "{app}: {text}"
        );
    }
    // 403: unknown, not a failure; nothing exported, the verdict ok.
    assert_eq!(
        value(
            &text,
            "smtp_oauth_app_secret_addition_blocked",
            &[("target", "denied")]
        ),
        None
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_verdict",
            &[("target", "denied"), ("cause", "ok")]
        ),
        Some(1.0),
        "{text}"
    );
    let status = agent.status();
    let v = status
        .apps
        .iter()
        .find(|a| a.name == "blocked")
        .unwrap()
        .verdict
        .clone()
        .unwrap();
    assert!(
        v.summary.contains("forbids adding client secrets")
            && v.remediation.contains("certificate"),
        "{v:?}"
    );
    let v = status
        .apps
        .iter()
        .find(|a| a.name == "capped")
        .unwrap()
        .verdict
        .clone()
        .unwrap();
    assert!(
        v.summary
            .contains("caps new client secrets at 2w (under the 4w2d warning window)"),
        "{v:?}"
    );
    agent.stop().await;
}
