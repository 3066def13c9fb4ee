//! `GET /probe?target=NAME[&check=token|smtp|graph|health]`, blackbox_exporter's multi-target pattern:
//! runs the target's checks now, through the same `checks::run` as the scheduler, and answers
//! with that run's series only. The agent's state is not touched (a probe is not a scheduled
//! run); the token cache is shared, as every check of the app shares it.

use std::sync::Arc;
use std::time::Duration;

use hyper::{HeaderMap, Response, StatusCode};

use super::{reply, Body, Shared};
use crate::checks::{self, Report, RunOptions};
use crate::diagnosis::{self, Inputs};
use crate::metrics;
use crate::plan::{CheckKind, Job, Target};

/// Taken off Prometheus' scrape timeout, so that the answer arrives before Prometheus gives up
/// (blackbox_exporter's default offset).
const TIMEOUT_MARGIN: Duration = Duration::from_millis(500);

fn bad_request(message: String) -> Response<Body> {
    reply(
        StatusCode::BAD_REQUEST,
        "text/plain; charset=utf-8",
        message + "\n",
    )
}

/// The jobs a probe runs: the named check, or by default the target's main one (SMTP for a
/// mailbox, the token for an app). A mailbox's `token` and `graph` are its app's.
fn jobs(target: &Target, check: Option<CheckKind>) -> Vec<Job> {
    let kind = check.unwrap_or(match target {
        Target::Mailbox(_) => CheckKind::Smtp,
        Target::App(_) | Target::Tenant(_) => CheckKind::Token,
    });
    let on = if kind.is_per_app() {
        Target::App(target.app().clone())
    } else {
        target.clone()
    };
    Job::new(kind, on).into_iter().collect()
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

pub async fn handle(
    shared: &Arc<Shared>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let mut target_name = None;
    let mut check = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "target" => target_name = Some(v.into_owned()),
            "check" => match v.parse::<CheckKind>() {
                // A probe runs on every scrape: the canary sends a message each run, so it
                // runs on its own schedule only.
                Ok(CheckKind::Canary) => {
                    return bad_request(
                        "the canary sends a message each run: it runs on its own schedule, not per scrape".into(),
                    )
                }
                // A trace read moves the tenant's window on and spends its budget: the counts
                // of the window a probe read would be missing from /metrics.
                Ok(CheckKind::Traffic) => {
                    return bad_request(
                        "message trace is read once per window, on its own schedule, not per scrape".into(),
                    )
                }
                Ok(c) => check = Some(c),
                Err(m) => return bad_request(m),
            },
            _ => {}
        }
    }
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
    let jobs = jobs(&target, check);
    // One deadline for the whole probe: the wait for a slot and the run share it.
    let start = tokio::time::Instant::now();
    let budget = scrape_timeout(headers).unwrap_or_else(|| {
        jobs.iter()
            .map(|j| j.settings.timeout)
            .max()
            .unwrap_or(Duration::from_secs(30))
    });
    let deadline = start + budget;
    // A bound on probes at once: what a scrape flood can cost is bounded too.
    let permit =
        match tokio::time::timeout_at(deadline, shared.probes.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "too many probes at once; try again\n",
                )
            }
        };
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if left.is_zero() {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "no time left for the probe; try again\n",
        );
    }
    let opts = RunOptions {
        timeout: Some(left),
        send_test_to: None,
    };
    let reports: Vec<Report> =
        futures::future::join_all(jobs.iter().map(|j| checks::run(j, &shared.ctx, &opts))).await;
    let duration = start.elapsed();
    drop(permit);

    // The verdict reads the probe's fresh reports over the agent's latest ones for the rest
    // (the app's token and Graph results, the siblings), as the agent's own verdict would.
    let evidence = shared.state.evidence(&target);
    let find = |kind| reports.iter().find(|r| r.kind == kind);
    let graph = find(CheckKind::Graph).or(evidence.graph.as_deref());
    let verdict = diagnosis::diagnose(&Inputs {
        target: &target,
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
        metrics::render_probe(&reports, Some(&verdict), duration),
    )
}
