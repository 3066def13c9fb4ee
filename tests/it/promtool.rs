//! `promtool check metrics` on a live scrape of a fleet with successes and failures.
//! promtool is installed by scripts/test.sh; a missing promtool fails the test, it never skips.

use std::time::Duration;

use crate::common::*;
use crate::fixtures::fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_is_clean_on_a_live_scrape() {
    let w = World::new().await;
    let f = fleet(&w).await;
    let agent = w.agent(&f.yaml).await;
    let text = wait_for(
        &agent,
        Duration::from_secs(15),
        "every check to have run",
        |t| {
            ["good", "stale", "wrong", "cert", "inline"]
                .iter()
                .all(|a| {
                    value(
                        t,
                        "smtp_oauth_check_success",
                        &[("check", "token"), ("target", a)],
                    )
                    .is_some()
                })
                && value(t, "smtp_oauth_credential_in_use", &[("target", "good")]).is_some()
                && ["ok", "cert-mb", "denied", "stale-mb", "plain"]
                    .iter()
                    .all(|m| {
                        value(
                            t,
                            "smtp_oauth_check_success",
                            &[("check", "smtp"), ("target", m)],
                        )
                        .is_some()
                    })
        },
    )
    .await;
    agent.stop().await;
    promtool_check_metrics(&text);
}
