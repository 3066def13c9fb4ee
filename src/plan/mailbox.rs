//! A mailbox the agent signs in to over SMTP with its app's token, its delivery canary, and
//! the e-mail address type both use: parsed once at validation, safe on the SMTP wire.

use std::fmt;
use std::sync::Arc;

use sha2::Digest;

use super::{App, CheckSettings};

/// A mailbox the agent logs in to over SMTP with its app's token.
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub name: String,
    /// The app whose token is used.
    pub app: Arc<App>,
    pub address: MailAddress,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// Name sent in EHLO.
    pub ehlo_name: String,
    /// Send `MAIL FROM:<address>` + `RSET` after AUTH to prove the mailbox may send as itself.
    pub mail_from: bool,
    /// Skip server certificate verification. Dangerous; exported as a metric.
    pub tls_insecure_skip_verify: bool,
    pub smtp_check: CheckSettings,
    /// The delivery canary, when configured.
    pub canary: Option<Canary>,
    /// Its application's traffic in message trace, when its app watches traffic.
    /// (Boxed: most mailboxes have none, and there may be 10,000 of them.)
    pub traffic: Option<Box<TrafficWatch>>,
}

/// How a mailbox's traffic is watched: by its tenant's message trace read.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficWatch {
    /// The tenant target whose traffic check reads it (the tenant as its first traffic app
    /// names it).
    pub tenant: String,
    /// The application sends at least once within this long (`expect_traffic_within`): a
    /// longer silence is a finding; `None`: no expectation.
    pub expect_within: Option<std::time::Duration>,
}

/// A mailbox's delivery canary: a message sent over its SMTP session to `to`, then found in
/// `to` (and deleted) with `reader`'s Graph token.
#[derive(Debug, Clone)]
pub struct Canary {
    pub to: MailAddress,
    /// The app with `Mail.ReadWrite` (scoped to the canary mailbox) that finds the message.
    pub reader: Arc<App>,
    pub check: CheckSettings,
    /// The app whose Graph token looks a lost message up in message trace: its tenant's
    /// traffic reader, when the tenant's traffic is watched.
    pub trace_reader: Option<Arc<App>>,
}

impl Mailbox {
    /// What the mailbox's check depends on, hashed: its settings and its app's digest.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(
            format!(
                "{}\0{}\0{}\0{}\0{}\0{}\0{}\0{:?}",
                self.name,
                self.address,
                self.smtp_host,
                self.smtp_port,
                self.ehlo_name,
                self.mail_from,
                self.tls_insecure_skip_verify,
                self.smtp_check
            )
            .as_bytes(),
        );
        if let Some(c) = &self.canary {
            h.update(format!("canary\0{}\0{:?}", c.to, c.check).as_bytes());
            h.update(c.reader.digest());
            if let Some(r) = &c.trace_reader {
                h.update(r.digest());
            }
        }
        if let Some(t) = &self.traffic {
            h.update(format!("traffic\0{}\0{:?}", t.tenant, t.expect_within).as_bytes());
        }
        h.update(self.app.digest());
        h.finalize().into()
    }
}

/// An e-mail address checked once, where it enters the agent (configuration, `--send-test-to`):
/// `user@domain` that cannot smuggle a command into the SMTP dialog it is written into
/// (`MAIL FROM:<…>`, `RCPT TO:<…>`, the XOAUTH2 `user=`): exactly one `@` with text on both
/// sides, at most 254 bytes (RFC 5321 section 4.5.3.1.3), no space or control character
/// (no CR or LF), none of `<>()[]\\,;:"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailAddress(String);

impl MailAddress {
    /// The address, when it is one; `None` otherwise (the caller says what was wrong where).
    pub fn parse(text: &str) -> Option<MailAddress> {
        let plain = text.matches('@').count() == 1
            && !text.starts_with('@')
            && !text.ends_with('@')
            && text.len() <= 254
            && text
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[]\\,;:\"".contains(c));
        plain.then(|| MailAddress(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for MailAddress {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for MailAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::MailAddress;

    #[test]
    fn an_address_is_one_at_with_nothing_that_breaks_the_smtp_line() {
        for ok in ["invoices@contoso.com", "a.b+c@d.e", "ünï@exämple.de"] {
            assert!(MailAddress::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "invoices.contoso.com",
            "@contoso.com",
            "a@",
            "a@b@c",
            "a b@c",
            "a@b\r\nRSET",
            "<a@b>",
            "a@b>",
            "a,b@c",
            "\"a\"@b",
        ] {
            assert!(MailAddress::parse(bad).is_none(), "{bad:?}");
        }
        assert!(MailAddress::parse(&format!("{}@b.c", "a".repeat(251))).is_none());
    }
}
