//! Mailbox stores of the simulated Exchange Online: what happens to a message a mailbox submits
//! over SMTP ([`Delivery`], scripted per sending mailbox) and the messages delivered, which
//! Microsoft Graph serves (see `graph_mail`).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::Digest;

use super::{Directory, SmtpStep};

/// At most this many messages per mailbox store.
const STORE_KEPT: usize = 1000;

/// The well-known folder name of the Inbox.
pub const FOLDER_INBOX: &str = "inbox";
/// The well-known folder name of the Junk Email folder.
pub const FOLDER_JUNK: &str = "junkemail";
/// The well-known folder name of Deleted Items, where a Graph `DELETE` moves a message.
pub const FOLDER_DELETED: &str = "deleteditems";

/// What happens to a message a mailbox submits.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Delivered to each recipient's Inbox this long after DATA was accepted (default: at once).
    Inbox(Duration),
    /// Delivered to each recipient's Junk Email folder this long after acceptance.
    Junk(Duration),
    /// Accepted (250 with a queue id) and never delivered (message trace: `pending`).
    Lost,
    /// Accepted and held in quarantine (message trace: `quarantined`).
    Quarantine,
    /// Accepted, then refused on the way with this reply (message trace: `failed`, the reply
    /// in its detail).
    Bounce(String),
    /// Refused with this reply at this step: [`SmtpStep::MailFrom`], [`SmtpStep::RcptTo`] (every
    /// recipient), or [`SmtpStep::Data`] meaning after the final dot (the message is then not
    /// stored, nor recorded as accepted). Any other step counts as `Data`. A `421` closes the
    /// connection, as with [`super::SmtpFault::Reply`].
    Reject {
        at: SmtpStep,
        code: u16,
        text: String,
    },
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery::Inbox(Duration::ZERO)
    }
}

impl Delivery {
    /// The reply refusing the message at `step` (`Data`: after the final dot), as it goes on the
    /// wire, when this delivery refuses there.
    pub(super) fn rejects_at(&self, step: SmtpStep) -> Option<String> {
        let Delivery::Reject { at, code, text } = self else {
            return None;
        };
        let at = match at {
            SmtpStep::MailFrom | SmtpStep::RcptTo => *at,
            _ => SmtpStep::Data,
        };
        (at == step).then(|| format!("{code} {text}\r\n"))
    }
}

/// A message in a mailbox store, as Graph shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Graph's opaque message id (URL-safe base64, may end with `=`); a new one when the message
    /// moves to another folder, as in Exchange.
    pub id: String,
    /// The id Graph gives with `Prefer: IdType="ImmutableId"`: it stays when the message moves
    /// within the mailbox.
    pub immutable_id: String,
    /// The `Message-ID:` header with its angle brackets (`<...@...>`), or one Exchange generated.
    pub internet_message_id: String,
    /// [`FOLDER_INBOX`], [`FOLDER_JUNK`] or, once deleted, [`FOLDER_DELETED`].
    pub folder: &'static str,
    /// Acceptance time plus the delivery delay, on Microsoft's clock, whole seconds.
    pub received: DateTime<Utc>,
    pub subject: String,
}

/// A delivered message and when it becomes visible, on tokio's clock (so a test with a paused
/// clock sees its virtual time).
#[derive(Debug, Clone)]
pub(super) struct Stored {
    pub message: StoredMessage,
    pub visible_at: tokio::time::Instant,
}

impl Stored {
    pub fn visible(&self) -> bool {
        tokio::time::Instant::now() >= self.visible_at
    }
}

/// The delivery scripted for a sending mailbox (the default: Inbox at once).
pub(super) fn delivery_of(d: &Directory, sender: &str) -> Delivery {
    d.deliveries
        .get(&sender.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default()
}

/// Delivers a message `sender` submitted and Exchange accepted now into every recipient's store
/// (recipients compared case-insensitively), as the sender's [`Delivery`] says.
pub(super) fn deliver(d: &mut Directory, sender: &str, recipients: &[String], data: &str) {
    let (folder, delay) = match delivery_of(d, sender) {
        Delivery::Inbox(delay) => (FOLDER_INBOX, delay),
        Delivery::Junk(delay) => (FOLDER_JUNK, delay),
        Delivery::Lost | Delivery::Quarantine | Delivery::Bounce(_) | Delivery::Reject { .. } => {
            return
        }
    };
    let (message_id, subject) = headers(data);
    let internet_message_id = message_id.unwrap_or_else(generated_message_id);
    let accepted = d.now();
    let received = chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| accepted.checked_add_signed(d))
        .unwrap_or(accepted);
    let received = DateTime::from_timestamp(received.timestamp(), 0).unwrap_or(received);
    let now = tokio::time::Instant::now();
    // A delay too long to represent: never, in practice (a hundred years).
    let visible_at = now
        .checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
    let mut seen: Vec<String> = Vec::new();
    for r in recipients {
        let key = r.to_ascii_lowercase();
        if seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        let store = d.stores.entry(key).or_default();
        // A mailbox nobody empties (the demo's canary whose reader may not delete) stays
        // bounded: the oldest go.
        if store.len() >= STORE_KEPT {
            store.remove(0);
        }
        store.push(Stored {
            message: StoredMessage {
                id: message_item_id(),
                immutable_id: immutable_item_id(),
                internet_message_id: internet_message_id.clone(),
                folder,
                received,
                subject: subject.clone(),
            },
            visible_at,
        });
    }
}

/// The `Message-ID:` (trimmed, as given) and `Subject:` (unfolded, trimmed; empty when absent)
/// of a message's header section; the first of each counts.
pub(super) fn headers(data: &str) -> (Option<String>, String) {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in data.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.to_string()));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let message_id = field("message-id").filter(|v| !v.is_empty());
    (message_id, field("subject").unwrap_or_default())
}

/// A Message-ID in the shape Exchange Online gives a message without one.
fn generated_message_id() -> String {
    format!(
        "<SIM01MB{:016X}@SIM01.prod.outlook.office365.com>",
        rand::random::<u64>()
    )
}

/// An opaque Graph message id, as long as and shaped like Exchange's (`AAMkAD...=`).
pub(super) fn message_item_id() -> String {
    let bytes: Vec<u8> = (0..70).map(|_| rand::random::<u8>()).collect();
    format!("AAMkAD{}", URL_SAFE.encode(bytes))
}

/// An opaque immutable message id (`AAkAL...=`).
fn immutable_item_id() -> String {
    let bytes: Vec<u8> = (0..70).map(|_| rand::random::<u8>()).collect();
    format!("AAkALg{}", URL_SAFE.encode(bytes))
}

/// The stable opaque id of a mailbox's well-known folder (Graph's `parentFolderId`).
pub(super) fn folder_id(mailbox: &str, folder: &str) -> String {
    let digest = sha2::Sha256::digest(format!("{}/{folder}", mailbox.to_ascii_lowercase()));
    format!("AQMkAD{}AAAA", URL_SAFE.encode(&digest[..30]))
}

/// Graph's display name of a well-known folder.
pub(super) fn folder_display_name(folder: &str) -> &'static str {
    match folder {
        FOLDER_JUNK => "Junk Email",
        FOLDER_DELETED => "Deleted Items",
        _ => "Inbox",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_message_id_and_subject_from_the_header_section_only() {
        let data = "From: <a@b.c>\r\nmessage-id:   <x.1@host>  \r\nSubject: one\r\n two\r\n\r\nMessage-ID: <body@x>\r\nSubject: body\r\n";
        let (id, subject) = headers(data);
        assert_eq!(id.as_deref(), Some("<x.1@host>"));
        assert_eq!(subject, "one two");
        let (id, subject) = headers("From: <a@b.c>\r\n\r\nMessage-ID: <body@x>\r\n");
        assert_eq!(id, None);
        assert_eq!(subject, "");
    }

    #[test]
    fn a_reject_applies_at_its_step_and_other_steps_mean_after_the_dot() {
        let r = |at| Delivery::Reject {
            at,
            code: 550,
            text: "5.1.8 Access denied, bad outbound sender".into(),
        };
        assert_eq!(
            r(SmtpStep::MailFrom)
                .rejects_at(SmtpStep::MailFrom)
                .as_deref(),
            Some("550 5.1.8 Access denied, bad outbound sender\r\n")
        );
        assert_eq!(r(SmtpStep::MailFrom).rejects_at(SmtpStep::Data), None);
        assert!(r(SmtpStep::Auth).rejects_at(SmtpStep::Data).is_some());
        assert_eq!(Delivery::Lost.rejects_at(SmtpStep::Data), None);
    }

    #[test]
    fn folder_ids_are_stable_per_mailbox_and_folder() {
        let a = folder_id("A@contoso.com", FOLDER_INBOX);
        assert_eq!(a, folder_id("a@contoso.com", FOLDER_INBOX));
        assert_ne!(a, folder_id("a@contoso.com", FOLDER_JUNK));
        assert_ne!(a, folder_id("b@contoso.com", FOLDER_INBOX));
        assert!(message_item_id().starts_with("AAMkAD"));
    }
}
