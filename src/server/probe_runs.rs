//! The runs `/probe` started: the latest result of each job (a later probe within the freshness
//! window answers with it) and the run in flight of each (concurrent probes of one target share
//! it). A run is a task of its own: a probe that gives up does not stop it, so its result still
//! serves the next probe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::checks::Report;
use crate::plan::{JobKey, Plan};

/// How a probe's run ended.
#[derive(Debug, Clone)]
pub enum RunResult {
    /// It ran.
    Ran(Arc<Report>),
    /// No probe slot came free while there was still time to run.
    NoSlot,
}

/// A run in flight, which every probe of its job awaits.
pub type Flight = Shared<BoxFuture<'static, RunResult>>;

/// The probes' runs.
#[derive(Default)]
pub struct ProbeRuns {
    inner: Mutex<Inner>,
}

/// The runs, under their lock.
#[derive(Default)]
pub struct Inner {
    /// The latest report of each job, with the digest of the set-up it ran with.
    latest: HashMap<JobKey, ([u8; 32], Arc<Report>)>,
    inflight: HashMap<JobKey, Flight>,
}

impl Inner {
    /// The job's run in flight.
    pub fn flight(&self, key: &JobKey) -> Option<Flight> {
        self.inflight.get(key).cloned()
    }

    /// The latest report of the job, if it ran with this set-up.
    pub fn latest(&self, key: &JobKey, digest: &[u8; 32]) -> Option<Arc<Report>> {
        self.latest
            .get(key)
            .filter(|(d, _)| d == digest)
            .map(|(_, r)| r.clone())
    }
}

impl ProbeRuns {
    /// The runs, locked: looking for a run and starting one happen under one lock.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("probe runs lock")
    }

    /// Starts `run` as the job's run in flight (the caller saw none under the same lock). When
    /// it ends its report becomes the job's latest and the flight is over.
    pub fn start(
        self: &Arc<Self>,
        inner: &mut Inner,
        key: JobKey,
        digest: [u8; 32],
        run: BoxFuture<'static, RunResult>,
    ) -> Flight {
        let runs = self.clone();
        let k = key.clone();
        let task = tokio::spawn(async move {
            let result = run.await;
            let mut inner = runs.lock();
            inner.inflight.remove(&k);
            if let RunResult::Ran(report) = &result {
                inner.latest.insert(k, (digest, report.clone()));
            }
            result
        });
        let flight = async move { task.await.unwrap_or(RunResult::NoSlot) }
            .boxed()
            .shared();
        inner.inflight.insert(key, flight.clone());
        flight
    }

    /// Forgets the results of targets the plan no longer has (after a reload; a changed
    /// target's result is never read: its digest differs).
    pub fn retain(&self, plan: &Plan) {
        self.lock()
            .latest
            .retain(|k, _| plan.target(&k.target).is_some());
    }
}
