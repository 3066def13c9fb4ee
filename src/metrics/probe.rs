//! A probe's answer: the series of one run of one check (`/probe`), blackbox_exporter's
//! `probe_*` names beside the agent's facts of that run.

use super::*;

/// A `/probe` answer: that run's series only, without a `target` label (Prometheus adds the
/// target through relabelling), in blackbox_exporter's names where they exist, with the SMTP
/// phases in full.
pub fn render_probe(
    reports: &[Report],
    verdict: Option<&Verdict>,
    duration: std::time::Duration,
    cached: Option<std::time::Duration>,
) -> String {
    let mut f = Exposition::new("probe", 8 * 1024);
    f.one(
        "success",
        "Whether every check of the probe succeeded.",
        Kind::Gauge,
        &[],
        b(!reports.is_empty() && reports.iter().all(|r| r.success())),
    );
    f.one(
        "duration_seconds",
        "How long the probe took.",
        Kind::Gauge,
        &[],
        secs(duration),
    );
    f.one(
        "cached",
        "1 when the probe answered with a recent run (the agent's scheduled one, or another probe's) instead of running the check: see probe_result_age_seconds.",
        Kind::Gauge,
        &[],
        b(cached.is_some()),
    );
    f.one(
        "result_age_seconds",
        "How long ago the run the probe answers with ended (0 for a run made for this probe).",
        Kind::Gauge,
        &[],
        secs(cached.unwrap_or_default()),
    );
    f.family(
        "check_success",
        "Whether the check succeeded in this probe.",
        Kind::Gauge,
    );
    for r in reports {
        f.sample(&[("check", r.kind.as_str())], b(r.success()));
    }
    f.family(
        "check_duration_seconds",
        "How long the check took in this probe.",
        Kind::Gauge,
    );
    for r in reports {
        f.sample(&[("check", r.kind.as_str())], secs(r.duration));
    }
    f.family(
        "failure_info",
        "Present (1) when the check failed: the reason from the check's fixed set and the AADSTS code when it is a known one.",
        Kind::Gauge,
    );
    for r in reports {
        if let Some(fail) = &r.failure {
            let aadsts = fail.aadsts.map(|c| c.to_string()).unwrap_or_default();
            f.sample(
                &[
                    ("check", r.kind.as_str()),
                    ("reason", fail.reason.as_str()),
                    ("aadsts", &aadsts),
                ],
                1.0,
            );
        }
    }
    if let Some(v) = verdict {
        f.one(
            "verdict",
            VERDICT_HELP,
            Kind::Gauge,
            &verdict_labels(v),
            1.0,
        );
    }
    let mut facts = Facts::default();
    for r in reports {
        facts.push("", &r.details, false);
    }
    write_facts(&mut f, &facts, true, Naming::Probe);
    f.encode()
}
