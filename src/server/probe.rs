//! `GET /probe?target=NAME[&check=token|smtp|graph|health]`, blackbox_exporter's multi-target
//! pattern, at no more cost to the tenant than the schedule: a probe answers with the target's
//! last run when it is younger than the freshness window (the scheduler's run, or another
//! probe's; marked `probe_cached 1`), joins the run in flight when there is one, and otherwise
//! runs the check through the same `checks::run` as the scheduler, with the shared token cache
//! (never a token request the cache can answer) and the mailbox's two SMTP sessions; runs are
//! rate-limited per client and overall (429 with `Retry-After`). The agent's state is not
//! touched: a probe is not a scheduled run.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hyper::{HeaderMap, Response, StatusCode};
use tokio::time::Instant;

use super::probe_runs::{Flight, RunResult};
use super::{reply, Body, Shared};
use crate::checks::{self, Report, RunOptions};
use crate::diagnosis::{self, Inputs};
use crate::metrics;
use crate::plan::{CheckKind, Job, Plan, Target};

/// Taken off Prometheus' scrape timeout, so that the answer arrives before Prometheus gives up
/// (blackbox_exporter's default offset).
const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

/// A run ends at the probe's deadline; its report may take this long more to arrive (the
/// scrape timeout's margin leaves room for it).
const REPORT_GRACE: Duration = Duration::from_millis(250);

/// A run needs this much of the probe's time, at most (or a quarter of it, if less): a probe
/// whose slot comes later than that answers 503 rather than a run cut short into a timeout.
const MIN_RUN: Duration = Duration::from_secs(1);

fn plain(status: StatusCode, message: String) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", message + "\n")
}

fn bad_request(message: String) -> Response<Body> {
    plain(StatusCode::BAD_REQUEST, message)
}

/// The job a probe runs: the named check, or by default the target's main one (SMTP for a
/// mailbox, the token for an app). A mailbox's `token`, `graph` and `health` are its app's; an
/// app has no SMTP check of its own.
fn job(target: &Target, check: Option<CheckKind>) -> Result<Job, String> {
    let kind = check.unwrap_or(match target {
        Target::Mailbox(_) => CheckKind::Smtp,
        Target::App(_) | Target::Tenant(_) => CheckKind::Token,
    });
    let on = if kind.is_per_app() {
        Target::App(target.app().clone())
    } else {
        target.clone()
    };
    Job::new(kind, on).ok_or_else(|| match target {
        Target::App(app) => format!(
            "check={kind} runs on a mailbox, and {:?} is an app: probe one of its mailboxes",
            app.name
        ),
        Target::Mailbox(m) => format!("check={kind} does not apply to mailbox {:?}", m.name),
        Target::Tenant(_) => format!("check={kind} does not apply to a tenant"),
    })
}

/// Prometheus' scrape timeout from its header, less the margin.
fn scrape_timeout(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    let t = Duration::from_secs_f64(secs.min(3600.0));
    Some(
        t.checked_sub(TIMEOUT_MARGIN)
            .unwrap_or(t / 2)
            .max(Duration::from_millis(100)),
    )
}

/// The check a probe asks for: `check`, or `module` (what the Prometheus Operator's `Probe`
/// sends; `default` or empty: the target's main check).
fn parse_check(query: &str) -> Result<(Option<String>, Option<CheckKind>), String> {
    let mut target = None;
    let mut check = None;
    let mut module = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "target" => target = Some(v.into_owned()),
            "check" => check = Some(v.parse::<CheckKind>()?),
            "module" if v.is_empty() || v == "default" => {}
            "module" => module = Some(v.parse::<CheckKind>().map_err(|m| format!("module: {m}"))?),
            _ => {}
        }
    }
    if let (Some(c), Some(m)) = (check, module) {
        if c != m {
            return Err(format!("check={c} and module={m} ask for different checks"));
        }
    }
    let check = check.or(module);
    // A probe runs on every scrape: the canary sends a message each run, so it runs on its
    // own schedule only.
    if check == Some(CheckKind::Canary) {
        return Err(
            "the canary sends a message each run: it runs on its own schedule, not per scrape"
                .into(),
        );
    }
    // A trace read moves the tenant's window on and spends its budget: the counts of the
    // window a probe read would be missing from /metrics.
    if check == Some(CheckKind::Traffic) {
        return Err(
            "message trace is read once per window, on its own schedule, not per scrape".into(),
        );
    }
    Ok((target, check))
}

pub async fn handle(
    shared: &Arc<Shared>,
    peer: std::net::IpAddr,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let start = Instant::now();
    let (target_name, check) = match parse_check(query.unwrap_or("")) {
        Ok(x) => x,
        Err(m) => return bad_request(m),
    };
    let Some(name) = target_name.filter(|n| !n.is_empty()) else {
        return bad_request("the target parameter is missing: /probe?target=NAME".into());
    };
    let plan = shared.plan();
    let Some(target) = plan.target(&name).filter(|t| t.tenant().is_none()).cloned() else {
        // Names come from the configuration, but the query is anyone's: do not echo it whole.
        let shown: String = name.chars().take(64).filter(|c| !c.is_control()).collect();
        return bad_request(format!(
            "unknown target {shown:?}: expected the name of a configured app or mailbox"
        ));
    };
    let job = match job(&target, check) {
        Ok(j) => j,
        Err(m) => return bad_request(m),
    };
    let key = job.key();
    let settings = &plan.settings.probe;
    // One deadline for the whole probe: a shared run, the wait for a slot and the run itself.
    let budget = scrape_timeout(headers).unwrap_or(job.settings.timeout);

    // A recent enough result answers: the scheduler's last run, or the last probe's.
    let window = settings.window(&job.settings.schedule);
    let scheduled = shared.state.last_report(&key);
    let flight = {
        let mut runs = shared.probe_runs.lock();
        let latest = [scheduled, runs.latest(&key, &job.digest)]
            .into_iter()
            .flatten()
            .max_by_key(|r| r.started_at);
        if let Some((report, age)) = latest.and_then(|r| age(&r).map(|a| (r, a))) {
            if !window.is_zero() && age <= window {
                drop(runs);
                return answer(shared, &plan, &target, &report, start, Some(age));
            }
        }
        match runs.flight(&key) {
            // Concurrent probes of one target share its run.
            Some(f) => f,
            None => {
                if let Err(wait) =
                    shared
                        .probe_limit
                        .take(peer, settings.rate_limit, settings.client_rate_limit)
                {
                    drop(runs);
                    let mut r = plain(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many probes run checks: this one would run one beyond the rate limit (probe.rate_limit, probe.client_rate_limit); try again after Retry-After".into(),
                    );
                    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                    r.headers_mut()
                        .insert(hyper::header::RETRY_AFTER, secs.into());
                    return r;
                }
                let run = run(shared.clone(), job.clone(), start, budget);
                shared
                    .probe_runs
                    .start(&mut runs, key.clone(), job.digest, run)
            }
        }
    };
    match wait(flight, start + budget).await {
        Some(RunResult::Ran(report)) => answer(shared, &plan, &target, &report, start, None),
        Some(RunResult::NoSlot) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many probes at once: no slot came free in time to run the check; try again".into(),
        ),
        None => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the run this probe shares did not end within its time; try again".into(),
        ),
    }
}

/// How long ago a report's run ended (`None` for one from the future: the clock stepped back,
/// and its age is unknown).
fn age(r: &Report) -> Option<Duration> {
    let ended = r.started_at + chrono::Duration::from_std(r.duration).ok()?;
    (chrono::Utc::now() - ended).to_std().ok()
}

/// The run of a probe: a probe slot while there is time left for a run, then the check with
/// what is left of the probe's time (and never more than the check's own timeout).
fn run(
    shared: Arc<Shared>,
    job: Job,
    start: Instant,
    budget: Duration,
) -> futures::future::BoxFuture<'static, RunResult> {
    async move {
        let deadline = start + budget;
        let start_by = deadline - (budget / 4).min(MIN_RUN);
        let permit =
            match tokio::time::timeout_at(start_by, shared.probes.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => return RunResult::NoSlot,
            };
        let opts = RunOptions {
            timeout: Some(deadline.saturating_duration_since(Instant::now())),
            cached_token: true,
            ..RunOptions::default()
        };
        let report = checks::run(&job, &shared.ctx, &opts).await;
        drop(permit);
        RunResult::Ran(Arc::new(report))
    }
    .boxed()
}

/// The run's result, or `None` when the probe's own time ends first.
async fn wait(flight: Flight, deadline: Instant) -> Option<RunResult> {
    tokio::time::timeout_at(deadline + REPORT_GRACE, flight)
        .await
        .ok()
}

/// The probe's page: the run's series and the verdict over it and the agent's latest evidence.
fn answer(
    shared: &Shared,
    plan: &Plan,
    target: &Target,
    report: &Report,
    start: Instant,
    cached: Option<Duration>,
) -> Response<Body> {
    // The verdict reads the probe's report over the agent's latest ones for the rest (the
    // app's token and Graph results, the siblings), as the agent's own verdict would.
    let evidence = shared.state.evidence(target);
    let find = |kind| (report.kind == kind).then_some(report);
    let graph = find(CheckKind::Graph).or(evidence.graph.as_deref());
    let verdict = diagnosis::diagnose(&Inputs {
        target,
        token: find(CheckKind::Token).or(evidence.token.as_deref()),
        smtp: find(CheckKind::Smtp).or(evidence.smtp.as_deref()),
        graph,
        graph_ok: find(CheckKind::Graph)
            .filter(|r| r.success())
            .or(evidence.graph_ok.as_deref()),
        canary: evidence.canary.as_deref(),
        activity: find(CheckKind::Activity)
            .filter(|r| r.success())
            .or(evidence.activity.as_deref()),
        traffic: evidence.traffic.as_ref(),
        traffic_check: evidence.traffic_check.as_deref(),
        issues: evidence.issues.as_deref().map_or(&[], Vec::as_slice),
        sibling_authenticated: evidence.sibling_authenticated,
        sibling_rbac_authenticated: evidence.sibling_rbac_authenticated,
        seen_model: evidence.seen_model,
        now: chrono::Utc::now(),
        settings: &plan.settings.diagnosis,
    });
    reply(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        metrics::render_probe(
            std::slice::from_ref(report),
            Some(&verdict),
            start.elapsed(),
            cached,
        ),
    )
}
