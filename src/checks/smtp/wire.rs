//! One command and its reply on the SMTP wire (bounded, as `reply` reads it), and what a step
//! that fails says: its reason, the reply, the text for the log. The session and the message
//! both speak through it.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::reply::{read_reply, ReadError, Reply};
use super::{classify, Phase};
use crate::checks::Failure;
use crate::net::CertProblem;
use crate::reasons::{Reason, SmtpReason};

/// A step's failure: its reason, the reply that caused it, and the text for the log.
pub(super) struct StepError {
    pub reason: Reason,
    pub cert_problem: Option<CertProblem>,
    pub reply: Option<Reply>,
    pub message: String,
    pub token_failure: Option<Box<Failure>>,
}

impl StepError {
    pub fn new(reason: impl Into<Reason>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            cert_problem: None,
            reply: None,
            message: message.into(),
            token_failure: None,
        }
    }
}

/// Sends a command (if any) and reads the reply.
pub(super) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
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

pub(super) fn io_error(e: std::io::Error) -> StepError {
    StepError::new(SmtpReason::ProtocolError, format!("connection error: {e}"))
}

/// Expects a reply with `code`; anything else is classified for the phase.
pub(super) fn expect(
    phase: Phase,
    what: &str,
    reply: Reply,
    code: u16,
) -> Result<Reply, StepError> {
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
