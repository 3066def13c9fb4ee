//! The faults an SMTP listener of the simulator can be scripted with: at which step of the
//! dialog, and what it does instead (a reply, raw bytes, a reset, a certificate, a downgrade).

use std::time::Duration;

/// Where in the dialog a scripted reply replaces the normal one (or the connection is reset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpStep {
    Banner,
    Ehlo,
    StartTls,
    /// The TLS handshake after `220` to STARTTLS: no reply of its own, only a reset
    /// ([`SmtpFault::ResetAt`]) applies.
    TlsHandshake,
    EhloAfterTls,
    Auth,
    MailFrom,
    RcptTo,
    Data,
}

/// A scripted misbehaviour of one SMTP listener.
#[derive(Debug, Clone, PartialEq)]
pub enum SmtpFault {
    /// EHLO does not list STARTTLS.
    NoStartTls,
    /// The banner comes only after this long.
    BannerDelay(Duration),
    /// The connection is closed right after the first EHLO reply.
    DropAfterEhlo,
    /// The banner is not SMTP.
    GarbageBanner,
    /// The banner is an endless line without CRLF (megabytes of it).
    EndlessLine,
    /// The `220` to STARTTLS and a forged `250` in one write, before any TLS: the
    /// command-injection pattern RFC 3207 section 5 warns about.
    StartTlsInjection,
    /// After `220` to STARTTLS, bytes that are not TLS.
    StartTlsThenGarbage,
    /// The server certificate expired yesterday.
    ExpiredCertificate,
    /// The server certificate is for another host name.
    WrongHostCertificate,
    /// The server certificate is issued by a CA the agent does not trust (TLS inspection).
    UntrustedCertificate,
    /// The server certificate is self-signed (no CA at all).
    SelfSignedCertificate,
    /// After TLS, AUTH lists LOGIN only.
    NoXoauth2,
    /// `535 5.7.139 ... disabled for the Tenant`.
    TenantSmtpAuthDisabled,
    /// `554 5.2.252 SendAsDenied` to MAIL FROM.
    DenyMailFrom,
    /// This reply instead of the normal one at this step; 421 closes the connection.
    Reply {
        at: SmtpStep,
        code: u16,
        text: String,
    },
    /// These bytes, exactly as given (CRLFs included), instead of the normal reply at this step:
    /// malformed, over-long or inconsistent replies. The dialog goes on if the client does.
    Raw { at: SmtpStep, bytes: String },
    /// The connection is reset (TCP RST) at this step: before the banner, on receiving the
    /// step's command, or, at [`SmtpStep::TlsHandshake`], once the client's TLS hello arrived.
    ResetAt(SmtpStep),
    /// The banner one byte at a time, this long apart.
    Drip(Duration),
    /// A downgrade that goes further than [`SmtpFault::NoStartTls`]: EHLO lists no STARTTLS but
    /// offers `AUTH LOGIN XOAUTH2` in clear, and AUTH is accepted without TLS.
    AuthInClear,
    /// AUTH fails with a `535 5.7.3` whose text echoes the XOAUTH2 response and the token in it.
    EchoAuth,
}

impl SmtpFault {
    /// The certificate problem of a fault that is one (the listener presents that certificate).
    pub fn cert_fault(&self) -> Option<super::CertFault> {
        match self {
            SmtpFault::ExpiredCertificate => Some(super::CertFault::Expired),
            SmtpFault::WrongHostCertificate => Some(super::CertFault::WrongHost),
            SmtpFault::UntrustedCertificate => Some(super::CertFault::Untrusted),
            SmtpFault::SelfSignedCertificate => Some(super::CertFault::SelfSigned),
            _ => None,
        }
    }
}
