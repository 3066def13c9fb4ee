//! What the agent keeps of each target over time, beyond its last run: each watched mailbox's
//! traffic from message trace (counts by status since the agent started, the newest message,
//! the last 24 hours by the hour). Bounded: 25 hourly entries per watched mailbox.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::checks::traffic::MailboxTraffic;
use crate::checks::traffic::TrafficDetails;
use crate::plan::Plan;

/// Everything kept over time, by target name.
#[derive(Debug, Default)]
pub struct History {
    /// Watched mailboxes' traffic.
    pub traffic: HashMap<String, MailboxTraffic>,
}

impl History {
    /// Adds what a traffic run read to its mailboxes' traffic.
    pub fn record_traffic(&mut self, d: &TrafficDetails, now: DateTime<Utc>) {
        let Some((from, _)) = d.window else {
            return;
        };
        for s in &d.senders {
            let t = self.traffic.entry(s.mailbox.clone()).or_default();
            t.expect_within = s.expect_within;
            t.since = Some(t.since.map_or(from, |x| x.min(from)));
            t.add(&s.hours, s.newest);
            t.trim(now);
        }
    }

    /// Keeps the mailboxes the plan watches, with their expectations.
    pub fn retain(&mut self, plan: &Plan) {
        let watched: HashMap<&str, Option<Duration>> = plan
            .mailboxes
            .iter()
            .filter_map(|m| Some((m.name.as_str(), m.traffic.as_ref()?.expect_within)))
            .collect();
        self.traffic.retain(|m, _| watched.contains_key(m.as_str()));
        for (m, e) in watched {
            if let Some(t) = self.traffic.get_mut(m) {
                t.expect_within = e;
            } else {
                let mut t = MailboxTraffic::default();
                t.expect_within = e;
                self.traffic.insert(m.to_string(), t);
            }
        }
    }
}
