//! `for:` across evaluations, as Prometheus keeps pending alerts: a candidate fires once its
//! condition has held that long, and is resolved (once) when it stops holding.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Alert, Candidate};

/// The alert's identity: its label set, as Alertmanager deduplicates.
pub(super) fn key(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Applies each rule's `for:` across evaluations, as Prometheus keeps pending alerts: an alert
/// fires once its condition has held that long, and is resolved when it stops holding.
#[derive(Default)]
pub struct Tracker {
    /// Conditions seen, by alert identity: when first seen, and whether the alert fired.
    seen: BTreeMap<String, (DateTime<Utc>, Option<Alert>)>,
}

/// One evaluation's outcome.
#[derive(Debug, Default)]
pub struct Update {
    /// Firing now.
    pub firing: Vec<Alert>,
    /// Fired before, no longer holds: send once more, with `endsAt` now.
    pub resolved: Vec<Alert>,
}

impl Tracker {
    pub fn update(&mut self, candidates: Vec<Candidate>, now: DateTime<Utc>) -> Update {
        let mut out = Update::default();
        let mut still = BTreeMap::new();
        for c in candidates {
            let k = key(&c.alert.labels);
            let first_seen = self.seen.get(&k).map_or(now, |(t, _)| *t);
            // `for:` counts from the first evaluation that saw this label set, as Prometheus
            // counts it (an alert whose labels change, such as its cause, waits again); when
            // the condition began (a run of failures) is its `startsAt`.
            let since = c.since.unwrap_or(first_seen).min(first_seen);
            let held = now - first_seen;
            let due = c.for_.is_none_or(|f| {
                held >= chrono::Duration::from_std(f).unwrap_or(chrono::Duration::MAX)
            });
            let fired = if due {
                let mut a = c.alert;
                a.starts_at = since;
                out.firing.push(a.clone());
                Some(a)
            } else {
                None
            };
            still.insert(k, (first_seen, fired));
        }
        for (k, (_, fired)) in std::mem::take(&mut self.seen) {
            if let (false, Some(mut a)) = (still.contains_key(&k), fired) {
                a.ends_at = Some(now);
                out.resolved.push(a);
            }
        }
        self.seen = still;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn candidate(target: &str, for_secs: Option<u64>, since: Option<i64>) -> Candidate {
        Candidate {
            for_: for_secs.map(Duration::from_secs),
            since: since.map(at),
            alert: Alert {
                labels: [("alertname", "X"), ("target", target)]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
                annotations: BTreeMap::new(),
                starts_at: at(0),
                ends_at: None,
                generator_url: String::new(),
                outlive: Duration::ZERO,
            },
        }
    }

    fn targets(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.labels["target"].as_str()).collect()
    }

    #[test]
    fn an_alert_fires_once_its_condition_held_for_its_for() {
        let mut t = Tracker::default();
        let u = t.update(vec![candidate("a", Some(60), None)], at(0));
        assert!(u.firing.is_empty(), "pending, not firing");
        let u = t.update(vec![candidate("a", Some(60), None)], at(30));
        assert!(u.firing.is_empty());
        let u = t.update(vec![candidate("a", Some(60), None)], at(60));
        assert_eq!(targets(&u.firing), ["a"]);
        assert_eq!(u.firing[0].starts_at, at(0), "startsAt is when it began");
    }

    #[test]
    fn a_condition_gone_before_its_for_never_fires_nor_resolves() {
        let mut t = Tracker::default();
        t.update(vec![candidate("a", Some(60), None)], at(0));
        let u = t.update(vec![], at(30));
        assert!(u.firing.is_empty() && u.resolved.is_empty());
        // It starts over: a new run of the condition waits its full `for:` again.
        let u = t.update(vec![candidate("a", Some(60), None)], at(40));
        assert!(u.firing.is_empty());
        let u = t.update(vec![candidate("a", Some(60), None)], at(90));
        assert!(u.firing.is_empty(), "only 50 s of the new run");
    }

    #[test]
    fn for_counts_from_the_first_evaluation_and_a_known_start_is_starts_at() {
        let mut t = Tracker::default();
        // Failing since 10 minutes before the agent's first evaluation saw it: Prometheus would
        // wait its `for:` from its first evaluation too.
        let u = t.update(
            vec![
                candidate("a", Some(300), Some(-600)),
                candidate("b", None, None),
            ],
            at(0),
        );
        assert_eq!(targets(&u.firing), ["b"], "without for: at once");
        let u = t.update(vec![candidate("a", Some(300), Some(-600))], at(300));
        assert_eq!(targets(&u.firing), ["a"]);
        assert_eq!(u.firing[0].starts_at, at(-600), "startsAt: when it began");
    }

    #[test]
    fn a_fired_alert_resolves_once_with_ends_at_now() {
        let mut t = Tracker::default();
        t.update(vec![candidate("a", None, None)], at(0));
        let u = t.update(vec![], at(20));
        assert!(u.firing.is_empty());
        assert_eq!(targets(&u.resolved), ["a"]);
        assert_eq!(u.resolved[0].ends_at, Some(at(20)));
        let u = t.update(vec![], at(40));
        assert!(u.resolved.is_empty(), "resolved once");
    }
}
