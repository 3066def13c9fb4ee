//! The SMTP check: the handshake the business application does, without sending a message.
//! resolve → connect → banner → EHLO → STARTTLS (required) → TLS → EHLO → AUTH XOAUTH2 →
//! MAIL FROM + RSET → QUIT (RFC 5321, RFC 3207, RFC 4954), each phase timed. Only when a person
//! asks (`check --send-test-to`) does it send one test message instead of the RSET.
//!
//! Why not lettre's `AsyncSmtpConnection` for the dialog: it reads replies into an unbounded
//! buffer (a server streaming megabytes without CRLF would grow it until the timeout), does not
//! time phases, and folds the raw reply into its error. We keep lettre for what it does well:
//! reply parsing ([`reply`]) and the XOAUTH2 initial response (`Mechanism::Xoauth2`).

mod message;
pub mod reply;
mod session;
pub mod tls;
mod wire;

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

pub use reply::Reply;
use session::{dialog, Run};
pub use tls::{CertFacts, TlsFacts};
use wire::StepError;

use super::{Context, Details, Failure, Outcome, RunOptions};
use crate::plan::{MailAddress, Target};
use crate::reasons::{CommonReason, SmtpReason};

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

#[cfg(test)]
mod tests {
    use super::session::offers_xoauth2;
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
