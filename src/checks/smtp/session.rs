//! One SMTP session, phase by phase: resolve, connect, banner, EHLO, STARTTLS (required), TLS,
//! EHLO, AUTH XOAUTH2 with the app's token, MAIL FROM + RSET (or a message), QUIT
//! (RFC 5321, RFC 3207, RFC 4954). Each phase is timed and ends at the run's deadline; a
//! failure says at which phase, with the reply and its reason.

use std::time::Duration;

use base64::Engine;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::message::send_test_message;
use super::reply::Reply;
use super::wire::{exchange, expect, StepError};
use super::{tls, MessageKind, Phase, SmtpDetails};
use crate::auth::Resource;
use crate::checks::{Context, Failure};
use crate::plan::{MailAddress, Mailbox};
use crate::reasons::{CommonReason, Reason, SmtpReason};

/// How long QUIT may take once everything else has succeeded.
const QUIT_WAIT: Duration = Duration::from_secs(2);

/// The TLS stream of a session after STARTTLS.
type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A session in progress: its mailbox and deadline, what it learned, what it sent.
pub(super) struct Run<'a> {
    mailbox: &'a Mailbox,
    deadline: Instant,
    pub details: SmtpDetails,
    /// What we sent that must never come back out in a log line (a relay could echo it).
    pub sent: Vec<crate::secret::Secret>,
}

impl<'a> Run<'a> {
    pub fn new(mailbox: &'a Mailbox, deadline: Instant) -> Self {
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
pub(super) fn offers_xoauth2(ext: &[String]) -> bool {
    ext.iter().any(|l| {
        let mechanisms = l.strip_prefix("AUTH=").or_else(|| l.strip_prefix("AUTH "));
        mechanisms.is_some_and(|m| m.split_whitespace().any(|w| w == "XOAUTH2"))
    })
}

/// The whole session: the message to send after AUTH, if any (`check --send-test-to`, the
/// canary), instead of the RSET.
pub(super) async fn dialog(
    r: &mut Run<'_>,
    ctx: &Context,
    send: Option<(&MailAddress, MessageKind)>,
) -> Result<(), (Phase, StepError)> {
    // Two sessions of a mailbox at most, whoever opens them: Exchange allows three.
    let address = r.mailbox.address.to_string();
    let Some(_turn) = ctx.sessions.acquire(&address, r.deadline).await else {
        return Err((
            Phase::Connect,
            StepError::new(
                CommonReason::Timeout,
                format!(
                    "no session of {address} could start before the check's timeout: {} were open (Exchange allows 3 per mailbox)",
                    crate::checks::sessions::PER_MAILBOX
                ),
            ),
        ));
    };
    let tcp = open(r).await?;
    let tls = start_tls(r, tcp).await?;
    let mut s = BufReader::new(tls);
    authenticate(r, ctx, &mut s).await?;
    if r.mailbox.mail_from || send.is_some() {
        mail_from(r, &mut s, send.is_none()).await?;
    }
    if let Some((to, kind)) = send {
        let from = r.mailbox.address.clone();
        let sent = r
            .timed(Phase::Send, send_test_message(&mut s, &from, to, kind))
            .await?;
        r.details.sent = Some(sent);
    }
    quit(r, &mut s).await;
    Ok(())
}

/// Resolve and connect, trying each address in turn.
async fn open(r: &mut Run<'_>) -> Result<TcpStream, (Phase, StepError)> {
    let host = r.mailbox.smtp_host.clone();
    let port = r.mailbox.smtp_port;
    let addrs: Vec<std::net::SocketAddr> = r
        .timed(Phase::Resolve, async {
            let found = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| {
                    let reason = if crate::net::local_resources(&e) {
                        CommonReason::LocalResources
                    } else {
                        CommonReason::Dns
                    };
                    StepError::new(reason, format!("cannot resolve {host}: {e}"))
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
            let mut local = false;
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
                        // No socket to connect with (EMFILE and the like): the agent's host,
                        // not the network, and never a refusal.
                        match e.kind() {
                            _ if crate::net::local_resources(&e) => local = true,
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
            let reason: Reason = if local {
                CommonReason::LocalResources.into()
            } else if refused {
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
    Ok(tcp)
}

/// EHLO with the mailbox's name (RFC 5321 section 4.1.1.1), before or inside TLS.
async fn ehlo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    r: &mut Run<'_>,
    s: &mut BufReader<S>,
    what: &str,
) -> Result<Reply, (Phase, StepError)> {
    let cmd = format!("EHLO {}", r.mailbox.ehlo_name);
    r.timed(Phase::Ehlo, async {
        expect(Phase::Ehlo, what, exchange(s, Some(&cmd)).await?, 250)
    })
    .await
}

/// Banner, EHLO, STARTTLS (which must be offered: never a plain-text fallback), the TLS
/// handshake, and the facts of the TLS session.
async fn start_tls(r: &mut Run<'_>, tcp: TcpStream) -> Result<Tls, (Phase, StepError)> {
    let host = r.mailbox.smtp_host.clone();
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

    let ehlo = ehlo(r, &mut plain, "EHLO").await?;
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
        r.mailbox.app.net.smtp_tls.clone()
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
    Ok(stream)
}

/// EHLO again inside TLS (which must offer XOAUTH2), the app's token from the shared cache,
/// and AUTH XOAUTH2 with it.
async fn authenticate(
    r: &mut Run<'_>,
    ctx: &Context,
    s: &mut BufReader<Tls>,
) -> Result<(), (Phase, StepError)> {
    let ehlo = ehlo(r, s, "EHLO after TLS").await?;
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
    let app = r.mailbox.app.clone();
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
        .map(|c| c.has_role(crate::checks::token::SMTP_ROLE));
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
        let mut reply = exchange(s, Some(&auth_cmd)).await?;
        if reply.code == 334 {
            // A JSON error challenge (Gmail style): RFC 4954 says answer with an empty line.
            reply = exchange(s, Some("")).await?;
        }
        expect(Phase::Auth, "AUTH XOAUTH2", reply, 235)
    })
    .await?;
    Ok(())
}

/// `MAIL FROM:<address>`, proving the mailbox may send as itself, then `RSET` unless a message
/// follows.
async fn mail_from(
    r: &mut Run<'_>,
    s: &mut BufReader<Tls>,
    rset: bool,
) -> Result<(), (Phase, StepError)> {
    let mail = format!("MAIL FROM:<{}>", r.mailbox.address);
    r.timed(Phase::MailFrom, async {
        let ok = expect(
            Phase::MailFrom,
            "MAIL FROM",
            exchange(s, Some(&mail)).await?,
            250,
        )?;
        if !rset {
            return Ok(ok);
        }
        expect(
            Phase::MailFrom,
            "RSET",
            exchange(s, Some("RSET")).await?,
            250,
        )
    })
    .await?;
    Ok(())
}

/// QUIT. One that goes wrong does not fail the check: everything it proves is already proven.
/// Nor may a server that never answers it hold the run (and a slot) until the deadline.
async fn quit(r: &mut Run<'_>, s: &mut BufReader<Tls>) {
    let _ = r
        .timed(Phase::Quit, async {
            match tokio::time::timeout(QUIT_WAIT, exchange(s, Some("QUIT"))).await {
                Ok(reply) => reply,
                Err(_) => Err(StepError::new(CommonReason::Timeout, "no reply to QUIT")),
            }
        })
        .await;
}
