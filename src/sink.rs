//! Where a finished run's report goes. The scheduler's sink records it in the state, logs it, and
//! re-diagnoses the targets it affects (logging each verdict that changes); `/probe` and the
//! `check` command collect their reports instead and render them themselves.

use std::sync::{Arc, Mutex};

use std::time::Duration;

use crate::checks::Report;
use crate::plan::{CheckKind, CurrentPlan, Job};
use crate::state::{Siblings, StateStore};

/// Takes the reports of finished runs.
pub trait Sink: Send + Sync {
    fn accept(&self, job: &Job, report: Report);

    /// A scheduled run starts `delay` after its planned time.
    fn scheduled(&self, _kind: CheckKind, _delay: Duration) {}
}

/// The scheduler's sink: state, log, verdicts, for the plan in force.
pub struct StateSink {
    plan: Arc<CurrentPlan>,
    state: Arc<StateStore>,
}

impl StateSink {
    pub fn new(plan: Arc<CurrentPlan>, state: Arc<StateStore>) -> Self {
        Self { plan, state }
    }

    /// Computes every target's verdict from the state as it is (at start: `pending`), without
    /// logging: the log tells changes.
    pub fn diagnose_all(&self) {
        let plan = self.plan.get();
        let now = chrono::Utc::now();
        for t in plan.verdict_targets() {
            self.state.update_verdict(&plan, &t, now);
        }
    }
}

impl Sink for StateSink {
    fn scheduled(&self, kind: CheckKind, delay: Duration) {
        self.state.record_delay(kind, delay);
    }

    fn accept(&self, job: &Job, report: Report) {
        let plan = self.plan.get();
        // A run of a job that a reload removed or changed while it ran: its report is about a
        // set-up that is gone.
        if plan.job(&job.key()).is_none_or(|j| j.digest != job.digest) {
            return;
        }
        crate::logging::log_report(&report);
        let health = report
            .health()
            .filter(|_| report.success())
            .map(|h| (h.tenant.clone(), h.issues.clone()));
        let before = health.as_ref().map(|(tenant, _)| {
            self.state
                .health_of(tenant)
                .map(|i| i.as_ref().clone())
                .unwrap_or_default()
        });
        let siblings = self.state.record(report);
        if let (Some((tenant, after)), Some(before)) = (health, before) {
            crate::logging::log_health_changes(&tenant, &before, &after);
        }
        let now = chrono::Utc::now();
        // A mailbox's run changes its own verdict, and its siblings' only when it changed what
        // they read of it (rarely: see StateStore::record); an app's run changes all of its
        // mailboxes', a tenant's health run all of the tenant's targets: once per run.
        let affected = match (&job.target, siblings) {
            (crate::plan::Target::Mailbox(_), Siblings::None) => vec![job.target.clone()],
            (crate::plan::Target::Mailbox(_), Siblings::One(other)) => [job.target.clone()]
                .into_iter()
                .chain(plan.target(&other).cloned())
                .collect(),
            _ => plan.affected_by(job),
        };
        for t in affected {
            let (verdict, changed) = self.state.update_verdict(&plan, &t, now);
            if let Some(old) = changed {
                crate::logging::log_verdict(t.name(), &verdict, old.as_ref());
            }
        }
    }
}

/// Keeps the reports, for a caller that renders them itself.
#[derive(Default)]
pub struct Collect {
    reports: Mutex<Vec<Report>>,
}

impl Collect {
    pub fn into_reports(self) -> Vec<Report> {
        self.reports.into_inner().expect("collect lock")
    }
}

impl Sink for Collect {
    fn accept(&self, _job: &Job, report: Report) {
        self.reports.lock().expect("collect lock").push(report);
    }
}
