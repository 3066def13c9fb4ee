//! Runs every (check, target) on its own schedule: one lightweight tokio task per job (no thread
//! per target), a stable per-target phase so big fleets spread out, a bound on concurrent runs,
//! a timeout on each run, and a prompt stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::{self, Context, RunOptions};
use crate::config::Schedule;
use crate::plan::{CheckKind, Job, JobKey, Plan};
use crate::sink::Sink;

/// FNV-1a: a hash that is stable across builds and runs, so a target keeps its phase.
fn stable_hash(key: &JobKey) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for byte in key
        .kind
        .as_str()
        .bytes()
        .chain([0u8])
        .chain(key.target.bytes())
    {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn fraction_of(d: Duration, hash: u64) -> Duration {
    let ms = d.as_millis() as u64;
    if ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(hash % ms)
    }
}

/// When a job runs, from a fixed origin (the scheduler's start) so phases stay put.
#[derive(Debug, Clone)]
struct Timing {
    origin: Instant,
    hash: u64,
    schedule: Schedule,
}

/// Gap between first Graph reads after start, per Graph job (see `Scheduler::start`).
const GRAPH_START_GAP: Duration = Duration::from_millis(500);

/// Cron runs get a small jitter too, so that many targets on `*/5 * * * *` do not fire at once.
const MAX_CRON_JITTER: Duration = Duration::from_secs(30);

impl Timing {
    /// First run: within the startup spread, so metrics appear soon after start.
    fn first(&self, spread: Duration) -> Instant {
        let spread = spread.min(self.schedule.typical_interval());
        self.origin + fraction_of(spread, self.hash)
    }

    /// The next run strictly after `after`.
    fn next(&self, after: Instant) -> Instant {
        match &self.schedule {
            Schedule::Every(interval) => {
                // Slots at origin + phase + k * interval; skip slots closer than half an interval,
                // so the run after the startup run is not squeezed in right behind it.
                let phase = fraction_of(*interval, self.hash);
                let earliest = after + *interval / 2;
                let since = earliest.saturating_duration_since(self.origin + phase);
                let k = since.as_nanos().div_ceil(interval.as_nanos().max(1)) as u32;
                let slot = self.origin + phase + *interval * k;
                if slot <= after {
                    slot + *interval
                } else {
                    slot
                }
            }
            Schedule::Cron { schedule, .. } => {
                let jitter = fraction_of(
                    MAX_CRON_JITTER.min(self.schedule.typical_interval() / 10),
                    self.hash,
                );
                let now_wall = chrono::Utc::now();
                let wait = schedule
                    .after(&now_wall)
                    .next()
                    .and_then(|t| (t - now_wall).to_std().ok())
                    .unwrap_or(Duration::from_secs(3600));
                let base = Instant::now() + wait + jitter;
                base.max(after + Duration::from_millis(1))
            }
        }
    }
}

/// The running scheduler: its tasks stop when it is stopped or the shutdown token fires.
pub struct Scheduler {
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

impl Scheduler {
    /// Starts one task per job of the plan. Their reports go to `sink`.
    pub fn start(
        plan: &Plan,
        ctx: Arc<Context>,
        sink: Arc<dyn Sink>,
        shutdown: &CancellationToken,
    ) -> Self {
        let settings = &plan.settings.scheduler;
        let jobs = plan.jobs.clone();
        let cancel = shutdown.child_token();
        // One bound per check kind: 10,000 SMTP runs stuck on an unreachable host must not keep
        // the token checks (which would show the cause) waiting behind them.
        let slots: HashMap<CheckKind, Arc<Semaphore>> = CheckKind::ALL
            .iter()
            .map(|k| (*k, Arc::new(Semaphore::new(settings.max_concurrent_checks))))
            .collect();
        let mut per_kind: HashMap<CheckKind, usize> = HashMap::new();
        for j in &jobs {
            *per_kind.entry(j.kind).or_default() += 1;
        }
        let origin = Instant::now();
        let mut tasks = JoinSet::new();
        for job in jobs {
            let key = job.key();
            let timing = Timing {
                origin,
                hash: stable_hash(&key),
                schedule: job.settings.schedule.clone(),
            };
            let spread = match job.kind {
                // Graph allows about 150 credential reads a minute per tenant: after a restart,
                // spread the first reads at two a second rather than into one startup_spread.
                CheckKind::Graph => settings
                    .startup_spread
                    .max(GRAPH_START_GAP * per_kind[&CheckKind::Graph] as u32),
                _ => settings.startup_spread,
            };
            let first = timing.first(spread);
            tasks.spawn(job_loop(
                job,
                timing,
                first,
                ctx.clone(),
                sink.clone(),
                slots[&key.kind].clone(),
                cancel.clone(),
            ));
        }
        Self { tasks, cancel }
    }

    /// Stops every task, waiting at most `grace` for runs in progress to notice.
    pub async fn stop(mut self, grace: Duration) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            self.tasks.abort_all();
        }
    }
}

async fn job_loop(
    job: Job,
    timing: Timing,
    first: Instant,
    ctx: Arc<Context>,
    sink: Arc<dyn Sink>,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
) {
    let opts = RunOptions::default();
    let mut next = first;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let permit = tokio::select! {
            _ = cancel.cancelled() => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        sink.scheduled(job.kind, Instant::now().saturating_duration_since(next));
        // Boxed: a task's future is as large as its largest state, and a check's (a TLS
        // session, buffers) is kilobytes. Boxed, the 10,000 idle tasks of a large fleet stay a
        // few hundred bytes each, and the check's memory exists only while it runs.
        let run = Box::pin(checks::run(&job, &ctx, &opts));
        let report = tokio::select! {
            _ = cancel.cancelled() => return,
            r = run => r,
        };
        drop(permit);
        let retry_after = report.retry_after;
        sink.accept(&job, report);
        let now = Instant::now();
        next = timing.next(now);
        if let Some(wait) = retry_after {
            // Honour the server's Retry-After: never come back sooner than it asked.
            next = next.max(now + wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_spread_and_stay_stable() {
        let origin = Instant::now();
        let interval = Duration::from_secs(300);
        let mut firsts = Vec::new();
        for i in 0..1000 {
            let key = JobKey {
                kind: CheckKind::Token,
                target: format!("app-{i}"),
            };
            let t = Timing {
                origin,
                hash: stable_hash(&key),
                schedule: Schedule::Every(interval),
            };
            let n1 = t.next(origin + Duration::from_secs(1));
            let n2 = t.next(n1);
            assert_eq!(n2 - n1, interval, "steady runs are one interval apart");
            firsts.push((n1 - origin).as_secs() % 300);
        }
        // 1,000 targets over 300 one-second buckets: no second holds more than a few dozen.
        let mut buckets = [0u32; 300];
        for s in firsts {
            buckets[s as usize] += 1;
        }
        assert!(
            buckets.iter().max().copied().unwrap_or(0) < 15,
            "{buckets:?}"
        );
        let key = JobKey {
            kind: CheckKind::Token,
            target: "x".into(),
        };
        assert_eq!(stable_hash(&key), stable_hash(&key.clone()));
    }
}
