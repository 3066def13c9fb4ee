//! The fault matrix: one row per (fault, check) for every fault the simulator can script, on
//! each check it applies to, with the reason the check must give. The faults: the token
//! endpoint's and Graph's scripted replies, the SMTP listener's misbehaviours, the directory
//! (consent, FullAccess, SMTP AUTH, Graph roles), what Exchange does with a canary's message
//! (delivered late, to Junk, lost, refused), the canary reader's token and Graph replies, and
//! for the network a fault front before each endpoint:
//! refused, unresolvable, silent, dripping, reset, not TLS, bad certificates, HTTP errors with and
//! without `Retry-After`, redirects, truncated, non-JSON and 100 MB bodies.
//!
//! One agent runs every row at once. For each row the test asserts the reason on `/metrics`
//! (`smtp_oauth_check_failure_info{check,target,reason,aadsts}`) and that every failed run had
//! that reason, that the agent keeps serving while all of it goes on, and, once every fault is
//! cleared, that the next run succeeds.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::plan::CheckKind;
use smtp_oauth_exporter::sim::{
    CertFault, Delivery, Front, GraphFault, HttpBody, HttpReply, NetFault, SimApp, SmtpFault,
    SmtpListener, SmtpStep, TokenFault, ROLE_APPLICATION_READ_ALL, ROLE_AUDIT_LOG_READ_ALL,
    ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL, ROLE_MAIL_READ_WRITE, ROLE_SERVICE_HEALTH_READ_ALL,
    ROLE_SMTP,
};

use crate::common::*;

/// The token check's timeout (and that of every token request, cache refreshes included).
pub const TOKEN_TIMEOUT: f64 = 2.0;
/// The SMTP and Graph checks' timeout: longer than a token request's, so that a token endpoint
/// that does not answer fails them with `token_unavailable`, always.
pub const CHECK_TIMEOUT: f64 = 4.0;
/// The canary's timeout: its SMTP session has half of it, longer than a token request.
pub const CANARY_TIMEOUT: f64 = 8.0;
/// The secret of every app of a table.
const SECRET: &str = "Flt~matrix-secret-value-0123456789";
/// How long the failures and the recoveries may take to show (most show within seconds; a
/// Graph token's failure is served to readers for 30 s by design).
const FAIL_LIMIT: Duration = Duration::from_secs(30);
const RECOVER_LIMIT: Duration = Duration::from_secs(45);

/// What a row breaks.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The token endpoint's scripted reply for the row's app (Exchange and Graph tokens alike).
    Token(TokenFault),
    /// Graph's scripted reply to the row's app (the canary's reader on a canary row).
    Graph(GraphFault),
    /// The row's own SMTP listener misbehaves.
    Smtp(SmtpFault),
    /// A fault front between the check and its endpoint (the login URL of a token row, the Graph
    /// URL of a Graph or health row, the SMTP port of an SMTP or canary row).
    Net(NetFault),
    /// What Exchange does with the canary's message (canary rows).
    Delivery(Delivery),
    /// The token endpoint's scripted reply for the canary's reader app (canary rows).
    ReaderToken(TokenFault),
    /// The endpoint's host name does not resolve (a name under `.invalid`).
    Dns,
    /// The directory: a setup step undone.
    Setup(Setup),
}

/// Setup steps a row undoes in the simulator's directory (and redoes to recover).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Admin consent for `SMTP.SendAsApp` revoked: tokens come without the role.
    NoConsent,
    /// No FullAccess for the app on the row's mailbox.
    NoFullAccess,
    /// `Set-CASMailbox -SmtpClientAuthenticationDisabled $true` on the row's mailbox.
    MailboxSmtpAuthOff,
    /// `Set-TransportConfig -SmtpClientAuthenticationDisabled $true` (the row's own tenant).
    TenantSmtpAuthOff,
    /// The app has no `Application.Read.All`.
    NoGraphRole,
    /// The tenant has no service principal of Microsoft's message trace app.
    NoTraceServicePrincipal,
    /// The canary's reader has no `Mail.ReadWrite`.
    NoMailRole,
    /// The canary's address is no mailbox (Exchange takes the message, Graph knows no user).
    UnknownRecipient,
    /// The app has no `ServiceHealth.Read.All`.
    NoHealthRole,
}

/// How a row shows that the check recovers once its fault is cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The next scheduled run succeeds (`check_success 1`, no failure series).
    Scheduled,
    /// A `/probe` run succeeds: the scheduler rightly holds the next run back (why).
    Probe(&'static str),
    /// Not within the test (why): the row must still fail as before.
    NotApplicable(&'static str),
}

/// One row of a table: a fault on a check and the reason it must give.
#[derive(Debug, Clone)]
pub struct Row {
    pub check: CheckKind,
    /// Unique within the check; the target is `{check}-{name}`.
    pub name: String,
    pub fault: Fault,
    pub reason: &'static str,
    /// The `aadsts` label ("" when none).
    pub aadsts: String,
    pub recovery: Recovery,
}

impl Row {
    pub fn new(check: CheckKind, name: &str, fault: Fault, reason: &'static str) -> Row {
        let recovery = match fault {
            Fault::Dns => Recovery::NotApplicable(
                "the name is the configuration's: fixing it is a configuration change",
            ),
            _ if check == CheckKind::Canary => Recovery::NotApplicable(
                "the canary runs at most once a minute: its runs after a fault are tested in canary.rs",
            ),
            _ if reason == "throttled" && !has_retry_after(&fault) => Recovery::Probe(
                "throttled without Retry-After, the scheduler holds the app's checks back a minute",
            ),
            _ => Recovery::Scheduled,
        };
        Row {
            check,
            name: name.to_string(),
            fault,
            reason,
            aadsts: String::new(),
            recovery,
        }
    }

    pub fn aadsts(mut self, code: &str) -> Row {
        self.aadsts = code.to_string();
        self
    }

    /// The `target` label: the app (token, Graph, health, activity), the mailbox (SMTP,
    /// canary) or the tenant (traffic: each row's own, by its domain).
    pub fn target(&self) -> String {
        match self.check {
            CheckKind::Traffic | CheckKind::Discovery => {
                format!("{}-{}.onmicrosoft.com", self.check, self.name)
            }
            _ => format!("{}-{}", self.check, self.name),
        }
    }

    fn app(&self) -> String {
        match self.check {
            CheckKind::Smtp | CheckKind::Canary => format!("{}-app", self.target()),
            CheckKind::Traffic | CheckKind::Discovery => {
                format!("{}-{}-app", self.check, self.name)
            }
            _ => self.target(),
        }
    }

    fn timeout(&self) -> f64 {
        match self.check {
            CheckKind::Token => TOKEN_TIMEOUT,
            CheckKind::Canary => CANARY_TIMEOUT,
            _ => CHECK_TIMEOUT,
        }
    }
}

/// Whether the fault's reply says when to come back (`Retry-After`).
fn has_retry_after(f: &Fault) -> bool {
    match f {
        Fault::Token(t) => matches!(t, TokenFault::TooManyRequests { .. }),
        Fault::Graph(g) => matches!(
            g,
            GraphFault::TooManyRequests { .. } | GraphFault::Unavailable { .. }
        ),
        Fault::Net(NetFault::Http(r)) => r
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("retry-after")),
        _ => false,
    }
}

fn json(status: u16, body: &str) -> NetFault {
    NetFault::Http(HttpReply::new(status, "application/json", body))
}

fn page(status: u16, text: &str) -> HttpReply {
    HttpReply::new(
        status,
        "text/html",
        &format!("<html><body>{text}</body></html>"),
    )
}

/// 100 MB: far above the agent's bound on a reply body (`http_client::MAX_BODY_BYTES`, 1 MiB).
const HUGE: u64 = 100 * 1024 * 1024;

/// Network faults between a check and an HTTPS endpoint (token or Graph), with the reason.
fn https_network(check: CheckKind) -> Vec<Row> {
    use CheckKind::Token;
    let t = check == Token;
    let drip = NetFault::Http(HttpReply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: HttpBody::Drip {
            body: b"{\"token_type\":\"Bearer\"}".to_vec(),
            every: Duration::from_secs(1),
        },
    });
    let bad_cert = |c| Fault::Net(NetFault::Certificate(c));
    let status = |code: u16, retry_after: Option<&str>| {
        let mut r = page(code, "upstream trouble");
        if let Some(s) = retry_after {
            r = r.header("Retry-After", s);
        }
        Fault::Net(NetFault::Http(r))
    };
    let huge = |declare_length| {
        Fault::Net(NetFault::Http(HttpReply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: HttpBody::Huge {
                len: HUGE,
                declare_length,
            },
        }))
    };
    let mut rows = vec![
        Row::new(
            check,
            "refused",
            Fault::Net(NetFault::Refuse),
            "connect_refused",
        ),
        Row::new(check, "dns", Fault::Dns, "dns"),
        Row::new(check, "silence", Fault::Net(NetFault::Silence), "timeout"),
        Row::new(check, "drip", Fault::Net(drip), "timeout"),
        Row::new(
            check,
            "reset-after-request",
            Fault::Net(NetFault::ResetAfterRequest),
            if t { "other" } else { "http_error" },
        ),
        Row::new(
            check,
            "not-tls",
            Fault::Net(NetFault::NotTls("HTTP/1.1 400 Bad Request\r\n\r\n".into())),
            "tls_handshake",
        ),
        Row::new(
            check,
            "cert-expired",
            bad_cert(CertFault::Expired),
            "tls_cert_invalid",
        ),
        Row::new(
            check,
            "cert-self-signed",
            bad_cert(CertFault::SelfSigned),
            "tls_cert_invalid",
        ),
        Row::new(
            check,
            "cert-wrong-host",
            bad_cert(CertFault::WrongHost),
            "tls_cert_invalid",
        ),
        Row::new(
            check,
            "cert-untrusted",
            bad_cert(CertFault::Untrusted),
            "tls_cert_invalid",
        ),
        Row::new(
            check,
            "http-429-retry-after",
            status(429, Some("1")),
            "throttled",
        ),
        Row::new(check, "http-429", status(429, None), "throttled"),
        Row::new(
            check,
            "http-500-retry-after",
            status(500, Some("1")),
            "http_error",
        ),
        Row::new(check, "http-500", status(500, None), "http_error"),
        Row::new(
            check,
            "http-502-retry-after",
            status(502, Some("1")),
            "http_error",
        ),
        Row::new(check, "http-502", status(502, None), "http_error"),
        // Graph throttles with a 503 and Retry-After too; Entra ID does not.
        Row::new(
            check,
            "http-503-retry-after",
            status(503, Some("1")),
            if t { "http_error" } else { "throttled" },
        ),
        Row::new(check, "http-503", status(503, None), "http_error"),
        Row::new(
            check,
            "truncated-body",
            Fault::Net(NetFault::Http(HttpReply {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: HttpBody::Truncated {
                    declared: 2000,
                    sent: b"{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access".to_vec(),
                },
            })),
            if t { "other" } else { "http_error" },
        ),
        Row::new(
            check,
            "not-json",
            Fault::Net(NetFault::Http(page(
                200,
                "Welcome to the Contoso web proxy",
            ))),
            "invalid_response",
        ),
        Row::new(check, "huge-body", huge(false), "invalid_response"),
        Row::new(check, "huge-body-declared", huge(true), "invalid_response"),
    ];
    if t {
        rows.extend([
            // 307 keeps the method and body: followed, the credential would go along.
            Row::new(
                check,
                "redirect",
                Fault::Net(NetFault::Http(page(307, "moved"))),
                "invalid_response",
            ),
            Row::new(
                check,
                "no-access-token",
                Fault::Net(json(200, r#"{"token_type":"Bearer","expires_in":3599}"#)),
                "invalid_response",
            ),
            Row::new(
                check,
                "expires-in-zero",
                Fault::Net(json(
                    200,
                    r#"{"token_type":"Bearer","expires_in":0,"access_token":"x.y.z"}"#,
                )),
                "invalid_response",
            ),
            Row::new(
                check,
                "expires-in-two-days",
                Fault::Net(json(
                    200,
                    r#"{"token_type":"Bearer","expires_in":172800,"access_token":"x.y.z"}"#,
                )),
                "invalid_response",
            ),
        ]);
    } else {
        rows.extend([
            Row::new(check, "redirect", Fault::Net(NetFault::Http(page(302, "moved"))), "http_error"),
            Row::new(
                check,
                "wrong-app-id",
                Fault::Net(json(
                    200,
                    r#"{"id":"1","appId":"00000000-0000-4000-8000-999999999999","passwordCredentials":[],"keyCredentials":[]}"#,
                )),
                "invalid_response",
            ),
        ]);
    }
    rows
}

/// The token endpoint's scripted faults, as the token check sees them (reason, AADSTS label).
fn token_faults() -> Vec<(&'static str, TokenFault, &'static str, &'static str)> {
    vec![
        (
            "expired-secret",
            TokenFault::ExpiredSecret,
            "secret_expired",
            "7000222",
        ),
        (
            "invalid-secret",
            TokenFault::InvalidSecret,
            "secret_invalid",
            "7000215",
        ),
        (
            "unknown-app",
            TokenFault::UnknownApp,
            "app_not_found",
            "700016",
        ),
        (
            "unknown-tenant",
            TokenFault::UnknownTenant,
            "tenant_not_found",
            "90002",
        ),
        ("server-error", TokenFault::ServerError, "http_error", ""),
        (
            "slow",
            TokenFault::Slow(Duration::from_secs(30)),
            "timeout",
            "",
        ),
        (
            "too-many-requests",
            TokenFault::TooManyRequests {
                retry_after_seconds: 1,
            },
            "throttled",
            "",
        ),
        (
            "malformed-json",
            TokenFault::MalformedJson,
            "invalid_response",
            "",
        ),
        (
            "consent-missing",
            TokenFault::Aadsts {
                status: 400,
                error: "invalid_grant".into(),
                code: 65001,
            },
            "consent_missing",
            "65001",
        ),
        // Codes outside Microsoft's table: reason `other`, no label (its value set is fixed).
        (
            "unknown-aadsts",
            TokenFault::Aadsts {
                status: 400,
                error: "invalid_request".into(),
                code: 9_999_999,
            },
            "other",
            "",
        ),
        (
            "echo-credential",
            TokenFault::EchoCredential,
            "secret_invalid",
            "7000215",
        ),
        // A 400 that is not Microsoft's JSON: not Entra ID (a proxy's page?).
        ("echo-form", TokenFault::EchoForm, "invalid_response", ""),
        (
            "echo-base64",
            TokenFault::EchoBase64,
            "secret_invalid",
            "7000215",
        ),
    ]
}

/// Every SMTP listener fault of the simulator, with the reason.
fn smtp_faults() -> Vec<Row> {
    use SmtpStep::*;
    let smtp = |name, f, reason| Row::new(CheckKind::Smtp, name, Fault::Smtp(f), reason);
    let reply = |at, code, text: &str| SmtpFault::Reply {
        at,
        code,
        text: text.into(),
    };
    let raw = |at, bytes: String| SmtpFault::Raw { at, bytes };
    vec![
        smtp("no-starttls", SmtpFault::NoStartTls, "starttls_missing"),
        smtp("auth-in-clear", SmtpFault::AuthInClear, "starttls_missing"),
        smtp(
            "banner-delay",
            SmtpFault::BannerDelay(Duration::from_secs(60)),
            "timeout",
        ),
        smtp("drip", SmtpFault::Drip(Duration::from_secs(1)), "timeout"),
        smtp(
            "drop-after-ehlo",
            SmtpFault::DropAfterEhlo,
            "protocol_error",
        ),
        smtp("garbage-banner", SmtpFault::GarbageBanner, "protocol_error"),
        smtp("endless-line", SmtpFault::EndlessLine, "protocol_error"),
        smtp(
            "starttls-injection",
            SmtpFault::StartTlsInjection,
            "protocol_error",
        ),
        smtp(
            "starttls-then-garbage",
            SmtpFault::StartTlsThenGarbage,
            "tls_handshake",
        ),
        smtp(
            "cert-expired",
            SmtpFault::ExpiredCertificate,
            "tls_cert_invalid",
        ),
        smtp(
            "cert-wrong-host",
            SmtpFault::WrongHostCertificate,
            "tls_cert_invalid",
        ),
        smtp(
            "cert-untrusted",
            SmtpFault::UntrustedCertificate,
            "tls_cert_invalid",
        ),
        smtp(
            "cert-self-signed",
            SmtpFault::SelfSignedCertificate,
            "tls_cert_invalid",
        ),
        smtp("no-xoauth2", SmtpFault::NoXoauth2, "xoauth2_not_offered"),
        smtp(
            "tenant-smtp-auth-off",
            SmtpFault::TenantSmtpAuthDisabled,
            "smtp_auth_disabled",
        ),
        smtp("deny-mail-from", SmtpFault::DenyMailFrom, "send_as_denied"),
        smtp("echo-auth", SmtpFault::EchoAuth, "auth_rejected"),
        smtp(
            "busy-banner",
            reply(Banner, 421, "4.3.2 Service not available"),
            "throttled",
        ),
        smtp(
            "refusing-banner",
            reply(Banner, 554, "No SMTP service here"),
            "protocol_error",
        ),
        smtp(
            "ehlo-500",
            reply(Ehlo, 500, "5.3.3 Unrecognized command"),
            "protocol_error",
        ),
        smtp(
            "starttls-454",
            reply(StartTls, 454, "4.7.0 TLS not available"),
            "throttled",
        ),
        smtp(
            "old-tls",
            reply(
                EhloAfterTls,
                421,
                "4.7.66 TLS 1.0 and 1.1 are not supported.",
            ),
            "tls_version",
        ),
        smtp(
            "auth-432",
            reply(
                Auth,
                432,
                "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            ),
            "throttled",
        ),
        smtp(
            "auth-535",
            reply(Auth, 535, "5.7.3 Authentication unsuccessful"),
            "auth_rejected",
        ),
        smtp(
            "auth-504",
            reply(Auth, 504, "5.7.4 Unrecognized authentication type"),
            "xoauth2_not_offered",
        ),
        smtp(
            "mail-451",
            reply(
                MailFrom,
                451,
                "4.7.0 Temporary server error. Please try again later. PRX4",
            ),
            "throttled",
        ),
        smtp(
            "mail-550",
            reply(
                MailFrom,
                550,
                "5.7.60 SMTP; Client does not have permissions to send as this sender",
            ),
            "send_as_denied",
        ),
        smtp(
            "reset-at-banner",
            SmtpFault::ResetAt(Banner),
            "protocol_error",
        ),
        smtp("reset-at-ehlo", SmtpFault::ResetAt(Ehlo), "protocol_error"),
        smtp(
            "reset-at-starttls",
            SmtpFault::ResetAt(StartTls),
            "protocol_error",
        ),
        smtp(
            "reset-at-tls-handshake",
            SmtpFault::ResetAt(TlsHandshake),
            "tls_handshake",
        ),
        smtp(
            "reset-at-ehlo-after-tls",
            SmtpFault::ResetAt(EhloAfterTls),
            "protocol_error",
        ),
        smtp("reset-at-auth", SmtpFault::ResetAt(Auth), "protocol_error"),
        smtp(
            "reset-at-mail-from",
            SmtpFault::ResetAt(MailFrom),
            "protocol_error",
        ),
        // Inconsistent multi-line replies: `250-` lines, then a final line with another code.
        smtp(
            "ehlo-code-changes",
            raw(
                Ehlo,
                "250-SIM01 Hello\r\n250-STARTTLS\r\n220 SIZE 157286400\r\n".into(),
            ),
            "protocol_error",
        ),
        smtp(
            "auth-code-changes",
            raw(
                Auth,
                "235-2.7.0 Authentication\r\n535 5.7.3 unsuccessful\r\n".into(),
            ),
            "protocol_error",
        ),
        smtp(
            "ehlo-line-over-4k",
            raw(
                Ehlo,
                format!("250-{}\r\n250 STARTTLS\r\n", "A".repeat(5000)),
            ),
            "protocol_error",
        ),
        smtp(
            "ehlo-200-lines",
            raw(Ehlo, "250-X\r\n".repeat(200) + "250 STARTTLS\r\n"),
            "protocol_error",
        ),
        smtp(
            "banner-not-a-code",
            raw(Banner, "2X0 SIM01 ready\r\n".into()),
            "protocol_error",
        ),
        smtp(
            "banner-no-separator",
            raw(Banner, "220SIM01 ready\r\n".into()),
            "protocol_error",
        ),
    ]
}

/// Network faults between the SMTP check and its server.
/// Network faults on the way to SMTP (the SMTP check's, the canary's session).
fn smtp_network(c: CheckKind) -> Vec<Row> {
    vec![
        Row::new(
            c,
            "refused",
            Fault::Net(NetFault::Refuse),
            "connect_refused",
        ),
        Row::new(c, "dns", Fault::Dns, "dns"),
        Row::new(c, "silence", Fault::Net(NetFault::Silence), "timeout"),
        Row::new(
            c,
            "net-drip",
            Fault::Net(NetFault::Drip {
                bytes: b"220 slow.example ESMTP\r\n".to_vec(),
                every: Duration::from_secs(1),
            }),
            "timeout",
        ),
        Row::new(c, "reset", Fault::Net(NetFault::Reset), "protocol_error"),
    ]
}

/// The canary's own faults: the SMTP session's (as the SMTP check's), what Exchange does with
/// the message, and the reader's permission, token and Graph replies.
pub fn canary_faults() -> Vec<Row> {
    let c = CheckKind::Canary;
    let reject = |at, code, text: &str| {
        Fault::Delivery(Delivery::Reject {
            at,
            code,
            text: text.into(),
        })
    };
    vec![
        Row::new(c, "no-starttls", Fault::Smtp(SmtpFault::NoStartTls), "starttls_missing"),
        Row::new(c, "no-xoauth2", Fault::Smtp(SmtpFault::NoXoauth2), "xoauth2_not_offered"),
        Row::new(c, "garbage-banner", Fault::Smtp(SmtpFault::GarbageBanner), "protocol_error"),
        Row::new(
            c,
            "starttls-then-garbage",
            Fault::Smtp(SmtpFault::StartTlsThenGarbage),
            "tls_handshake",
        ),
        Row::new(
            c,
            "expired-certificate",
            Fault::Smtp(SmtpFault::ExpiredCertificate),
            "tls_cert_invalid",
        ),
        Row::new(
            c,
            "tls-version",
            Fault::Smtp(SmtpFault::Reply {
                at: SmtpStep::EhloAfterTls,
                code: 421,
                text: "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2.".into(),
            }),
            "tls_version",
        ),
        Row::new(
            c,
            "throttled",
            Fault::Smtp(SmtpFault::Reply {
                at: SmtpStep::Auth,
                code: 432,
                text: "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded".into(),
            }),
            "throttled",
        ),
        Row::new(c, "no-full-access", Fault::Setup(Setup::NoFullAccess), "auth_rejected"),
        Row::new(
            c,
            "mailbox-smtp-auth-off",
            Fault::Setup(Setup::MailboxSmtpAuthOff),
            "smtp_auth_disabled",
        ),
        Row::new(c, "lost", Fault::Delivery(Delivery::Lost), "not_delivered"),
        Row::new(
            c,
            "quarantined",
            Fault::Delivery(Delivery::Quarantine),
            "not_delivered",
        ),
        Row::new(
            c,
            "bounced",
            Fault::Delivery(Delivery::Bounce(
                "550 5.1.1 RESOLVER.ADR.RecipientNotFound".into(),
            )),
            "not_delivered",
        ),
        Row::new(
            c,
            "late",
            Fault::Delivery(Delivery::Inbox(Duration::from_secs(3600))),
            "not_delivered",
        ),
        Row::new(
            c,
            "junk",
            Fault::Delivery(Delivery::Junk(Duration::ZERO)),
            "delivered_to_junk",
        ),
        Row::new(
            c,
            "sender-restricted",
            reject(SmtpStep::Data, 550, "5.1.8 Access denied, bad outbound sender"),
            "sender_restricted",
        ),
        Row::new(
            c,
            "tenant-threshold",
            reject(SmtpStep::Data, 550, "5.7.705 Access denied, tenant has exceeded threshold"),
            "tenant_sending_blocked",
        ),
        Row::new(
            c,
            "tenant-ip",
            reject(SmtpStep::RcptTo, 550, "5.7.708 Access denied, traffic not accepted from this IP"),
            "tenant_sending_blocked",
        ),
        Row::new(
            c,
            "send-as-denied",
            reject(
                SmtpStep::Data,
                554,
                "5.2.252 SendAsDenied; canary@contoso.com not allowed to send as canary@contoso.com",
            ),
            "send_as_denied",
        ),
        Row::new(
            c,
            "recipient-refused",
            reject(
                SmtpStep::RcptTo,
                550,
                "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            ),
            "message_rejected",
        ),
        Row::new(c, "no-mail-role", Fault::Setup(Setup::NoMailRole), "reader_permission_missing"),
        Row::new(
            c,
            "unknown-recipient",
            Fault::Setup(Setup::UnknownRecipient),
            "recipient_not_found",
        ),
        Row::new(
            c,
            "reader-forbidden",
            Fault::Graph(GraphFault::Forbidden),
            "reader_permission_missing",
        ),
        Row::new(
            c,
            "reader-throttled",
            Fault::Graph(GraphFault::TooManyRequests {
                retry_after_seconds: 1,
            }),
            "graph_throttled",
        ),
        Row::new(
            c,
            "reader-server-error",
            Fault::Graph(GraphFault::ServerError),
            "graph_error",
        ),
        Row::new(
            c,
            "reader-malformed-json",
            Fault::Graph(GraphFault::MalformedJson),
            "graph_invalid_response",
        ),
        Row::new(
            c,
            "reader-token",
            Fault::ReaderToken(TokenFault::InvalidSecret),
            "reader_token_unavailable",
        )
        .aadsts("7000215"),
    ]
}

/// Service health's faults: Graph's replies, the permission, the network to Graph.
pub fn health_faults() -> Vec<Row> {
    let h = CheckKind::Health;
    vec![
        Row::new(
            h,
            "forbidden",
            Fault::Graph(GraphFault::Forbidden),
            "health_permission_missing",
        ),
        Row::new(
            h,
            "no-health-role",
            Fault::Setup(Setup::NoHealthRole),
            "health_permission_missing",
        ),
        Row::new(
            h,
            "too-many-requests",
            Fault::Graph(GraphFault::TooManyRequests {
                retry_after_seconds: 1,
            }),
            "throttled",
        ),
        Row::new(
            h,
            "server-error",
            Fault::Graph(GraphFault::ServerError),
            "http_error",
        ),
        Row::new(
            h,
            "malformed-json",
            Fault::Graph(GraphFault::MalformedJson),
            "invalid_response",
        ),
        Row::new(
            h,
            "refused",
            Fault::Net(NetFault::Refuse),
            "connect_refused",
        ),
        Row::new(h, "dns", Fault::Dns, "dns"),
        Row::new(h, "silence", Fault::Net(NetFault::Silence), "timeout"),
        Row::new(
            h,
            "not-tls",
            Fault::Net(NetFault::NotTls("HTTP/1.0 200 OK\r\n\r\n".into())),
            "tls_handshake",
        ),
        Row::new(
            h,
            "self-signed",
            Fault::Net(NetFault::Certificate(CertFault::SelfSigned)),
            "tls_cert_invalid",
        ),
        Row::new(h, "reset", Fault::Net(NetFault::Reset), "tls_handshake"),
    ]
}

/// Credential activity's faults: Graph's replies and the network to Graph (a refusal, 403, is
/// no failure: `tests/it/activity.rs` shows it "not available").
pub fn activity_faults() -> Vec<Row> {
    let a = CheckKind::Activity;
    vec![
        Row::new(
            a,
            "too-many-requests",
            Fault::Graph(GraphFault::TooManyRequests {
                retry_after_seconds: 1,
            }),
            "throttled",
        ),
        Row::new(
            a,
            "server-error",
            Fault::Graph(GraphFault::ServerError),
            "http_error",
        ),
        Row::new(
            a,
            "malformed-json",
            Fault::Graph(GraphFault::MalformedJson),
            "invalid_response",
        ),
        Row::new(
            a,
            "refused",
            Fault::Net(NetFault::Refuse),
            "connect_refused",
        ),
        Row::new(a, "dns", Fault::Dns, "dns"),
        Row::new(a, "silence", Fault::Net(NetFault::Silence), "timeout"),
        Row::new(
            a,
            "self-signed",
            Fault::Net(NetFault::Certificate(CertFault::SelfSigned)),
            "tls_cert_invalid",
        ),
        Row::new(a, "reset", Fault::Net(NetFault::Reset), "tls_handshake"),
    ]
}

/// Message trace's faults: Graph's replies, the permission, the tenant without the message trace
/// app's service principal, and the network to Graph.
pub fn traffic_faults() -> Vec<Row> {
    let t = CheckKind::Traffic;
    vec![
        Row::new(
            t,
            "forbidden",
            Fault::Graph(GraphFault::Forbidden),
            "trace_permission_missing",
        ),
        Row::new(
            t,
            "no-trace-sp",
            Fault::Setup(Setup::NoTraceServicePrincipal),
            "trace_service_principal_missing",
        ),
        Row::new(
            t,
            "too-many-requests",
            Fault::Graph(GraphFault::TooManyRequests {
                retry_after_seconds: 1,
            }),
            "throttled",
        ),
        Row::new(
            t,
            "server-error",
            Fault::Graph(GraphFault::ServerError),
            "http_error",
        ),
        Row::new(
            t,
            "malformed-json",
            Fault::Graph(GraphFault::MalformedJson),
            "invalid_response",
        ),
        Row::new(
            t,
            "refused",
            Fault::Net(NetFault::Refuse),
            "connect_refused",
        ),
        Row::new(t, "dns", Fault::Dns, "dns"),
        Row::new(t, "silence", Fault::Net(NetFault::Silence), "timeout"),
        Row::new(
            t,
            "self-signed",
            Fault::Net(NetFault::Certificate(CertFault::SelfSigned)),
            "tls_cert_invalid",
        ),
        Row::new(t, "reset", Fault::Net(NetFault::Reset), "tls_handshake"),
    ]
}

/// The inventory's faults: Graph's replies and the network to Graph.
pub fn discovery_faults() -> Vec<Row> {
    let d = CheckKind::Discovery;
    vec![
        Row::new(
            d,
            "forbidden",
            Fault::Graph(GraphFault::Forbidden),
            "discovery_permission_missing",
        ),
        Row::new(
            d,
            "too-many-requests",
            Fault::Graph(GraphFault::TooManyRequests {
                retry_after_seconds: 1,
            }),
            "throttled",
        ),
        Row::new(
            d,
            "server-error",
            Fault::Graph(GraphFault::ServerError),
            "http_error",
        ),
        Row::new(
            d,
            "malformed-json",
            Fault::Graph(GraphFault::MalformedJson),
            "invalid_response",
        ),
        Row::new(
            d,
            "refused",
            Fault::Net(NetFault::Refuse),
            "connect_refused",
        ),
        Row::new(d, "dns", Fault::Dns, "dns"),
        Row::new(d, "silence", Fault::Net(NetFault::Silence), "timeout"),
        Row::new(
            d,
            "self-signed",
            Fault::Net(NetFault::Certificate(CertFault::SelfSigned)),
            "tls_cert_invalid",
        ),
        Row::new(d, "reset", Fault::Net(NetFault::Reset), "tls_handshake"),
    ]
}

/// The matrix: every fault on every check it applies to.
pub fn matrix() -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, f, reason, aadsts) in token_faults() {
        rows.push(Row::new(CheckKind::Token, name, Fault::Token(f.clone()), reason).aadsts(aadsts));
        // Without a token the SMTP, Graph, canary and health checks fail with
        // `token_unavailable`, keeping the AADSTS code.
        for check in [
            CheckKind::Smtp,
            CheckKind::Graph,
            CheckKind::Canary,
            CheckKind::Health,
            CheckKind::Activity,
            CheckKind::Traffic,
            CheckKind::Discovery,
        ] {
            rows.push(
                Row::new(
                    check,
                    &format!("token-{name}"),
                    Fault::Token(f.clone()),
                    "token_unavailable",
                )
                .aadsts(aadsts),
            );
        }
    }
    rows.extend(https_network(CheckKind::Token));
    rows.extend(https_network(CheckKind::Graph));
    rows.extend(smtp_faults());
    rows.extend(smtp_network(CheckKind::Smtp));
    rows.extend(smtp_network(CheckKind::Canary));
    rows.extend(canary_faults());
    rows.extend(health_faults());
    rows.extend(activity_faults());
    rows.extend(traffic_faults());
    rows.extend(discovery_faults());
    let g = CheckKind::Graph;
    let graph = Fault::Graph;
    rows.extend([
        Row::new(
            g,
            "forbidden",
            graph(GraphFault::Forbidden),
            "graph_permission_missing",
        ),
        Row::new(g, "not-found", graph(GraphFault::NotFound), "app_not_found"),
        Row::new(
            g,
            "too-many-requests",
            graph(GraphFault::TooManyRequests {
                retry_after_seconds: 1,
            }),
            "throttled",
        ),
        Row::new(
            g,
            "unavailable",
            graph(GraphFault::Unavailable {
                retry_after_seconds: 1,
            }),
            "throttled",
        ),
        Row::new(
            g,
            "server-error",
            graph(GraphFault::ServerError),
            "http_error",
        ),
        Row::new(
            g,
            "malformed-json",
            graph(GraphFault::MalformedJson),
            "invalid_response",
        ),
        Row::new(
            g,
            "slow",
            graph(GraphFault::Slow(Duration::from_secs(30))),
            "timeout",
        ),
        Row::new(g, "echo-token", graph(GraphFault::EchoToken), "http_error"),
        Row::new(
            g,
            "no-graph-role",
            Fault::Setup(Setup::NoGraphRole),
            // Recovers at the next read: a 403 drops the cached Graph token.
            "graph_permission_missing",
        ),
    ]);
    let s = CheckKind::Smtp;
    rows.extend([
        Row::new(
            s,
            "no-consent",
            Fault::Setup(Setup::NoConsent),
            "auth_rejected",
        ),
        Row::new(
            s,
            "no-full-access",
            Fault::Setup(Setup::NoFullAccess),
            "auth_rejected",
        ),
        Row::new(
            s,
            "mailbox-smtp-auth-off",
            Fault::Setup(Setup::MailboxSmtpAuthOff),
            "smtp_auth_disabled",
        ),
        // Refusals of the sender at MAIL FROM, which the SMTP check sends.
        Row::new(
            s,
            "sender-restricted",
            Fault::Delivery(Delivery::Reject {
                at: SmtpStep::MailFrom,
                code: 550,
                text: "5.1.8 Access denied, bad outbound sender".into(),
            }),
            "sender_restricted",
        ),
        Row::new(
            s,
            "tenant-threshold",
            Fault::Delivery(Delivery::Reject {
                at: SmtpStep::MailFrom,
                code: 550,
                text: "5.7.705 Access denied, tenant has exceeded threshold".into(),
            }),
            "tenant_sending_blocked",
        ),
        Row::new(
            s,
            "tenant-smtp-auth-off-setting",
            Fault::Setup(Setup::TenantSmtpAuthOff),
            "smtp_auth_disabled",
        ),
    ]);
    rows
}

/// What a running table holds on to, to clear its faults.
struct Bench {
    world: World,
    agent: smtp_oauth_exporter::agent::Agent,
    rows: Vec<(Row, Handles)>,
}

#[derive(Default)]
struct Handles {
    client_id: String,
    /// The canary's reader app (canary rows).
    reader_id: Option<String>,
    tenant: String,
    mailbox: Option<String>,
    listener: Option<SmtpListener>,
    front: Option<Front>,
}

/// The tenant of a row that switches SMTP AUTH off for its whole tenant (the others share one).
const OTHER_TENANT: &str = "22222222-3333-4444-5555-666666666666";

async fn start(rows: &[Row]) -> Bench {
    let w = World::new().await;
    w.sim
        .add_tenant(OTHER_TENANT, &["fabrikam.onmicrosoft.com"]);
    let now = Utc::now();
    let secret = w.file("matrix.secret", SECRET);
    let base = w.sim.base_url();
    let mut apps = String::new();
    let mut mailboxes = String::new();
    let mut handles = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        assert!(
            names.insert(row.target()),
            "two rows named {}",
            row.target()
        );
        let mut h = Handles {
            client_id: client_id(1000 + i as u32),
            tenant: if matches!(row.fault, Fault::Setup(Setup::TenantSmtpAuthOff)) {
                OTHER_TENANT.into()
            } else if matches!(row.check, CheckKind::Traffic | CheckKind::Discovery) {
                // Message trace and the inventory are read per tenant: each row its own.
                let id = format!("33333333-4444-5555-6666-{:012}", i);
                w.sim.add_tenant(&id, &[&row.target()]);
                id
            } else {
                TENANT.into()
            },
            ..Handles::default()
        };
        let mut app = SimApp::new(&h.tenant, &h.client_id, &row.app())
            .with_secret(
                SECRET,
                Some("matrix"),
                now - chrono::Duration::days(1),
                now + chrono::Duration::days(90),
            )
            .with_graph_role(ROLE_APPLICATION_READ_ALL)
            .with_graph_role(ROLE_SERVICE_HEALTH_READ_ALL)
            .with_graph_role(ROLE_AUDIT_LOG_READ_ALL)
            .with_graph_role(ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL);
        // A canary's reader: its own app, Mail.ReadWrite.
        let reader = (row.check == CheckKind::Canary).then(|| {
            let id = client_id(5000 + i as u32);
            let mut r = SimApp::new(&h.tenant, &id, &format!("{}-reader", row.target()))
                .with_secret(
                    SECRET,
                    Some("matrix"),
                    now - chrono::Duration::days(1),
                    now + chrono::Duration::days(90),
                );
            if !matches!(row.fault, Fault::Setup(Setup::NoMailRole)) {
                r = r.with_graph_role(ROLE_MAIL_READ_WRITE);
            }
            w.sim.add_app(r);
            h.reader_id = Some(id.clone());
            id
        });
        // Graph faults of a canary row are its reader's.
        let graph_client = reader.clone().unwrap_or_else(|| h.client_id.clone());
        let (mut login, mut graph) = (base.clone(), base.clone());
        let mut smtp_host = "127.0.0.1".to_string();
        let mut smtp_port = w.sim.smtp_addr.port();
        match &row.fault {
            Fault::Token(f) => w.sim.set_token_fault(&h.client_id, Some(f.clone())),
            Fault::Graph(f) => w.sim.set_graph_fault(&graph_client, Some(f.clone())),
            Fault::ReaderToken(f) => w.sim.set_token_fault(&graph_client, Some(f.clone())),
            Fault::Delivery(_) => {}
            Fault::Smtp(f) => {
                let l = w.sim.start_smtp_listener(Some(f.clone())).await.unwrap();
                smtp_port = l.addr.port();
                h.listener = Some(l);
            }
            Fault::Net(f) => {
                let upstream = match row.check {
                    CheckKind::Smtp | CheckKind::Canary => w.sim.smtp_addr,
                    _ => w.sim.https_addr,
                };
                let front = w.sim.start_front(upstream, Some(f.clone())).unwrap();
                match row.check {
                    CheckKind::Token => login = format!("https://127.0.0.1:{}", front.port()),
                    CheckKind::Graph
                    | CheckKind::Health
                    | CheckKind::Activity
                    | CheckKind::Traffic
                    | CheckKind::Discovery => graph = format!("https://127.0.0.1:{}", front.port()),
                    CheckKind::Smtp | CheckKind::Canary => smtp_port = front.port(),
                }
                if let NetFault::Http(r) = f {
                    if (300..400).contains(&r.status) {
                        // Where the redirect points: the real endpoint, where a followed redirect
                        // would succeed.
                        let location = match row.check {
                            CheckKind::Token => format!("{base}/{}/oauth2/v2.0/token", h.tenant),
                            _ => format!("{base}/v1.0/applications(appId='{}')", h.client_id),
                        };
                        let mut r = r.clone();
                        r.headers.push(("Location".into(), location));
                        front.set_fault(Some(NetFault::Http(r))).unwrap();
                    }
                }
                h.front = Some(front);
            }
            Fault::Dns => match row.check {
                CheckKind::Token => login = format!("https://login-{}.invalid", row.name),
                CheckKind::Graph
                | CheckKind::Health
                | CheckKind::Activity
                | CheckKind::Traffic
                | CheckKind::Discovery => graph = format!("https://graph-{}.invalid", row.name),
                CheckKind::Smtp | CheckKind::Canary => smtp_host = format!("{}.invalid", row.name),
            },
            Fault::Setup(Setup::NoConsent) => app = app.without_consent(),
            Fault::Setup(Setup::NoGraphRole) => app.graph_roles.clear(),
            Fault::Setup(Setup::NoHealthRole) => app
                .graph_roles
                .retain(|r| r != ROLE_SERVICE_HEALTH_READ_ALL),
            Fault::Setup(Setup::NoTraceServicePrincipal) => {
                w.sim.set_trace_service_principal(&h.tenant, false)
            }
            Fault::Setup(_) => {}
        }
        w.sim.add_app(app);
        // The token check runs for token rows, and for rows whose token fails: its successful
        // request after the fault refills the cache the SMTP check reads.
        // Not when Entra throttles: a token check throttled every second (its schedule here)
        // would keep the app's other checks on hold for good, as Entra asked; the check under
        // test then asks for its token itself.
        let token_on = row.check == CheckKind::Token
            || (matches!(row.fault, Fault::Token(_) | Fault::Setup(Setup::NoConsent))
                && !matches!(row.fault, Fault::Token(TokenFault::TooManyRequests { .. })));
        apps += &format!(
            "  - name: {}\n    tenant: {}\n    client_id: {}\n    client_secret_file: {secret}\n    login_url: {login}\n    graph_url: {graph}\n    ca_file: {}\n    checks:\n      token: {{ enabled: {token_on} }}\n      graph: {{ enabled: {} }}\n      health: {{ enabled: {}, schedule: 1s, timeout: {CHECK_TIMEOUT}s }}\n      activity: {{ enabled: {}, schedule: 1s, timeout: {CHECK_TIMEOUT}s }}\n      traffic: {{ enabled: {}, schedule: 2s, timeout: {CHECK_TIMEOUT}s }}\n      discovery: {{ enabled: {}, schedule: 1s, timeout: {CHECK_TIMEOUT}s }}\n",
            row.app(),
            if matches!(row.check, CheckKind::Traffic | CheckKind::Discovery) {
                row.target()
            } else {
                h.tenant.clone()
            },
            h.client_id,
            w.ca_file.display(),
            row.check == CheckKind::Graph,
            row.check == CheckKind::Health,
            row.check == CheckKind::Activity,
            row.check == CheckKind::Traffic,
            row.check == CheckKind::Discovery,
        );
        if let Some(id) = &reader {
            apps += &format!(
                "  - name: {}-reader\n    tenant: {}\n    client_id: {id}\n    client_secret_file: {secret}\n    login_url: {base}\n    graph_url: {base}\n    ca_file: {}\n    checks:\n      token: {{ enabled: false }}\n      graph: {{ enabled: false }}\n",
                row.target(),
                h.tenant,
                w.ca_file.display(),
            );
        }
        if row.check == CheckKind::Traffic {
            // The mailbox whose traffic is watched (its SMTP check off: the row is about the
            // trace).
            let address = format!("{}@contoso.com", row.app());
            w.sim.add_mailbox(&address, &[h.client_id.as_str()]);
            mailboxes += &format!(
                "  - {{ name: {}-mb, app: {}, address: {address}, checks: {{ smtp: {{ enabled: false }} }} }}\n",
                row.app(),
                row.app()
            );
        }
        if matches!(row.check, CheckKind::Smtp | CheckKind::Canary) {
            let address = format!("{}@contoso.com", row.target());
            let access: Vec<&str> = match row.fault {
                Fault::Setup(Setup::NoFullAccess) => vec![],
                _ => vec![h.client_id.as_str()],
            };
            w.sim.add_mailbox(&address, &access);
            match row.fault {
                Fault::Setup(Setup::MailboxSmtpAuthOff) => {
                    w.sim.set_mailbox_smtp_auth_disabled(&address, true)
                }
                Fault::Setup(Setup::TenantSmtpAuthOff) => {
                    w.sim.set_tenant_smtp_auth_disabled(OTHER_TENANT, true)
                }
                _ => {}
            }
            if let Fault::Delivery(d) = &row.fault {
                w.sim.set_delivery(&address, Some(d.clone()));
            }
            let canary = if row.check == CheckKind::Canary {
                let to = match row.fault {
                    Fault::Setup(Setup::UnknownRecipient) => "nobody@contoso.com".to_string(),
                    _ => address.clone(),
                };
                // The canary alone: its own session is the one under test.
                format!(
                    ", checks: {{ smtp: {{ enabled: false }} }}, canary: {{ to: {to}, reader: {}-reader, schedule: 1m, timeout: {CANARY_TIMEOUT}s }}",
                    row.target()
                )
            } else {
                String::new()
            };
            mailboxes += &format!(
                "  - {{ name: {}, app: {}, address: {address}, smtp_host: {smtp_host}, smtp_port: {smtp_port}{canary} }}\n",
                row.target(),
                row.app()
            );
            h.mailbox = Some(address);
        }
        handles.push(h);
    }
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\n  max_concurrent_checks: 500\n# Every check's duration on /metrics (the canary's only with detail).\nmetrics: {{ detail: true }}\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: {TOKEN_TIMEOUT}s }}\n    smtp: {{ schedule: 1s, timeout: {CHECK_TIMEOUT}s }}\n    graph: {{ schedule: 1s, timeout: {CHECK_TIMEOUT}s }}\napps:\n{apps}{}",
        if mailboxes.is_empty() {
            String::new()
        } else {
            format!("mailboxes:\n{mailboxes}")
        }
    );
    let agent = w.agent(&yaml).await;
    Bench {
        world: w,
        agent,
        rows: rows.iter().cloned().zip(handles).collect(),
    }
}

/// The series of one (check, target) among `lines`: `name{...}` lines with both labels.
fn series<'a>(text: &'a str, name: &str, check: &str, target: &str) -> Vec<&'a str> {
    let (c, t) = (format!("check=\"{check}\""), format!("target=\"{target}\""));
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&c) && l.contains(&t))
        .collect()
}

fn shows_reason(text: &str, row: &Row) -> bool {
    value(
        text,
        "smtp_oauth_check_failure_info",
        &[
            ("check", row.check.as_str()),
            ("target", &row.target()),
            ("reason", row.reason),
            ("aadsts", &row.aadsts),
        ],
    ) == Some(1.0)
}

fn recovered(text: &str, row: &Row) -> bool {
    value(
        text,
        "smtp_oauth_check_success",
        &[("check", row.check.as_str()), ("target", &row.target())],
    ) == Some(1.0)
        && series(
            text,
            "smtp_oauth_check_failure_info",
            row.check.as_str(),
            &row.target(),
        )
        .is_empty()
}

/// Scrapes until `done` holds for every row, or the limit; returns the last scrape and the rows
/// for which it never held.
async fn poll(
    agent: &smtp_oauth_exporter::agent::Agent,
    rows: &[&Row],
    limit: Duration,
    done: impl Fn(&str, &Row) -> bool,
) -> (String, Vec<String>) {
    let start = std::time::Instant::now();
    loop {
        let text = scrape(agent).await;
        let missing: Vec<String> = rows
            .iter()
            .filter(|r| !done(&text, r))
            .map(|r| r.target())
            .collect();
        if missing.is_empty() || start.elapsed() > limit {
            return (text, missing);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the failure series of a row show, for a failure message.
fn seen(text: &str, row: &Row) -> String {
    let mut v = series(
        text,
        "smtp_oauth_check_failure_info",
        row.check.as_str(),
        &row.target(),
    );
    v.extend(series(
        text,
        "smtp_oauth_check_success",
        row.check.as_str(),
        &row.target(),
    ));
    v.join(" ")
}

/// Runs a table: every row fails with its reason (and only that), the agent serves on, and,
/// with `recover`, every row recovers once its fault is cleared.
pub async fn run_table(rows: &[Row], recover: bool) {
    let bench = start(rows).await;
    let agent = &bench.agent;
    let all: Vec<&Row> = bench.rows.iter().map(|(r, _)| r).collect();

    // 1. Every row fails with its reason.
    let (text, missing) = poll(agent, &all, FAIL_LIMIT, shows_reason).await;
    let mut problems: Vec<String> = missing
        .iter()
        .map(|t| {
            let row = all.iter().find(|r| &r.target() == t).unwrap();
            format!(
                "{t}: expected reason {:?} aadsts {:?}; saw: {}",
                row.reason,
                row.aadsts,
                seen(&text, row)
            )
        })
        .collect();
    for (row, h) in &bench.rows {
        let target = row.target();
        // Every failed run so far had that reason: the row is deterministic.
        let totals = series(
            &text,
            "smtp_oauth_check_failures_total",
            row.check.as_str(),
            &target,
        );
        if let Some(other) = totals
            .iter()
            .find(|l| !l.contains(&format!("reason=\"{}\"", row.reason)))
        {
            problems.push(format!("{target}: a run failed otherwise: {other}"));
        }
        let duration = value(
            &text,
            "smtp_oauth_check_duration_seconds",
            &[("check", row.check.as_str()), ("target", &target)],
        )
        .unwrap_or(f64::INFINITY);
        if row.reason == "timeout" && duration >= row.timeout() + 1.0 {
            // The check ends at its timeout (the backstop is half a second later), never hangs.
            problems.push(format!("{target}: a timeout that took {duration}s"));
        }
        match &row.fault {
            Fault::Net(NetFault::Http(HttpReply {
                body: HttpBody::Huge { .. },
                ..
            })) => {
                let front = h.front.as_ref().unwrap();
                let runs = front.connections().max(1);
                let per_run = front.bytes_written() / runs;
                // The agent stops reading at 1 MiB: what the front got rid of is that plus what
                // socket buffers hold, nowhere near 100 MB, and the run ends long before its
                // timeout.
                if per_run > 16 * 1024 * 1024 || duration >= row.timeout() / 2.0 {
                    problems.push(format!(
                        "{target}: {per_run} bytes per run went out, the run took {duration}s"
                    ));
                }
            }
            Fault::Net(NetFault::Http(r)) if (300..400).contains(&r.status) => {
                // Not followed: the endpoint the redirect names never heard from the app, and the
                // front only saw requests for its own path.
                let followed = match row.check {
                    CheckKind::Token => bench.world.sim.token_requests(&h.client_id),
                    _ => bench.world.sim.graph_requests(&h.client_id),
                };
                let requests = h.front.as_ref().unwrap().requests();
                if followed != 0 || requests.is_empty() {
                    problems.push(format!(
                        "{target}: {followed} requests followed the redirect; the front saw {requests:?}"
                    ));
                }
            }
            _ => {}
        }
    }

    // 2. The agent serves on, every endpoint, while every fault goes on.
    let base = format!("http://{}", agent.local_addr());
    for (path, want) in [
        ("/-/healthy", "Healthy"),
        ("/-/ready", ""),
        ("/metrics", "smtp_oauth_check_success{"),
    ] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains(want), "{path}");
    }
    assert!(
        problems.is_empty(),
        "{} problems in {} rows:\n{}",
        problems.len(),
        rows.len(),
        problems.join("\n")
    );
    if !recover {
        bench.agent.stop().await;
        return;
    }

    // 3. Cleared, every fault: the next run succeeds. (Rows that do not recover within the test
    // keep their fault: they must go on failing as before.)
    for (row, h) in &bench.rows {
        if matches!(row.recovery, Recovery::NotApplicable(_)) {
            continue;
        }
        let sim = &bench.world.sim;
        match &row.fault {
            Fault::Token(_) => sim.set_token_fault(&h.client_id, None),
            Fault::Graph(_) => {
                sim.set_graph_fault(h.reader_id.as_ref().unwrap_or(&h.client_id), None)
            }
            Fault::ReaderToken(_) => sim.set_token_fault(h.reader_id.as_ref().unwrap(), None),
            Fault::Delivery(_) => sim.set_delivery(h.mailbox.as_deref().unwrap(), None),
            Fault::Smtp(_) => h.listener.as_ref().unwrap().set_fault(None),
            Fault::Net(_) => h.front.as_ref().unwrap().set_fault(None).unwrap(),
            Fault::Dns => {}
            Fault::Setup(Setup::NoConsent) => sim.set_exchange_roles(&h.client_id, &[ROLE_SMTP]),
            Fault::Setup(Setup::NoFullAccess) => {
                let mb = h.mailbox.as_deref().unwrap();
                sim.add_mailbox(mb, &[&h.client_id]);
            }
            Fault::Setup(Setup::MailboxSmtpAuthOff) => {
                sim.set_mailbox_smtp_auth(h.mailbox.as_deref().unwrap(), None)
            }
            Fault::Setup(Setup::TenantSmtpAuthOff) => {
                sim.set_tenant_smtp_auth_disabled(OTHER_TENANT, false)
            }
            Fault::Setup(Setup::NoGraphRole) => {
                let mut d = sim.directory.lock().unwrap();
                d.apps.get_mut(&h.client_id).unwrap().graph_roles = vec![
                    ROLE_APPLICATION_READ_ALL.into(),
                    ROLE_SERVICE_HEALTH_READ_ALL.into(),
                ];
            }
            Fault::Setup(Setup::NoHealthRole) => {
                let mut d = sim.directory.lock().unwrap();
                d.apps
                    .get_mut(&h.client_id)
                    .unwrap()
                    .graph_roles
                    .push(ROLE_SERVICE_HEALTH_READ_ALL.into());
            }
            Fault::Setup(Setup::NoTraceServicePrincipal) => {
                sim.set_trace_service_principal(&h.tenant, true)
            }
            // Canary rows: not recovered within the test (once a minute).
            Fault::Setup(Setup::NoMailRole | Setup::UnknownRecipient) => {}
        }
    }
    let scheduled: Vec<&Row> = all
        .iter()
        .copied()
        .filter(|r| r.recovery == Recovery::Scheduled)
        .collect();
    let (text, missing) = poll(agent, &scheduled, RECOVER_LIMIT, recovered).await;
    let mut problems: Vec<String> = missing
        .iter()
        .map(|t| {
            let row = all.iter().find(|r| &r.target() == t).unwrap();
            format!("{t}: did not recover; saw: {}", seen(&text, row))
        })
        .collect();
    let client = reqwest::Client::new();
    let mut probed = 0;
    for row in &all {
        match row.recovery {
            Recovery::Scheduled => {}
            Recovery::Probe(_) => {
                probed += 1;
                let body = client
                    .get(format!(
                        "{base}/probe?target={}&check={}",
                        row.target(),
                        row.check
                    ))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                if value(&body, "probe_success", &[]) != Some(1.0) {
                    problems.push(format!(
                        "{}: a probe after the fault failed:\n{body}",
                        row.target()
                    ));
                }
            }
            // Still failing as before.
            Recovery::NotApplicable(_) => {
                if !shows_reason(&text, row) {
                    problems.push(format!(
                        "{}: changed without a cause: {}",
                        row.target(),
                        seen(&text, row)
                    ));
                }
            }
        }
    }
    assert_eq!(
        scheduled.len()
            + probed
            + all
                .iter()
                .filter(|r| matches!(r.recovery, Recovery::NotApplicable(_)))
                .count(),
        all.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    bench.agent.stop().await;
}

/// A connection reset during the TLS handshake of the HTTPS checks: reqwest hands them an
/// untyped error, which `http_client` classifies as `tls_handshake` from its source (the
/// token check used to say `other`, the Graph check `http_error`). Service health's row is in
/// [`health_faults`].
pub fn tls_resets() -> Vec<Row> {
    [CheckKind::Token, CheckKind::Graph]
        .into_iter()
        .map(|c| Row::new(c, "reset", Fault::Net(NetFault::Reset), "tls_handshake"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_during_the_tls_handshake_is_tls_handshake_on_every_check() {
    run_table(&tls_resets(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_fault_on_every_check_gives_its_reason_and_recovers() {
    let rows = matrix();
    // Every check has rows, every fault kind of the simulator is in the table.
    let mut per_check: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *per_check.entry(r.check.as_str()).or_default() += 1;
    }
    assert_eq!(per_check.len(), CheckKind::ALL.len(), "{per_check:?}");
    run_table(&rows, true).await;
}

/// The name of a fault's kind, by an exhaustive match: a new fault of the simulator does not
/// compile here until it is named, and then [`every_fault_the_simulator_scripts_has_a_row`]
/// wants a row for it.
fn kind(f: &Fault) -> String {
    let name = match f {
        Fault::Token(t) => match t {
            TokenFault::ExpiredSecret => "ExpiredSecret",
            TokenFault::InvalidSecret => "InvalidSecret",
            TokenFault::UnknownApp => "UnknownApp",
            TokenFault::UnknownTenant => "UnknownTenant",
            TokenFault::ServerError => "ServerError",
            TokenFault::Slow(_) => "Slow",
            TokenFault::TooManyRequests { .. } => "TooManyRequests",
            TokenFault::MalformedJson => "MalformedJson",
            TokenFault::Aadsts { .. } => "Aadsts",
            TokenFault::EchoCredential => "EchoCredential",
            TokenFault::EchoForm => "EchoForm",
            TokenFault::EchoBase64 => "EchoBase64",
        },
        Fault::Graph(g) => match g {
            GraphFault::Forbidden => "Forbidden",
            GraphFault::NotFound => "NotFound",
            GraphFault::TooManyRequests { .. } => "TooManyRequests",
            GraphFault::Unavailable { .. } => "Unavailable",
            GraphFault::ServerError => "ServerError",
            GraphFault::MalformedJson => "MalformedJson",
            GraphFault::Slow(_) => "Slow",
            GraphFault::EchoToken => "EchoToken",
        },
        Fault::Smtp(s) => match s {
            SmtpFault::NoStartTls => "NoStartTls",
            SmtpFault::BannerDelay(_) => "BannerDelay",
            SmtpFault::DropAfterEhlo => "DropAfterEhlo",
            SmtpFault::GarbageBanner => "GarbageBanner",
            SmtpFault::EndlessLine => "EndlessLine",
            SmtpFault::StartTlsInjection => "StartTlsInjection",
            SmtpFault::StartTlsThenGarbage => "StartTlsThenGarbage",
            SmtpFault::ExpiredCertificate => "ExpiredCertificate",
            SmtpFault::WrongHostCertificate => "WrongHostCertificate",
            SmtpFault::UntrustedCertificate => "UntrustedCertificate",
            SmtpFault::SelfSignedCertificate => "SelfSignedCertificate",
            SmtpFault::NoXoauth2 => "NoXoauth2",
            SmtpFault::TenantSmtpAuthDisabled => "TenantSmtpAuthDisabled",
            SmtpFault::DenyMailFrom => "DenyMailFrom",
            SmtpFault::Reply { .. } => "Reply",
            SmtpFault::Raw { .. } => "Raw",
            SmtpFault::ResetAt(step) => return format!("smtp:ResetAt({step:?})"),
            SmtpFault::Drip(_) => "Drip",
            SmtpFault::AuthInClear => "AuthInClear",
            SmtpFault::EchoAuth => "EchoAuth",
        },
        Fault::Net(n) => match n {
            NetFault::Refuse => "Refuse",
            NetFault::Silence => "Silence",
            NetFault::Reset => "Reset",
            NetFault::Drip { .. } => "Drip",
            NetFault::NotTls(_) => "NotTls",
            NetFault::Certificate(c) => return format!("net:Certificate({c:?})"),
            NetFault::Http(_) => "Http",
            NetFault::ResetAfterRequest => "ResetAfterRequest",
        },
        Fault::Dns => "Dns",
        Fault::Setup(s) => return format!("setup:{s:?}"),
        Fault::Delivery(d) => match d {
            Delivery::Inbox(_) => "Inbox",
            Delivery::Junk(_) => "Junk",
            Delivery::Lost => "Lost",
            Delivery::Quarantine => "Quarantine",
            Delivery::Bounce(_) => "Bounce",
            Delivery::Reject { .. } => "Reject",
        },
        Fault::ReaderToken(_) => "Token",
    };
    let family = match f {
        Fault::Token(_) => "token",
        Fault::Graph(_) => "graph",
        Fault::Smtp(_) => "smtp",
        Fault::Net(_) => "net",
        Fault::Dns => "dns",
        Fault::Setup(_) => "setup",
        Fault::Delivery(_) => "delivery",
        Fault::ReaderToken(_) => "reader",
    };
    format!("{family}:{name}")
}

#[test]
fn every_fault_the_simulator_scripts_has_a_row() {
    let mut want: Vec<String> = [
        "token:ExpiredSecret",
        "token:InvalidSecret",
        "token:UnknownApp",
        "token:UnknownTenant",
        "token:ServerError",
        "token:Slow",
        "token:TooManyRequests",
        "token:MalformedJson",
        "token:Aadsts",
        "token:EchoCredential",
        "token:EchoForm",
        "token:EchoBase64",
        "graph:Forbidden",
        "graph:NotFound",
        "graph:TooManyRequests",
        "graph:Unavailable",
        "graph:ServerError",
        "graph:MalformedJson",
        "graph:Slow",
        "graph:EchoToken",
        "smtp:NoStartTls",
        "smtp:BannerDelay",
        "smtp:DropAfterEhlo",
        "smtp:GarbageBanner",
        "smtp:EndlessLine",
        "smtp:StartTlsInjection",
        "smtp:StartTlsThenGarbage",
        "smtp:ExpiredCertificate",
        "smtp:WrongHostCertificate",
        "smtp:UntrustedCertificate",
        "smtp:SelfSignedCertificate",
        "smtp:NoXoauth2",
        "smtp:TenantSmtpAuthDisabled",
        "smtp:DenyMailFrom",
        "smtp:Reply",
        "smtp:Raw",
        "smtp:Drip",
        "smtp:AuthInClear",
        "smtp:EchoAuth",
        "net:Refuse",
        "net:Silence",
        "net:Reset",
        "net:Drip",
        "net:NotTls",
        "net:Http",
        "net:ResetAfterRequest",
        "dns:Dns",
        "delivery:Inbox",
        "delivery:Junk",
        "delivery:Lost",
        "delivery:Quarantine",
        "delivery:Bounce",
        "delivery:Reject",
        "reader:Token",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    use SmtpStep::*;
    for step in [
        Banner,
        Ehlo,
        StartTls,
        TlsHandshake,
        EhloAfterTls,
        Auth,
        MailFrom,
    ] {
        want.push(format!("smtp:ResetAt({step:?})"));
    }
    for c in [
        CertFault::Expired,
        CertFault::WrongHost,
        CertFault::Untrusted,
        CertFault::SelfSigned,
    ] {
        want.push(format!("net:Certificate({c:?})"));
    }
    for s in [
        Setup::NoConsent,
        Setup::NoFullAccess,
        Setup::MailboxSmtpAuthOff,
        Setup::TenantSmtpAuthOff,
        Setup::NoGraphRole,
        Setup::NoMailRole,
        Setup::UnknownRecipient,
        Setup::NoHealthRole,
        Setup::NoTraceServicePrincipal,
    ] {
        want.push(format!("setup:{s:?}"));
    }
    let mut rows = matrix();
    rows.extend(tls_resets());
    let have: std::collections::BTreeSet<String> = rows.iter().map(|r| kind(&r.fault)).collect();
    let want: std::collections::BTreeSet<String> = want.into_iter().collect();
    let missing: Vec<&String> = want.difference(&have).collect();
    assert!(missing.is_empty(), "faults without a row: {missing:?}");
    // Every network fault and every token fault on each check it applies to.
    for family in ["token:", "net:Refuse", "net:Silence", "net:Reset", "dns:"] {
        for check in CheckKind::ALL {
            assert!(
                rows.iter()
                    .any(|r| r.check == check && kind(&r.fault).starts_with(family)),
                "no {family} row for the {check} check"
            );
        }
    }
    // The HTTP faults on both HTTPS checks, row for row.
    for check in [CheckKind::Token, CheckKind::Graph] {
        let n = rows
            .iter()
            .filter(|r| r.check == check && matches!(r.fault, Fault::Net(NetFault::Http(_))))
            .count();
        assert!(n >= 14, "{check}: {n} HTTP rows");
    }
    // 429, 500, 502 and 503, each with and without Retry-After, on both HTTPS checks.
    for check in [CheckKind::Token, CheckKind::Graph] {
        for code in ["429", "500", "502", "503"] {
            for suffix in ["", "-retry-after"] {
                let name = format!("http-{code}{suffix}");
                assert!(
                    rows.iter().any(|r| r.check == check && r.name == name),
                    "{check}: no row {name}"
                );
            }
        }
    }
}

/// The agent's clock and Microsoft's disagree: here Microsoft's runs two hours behind, so the
/// token Entra ID issues has a JWT `exp` an hour in the past by the agent's clock, with
/// `expires_in` 3600. The agent never trusts or checks a token's claims (README, "The access
/// token": decoded for diagnosis only) and counts a token's life from `expires_in` on its own
/// monotonic clock: the token check succeeds, its expiry is now + 3600 s, the cached token is
/// used for its hour (no request per run) and Exchange, on Microsoft's clock, takes it. What the
/// skew does break is the certificate credential: the agent's assertion is not valid yet by
/// Microsoft's clock (AADSTS700024), which the verdict names as the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_exp_disagrees_with_the_clock_lives_by_expires_in() {
    use smtp_oauth_exporter::sim::app_certificate;
    let w = World::new().await;
    w.sim.set_clock_offset(chrono::Duration::hours(-2));
    w.sim.set_token_lifetime(Some(Duration::from_secs(3600)));
    let now = Utc::now();
    let (id, cert_id) = (client_id(1), client_id(2));
    let cert = app_certificate("skewed");
    w.sim
        .add_app(SimApp::new(TENANT, &id, "skewed").with_secret(
            SECRET,
            None,
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(90),
        ));
    w.sim.add_app(
        SimApp::new(TENANT, &cert_id, "skewed-cert").with_certificate(
            cert.cert_der.clone(),
            None,
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(90),
        ),
    );
    w.sim.add_mailbox("skewed@contoso.com", &[&id]);
    let file = w.file("s.secret", SECRET);
    let yaml = format!(
        "scheduler: {{ startup_spread: 200ms }}\nmetrics: {{ detail: true }}\ndefaults:\n  checks:\n    token: {{ schedule: 1s, timeout: 2s }}\n    smtp: {{ schedule: 1s, timeout: 4s }}\n    graph: {{ enabled: false }}\napps:\n{}  - name: skewed-cert\n    tenant: {TENANT}\n    client_id: {cert_id}\n    certificate: {{ cert_file: {}, key_file: {} }}\n    {}\nmailboxes:\n  - {{ name: skewed-mb, app: skewed, address: skewed@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
        secret_app(&w, "skewed", &id, &file, ""),
        w.file("c.crt", &cert.cert_pem),
        w.file("c.key", &cert.key_pem),
        w.endpoints(),
        w.sim.smtp_addr.port()
    );
    let agent = w.agent(&yaml).await;
    let before = Utc::now().timestamp() as f64;
    let text = wait_for(
        &agent,
        Duration::from_secs(15),
        "three SMTP logins with the token, and the certificate app refused",
        |t| {
            value(
                t,
                "smtp_oauth_check_runs_total",
                &[
                    ("check", "smtp"),
                    ("target", "skewed-mb"),
                    ("result", "success"),
                ],
            )
            .unwrap_or(0.0)
                >= 3.0
                && value(
                    t,
                    "smtp_oauth_verdict",
                    &[("target", "skewed-cert"), ("cause", "clock_skew")],
                ) == Some(1.0)
        },
    )
    .await;
    let after = Utc::now().timestamp() as f64;
    // The token the agent holds: its exp is an hour in the past by the agent's clock.
    let tokens = w.sim.issued_tokens();
    assert!(!tokens.is_empty());
    for t in &tokens {
        let claims = smtp_oauth_exporter::auth::claims::decode(t).expect("a JWT");
        let exp = claims.exp.unwrap() as f64;
        assert!(
            exp < before - 3000.0,
            "exp {exp} is not in the past ({before})"
        );
    }
    let runs = |check: &str, target: &str, result: &str| {
        value(
            &text,
            "smtp_oauth_check_runs_total",
            &[("check", check), ("target", target), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(runs("token", "skewed", "failure"), 0.0, "{text}");
    assert_eq!(runs("smtp", "skewed-mb", "failure"), 0.0, "{text}");
    // Its expiry is what expires_in says, from now.
    let expiry = value(
        &text,
        "smtp_oauth_token_expiry_timestamp_seconds",
        &[("target", "skewed"), ("resource", "exchange")],
    )
    .unwrap();
    assert!(
        (before + 3600.0 - 2.0..=after + 3600.0 + 1.0).contains(&expiry),
        "expiry {expiry}, now {before}..{after}"
    );
    // The SMTP runs used the cached token: no request of their own beyond, at most, the one
    // that raced the first token check.
    let requests = w.sim.token_requests(&id) as f64;
    assert!(
        requests <= runs("token", "skewed", "success") + 1.0,
        "{requests} token requests for {} token checks",
        runs("token", "skewed", "success")
    );
    assert_eq!(
        value(
            &text,
            "smtp_oauth_check_failure_info",
            &[
                ("check", "token"),
                ("target", "skewed-cert"),
                ("reason", "assertion_invalid"),
                ("aadsts", "700024"),
            ]
        ),
        Some(1.0),
        "{text}"
    );
    agent.stop().await;
}
