//! A mixed fleet used by the leak and lint tests: healthy and broken apps (secret and
//! certificate) and mailboxes, so that a run has successes and failures of every check kind,
//! delivery canaries (one in the Inbox, one in Junk Email) and service health with an open
//! Exchange Online incident.

use chrono::Utc;
use smtp_oauth_exporter::sim::{
    app_certificate, AppCertificate, Delivery, HealthIssue, SimApp, SmtpFault, TokenFault,
    ROLE_APPLICATION_READ_ALL, ROLE_AUDIT_LOG_READ_ALL, ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL,
    ROLE_MAIL_READ_WRITE, ROLE_SERVICE_HEALTH_READ_ALL,
};

use crate::common::*;

/// What the fleet's configuration holds that must never be printed.
pub struct Fleet {
    pub yaml: String,
    pub secrets: Vec<String>,
    pub cert: AppCertificate,
}

pub async fn fleet(w: &World) -> Fleet {
    let now = Utc::now();
    let days = chrono::Duration::days;
    let good = "Gd8~fleet-good-secret-value-abcdef";
    let stale = "St4~fleet-expired-secret-value-xyz";
    let wrong_sent = "Wr0~what-the-admin-pasted-123456";
    let cert = app_certificate("fleet-cert");
    let (a1, a2, a3, a4, a5) = (
        client_id(1),
        client_id(2),
        client_id(3),
        client_id(4),
        client_id(5),
    );
    w.sim.add_app(
        SimApp::new(TENANT, &a1, "good")
            .with_secret(good, Some("good"), now - days(10), now + days(300))
            .with_secret(
                "Old~an-older-secret",
                Some("good"),
                now - days(400),
                now + days(5),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL)
            .with_graph_role(ROLE_MAIL_READ_WRITE)
            .with_graph_role(ROLE_SERVICE_HEALTH_READ_ALL)
            .with_graph_role(ROLE_AUDIT_LOG_READ_ALL)
            .with_graph_role(ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL),
    );
    w.sim.add_app(SimApp::new(TENANT, &a2, "stale").with_secret(
        stale,
        Some("stale"),
        now - days(800),
        now - days(1),
    ));
    w.sim.add_app(SimApp::new(TENANT, &a3, "wrong").with_secret(
        "Rt9~the-real-value",
        None,
        now,
        now + days(300),
    ));
    w.sim.add_app(
        SimApp::new(TENANT, &a4, "cert")
            .with_certificate(cert.cert_der.clone(), None, now, now + days(300))
            .with_graph_role(ROLE_MAIL_READ_WRITE),
    );
    w.sim
        .add_app(SimApp::new(TENANT, &a5, "flaky").with_secret(good, None, now, now + days(300)));
    w.sim.set_token_fault(&a5, Some(TokenFault::ServerError));
    w.sim.add_mailbox("ok@contoso.com", &[&a1]);
    w.sim.add_mailbox("cert@contoso.com", &[&a4]);
    w.sim.add_mailbox("denied@contoso.com", &[]);
    w.sim.add_mailbox("helpdesk@contoso.com", &[]);
    w.sim.set_delivery(
        "cert@contoso.com",
        Some(Delivery::Junk(std::time::Duration::ZERO)),
    );
    w.sim.add_health_issue(
        TENANT,
        HealthIssue::exchange_incident(
            "EX777",
            "Delays sending mail through SMTP AUTH",
            now - chrono::Duration::minutes(5),
        ),
    );
    let no_tls = w.sim.start_smtp(Some(SmtpFault::NoStartTls)).await.unwrap();

    let good_file = w.file("good.secret", good);
    let stale_file = w.file("stale.secret", stale);
    let wrong_file = w.file("wrong.secret", wrong_sent);
    let crt = w.file("fleet.crt", &cert.cert_pem);
    let key = w.file("fleet.key", &cert.key_pem);
    let port = w.sim.smtp_addr.port();
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 2s }}\n    graph: {{ schedule: 1s, timeout: 2s }}\napps:\n{}{}{}  - name: cert\n    tenant: {TENANT}\n    client_id: {a4}\n    certificate: {{ cert_file: {crt}, key_file: {key} }}\n    {}\n  - name: inline\n    tenant: {TENANT}\n    client_id: {a5}\n    client_secret: {good}\n    {}\nmailboxes:\n  - {{ name: ok, app: good, address: ok@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port}, canary: {{ reader: good, schedule: 1m, timeout: 5s }} }}\n  - {{ name: cert-mb, app: cert, address: cert@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port}, canary: {{ reader: cert, schedule: 1m, timeout: 5s }} }}\n  - {{ name: denied, app: good, address: denied@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n  - {{ name: stale-mb, app: stale, address: ok@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n  - {{ name: plain, app: good, address: ok@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        secret_app(
            w,
            "good",
            &a1,
            &good_file,
            "    checks:\n      health: { enabled: true, schedule: 1s }\n      activity: { enabled: true, schedule: 1s }\n      traffic: { enabled: true, schedule: 1s }\n"
        ),
        secret_app(w, "stale", &a2, &stale_file, ""),
        secret_app(w, "wrong", &a3, &wrong_file, ""),
        w.endpoints(),
        w.endpoints(),
        no_tls.port(),
    );
    Fleet {
        yaml,
        secrets: vec![
            good.into(),
            stale.into(),
            wrong_sent.into(),
            "Rt9~the-real-value".into(),
        ],
        cert,
    }
}
