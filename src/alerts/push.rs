//! Sends the agent's own alerts to Alertmanager (`POST /api/v2/alerts`), as Prometheus does:
//! at once when the set of firing alerts changes, again every `resend_interval` with an
//! `endsAt` ahead, and a resolved alert once more with `endsAt` now. The `endsAt` outlives a
//! restart of the agent (its first round and the alert's `for:`, which a new agent counts
//! anew), so that a restart resolves nothing still broken; Alertmanager resolves them by itself
//! only should the agent stay away.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::tracker::key;
use super::{Alert, Update};
use crate::plan::{AlertmanagerAuth, AlertmanagerSettings};

/// How many resend intervals ahead a firing alert's `endsAt` lies (Prometheus uses 4).
const ENDS_AFTER: u32 = 4;

/// The Alertmanager client and what it last sent.
pub struct Pusher {
    settings: AlertmanagerSettings,
    client: reqwest::Client,
    last_push: Option<tokio::time::Instant>,
    last_firing: BTreeSet<String>,
}

impl Pusher {
    pub fn new(settings: AlertmanagerSettings) -> Result<Pusher, String> {
        let tls = crate::tls::client_config(Vec::new())?;
        let client = crate::http_client::client(&tls)?;
        Ok(Pusher {
            settings,
            client,
            last_push: None,
            last_firing: BTreeSet::new(),
        })
    }

    /// Sends the update when something changed or the resend interval has passed.
    pub async fn push(&mut self, update: &Update, now: DateTime<Utc>) {
        let firing: BTreeSet<String> = update.firing.iter().map(|a| key(&a.labels)).collect();
        let due = self
            .last_push
            .is_none_or(|t| t.elapsed() >= self.settings.resend_interval);
        if firing == self.last_firing && update.resolved.is_empty() && !due {
            return;
        }
        let resend = self.settings.resend_interval * ENDS_AFTER;
        let body: Vec<Alert> = update
            .firing
            .iter()
            .cloned()
            .map(|mut a| {
                let ahead = (resend + a.outlive).max(resend);
                a.ends_at = Some(
                    now + chrono::Duration::from_std(ahead).unwrap_or(chrono::Duration::hours(1)),
                );
                a
            })
            .chain(update.resolved.iter().cloned())
            .collect();
        self.last_push = Some(tokio::time::Instant::now());
        self.last_firing = firing;
        if body.is_empty() {
            return;
        }
        let sends = self.settings.urls.iter().map(|base| {
            let url = endpoint(base);
            let mut req = self.client.post(url.as_str()).json(&body);
            match &self.settings.auth {
                Some(AlertmanagerAuth::Basic { username, password }) => {
                    req = req.basic_auth(username, Some(password.expose()));
                }
                Some(AlertmanagerAuth::Bearer(token)) => req = req.bearer_auth(token.expose()),
                None => {}
            }
            let timeout = self.settings.timeout;
            async move { (url, crate::http_client::send(req, timeout).await) }
        });
        for (url, result) in futures::future::join_all(sends).await {
            match result {
                Ok(r) if (200..300).contains(&r.status) => {
                    tracing::debug!(url = url.as_str(), alerts = body.len(), "alerts sent")
                }
                Ok(r) => tracing::warn!(
                    url = url.as_str(),
                    status = r.status,
                    "Alertmanager refused the alerts"
                ),
                Err(e) => tracing::warn!(
                    url = url.as_str(),
                    error = %e,
                    "cannot send the alerts to Alertmanager"
                ),
            }
        }
    }
}

/// `{base}/api/v2/alerts`, whether or not the base ends in `/`.
fn endpoint(base: &url::Url) -> url::Url {
    let mut u = base.clone();
    let path = format!("{}/api/v2/alerts", base.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}

/// How long until an evaluation is due, for the loop that calls [`Pusher::push`].
pub fn next_tick(interval: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_path_keeps_a_prefix() {
        for (base, want) in [
            ("http://am:9093", "http://am:9093/api/v2/alerts"),
            ("http://am:9093/", "http://am:9093/api/v2/alerts"),
            (
                "https://x.example/am/",
                "https://x.example/am/api/v2/alerts",
            ),
        ] {
            assert_eq!(endpoint(&url::Url::parse(base).unwrap()).as_str(), want);
        }
    }
}
