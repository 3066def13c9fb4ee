//! Per-target state that outlives a single run and a reload: the last report, the last success,
//! run counters. The metrics module and the HTTP server read it; only the scheduler writes it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::checks::{JobKey, Report};

/// What the agent remembers of one (check, target).
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    pub last: Option<Arc<Report>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The last successful run, whose facts (such as credential expiry) stay true after a
    /// failed run: a throttled Graph read must not make expiry series vanish.
    pub last_ok: Option<Arc<Report>>,
    pub runs_success: u64,
    pub runs_failure: u64,
    /// Failed runs by reason (a counter per reason seen).
    pub failures_by_reason: BTreeMap<&'static str, u64>,
}

/// All targets' state, keyed by (check kind, target name).
#[derive(Default)]
pub struct StateStore {
    inner: Mutex<BTreeMap<JobKey, TargetState>>,
}

impl StateStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a finished run.
    pub fn record(&self, report: Report) -> Arc<Report> {
        let report = Arc::new(report);
        let key = JobKey {
            kind: report.kind,
            target: report.target.clone(),
        };
        let mut map = self.inner.lock().expect("state lock");
        let st = map.entry(key).or_default();
        match &report.failure {
            None => {
                st.runs_success += 1;
                st.last_success = Some(report.started_at);
            }
            Some(f) => {
                st.runs_failure += 1;
                *st.failures_by_reason.entry(f.reason).or_default() += 1;
            }
        }
        if report.success() {
            st.last_ok = Some(report.clone());
        }
        st.last = Some(report.clone());
        report
    }

    /// Makes sure a configured job has an entry (so it shows as "not run yet").
    pub fn ensure(&self, key: &JobKey) {
        self.inner
            .lock()
            .expect("state lock")
            .entry(key.clone())
            .or_default();
    }

    /// Drops the state of jobs that are no longer configured.
    pub fn retain(&self, keep: &HashSet<JobKey>) {
        self.inner
            .lock()
            .expect("state lock")
            .retain(|k, _| keep.contains(k));
    }

    pub fn snapshot(&self) -> Vec<(JobKey, TargetState)> {
        self.inner
            .lock()
            .expect("state lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// One target's state.
    pub fn get(&self, key: &JobKey) -> Option<TargetState> {
        self.inner.lock().expect("state lock").get(key).cloned()
    }
}
