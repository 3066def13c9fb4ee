//! The scheduler's shape at scale: an idle job is an entry in its queue, not a task, so a fleet
//! of thousands of (check, target) jobs between runs adds one task (the timer) to the runtime;
//! reloads that restart them all leave a bounded queue; stopping it, or dropping it, leaves no
//! task behind. A report costs the same whatever the number of targets and tenants.

use std::sync::Arc;
use std::time::Duration;

use smtp_oauth_exporter::auth::TokenCache;
use smtp_oauth_exporter::checks::Context;
use smtp_oauth_exporter::scheduler::Scheduler;
use smtp_oauth_exporter::sink::Collect;
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// 2,000 mailboxes of one app on a daily schedule, first runs spread over the day (the first
/// falls 19 s after the start: none runs during the test); `token_timeout` is part of every
/// job's digest.
fn fleet(w: &World, token_timeout: &str) -> String {
    let file = w.file("s.secret", "Sch~scheduler-test-secret");
    let mut yaml = format!(
        "scheduler:\n  startup_spread: 24h\ndefaults:\n  checks:\n    token: {{ schedule: 24h, timeout: {token_timeout} }}\n    smtp: {{ schedule: 24h }}\n    graph: {{ enabled: false }}\napps:\n{}mailboxes:\n",
        secret_app(w, "fleet", &client_id(1), &file, "")
    );
    for i in 0..2000 {
        yaml += &format!(
            "  - {{ name: m{i}, app: fleet, address: m{i}@contoso.com, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
            w.sim.smtp_addr.port()
        );
    }
    yaml
}

async fn alive_tasks() -> usize {
    // Let tasks that just finished be reaped first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_jobs_are_queue_entries_not_tasks() {
    let w = World::new().await;
    let plan = w.config(&fleet(&w, "10s"));
    assert!(plan.jobs.len() > 2000, "{} jobs", plan.jobs.len());
    let new_scheduler = |shutdown: &CancellationToken| {
        Scheduler::start(
            &plan,
            Arc::new(Context::new(Arc::new(TokenCache::new()))),
            Arc::new(Collect::default()),
            shutdown,
        )
    };
    let before = alive_tasks().await;
    let shutdown = CancellationToken::new();
    let mut scheduler = new_scheduler(&shutdown);
    let running = alive_tasks().await;
    // The timer alone: no job is due yet.
    assert_eq!(
        running,
        before + 1,
        "{} jobs made {} tasks",
        plan.jobs.len(),
        running - before
    );
    // Reloads that restart every job leave their old queue entries behind only up to a bound.
    let jobs = plan.jobs.len();
    for n in 0..6 {
        let other = w.config(&fleet(&w, if n % 2 == 0 { "11s" } else { "10s" }));
        let summary = scheduler.reload(&other);
        assert_eq!(summary.restarted, jobs, "reload {n}: {summary:?}");
        assert!(
            scheduler.queued() <= 2 * jobs + 64,
            "reload {n}: {} queue entries for {jobs} jobs",
            scheduler.queued()
        );
    }
    assert_eq!(alive_tasks().await, running, "still the timer alone");
    scheduler.stop(Duration::from_secs(5)).await;
    assert_eq!(alive_tasks().await, before, "stopped: no task left");

    // Dropped without stop (a test, a failed start): nothing keeps running either.
    let scheduler = new_scheduler(&shutdown);
    assert!(alive_tasks().await > before);
    drop(scheduler);
    assert_eq!(alive_tasks().await, before, "dropped: no task left");
}

/// One app with N mailboxes, all healthy: its first round computes O(N) verdicts, not O(N²)
/// (each first success used to re-diagnose every mailbox of the app). Counted by the agent's
/// own `smtp_oauth_verdict_evaluations_total` once every mailbox has succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_round_of_one_app_computes_verdicts_linear_in_its_mailboxes() {
    const N: usize = 150;
    let w = World::new().await;
    let id = client_id(1);
    let app = w.app_with_secret(1, "big", "Big~secret");
    let mut yaml = format!(
        "scheduler: {{ startup_spread: 2s, max_concurrent_checks: 50 }}\ndefaults:\n  checks:\n    token: {{ schedule: 1h, timeout: 5s }}\n    smtp: {{ schedule: 1h, timeout: 10s }}\n    graph: {{ enabled: false }}\napps:\n{app}mailboxes:\n"
    );
    for n in 0..N {
        let address = format!("m{n}@contoso.com");
        w.sim.add_mailbox(&address, &[&id]);
        yaml += &format!(
            "  - {{ name: m{n}, app: big, address: {address}, smtp_host: 127.0.0.1, smtp_port: {} }}\n",
            w.sim.smtp_addr.port()
        );
    }
    let agent = w.agent(&yaml).await;
    let text = wait_for(&agent, Duration::from_secs(60), "every mailbox ok", |t| {
        value(
            t,
            "smtp_oauth_scheduler_runs_total",
            &[("check", "smtp"), ("result", "success")],
        ) == Some(N as f64)
            && value(
                t,
                "smtp_oauth_scheduler_runs_total",
                &[("check", "token"), ("result", "success")],
            ) == Some(1.0)
    })
    .await;
    let evaluations = value(&text, "smtp_oauth_verdict_evaluations_total", &[]).unwrap();
    // The start's N pending verdicts, one per SMTP run, the token run's N, and the two
    // flips (the first mailbox in re-diagnoses everyone, the second the first): about 3N.
    assert!(
        evaluations <= 4.0 * N as f64,
        "{evaluations} verdicts for a first round of {N} mailboxes"
    );
    assert!(evaluations >= 2.0 * N as f64, "{evaluations}");
    agent.stop().await;
}

/// A thousand apps each in a tenant of its own, each reading its tenant's inventory: the plan
/// holds one list of the configured apps for all of them (one per tenant made the plan
/// O(tenants × apps): 147 MiB at 10,000), and every tenant still finds every configured app.
#[test]
fn a_plan_of_many_tenants_holds_one_list_of_the_configured_apps() {
    const N: usize = 1000;
    let mut yaml = String::from("defaults:\n  checks:\n    graph: { enabled: false }\napps:\n");
    for a in 0..N {
        yaml += &format!(
            "  - {{ name: app-{a}, tenant: t{a}.onmicrosoft.com, client_id: 00000000-0000-4000-a000-{a:012}, client_secret: \"x~{a}\", checks: {{ discovery: {{ enabled: true }} }} }}\n"
        );
    }
    let plan = smtp_oauth_exporter::config::from_yaml(&yaml, "many.yml", std::path::Path::new("."))
        .unwrap();
    assert_eq!(plan.tenants.len(), N);
    let first = &plan.tenants[0].configured;
    for t in &plan.tenants {
        assert!(std::sync::Arc::ptr_eq(&t.configured, first), "{}", t.name);
    }
    let last = &plan.tenants[N - 1];
    assert_eq!(
        last.configured_as("00000000-0000-4000-A000-000000000000"),
        Some("app-0")
    );
    assert_eq!(
        plan.tenants[0].configured_as(&format!("00000000-0000-4000-a000-{:012}", N - 1)),
        Some(format!("app-{}", N - 1).as_str())
    );
    assert_eq!(
        last.configured_as("11111111-0000-4000-a000-000000000000"),
        None
    );
}

/// Service health read in N tenants (an app in each): a health report costs the same at any N.
/// The sink used to copy every tenant's issues to find its own tenant's, so a round of N
/// reports cost O(N²): 60 % of the agent's CPU at 10,000 tenants (perf). Timed here: the time
/// per report at 4,000 tenants against 400, the best of three rounds of each.
#[test]
fn a_health_report_costs_the_same_at_any_number_of_tenants() {
    use smtp_oauth_exporter::checks::health::HealthDetails;
    use smtp_oauth_exporter::checks::{Details, Report};
    use smtp_oauth_exporter::plan::{CheckKind, CurrentPlan};
    use smtp_oauth_exporter::sink::{Sink, StateSink};
    use smtp_oauth_exporter::state::StateStore;

    fn per_report(n: usize) -> Duration {
        let mut yaml = String::from(
            "defaults:\n  checks:\n    token: { enabled: false }\n    graph: { enabled: false }\n    health: { enabled: true }\napps:\n",
        );
        for a in 0..n {
            yaml += &format!(
                "  - {{ name: app-{a}, tenant: t{a}.onmicrosoft.com, client_id: 00000000-0000-4000-a000-{a:012}, client_secret: \"x~{a}\" }}\n"
            );
        }
        let plan = Arc::new(
            smtp_oauth_exporter::config::from_yaml(&yaml, "health.yml", std::path::Path::new("."))
                .unwrap(),
        );
        let state = Arc::new(StateStore::new());
        state.retain(&plan);
        let sink = StateSink::new(Arc::new(CurrentPlan::new(plan.clone())), state.clone());
        let jobs: Vec<_> = plan
            .jobs
            .iter()
            .filter(|j| j.kind == CheckKind::Health)
            .collect();
        assert_eq!(jobs.len(), n);
        let round = || {
            let start = std::time::Instant::now();
            for j in &jobs {
                let report = Report {
                    kind: CheckKind::Health,
                    target: j.target.name().to_string(),
                    started_at: chrono::Utc::now(),
                    duration: Duration::from_millis(1),
                    failure: None,
                    details: Details::Health(HealthDetails {
                        tenant: j.target.app().tenant.clone(),
                        http_status: Some(200),
                        issues: Vec::new(),
                    }),
                    retry_after: None,
                };
                sink.accept(j, report);
            }
            start.elapsed() / n as u32
        };
        // The first round fills every tenant's entry; the second is the steady state.
        round();
        round()
    }
    let best = |n| (0..3).map(|_| per_report(n)).min().unwrap();
    let (small, large) = (best(400), best(4000));
    let ratio = large.as_secs_f64() / small.as_secs_f64();
    assert!(
        ratio < 3.0,
        "a health report takes {large:?} at 4,000 tenants, {small:?} at 400 ({ratio:.1}×)"
    );
}
