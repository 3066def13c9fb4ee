//! The built-in demo: starts the simulator, fills its directory with one mailbox per failure mode
//! (each named after it) and writes a configuration that points the agent at it, all on
//! loopback: the setup steps, the delivery canary's outcomes, a Microsoft 365 incident, which
//! credential the application signs in with, what it sends (message trace), and the apps of the
//! tenant that can send SMTP (two nobody configured). `demo` serves it; `check --demo` checks it; the end-to-end tests assert it.

use std::path::PathBuf;

use chrono::{Duration as Days, Utc};

use crate::plan::Plan;
use crate::sim::{
    app_certificate, Delivery, GraphFault, HealthIssue, SimApp, Simulator, SmtpFault, SmtpStep,
    ROLE_APPLICATION_READ_ALL, ROLE_AUDIT_LOG_READ_ALL, ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL,
    ROLE_MAIL_READ_WRITE, ROLE_POLICY_READ_ALL, ROLE_SERVICE_HEALTH_READ_ALL,
};

/// The demo's scenarios: the mailbox named after each failure mode, and what it shows.
pub const SCENARIOS: [(&str, &str); 31] = [
    ("healthy-secret", "everything works, with a client secret"),
    (
        "healthy-certificate",
        "everything works, with a certificate",
    ),
    (
        "secret-expiring",
        "the client secret in use expires in 10 days",
    ),
    ("secret-expired", "the client secret expired yesterday"),
    (
        "secret-id-pasted",
        "the secret's ID was configured instead of its value",
    ),
    ("consent-missing", "SMTP.SendAsApp was never consented"),
    (
        "service-principal-missing",
        "no Exchange service principal for the app",
    ),
    (
        "mailbox-permission-missing",
        "no FullAccess on this mailbox (other mailboxes of the app work)",
    ),
    (
        "smtp-auth-off-tenant",
        "SMTP AUTH switched off for the tenant",
    ),
    (
        "smtp-auth-off-mailbox",
        "SMTP AUTH switched off for the mailbox",
    ),
    (
        "certificate-not-uploaded",
        "the app signs with a certificate that is not on its registration",
    ),
    (
        "graph-throttled",
        "Microsoft Graph throttles the credential read",
    ),
    ("starttls-stripped", "something on the path strips STARTTLS"),
    (
        "tls-inspection",
        "a TLS-inspecting proxy presents its own certificate",
    ),
    (
        "canary-delivered",
        "the delivery canary arrives in the Inbox after 2 s",
    ),
    ("canary-junk", "the delivery canary lands in Junk Email"),
    (
        "canary-lost",
        "Exchange accepts the canary, which never arrives",
    ),
    (
        "canary-reader-denied",
        "the canary's reader app has no Mail.ReadWrite (HTTP 403)",
    ),
    (
        "sender-restricted",
        "login works, the message is refused: 550 5.1.8 (restricted for outbound spam)",
    ),
    (
        "tenant-threshold",
        "the message is refused: 550 5.7.705 (tenant over its sending threshold)",
    ),
    (
        "tenant-ip-blocked",
        "the recipient is refused: 550 5.7.708 (tenant's traffic not accepted)",
    ),
    (
        "canary-send-as-denied",
        "the message is refused after DATA: 554 5.2.252 SendAsDenied",
    ),
    (
        "exchange-incident",
        "SMTP times out while Microsoft reports an Exchange Online incident",
    ),
    (
        "rbac-in-scope",
        "RBAC for Applications: no API permission, the mailbox in the role assignment's scope",
    ),
    (
        "rbac-outside-scope",
        "RBAC for Applications: the mailbox is outside the role assignment's scope",
    ),
    (
        "service-principal-missing-in-entra",
        "the app has no service principal in Entra ID (AADSTS7000229)",
    ),
    (
        "secret-on-service-principal",
        "the app signs in with a secret added to its service principal, not its registration",
    ),
    (
        "old-secret-in-use",
        "the application signs in with an old secret expiring in 12 days; the agent with the new one",
    ),
    (
        "traffic-healthy",
        "message trace: the application sent 312 messages in the last 24 h, and keeps sending",
    ),
    (
        "sender-silent",
        "message trace: nothing sent for 27 h from a mailbox that sends at least once every 26 h",
    ),
    (
        "traffic-quarantined",
        "message trace: 10 of the 40 messages of the last 24 h failed or were quarantined",
    ),
];

/// A running demo: the simulator and the configuration for the agent.
pub struct Demo {
    pub sim: Simulator,
    /// The configuration (YAML) pointing at the simulator.
    pub yaml: String,
    /// Holds the CA file, secret files and certificates the configuration names.
    dir: tempfile::TempDir,
}

const CONTOSO: &str = "8c3dd2f5-7f41-4d39-a9f6-3f1d8e2b6c10";
const FABRIKAM: &str = "5d2a7e91-0c4b-4f6d-8e13-9b7c2a4f6e85";
const NORTHWIND: &str = "e3b0c442-98fc-4c14-9afb-f4c8996fb924";

const ERP: &str = "1f0c5a7e-2b8d-4e51-9a3c-6d2f8b1e4a70";
const SCANNER: &str = "2a9d6b1c-3e7f-4a82-b5d4-7e3a9c2f5b81";
const CRM: &str = "3b8e7c2d-4f6a-4b93-86e5-8f4b0d3a6c92";
const LEGACY: &str = "4c7f8d3e-5a5b-4ca4-97f6-9a5c1e4b7da3";
const DMS: &str = "5d6a9e4f-6b4c-4db5-a8a7-ab6d2f5c8eb4";
const HELPDESK: &str = "6e5bafa0-7c3d-4ec6-b9b8-bc7e3a6d9fc5";
const HR: &str = "7f4cb0b1-8d2e-4fd7-8ac9-cd8f4b7eaad6";
const FABRIKAM_ERP: &str = "80a3c1c2-9e1f-40e8-9bda-de9a5c8fbbe7";
const PRINTER: &str = "91b2d2d3-af0a-41f9-acdb-efab6d9acc08";
const REPORTS: &str = "a2c1e3e4-b0fb-420a-bdec-f0bc7eabdd19";
const MAIL_READER: &str = "b3d2f4f5-c1ac-431b-8efd-01cd8fbcee2a";
const NORTHWIND_ERP: &str = "c4e305a6-d2bd-442c-9f0e-12de90cdff3b";
const NOTIFIER: &str = "d5f416b7-e3ce-453d-a0af-23ef01de0a4c";
const ARCHIVER: &str = "e6a527c8-f4df-464e-b1b0-34f012ef1b5d";
const PAYMENTS: &str = "f7b638d9-05e0-475f-82c1-4501a3f02c6e";
const INVOICING: &str = "08c749ea-16f1-4860-93d2-5612b4a13d7f";
const MAILER: &str = "19d84afb-27a2-4971-a4e3-6723c5b24e80";
const INTRANET: &str = "2ae95b0c-38b3-4a82-b5f4-7834d6c35f91";
const FAX: &str = "3bfa6c1d-49c4-4b93-86a5-8945e7d46aa2";

/// The canary mailboxes of Contoso (app erp) and what Exchange does with their messages.
fn canary_deliveries() -> [(&'static str, &'static str, Delivery); 8] {
    let reject = |at, code, text: &str| Delivery::Reject {
        at,
        code,
        text: text.into(),
    };
    [
        (
            "canary-delivered",
            "receipts@contoso.com",
            Delivery::Inbox(std::time::Duration::from_secs(2)),
        ),
        (
            "canary-junk",
            "newsletter@contoso.com",
            Delivery::Junk(std::time::Duration::from_secs(1)),
        ),
        ("canary-lost", "statements@contoso.com", Delivery::Lost),
        (
            "canary-reader-denied",
            "payroll@contoso.com",
            Delivery::Inbox(std::time::Duration::ZERO),
        ),
        (
            "sender-restricted",
            "marketing@contoso.com",
            reject(
                SmtpStep::Data,
                550,
                "5.1.8 Access denied, bad outbound sender. AS(42004)",
            ),
        ),
        (
            "tenant-threshold",
            "bulk@contoso.com",
            reject(
                SmtpStep::Data,
                550,
                "5.7.705 Access denied, tenant has exceeded threshold. AS(42005)",
            ),
        ),
        (
            "tenant-ip-blocked",
            "relay@contoso.com",
            reject(
                SmtpStep::RcptTo,
                550,
                "5.7.708 Access denied, traffic not accepted from this IP. AS(42006)",
            ),
        ),
        (
            "canary-send-as-denied",
            "shared@contoso.com",
            reject(
                SmtpStep::Data,
                554,
                "5.2.252 SendAsDenied; shared@contoso.com not allowed to send as shared@contoso.com",
            ),
        ),
    ]
}

impl Demo {
    pub async fn start() -> anyhow::Result<Demo> {
        let sim = Simulator::start().await?;
        let dir = tempfile::tempdir()?;
        let now = Utc::now();
        let days = Days::days;
        sim.add_tenant(CONTOSO, &["contoso.onmicrosoft.com", "contoso.com"]);
        sim.add_tenant(FABRIKAM, &["fabrikam.onmicrosoft.com", "fabrikam.com"]);
        sim.add_tenant(NORTHWIND, &["northwind.onmicrosoft.com", "northwind.com"]);
        // Microsoft has posted an Exchange Online incident for Northwind.
        // In PascalCase, as Microsoft's own example answer spells the values.
        sim.add_health_issue(
            NORTHWIND,
            HealthIssue {
                classification: "Incident".into(),
                status: "ServiceDegradation".into(),
                ..HealthIssue::exchange_incident(
                    "EX1024351",
                    "Users may be unable to send email using SMTP AUTH",
                    now - Days::minutes(40),
                )
            },
        );
        // Set-TransportConfig -SmtpClientAuthenticationDisabled $true at Fabrikam.
        sim.set_tenant_smtp_auth_disabled(FABRIKAM, true);

        let secret = |n: &str| format!("{n}~demo-{n}-secret-value-0001");
        let valid = |v: &str, name: &str, app: SimApp| {
            app.with_secret(v, Some(name), now - days(30), now + days(700))
        };
        // The ERP app: healthy, reads app registrations for the others (graph_reader) and
        // Contoso's service health.
        sim.add_app(
            valid(
                &secret("Er8"),
                "erp-2026",
                SimApp::new(CONTOSO, ERP, "ERP invoices"),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL)
            .with_graph_role(ROLE_SERVICE_HEALTH_READ_ALL)
            .with_graph_role(ROLE_POLICY_READ_ALL)
            .with_graph_role(ROLE_AUDIT_LOG_READ_ALL),
        );
        // The canaries' reader: Mail.ReadWrite only (in a tenant, scoped to the canary
        // mailboxes with RBAC for Applications).
        sim.add_app(valid(
            &secret("Mr1"),
            "mail-reader",
            SimApp::new(CONTOSO, MAIL_READER, "Canary reader")
                .with_graph_role(ROLE_MAIL_READ_WRITE),
        ));
        sim.add_app(
            valid(
                &secret("Nw2"),
                "northwind",
                SimApp::new(NORTHWIND, NORTHWIND_ERP, "Northwind ERP"),
            )
            .with_graph_role(ROLE_SERVICE_HEALTH_READ_ALL),
        );
        let scanner_cert = app_certificate("scanner.contoso.example");
        sim.add_app(
            SimApp::new(CONTOSO, SCANNER, "Scan to mail").with_certificate(
                scanner_cert.cert_der.clone(),
                Some("CN=scanner.contoso.example"),
                now - days(10),
                now + days(355),
            ),
        );
        // Ten days and an hour: "10 days left" for the whole of a demo session.
        sim.add_app(SimApp::new(CONTOSO, CRM, "CRM").with_secret(
            &secret("Cr7"),
            Some("crm-2024"),
            now - days(720),
            now + days(10) + Days::hours(1),
        ));
        sim.add_app(SimApp::new(CONTOSO, LEGACY, "Legacy ERP").with_secret(
            &secret("Lg3"),
            Some("legacy"),
            now - days(731),
            now - days(1),
        ));
        sim.add_app(valid(
            &secret("Dm5"),
            "dms",
            SimApp::new(CONTOSO, DMS, "Document management"),
        ));
        sim.add_app(valid(
            &secret("Hd2"),
            "helpdesk",
            SimApp::new(CONTOSO, HELPDESK, "Helpdesk").without_consent(),
        ));
        sim.add_app(valid(
            &secret("Hr4"),
            "hr",
            SimApp::new(CONTOSO, HR, "HR notifications").without_exchange_service_principal(),
        ));
        sim.add_app(
            valid(
                &secret("Fb6"),
                "fabrikam",
                SimApp::new(FABRIKAM, FABRIKAM_ERP, "Fabrikam ERP"),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
        );
        // RBAC for Applications: no API permission (tokens carry no role), a role assignment
        // "Application SMTP.SendAsApp" scoped to one of its two mailboxes.
        sim.add_app(valid(
            &secret("Nt5"),
            "notifier",
            SimApp::new(CONTOSO, NOTIFIER, "Notifications")
                .with_rbac_scope(&["notify@contoso.com"]),
        ));
        // Registered, never given a service principal in the tenant: AADSTS7000229.
        sim.add_app(valid(
            &secret("Ar3"),
            "archiver",
            SimApp::new(CONTOSO, ARCHIVER, "Archiver").without_entra_service_principal(),
        ));
        // Its only secret was added to the service principal: the registration lists none.
        sim.add_app(
            SimApp::new(CONTOSO, PAYMENTS, "Payments").with_service_principal_secret(
                &secret("Pm6"),
                Some("payments-sp"),
                now - days(30),
                now + days(400),
            ),
        );
        // A rotation half done: the agent has the new secret, the invoicing application still
        // signs in with the old one, which expires in 12 days (and an hour: "12 days" all demo
        // long).
        sim.add_app(
            SimApp::new(CONTOSO, INVOICING, "Invoicing")
                .with_secret(
                    &secret("Iv1"),
                    Some("invoicing-2024"),
                    now - days(718),
                    now + days(12) + Days::hours(1),
                )
                .with_secret(
                    &secret("Iv2"),
                    Some("invoicing-2026"),
                    now - days(3),
                    now + days(727),
                ),
        );
        sim.set_sign_in(INVOICING, "invoicing-2024", now - Days::minutes(40));
        // The mailer: what it sends is watched in message trace (and its reads look the lost
        // canaries of Contoso up there). Its history: one mailbox sending all along, one gone
        // silent 27 hours ago, one whose messages fail or are quarantined.
        sim.add_app(
            valid(
                &secret("Ml4"),
                "mailer",
                SimApp::new(CONTOSO, MAILER, "Mailer"),
            )
            .with_graph_role(ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL),
        );
        let hours = Days::hours;
        let customer = "customers@fabrikam.com";
        sim.add_traffic(
            CONTOSO,
            "notices@contoso.com",
            customer,
            312,
            "delivered",
            now - hours(24) + Days::minutes(5),
            now - Days::minutes(3),
        );
        sim.keep_sending(
            CONTOSO,
            "notices@contoso.com",
            customer,
            std::time::Duration::from_secs(300),
        );
        sim.add_traffic(
            CONTOSO,
            "reminders@contoso.com",
            customer,
            3,
            "delivered",
            now - hours(30),
            now - hours(27),
        );
        for (n, status) in [(30, "delivered"), (8, "quarantined"), (2, "failed")] {
            sim.add_traffic(
                CONTOSO,
                "mailings@contoso.com",
                customer,
                n,
                status,
                now - hours(20),
                now - hours(1),
            );
        }
        // Two apps nobody configured in the agent that hold SMTP.SendAsApp: the inventory
        // finds them. The intranet signed in 3 hours ago with a secret that expires in 20 days;
        // the fax gateway's secret last signed in 120 days ago.
        sim.add_app(
            SimApp::new(CONTOSO, INTRANET, "Intranet portal").with_secret(
                &secret("In5"),
                Some("intranet-2024"),
                now - days(345),
                now + days(20) + Days::hours(1),
            ),
        );
        sim.set_sign_in(INTRANET, "intranet-2024", now - Days::hours(3));
        sim.add_app(SimApp::new(CONTOSO, FAX, "Fax gateway").with_secret(
            &secret("Fx6"),
            Some("fax"),
            now - days(500),
            now + days(200),
        ));
        sim.set_sign_in(FAX, "fax", now - days(120));
        // The printer signs with a certificate; the one on its registration is another.
        let uploaded = app_certificate("printer-old.contoso.example");
        let printer_cert = app_certificate("printer.contoso.example");
        sim.add_app(SimApp::new(CONTOSO, PRINTER, "Printer").with_certificate(
            uploaded.cert_der,
            Some("CN=printer-old.contoso.example"),
            now - days(100),
            now + days(265),
        ));
        sim.add_app(
            valid(
                &secret("Rp9"),
                "reports",
                SimApp::new(CONTOSO, REPORTS, "Reports"),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL),
        );
        sim.set_graph_fault(
            REPORTS,
            Some(GraphFault::TooManyRequests {
                retry_after_seconds: 3600,
            }),
        );

        // Mailboxes and who has FullAccess (setup step 4).
        for (address, apps) in [
            ("invoices@contoso.com", vec![ERP]),
            ("scans@contoso.com", vec![SCANNER]),
            ("crm@contoso.com", vec![CRM]),
            ("legacy@contoso.com", vec![LEGACY]),
            ("dms@contoso.com", vec![DMS]),
            ("helpdesk@contoso.com", vec![HELPDESK]),
            ("hr@contoso.com", vec![HR]),
            ("billing@contoso.com", vec![]),
            ("invoices@fabrikam.com", vec![FABRIKAM_ERP]),
            ("noreply@contoso.com", vec![ERP]),
            ("printer@contoso.com", vec![PRINTER]),
            ("reports@contoso.com", vec![REPORTS]),
            ("alerts@contoso.com", vec![ERP]),
            ("orders@contoso.com", vec![ERP]),
            ("orders@northwind.com", vec![NORTHWIND_ERP]),
            ("notify@contoso.com", vec![]),
            ("digest@contoso.com", vec![]),
            ("archive@contoso.com", vec![ARCHIVER]),
            ("payments@contoso.com", vec![PAYMENTS]),
            ("invoicing@contoso.com", vec![INVOICING]),
            ("notices@contoso.com", vec![MAILER]),
            ("reminders@contoso.com", vec![MAILER]),
            ("mailings@contoso.com", vec![MAILER]),
        ] {
            sim.add_mailbox(address, &apps);
        }
        for (_, address, delivery) in canary_deliveries() {
            sim.add_mailbox(address, &[ERP]);
            sim.set_delivery(address, Some(delivery));
        }
        // Set-CASMailbox noreply@contoso.com -SmtpClientAuthenticationDisabled $true.
        sim.set_mailbox_smtp_auth("noreply@contoso.com", Some(true));
        let stripped = sim.start_smtp(Some(SmtpFault::NoStartTls)).await?;
        let inspected = sim
            .start_smtp(Some(SmtpFault::UntrustedCertificate))
            .await?;
        // Northwind's path to Exchange: connections open, the banner never comes in time.
        let stalled = sim
            .start_smtp(Some(SmtpFault::BannerDelay(
                std::time::Duration::from_secs(3600),
            )))
            .await?;

        let write = |name: &str, text: &str| -> anyhow::Result<String> {
            let p = dir.path().join(name);
            std::fs::write(&p, text)?;
            Ok(p.display().to_string())
        };
        let ca = write("sim-ca.pem", &sim.ca_pem)?;
        let mut files = std::collections::HashMap::new();
        for n in [
            "Er8", "Cr7", "Lg3", "Hd2", "Hr4", "Fb6", "Rp9", "Mr1", "Nw2", "Nt5", "Ar3", "Pm6",
            "Iv2", "Ml4",
        ] {
            files.insert(n, write(&format!("{n}.secret"), &secret(n))?);
        }
        // The secret's ID (a GUID) where its value belongs.
        let dms_file = write("dms.secret", "0e2f6c1a-9d4b-4c7e-8a51-3b6d2e9f7c40")?;
        let scanner_crt = write("scanner.crt", &scanner_cert.cert_pem)?;
        let scanner_key = write("scanner.key", &scanner_cert.key_pem)?;
        let printer_crt = write("printer.crt", &printer_cert.cert_pem)?;
        let printer_key = write("printer.key", &printer_cert.key_pem)?;
        let base = sim.base_url();
        let endpoints = format!("login_url: {base}, graph_url: {base}, ca_file: {ca}");
        let app = |name: &str, tenant: &str, id: &str, credential: String, extra: &str| {
            format!("  - {{ name: {name}, tenant: {tenant}, client_id: {id}, {credential}, {endpoints}{extra} }}\n")
        };
        let secret_file = |n: &str| format!("client_secret_file: {}", files[n]);
        let reader = ", graph_reader: erp";
        let mut yaml = String::from(
            "# The demo: one mailbox per failure mode, against the built-in simulator.\n\
scheduler: { startup_spread: 3s }\n\
defaults:\n  checks:\n    token: { schedule: 30s, timeout: 5s }\n    smtp: { schedule: 30s, timeout: 5s }\n    graph: { schedule: 1m, timeout: 5s }\n\
apps:\n",
        );
        // The ERP app also inventories Contoso's apps that can send SMTP, with their sign-ins.
        let health = ", checks: { health: { enabled: true, schedule: 1m }, discovery: { enabled: true, schedule: 1m }, activity: { enabled: true, schedule: 1m } }";
        yaml += &app(
            "erp",
            "contoso.onmicrosoft.com",
            ERP,
            secret_file("Er8"),
            health,
        );
        yaml += &app(
            "scanner",
            CONTOSO,
            SCANNER,
            format!("certificate: {{ cert_file: {scanner_crt}, key_file: {scanner_key} }}"),
            reader,
        );
        // The CRM's reader also reads Contoso's app management policies (none restricts it).
        yaml += &app(
            "crm",
            CONTOSO,
            CRM,
            secret_file("Cr7"),
            ", graph_reader: erp, app_management_policy: true",
        );
        yaml += &app("legacy-erp", CONTOSO, LEGACY, secret_file("Lg3"), reader);
        yaml += &app(
            "dms",
            CONTOSO,
            DMS,
            format!("client_secret_file: {dms_file}"),
            reader,
        );
        // The helpdesk app is set up the classic way, and says so.
        yaml += &app(
            "helpdesk",
            CONTOSO,
            HELPDESK,
            secret_file("Hd2"),
            ", graph_reader: erp, authorization: classic",
        );
        // On `auto` (the default), the model is learnt from what Exchange accepts.
        yaml += &app("notifier", CONTOSO, NOTIFIER, secret_file("Nt5"), reader);
        yaml += &app("archiver", CONTOSO, ARCHIVER, secret_file("Ar3"), reader);
        yaml += &app("payments", CONTOSO, PAYMENTS, secret_file("Pm6"), reader);
        yaml += &app("hr", CONTOSO, HR, secret_file("Hr4"), reader);
        // Reads Contoso's message trace: its mailboxes' traffic, and where a lost canary of the
        // tenant (named as erp names it) stopped.
        yaml += &app(
            "mailer",
            "contoso.onmicrosoft.com",
            MAILER,
            secret_file("Ml4"),
            ", checks: { graph: { enabled: false }, traffic: { enabled: true, schedule: 1m } }",
        );
        // Which of its secrets really signs in: the agent reads the sign-in activity report.
        yaml += &app(
            "invoicing",
            CONTOSO,
            INVOICING,
            secret_file("Iv2"),
            ", graph_reader: erp, checks: { activity: { enabled: true, schedule: 1m } }",
        );
        yaml += &app(
            "fabrikam-erp",
            FABRIKAM,
            FABRIKAM_ERP,
            secret_file("Fb6"),
            "",
        );
        yaml += &app(
            "printer",
            CONTOSO,
            PRINTER,
            format!("certificate: {{ cert_file: {printer_crt}, key_file: {printer_key} }}"),
            reader,
        );
        yaml += &app("reports", CONTOSO, REPORTS, secret_file("Rp9"), "");
        yaml += &app(
            "mail-reader",
            CONTOSO,
            MAIL_READER,
            secret_file("Mr1"),
            ", checks: { graph: { enabled: false } }",
        );
        yaml += &app(
            "northwind-erp",
            NORTHWIND,
            NORTHWIND_ERP,
            secret_file("Nw2"),
            ", checks: { graph: { enabled: false }, health: { enabled: true, schedule: 1m } }",
        );
        yaml += "mailboxes:\n";
        let port = sim.smtp_addr.port();
        for (name, app, address, port) in [
            ("healthy-secret", "erp", "invoices@contoso.com", port),
            ("healthy-certificate", "scanner", "scans@contoso.com", port),
            ("secret-expiring", "crm", "crm@contoso.com", port),
            ("secret-expired", "legacy-erp", "legacy@contoso.com", port),
            ("secret-id-pasted", "dms", "dms@contoso.com", port),
            ("consent-missing", "helpdesk", "helpdesk@contoso.com", port),
            ("service-principal-missing", "hr", "hr@contoso.com", port),
            (
                "mailbox-permission-missing",
                "erp",
                "billing@contoso.com",
                port,
            ),
            (
                "smtp-auth-off-tenant",
                "fabrikam-erp",
                "invoices@fabrikam.com",
                port,
            ),
            ("smtp-auth-off-mailbox", "erp", "noreply@contoso.com", port),
            (
                "certificate-not-uploaded",
                "printer",
                "printer@contoso.com",
                port,
            ),
            ("graph-throttled", "reports", "reports@contoso.com", port),
            ("rbac-in-scope", "notifier", "notify@contoso.com", port),
            ("rbac-outside-scope", "notifier", "digest@contoso.com", port),
            (
                "service-principal-missing-in-entra",
                "archiver",
                "archive@contoso.com",
                port,
            ),
            (
                "secret-on-service-principal",
                "payments",
                "payments@contoso.com",
                port,
            ),
            (
                "old-secret-in-use",
                "invoicing",
                "invoicing@contoso.com",
                port,
            ),
            (
                "starttls-stripped",
                "erp",
                "alerts@contoso.com",
                stripped.port(),
            ),
            (
                "tls-inspection",
                "erp",
                "orders@contoso.com",
                inspected.port(),
            ),
        ] {
            yaml += &format!(
                "  - {{ name: {name}, app: {app}, address: {address}, smtp_host: 127.0.0.1, smtp_port: {port} }}\n"
            );
        }
        yaml += &format!(
            "  - {{ name: exchange-incident, app: northwind-erp, address: orders@northwind.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
            stalled.port()
        );
        for (name, address, within) in [
            ("traffic-healthy", "notices@contoso.com", "2h"),
            ("sender-silent", "reminders@contoso.com", "26h"),
            ("traffic-quarantined", "mailings@contoso.com", "1d"),
        ] {
            yaml += &format!(
                "  - {{ name: {name}, app: mailer, address: {address}, smtp_host: 127.0.0.1, smtp_port: {port}, expect_traffic_within: {within} }}\n"
            );
        }
        // The canaries: every minute (the fastest allowed), found by mail-reader; one whose
        // reader (crm) may not read mail.
        for (name, address, _) in canary_deliveries() {
            let reader = if name == "canary-reader-denied" {
                "crm"
            } else {
                "mail-reader"
            };
            yaml += &format!(
                "  - {{ name: {name}, app: erp, address: {address}, smtp_host: 127.0.0.1, smtp_port: {port}, canary: {{ reader: {reader}, schedule: 1m, timeout: 8s }} }}\n"
            );
        }
        Ok(Demo { sim, yaml, dir })
    }

    /// Validates the demo's configuration into a plan (off the async workers: it reads files).
    pub async fn plan(&self) -> anyhow::Result<Plan> {
        let yaml = self.yaml.clone();
        let base: PathBuf = self.dir.path().to_path_buf();
        let plan =
            tokio::task::spawn_blocking(move || crate::config::from_yaml(&yaml, "demo.yml", &base))
                .await??;
        Ok(plan)
    }

    /// Writes the demo's configuration next to its files (`demo.yml`) and returns its path:
    /// the agent loads and reloads it like any configuration file.
    pub fn config_file(&self) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join("demo.yml");
        std::fs::write(&path, &self.yaml)?;
        Ok(path)
    }

    /// Where the demo's files (CA, secrets, certificates) live.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
