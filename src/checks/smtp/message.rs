//! The one message a session may send after AUTH (`check --send-test-to`, the delivery
//! canary): RCPT TO, DATA, a small RFC 5322 message, and the server's acceptance.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::wire::{exchange, io_error, StepError};
use super::{classify, reply, MessageKind, Phase, Reply, SentMessage};
use crate::plan::MailAddress;
use crate::reasons::SmtpReason;

/// RCPT TO, DATA, one small message (RFC 5321 section 4.1.1.4, RFC 5322 headers), after a
/// MAIL FROM already accepted.
pub(super) async fn send_test_message<S: AsyncRead + AsyncWrite + Unpin>(
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
