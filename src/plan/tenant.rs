//! A tenant as a target of its own: what is read once per tenant, not per app (message trace:
//! one query per tenant and interval, for every watched mailbox of it; the inventory of the
//! apps that can send SMTP).

use std::sync::Arc;

use sha2::Digest;

use super::{App, CheckSettings, Mailbox};

/// One read per tenant: the app whose Graph token reads, and when.
#[derive(Debug, Clone)]
pub struct TenantRead {
    /// The first app of the tenant with the check enabled: its `graph_reader`, or itself.
    pub reader: Arc<App>,
    /// That app (its settings; for the inventory, whether it also reads credential activity).
    pub by: Arc<App>,
    pub check: CheckSettings,
}

/// A tenant whose message trace or inventory the agent reads.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The tenant as its first such app names it (GUID or domain): the `target` label of its
    /// checks.
    pub name: String,
    /// Message trace: the mailboxes whose traffic is watched.
    pub traffic: Option<TenantRead>,
    pub senders: Vec<Arc<Mailbox>>,
    /// The inventory of the apps that can send SMTP (`discovery`).
    pub discovery: Option<TenantRead>,
    /// The configured apps, for the inventory (empty without one): it leaves their credentials
    /// to their own checks. One list shared by every tenant of the plan.
    pub configured: Arc<Configured>,
}

/// The configured apps (client ID in lower case, name), sorted, and their digest: made once per
/// plan, whatever the number of tenants.
#[derive(Debug, Default)]
pub struct Configured {
    apps: Vec<(String, String)>,
    digest: [u8; 32],
}

impl Configured {
    pub fn new<'a>(apps: impl Iterator<Item = &'a Arc<App>>) -> Configured {
        let mut apps: Vec<(String, String)> = apps
            .map(|a| (a.client_id.to_ascii_lowercase(), a.name.clone()))
            .collect();
        apps.sort();
        apps.dedup();
        let mut h = sha2::Sha256::new();
        for (id, name) in &apps {
            h.update(format!("\0{id}\0{name}").as_bytes());
        }
        Configured {
            apps,
            digest: h.finalize().into(),
        }
    }
}

impl Tenant {
    /// The app that reads for the tenant (message trace's, else the inventory's).
    pub fn reader(&self) -> &Arc<App> {
        &self
            .traffic
            .as_ref()
            .or(self.discovery.as_ref())
            .expect("a tenant target reads something")
            .reader
    }

    /// The name of the configured app with this client ID, if any.
    pub fn configured_as(&self, client_id: &str) -> Option<&str> {
        let id = client_id.to_ascii_lowercase();
        let apps = &self.configured.apps;
        let first = apps.partition_point(|(x, _)| *x < id);
        apps.get(first)
            .filter(|(x, _)| *x == id)
            .map(|(_, n)| n.as_str())
    }

    /// What the tenant's checks depend on, hashed: its name, readers and settings, senders and
    /// configured apps.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.name.as_bytes());
        for r in [&self.traffic, &self.discovery] {
            match r {
                Some(r) => {
                    h.update(
                        format!("\0{:?}\0{}", r.check, r.by.activity_check.enabled).as_bytes(),
                    );
                    h.update(r.reader.digest());
                }
                None => h.update(b"\0-"),
            }
        }
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
        h.update(self.configured.digest);
        h.finalize().into()
    }
}
