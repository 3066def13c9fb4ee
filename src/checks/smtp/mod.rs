//! The SMTP check: the handshake the business application does, without sending a message.
//! resolve → connect → banner → EHLO → STARTTLS (required) → TLS → EHLO → AUTH XOAUTH2 →
//! MAIL FROM + RSET → QUIT (RFC 5321, RFC 3207, RFC 4954), each phase timed. Only when a person
//! asks (`check --send-test-to`) does it send one test message instead of the RSET.
//!
//! Why not lettre's `AsyncSmtpConnection` for the dialog: it reads replies into an unbounded
//! buffer (a server streaming megabytes without CRLF would grow it until the timeout), does not
//! time phases, and folds the raw reply into its error. We keep lettre for what it does well:
//! reply parsing ([`reply`]) and the XOAUTH2 initial response (`Mechanism::Xoauth2`).

pub mod reply;
pub mod tls;

use std::fmt;
use std::time::Duration;

use base64::Engine;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use reply::Reply;
use reply::{read_reply, ReadError};
pub use tls::{CertFacts, TlsFacts};

use super::{Context, Details, Failure, Outcome, RunOptions};
use crate::auth::Resource;
use crate::net::CertProblem;
use crate::plan::{MailAddress, Mailbox, Target};
use crate::reasons::{CommonReason, Reason, SmtpReason};

/// How long QUIT may take once everything else has succeeded.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// The timed phases of the dialog (the `phase` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Resolve,
    Connect,
    Banner,
    /// Both EHLOs, before and after TLS.
    Ehlo,
    Starttls,
    Tls,
    Auth,
    /// `MAIL FROM` and `RSET`.
    MailFrom,
    /// `RCPT TO` and `DATA` of a message (`check --send-test-to`, the canary).
    Send,
    Quit,
}

impl Phase {
    /// The phases of a scheduled run, in order (`send` only runs when asked).
    pub const ALL: [Phase; 9] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Banner,
        Phase::Ehlo,
        Phase::Starttls,
        Phase::Tls,
        Phase::Auth,
        Phase::MailFrom,
        Phase::Quit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Banner => "banner",
            Phase::Ehlo => "ehlo",
            Phase::Starttls => "starttls",
            Phase::Tls => "tls",
            Phase::Auth => "auth",
            Phase::MailFrom => "mail_from",
            Phase::Send => "send",
            Phase::Quit => "quit",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an SMTP run learned.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpDetails {
    /// The mailbox's app (for the mailbox info series).
    pub app: String,
    pub address: String,
    /// Time spent in each phase that ran, in order.
    pub phases: Vec<(Phase, Duration)>,
    /// The SMTP endpoint: host and port.
    pub host: String,
    pub port: u16,
    /// The phase that failed.
    pub failed_phase: Option<Phase>,
    /// The reply of the step that failed, when the server replied.
    pub failed_reply: Option<ReplyFacts>,
    /// Shared with every report that saw the same facts at the endpoint (the state keeps one).
    pub tls: Option<std::sync::Arc<TlsFacts>>,
    pub insecure_skip_verify: bool,
    /// Whether the token sent in AUTH carried `SMTP.SendAsApp` (`None`: no token was sent, or
    /// it is not a JWT). It tells a missing consent (step 3) from a missing Exchange service
    /// principal or mailbox permission (step 4) behind the same `535 5.7.3`.
    pub token_has_role: Option<bool>,
    /// The test message sent by `check --send-test-to`.
    pub sent: Option<SentMessage>,
}

/// A server reply as the report keeps it: code, enhanced code, and its text (control
/// characters replaced, bounded, anything we sent redacted).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplyFacts {
    pub code: u16,
    pub enhanced: Option<String>,
    pub text: String,
}

impl ReplyFacts {
    /// The facts of a reply; `redact` runs over the whole text before it is cut to length, so
    /// that no part of something we sent survives the cut.
    fn of(r: &Reply, redact: impl Fn(String) -> String) -> Self {
        Self {
            code: r.code,
            enhanced: r.enhanced().map(str::to_string),
            text: reply::printable(redact(r.text()).as_bytes()),
        }
    }
}

/// A test message the server accepted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SentMessage {
    pub to: String,
    pub message_id: String,
    /// The server's reply to the end of DATA (Exchange puts its queue ID in it).
    pub reply: String,
    /// When that reply came: the message was accepted.
    pub accepted_at: chrono::DateTime<chrono::Utc>,
}

/// Where `535 5.7.139` says SMTP AUTH is switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDisabledScope {
    /// `... is disabled for the Tenant` (`Set-TransportConfig`).
    Tenant,
    /// `... is disabled for the Mailbox` (`Set-CASMailbox`).
    Mailbox,
    /// Security defaults or a Conditional Access policy.
    Policy,
    /// The text names none of them.
    Unknown,
}

/// Reads the scope from a `5.7.139` reply's text (Exchange's wording, reference table).
pub fn auth_disabled_scope(text: &str) -> AuthDisabledScope {
    let t = text.to_ascii_lowercase();
    if t.contains("for the tenant") {
        AuthDisabledScope::Tenant
    } else if t.contains("for the mailbox") {
        AuthDisabledScope::Mailbox
    } else if t.contains("security defaults")
        || t.contains("conditional access")
        || t.contains("did not meet the criteria")
    {
        AuthDisabledScope::Policy
    } else {
        AuthDisabledScope::Unknown
    }
}

/// A step's failure: its reason, the reply that caused it, and the text for the log.
struct StepError {
    reason: Reason,
    cert_problem: Option<CertProblem>,
    reply: Option<Reply>,
    message: String,
    token_failure: Option<Box<Failure>>,
}

impl StepError {
    fn new(reason: impl Into<Reason>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            cert_problem: None,
            reply: None,
            message: message.into(),
            token_failure: None,
        }
    }
}

/// Maps a negative reply at a phase to a reason (reference table "SMTP submission with XOAUTH2").
pub fn classify(phase: Phase, reply: &Reply) -> SmtpReason {
    let enhanced = reply.enhanced().unwrap_or("");
    match (enhanced, phase) {
        ("5.7.139", _) => return SmtpReason::SmtpAuthDisabled,
        ("5.1.8", _) => return SmtpReason::SenderRestricted,
        ("5.7.705" | "5.7.708", _) => return SmtpReason::TenantSendingBlocked,
        // SendAsDenied also comes after the final dot of a message (the canary's DATA).
        ("5.2.252", _) => return SmtpReason::SendAsDenied,
        ("4.7.66", _) => return SmtpReason::TlsVersion,
        ("4.3.2", _) => return SmtpReason::Throttled,
        (e, _) if e.starts_with("4.7.") => return SmtpReason::Throttled,
        ("5.7.3", Phase::Auth) => return SmtpReason::AuthRejected,
        ("5.7.4", Phase::Auth) => return SmtpReason::Xoauth2NotOffered,
        ("5.7.60" | "5.2.0", Phase::MailFrom) => return SmtpReason::SendAsDenied,
        _ => {}
    }
    match (reply.code, phase) {
        (400..=499, _) => SmtpReason::Throttled,
        (535, Phase::Auth) => SmtpReason::AuthRejected,
        (504, Phase::Auth) => SmtpReason::Xoauth2NotOffered,
        (550 | 553 | 554, Phase::MailFrom) => SmtpReason::SendAsDenied,
        _ => SmtpReason::ProtocolError,
    }
}

struct Run<'a> {
    mailbox: &'a Mailbox,
    deadline: Instant,
    details: SmtpDetails,
    /// What we sent that must never come back out in a log line (a relay could echo it).
    sent: Vec<crate::secret::Secret>,
}

impl<'a> Run<'a> {
    fn new(mailbox: &'a Mailbox, deadline: Instant) -> Self {
        Run {
            mailbox,
            deadline,
            sent: Vec::new(),
            details: SmtpDetails {
                app: mailbox.app.name.clone(),
                address: mailbox.address.to_string(),
                // Every phase, plus `send`: no regrowth (10,000 mailboxes keep one each).
                phases: Vec::with_capacity(Phase::ALL.len() + 1),
                host: mailbox.smtp_host.clone(),
                port: mailbox.smtp_port,
                failed_phase: None,
                failed_reply: None,
                tls: None,
                insecure_skip_verify: mailbox.tls_insecure_skip_verify,
                token_has_role: None,
                sent: None,
            },
        }
    }

    /// Runs one phase within the deadline and adds its time to the phase's total.
    async fn timed<T>(
        &mut self,
        phase: Phase,
        fut: impl std::future::Future<Output = Result<T, StepError>>,
    ) -> Result<T, (Phase, StepError)> {
        let start = Instant::now();
        let r = tokio::time::timeout_at(self.deadline, fut).await;
        let spent = start.elapsed();
        match self.details.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, d)) => *d += spent,
            None => self.details.phases.push((phase, spent)),
        }
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err((phase, e)),
            Err(_) => Err((
                phase,
                StepError::new(
                    CommonReason::Timeout,
                    format!("no answer during {phase} before the check's timeout"),
                ),
            )),
        }
    }
}

/// Sends a command (if any) and reads the reply.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    command: Option<&str>,
) -> Result<Reply, StepError> {
    if let Some(c) = command {
        let w = s.get_mut();
        w.write_all(format!("{c}\r\n").as_bytes())
            .await
            .map_err(io_error)?;
        w.flush().await.map_err(io_error)?;
    }
    read_reply(s).await.map_err(|e| {
        let msg = match &e {
            ReadError::Closed => "the server closed the connection mid-dialog".to_string(),
            other => other.to_string(),
        };
        StepError::new(SmtpReason::ProtocolError, msg)
    })
}

fn io_error(e: std::io::Error) -> StepError {
    StepError::new(SmtpReason::ProtocolError, format!("connection error: {e}"))
}

/// Expects a reply with `code`; anything else is classified for the phase.
fn expect(phase: Phase, what: &str, reply: Reply, code: u16) -> Result<Reply, StepError> {
    if reply.code == code {
        return Ok(reply);
    }
    Err(StepError {
        reason: classify(phase, &reply).into(),
        cert_problem: None,
        message: format!("{what}: the server replied {}", reply.text()),
        reply: Some(reply),
        token_failure: None,
    })
}

/// EHLO keywords (RFC 5321 section 4.1.1.1): the first word of each line after the greeting.
fn extensions(reply: &Reply) -> Vec<String> {
    reply
        .lines
        .iter()
        .skip(1)
        .map(|l| l.to_ascii_uppercase())
        .collect()
}

/// Whether `AUTH` lists XOAUTH2, in the RFC 4954 form (`AUTH LOGIN XOAUTH2`) or the old
/// `AUTH=LOGIN XOAUTH2` form some servers still send.
fn offers_xoauth2(ext: &[String]) -> bool {
    ext.iter().any(|l| {
        let mechanisms = l.strip_prefix("AUTH=").or_else(|| l.strip_prefix("AUTH "));
        mechanisms.is_some_and(|m| m.split_whitespace().any(|w| w == "XOAUTH2"))
    })
}

pub async fn run(target: &Target, ctx: &Context, deadline: Instant, opts: &RunOptions) -> Outcome {
    let Target::Mailbox(mailbox) = target else {
        return Outcome::failure(
            Failure::new(
                CommonReason::InternalError,
                "the smtp check needs a mailbox",
            ),
            Details::None,
        );
    };
    let mut r = Run::new(mailbox, deadline);
    let send = opts.send_test_to.as_ref().map(|to| (to, MessageKind::Test));
    let result = dialog(&mut r, ctx, send).await;
    finish(r, result)
}

/// The outcome of a session: its details, and the failure with anything we sent redacted.
fn finish(r: Run<'_>, result: Result<(), (Phase, StepError)>) -> Outcome {
    let sent: Vec<&str> = r.sent.iter().map(|s| s.expose()).collect();
    let redact = |text: String| crate::secret::redact(&text, &sent);
    let mut details = r.details;
    match result {
        Ok(()) => Outcome::success(Details::Smtp(details)),
        Err((phase, e)) => {
            details.failed_phase = Some(phase);
            details.failed_reply = e.reply.as_ref().map(|rep| ReplyFacts::of(rep, redact));
            let failure = match e.token_failure {
                Some(f) => *f,
                None => Failure {
                    cert_problem: e.cert_problem,
                    ..Failure::new(e.reason, redact(format!("{phase}: {}", e.message)))
                },
            };
            Outcome::failure(failure, Details::Smtp(details))
        }
    }
}

/// Which message a session sends after AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `check --send-test-to`: a person asked for it.
    Test,
    /// The delivery canary's message (marked auto-generated, RFC 3834).
    Canary,
}

/// The SMTP check's session, then one message to `to` (the canary's first half): the same
/// phases, reasons and details, with `details.sent` set once the server accepted it.
pub async fn run_and_send(
    target: &Target,
    ctx: &Context,
    deadline: Instant,
    to: &MailAddress,
) -> Outcome {
    let Target::Mailbox(mailbox) = target else {
        return Outcome::failure(
            Failure::new(
                CommonReason::InternalError,
                "the canary runs on mailboxes only",
            ),
            Details::None,
        );
    };
    let mut r = Run::new(mailbox, deadline);
    let result = dialog(&mut r, ctx, Some((to, MessageKind::Canary))).await;
    finish(r, result)
}

async fn dialog(
    r: &mut Run<'_>,
    ctx: &Context,
    send: Option<(&MailAddress, MessageKind)>,
) -> Result<(), (Phase, StepError)> {
    let send_test_to = send.map(|(to, _)| to);
    let app = r.mailbox.app.clone();
    let host = r.mailbox.smtp_host.clone();
    let port = r.mailbox.smtp_port;

    let addrs: Vec<std::net::SocketAddr> = r
        .timed(Phase::Resolve, async {
            let found = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| {
                    StepError::new(CommonReason::Dns, format!("cannot resolve {host}: {e}"))
                })?;
            let v: Vec<_> = found.collect();
            if v.is_empty() {
                return Err(StepError::new(
                    CommonReason::Dns,
                    format!("{host} has no address"),
                ));
            }
            Ok(v)
        })
        .await?;

    let r_deadline = r.deadline;
    let tcp = r
        .timed(Phase::Connect, async {
            let mut last = None;
            let mut refused = false;
            let mut dropped = false;
            for (i, a) in addrs.iter().enumerate() {
                // Share what is left between the addresses still to try, so an unreachable first
                // address (often IPv6) cannot use up the whole timeout.
                let left =
                    r_deadline.saturating_duration_since(Instant::now()) / (addrs.len() - i) as u32;
                match tokio::time::timeout(left, TcpStream::connect(a)).await {
                    Ok(Ok(s)) => return Ok(s),
                    Ok(Err(e)) => {
                        // A reset here comes from a server that accepted the connection and
                        // dropped it at once (it can beat the connect's own completion): a
                        // dropped connection, as at the banner, not a refusal.
                        match e.kind() {
                            std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted => dropped = true,
                            _ => refused = true,
                        }
                        last = Some(format!("{a}: {e}"));
                    }
                    Err(_) => last = Some(format!("{a}: no answer within {left:?}")),
                }
            }
            // Only unanswered attempts: the network dropped them, the port did not refuse.
            let reason: Reason = if refused {
                CommonReason::ConnectRefused.into()
            } else if dropped {
                SmtpReason::ProtocolError.into()
            } else {
                CommonReason::Timeout.into()
            };
            Err(StepError::new(
                reason,
                format!(
                    "cannot connect to {host}:{port}: {}",
                    last.unwrap_or_default()
                ),
            ))
        })
        .await?;
    let _ = tcp.set_nodelay(true);
    let mut plain = BufReader::new(tcp);

    r.timed(Phase::Banner, async {
        expect(
            Phase::Banner,
            "banner",
            exchange(&mut plain, None).await?,
            220,
        )
    })
    .await?;

    let ehlo_cmd = format!("EHLO {}", r.mailbox.ehlo_name);
    let ehlo = r
        .timed(Phase::Ehlo, async {
            expect(
                Phase::Ehlo,
                "EHLO",
                exchange(&mut plain, Some(&ehlo_cmd)).await?,
                250,
            )
        })
        .await?;
    if !extensions(&ehlo)
        .iter()
        .any(|l| l.split_whitespace().next() == Some("STARTTLS"))
    {
        // RFC 3207 section 4: without STARTTLS the credentials would travel in clear. Stop here,
        // whatever the server offers in clear (AUTH XOAUTH2 included: that is what a downgrade
        // looks like).
        return Err((
            Phase::Ehlo,
            StepError::new(
                SmtpReason::StarttlsMissing,
                format!(
                    "the server does not offer STARTTLS; nothing was sent. EHLO reply: {}",
                    ehlo.text()
                ),
            ),
        ));
    }

    r.timed(Phase::Starttls, async {
        expect(
            Phase::Starttls,
            "STARTTLS",
            exchange(&mut plain, Some("STARTTLS")).await?,
            220,
        )
    })
    .await?;
    if !plain.buffer().is_empty() {
        // Data after the 220 before the handshake is a command-injection attempt (RFC 3207 section 5).
        return Err((
            Phase::Starttls,
            StepError::new(
                SmtpReason::ProtocolError,
                "the server sent data after its STARTTLS reply",
            ),
        ));
    }
    let tcp = plain.into_inner();

    let tls_config = if r.mailbox.tls_insecure_skip_verify {
        crate::tls::insecure_client_config()
    } else {
        app.net.smtp_tls.clone()
    };
    let server_name = match rustls::pki_types::ServerName::try_from(host.clone()) {
        Ok(n) => n,
        Err(_) => {
            return Err((
                Phase::Tls,
                StepError::new(
                    CommonReason::TlsHandshake,
                    format!("{host} is not a valid TLS server name"),
                ),
            ))
        }
    };
    let connector = tokio_rustls::TlsConnector::from(tls_config);
    let stream = r
        .timed(Phase::Tls, async {
            connector.connect(server_name, tcp).await.map_err(|e| {
                let failure = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .map(crate::net::from_rustls)
                    .unwrap_or(crate::net::NetFailure::TlsHandshake);
                StepError {
                    cert_problem: failure.cert_problem(),
                    ..StepError::new(failure.reason(), format!("TLS handshake with {host}: {e}"))
                }
            })
        })
        .await?;
    r.details.tls = Some(std::sync::Arc::new(tls::facts(stream.get_ref().1)));
    let mut s = BufReader::new(stream);

    let ehlo = r
        .timed(Phase::Ehlo, async {
            expect(
                Phase::Ehlo,
                "EHLO after TLS",
                exchange(&mut s, Some(&ehlo_cmd)).await?,
                250,
            )
        })
        .await?;
    if !offers_xoauth2(&extensions(&ehlo)) {
        return Err((
            Phase::Ehlo,
            StepError::new(
                SmtpReason::Xoauth2NotOffered,
                format!(
                    "AUTH XOAUTH2 is not offered after TLS. EHLO reply: {}",
                    ehlo.text()
                ),
            ),
        ));
    }

    // The token comes from the shared cache; fetching it is not part of any SMTP phase.
    let token =
        match tokio::time::timeout_at(r.deadline, ctx.tokens.get(&app, Resource::Exchange)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                let f = Failure::from_token_error(SmtpReason::TokenUnavailable, &e);
                return Err((
                    Phase::Auth,
                    StepError {
                        message: f.message.clone(),
                        token_failure: Some(Box::new(f)),
                        ..StepError::new(SmtpReason::TokenUnavailable, "")
                    },
                ));
            }
            Err(_) => {
                return Err((
                    Phase::Auth,
                    StepError::new(
                        CommonReason::Timeout,
                        "no token from the token endpoint before the check's timeout",
                    ),
                ))
            }
        };
    r.details.token_has_role = token
        .claims
        .as_ref()
        .map(|c| c.has_role(super::token::SMTP_ROLE));
    let credentials = Credentials::new(
        r.mailbox.address.to_string(),
        token.value.expose().to_string(),
    );
    let blob = Mechanism::Xoauth2
        .response(&credentials, None)
        .map_err(|_| {
            (
                Phase::Auth,
                StepError::new(
                    SmtpReason::ProtocolError,
                    "cannot build the XOAUTH2 response",
                ),
            )
        })?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    r.sent.push(token.value.clone());
    r.sent.push(crate::secret::Secret::new(encoded.clone()));
    let auth_cmd = format!("AUTH XOAUTH2 {encoded}");
    r.timed(Phase::Auth, async {
        let mut reply = exchange(&mut s, Some(&auth_cmd)).await?;
        if reply.code == 334 {
            // A JSON error challenge (Gmail style): RFC 4954 says answer with an empty line.
            reply = exchange(&mut s, Some("")).await?;
        }
        expect(Phase::Auth, "AUTH XOAUTH2", reply, 235)
    })
    .await?;
    drop(auth_cmd);

    if r.mailbox.mail_from || send_test_to.is_some() {
        let mail = format!("MAIL FROM:<{}>", r.mailbox.address);
        let rset = send_test_to.is_none();
        r.timed(Phase::MailFrom, async {
            let ok = expect(
                Phase::MailFrom,
                "MAIL FROM",
                exchange(&mut s, Some(&mail)).await?,
                250,
            )?;
            if !rset {
                return Ok(ok);
            }
            expect(
                Phase::MailFrom,
                "RSET",
                exchange(&mut s, Some("RSET")).await?,
                250,
            )
        })
        .await?;
    }
    if let Some((to, kind)) = send {
        let from = r.mailbox.address.clone();
        let sent = r
            .timed(Phase::Send, send_test_message(&mut s, &from, to, kind))
            .await?;
        r.details.sent = Some(sent);
    }

    // A QUIT that goes wrong does not fail the check: everything it proves is already proven.
    // Nor may a server that never answers it hold the run (and a slot) until the deadline.
    let _ = r
        .timed(Phase::Quit, async {
            match tokio::time::timeout(QUIT_WAIT, exchange(&mut s, Some("QUIT"))).await {
                Ok(reply) => reply,
                Err(_) => Err(StepError::new(CommonReason::Timeout, "no reply to QUIT")),
            }
        })
        .await;
    Ok(())
}

/// RCPT TO, DATA, one small message (RFC 5321 section 4.1.1.4, RFC 5322 headers), after a
/// MAIL FROM already accepted.
async fn send_test_message<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    from: &MailAddress,
    to: &MailAddress,
    kind: MessageKind,
) -> Result<SentMessage, StepError> {
    let rejected = |what: &str, reply: Reply| StepError {
        reason: match classify(Phase::Send, &reply) {
            r @ (SmtpReason::SenderRestricted
            | SmtpReason::TenantSendingBlocked
            | SmtpReason::SendAsDenied) => r.into(),
            _ if reply.code >= 500 => SmtpReason::MessageRejected.into(),
            r => r.into(),
        },
        cert_problem: None,
        message: format!("{what}: the server replied {}", reply.text()),
        reply: Some(reply),
        token_failure: None,
    };
    let rcpt = exchange(s, Some(&format!("RCPT TO:<{to}>"))).await?;
    if rcpt.code != 250 && rcpt.code != 251 {
        return Err(rejected("RCPT TO", rcpt));
    }
    let data = exchange(s, Some("DATA")).await?;
    if data.code != 354 {
        return Err(rejected("DATA", data));
    }
    let message_id = format!("<{}@smtp-oauth-exporter>", uuid::Uuid::new_v4());
    let body = test_message(from, to, &message_id, chrono::Utc::now(), kind);
    let w = s.get_mut();
    w.write_all(body.as_bytes()).await.map_err(io_error)?;
    w.flush().await.map_err(io_error)?;
    let done = exchange(s, None).await?;
    if done.code != 250 {
        return Err(rejected("end of DATA", done));
    }
    Ok(SentMessage {
        to: to.to_string(),
        message_id,
        reply: reply::printable(done.text().as_bytes()),
        accepted_at: chrono::Utc::now(),
    })
}

/// The test message, CRLF line ends, ending with the lone dot of RFC 5321 section 4.1.1.4.
fn test_message(
    from: &str,
    to: &str,
    message_id: &str,
    now: chrono::DateTime<chrono::Utc>,
    kind: MessageKind,
) -> String {
    let (subject, extra, body) = match kind {
        MessageKind::Test => (
            "smtp-oauth-exporter test message",
            String::new(),
            format!("This test message was sent by smtp-oauth-exporter check --send-test-to, as {from}, through SMTP AUTH XOAUTH2 with the app's token."),
        ),
        MessageKind::Canary => (
            "smtp-oauth-exporter delivery canary",
            // RFC 3834: no auto-reply to it; the header names the tool and the run.
            format!("Auto-Submitted: auto-generated\r\nX-SMTP-OAuth-Exporter: canary {message_id}"),
            format!("This delivery canary was sent by smtp-oauth-exporter as {from}; it finds it in {to} with Microsoft Graph and deletes it."),
        ),
    };
    let mut lines = vec![
        format!("Date: {}", now.to_rfc2822()),
        format!("From: <{from}>"),
        format!("To: <{to}>"),
        format!("Message-ID: {message_id}"),
        format!("Subject: {subject}"),
        format!(
            "X-Mailer: smtp-oauth-exporter/{}",
            env!("CARGO_PKG_VERSION")
        ),
    ];
    if !extra.is_empty() {
        lines.push(extra);
    }
    lines.extend([
        "MIME-Version: 1.0".to_string(),
        "Content-Type: text/plain; charset=utf-8".to_string(),
        String::new(),
        body,
        "If it arrived, the whole sending chain works.".to_string(),
    ]);
    let mut out = String::new();
    for l in lines {
        out += &l;
        out += "\r\n";
    }
    out + ".\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_string()],
        }
    }

    #[test]
    fn xoauth2_in_both_auth_forms() {
        let ext = |l: &str| vec![l.to_ascii_uppercase()];
        assert!(offers_xoauth2(&ext("AUTH LOGIN XOAUTH2")));
        assert!(offers_xoauth2(&ext("AUTH=LOGIN XOAUTH2")));
        assert!(offers_xoauth2(&ext("AUTH=XOAUTH2")));
        assert!(!offers_xoauth2(&ext("AUTH LOGIN PLAIN")));
        assert!(!offers_xoauth2(&ext("AUTHX XOAUTH2")));
    }

    #[test]
    fn replies_map_to_the_reference_table() {
        let cases = [
            (Phase::Auth, 535, "5.7.3 Authentication unsuccessful", SmtpReason::AuthRejected),
            (Phase::Auth, 535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", SmtpReason::SmtpAuthDisabled),
            (Phase::Auth, 535, "5.7.139 Authentication unsuccessful, security defaults policy", SmtpReason::SmtpAuthDisabled),
            (Phase::Auth, 504, "5.7.4 Unrecognized authentication type", SmtpReason::Xoauth2NotOffered),
            (Phase::Ehlo, 421, "4.7.66 TLS 1.0 and 1.1 are not supported.", SmtpReason::TlsVersion),
            (Phase::Auth, 432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", SmtpReason::Throttled),
            (Phase::MailFrom, 451, "4.7.0 Temporary server error.", SmtpReason::Throttled),
            (Phase::Banner, 421, "Service not available", SmtpReason::Throttled),
            (Phase::MailFrom, 554, "5.2.252 SendAsDenied", SmtpReason::SendAsDenied),
            (Phase::Send, 554, "5.2.252 SendAsDenied; a@b not allowed to send as a@b", SmtpReason::SendAsDenied),
            (Phase::MailFrom, 550, "5.7.60 SMTP; Client does not have permissions to send as this sender", SmtpReason::SendAsDenied),
            (Phase::Banner, 554, "No SMTP service here", SmtpReason::ProtocolError),
            (Phase::Ehlo, 500, "5.3.3 Unrecognized command", SmtpReason::ProtocolError),
        ];
        for (phase, code, text, want) in cases {
            assert_eq!(
                classify(phase, &reply(code, text)),
                want,
                "{code} {text} at {phase}"
            );
        }
    }
}
