//! A tenant as a target of its own: what is read once per tenant, not per app (message trace:
//! one query per tenant and interval, for every watched mailbox of it).

use std::sync::Arc;

use sha2::Digest;

use super::{App, CheckSettings, Mailbox};

/// A tenant whose message trace the agent reads.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant as its first app with traffic watched names it (GUID or domain): the
    /// `target` label of its checks.
    pub name: String,
    /// The app whose Graph token reads the trace: that first app's `graph_reader`, or itself.
    pub reader: Arc<App>,
    /// The traffic check's settings: that first app's.
    pub traffic_check: CheckSettings,
    /// The mailboxes whose traffic is watched, in configuration order.
    pub senders: Vec<Arc<Mailbox>>,
}

impl Tenant {
    /// What the tenant's checks depend on, hashed: its name, settings, reader and senders.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(format!("{}\0{:?}", self.name, self.traffic_check).as_bytes());
        h.update(self.reader.digest());
        for m in &self.senders {
            h.update(
                format!(
                    "\0{}\0{}\0{:?}",
                    m.name,
                    m.address,
                    m.traffic.as_ref().and_then(|t| t.expect_within)
                )
                .as_bytes(),
            );
        }
        h.finalize().into()
    }
}
