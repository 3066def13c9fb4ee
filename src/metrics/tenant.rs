//! The series of what is read per tenant: service health, message trace traffic per watched
//! mailbox, and the inventory of the apps that can send.

use super::*;

/// The last successful inventory of each tenant.
pub(super) fn inventories<'a>(
    view: &'a View,
) -> impl Iterator<Item = &'a crate::checks::discovery::DiscoveryDetails> + 'a {
    view.jobs
        .iter()
        .filter(|(k, _)| k.kind == CheckKind::Discovery)
        .filter_map(|(_, st)| st.last_ok.as_deref()?.discovery())
}

/// The discovered apps' credentials (and their activity, where read) as the credential check's
/// and the activity check's details, by client ID.
pub(super) fn discovered_facts(view: &View) -> Vec<(String, Details)> {
    let mut out = Vec::new();
    for d in inventories(view) {
        for a in d.apps.iter().filter(|a| a.configured.is_none()) {
            if let Some(r) = &a.credentials {
                out.push((
                    a.app_id.clone(),
                    Details::Graph(crate::checks::graph::GraphDetails {
                        reader: d.reader.clone(),
                        http_status: Some(200),
                        registration: Some(r.clone()),
                        secret_policy: None,
                    }),
                ));
            }
            if d.activity_read {
                out.push((
                    a.app_id.clone(),
                    Details::Activity(crate::checks::activity::ActivityDetails {
                        reader: d.reader.clone(),
                        http_status: Some(200),
                        keys: a.activity.clone(),
                        unavailable: d.activity_unavailable.clone(),
                    }),
                ));
            }
        }
    }
    out
}

/// The inventory: how many apps of each tenant can send SMTP, configured or not, and each
/// discovered one.
pub(super) fn write_discovery(f: &mut Exposition, view: &View) {
    f.family(
        "smtp_send_apps",
        "Apps of a tenant that hold SMTP.SendAsApp (the inventory, checks.discovery), configured in the agent or not.",
        Kind::Gauge,
    );
    for d in inventories(view) {
        let configured = d.apps.iter().filter(|a| a.configured.is_some()).count();
        for (label, n) in [("true", configured), ("false", d.apps.len() - configured)] {
            f.sample(
                &[("target", d.tenant.as_str()), ("configured", label)],
                n as f64,
            );
        }
    }
    f.family(
        "discovered_app_info",
        "An app the inventory found holding SMTP.SendAsApp that the agent does not check itself (its client ID is the target of its credential series); always 1.",
        Kind::Gauge,
    );
    for d in inventories(view) {
        for a in d.apps.iter().filter(|a| a.configured.is_none()) {
            f.sample(
                &[
                    ("target", a.app_id.as_str()),
                    ("tenant", d.tenant.as_str()),
                    ("display_name", a.display_name.as_str()),
                ],
                1.0,
            );
        }
    }
}

/// What each watched mailbox sent, from message trace: counters by status (those seen: a
/// healthy mailbox has one), the newest message, and while they hold, its silence beyond
/// `expect_traffic_within` and its failed share of the last 24 h.
pub fn write_traffic(f: &mut Exposition, view: &View, now: DateTime<Utc>) {
    let mut watched: Vec<(&String, &crate::history::MailboxTraffic)> =
        view.history.traffic.iter().collect();
    watched.sort_by(|a, b| a.0.cmp(b.0));
    f.family(
        "traffic_messages_total",
        "Messages a watched mailbox sent, by message trace status (one per recipient, as the trace lists them), since the agent started watching; a status appears with its first message.",
        Kind::Counter,
    );
    for (m, t) in &watched {
        for s in crate::checks::traffic::TraceStatus::ALL {
            let n = t.totals[s.index()];
            if n > 0 {
                f.sample(&[("target", m.as_str()), ("status", s.as_str())], n as f64);
            }
        }
    }
    f.family(
        "traffic_last_message_timestamp_seconds",
        "The newest message a watched mailbox sent, from message trace; until one is seen, the start of the first window read (nothing sent since).",
        Kind::Gauge,
    );
    for (m, t) in &watched {
        if let Some(q) = t.quiet_since() {
            f.sample(&[("target", m.as_str())], ts(q));
        }
    }
    f.family(
        "traffic_silent",
        "Present (1) while a watched mailbox has sent nothing for longer than its expect_traffic_within.",
        Kind::Gauge,
    );
    for (m, t) in &watched {
        if t.silent(now) {
            f.sample(&[("target", m.as_str())], 1.0);
        }
    }
    f.family(
        "traffic_failed_share",
        "The share of a watched mailbox's messages of the last 24 h that failed or were quarantined; present while above 0, from 10 messages on.",
        Kind::Gauge,
    );
    for (m, t) in &watched {
        if let Some(s) = t.failed_share(now).filter(|s| *s > 0.0) {
            f.sample(&[("target", m.as_str())], s);
        }
    }
}

/// Open Microsoft 365 service health issues of the watched tenants: one series each, labels
/// from fixed sets (the title and impact go to /status, / and the log, never to a label).
pub(super) fn write_health(f: &mut Exposition, view: &View) {
    f.family(
        "service_health_issue_info",
        "An open Microsoft 365 service health issue of a watched tenant (Exchange Online, Microsoft Entra): its id, service, classification (incident, advisory) and status; always 1.",
        Kind::Gauge,
    );
    for (tenant, issues) in view.health {
        for x in issues.iter() {
            f.sample(
                &[
                    ("tenant", tenant.as_str()),
                    ("id", x.id.as_str()),
                    ("service", x.service.as_str()),
                    ("classification", x.classification()),
                    ("status", x.status.as_str()),
                ],
                1.0,
            );
        }
    }
}
