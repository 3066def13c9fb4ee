//! The agent's alerts that are not one check's failure: Microsoft incidents, stale checks, and
//! the credential expiry alerts (the agent's own, the app's others, those the application signs
//! in with).

use super::*;

/// The open Exchange Online incidents of a tenant, as a sentence for the description of a slow
/// canary, which no verdict explains (empty when there are none).
pub(super) fn incidents(view: &View, tenant: &str) -> String {
    view.health
        .get(tenant)
        .map(|issues| {
            issues
                .iter()
                .filter(|x| {
                    x.incident && x.service == crate::checks::health::Service::ExchangeOnline
                })
                .map(|x| {
                    format!(
                        " Microsoft reports incident {} on Exchange Online: {}.",
                        x.id, x.title
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A credential not signed in for `credential_stale_after`.
pub(super) fn stale_alerts(
    b: &mut Builder,
    target: &str,
    app: &str,
    act: &crate::checks::activity::ActivityDetails,
    settings: &AlertSettings,
    now: DateTime<Utc>,
) {
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    for k in &act.keys {
        let Some(last) = k.last_sign_in else { continue };
        if now - last > dur(settings.credential_stale_after) {
            b.push(
                AlertName::CredentialStale,
                &[
                    ("target", target),
                    ("app", app),
                    ("key_id", &k.key_id),
                    ("type", k.kind.as_str()),
                    ("origin", k.origin.as_str()),
                ],
                None,
                format!(
                    "A {} of app {target} has not signed in for {:.0} days",
                    k.kind.as_str(),
                    days(now - last)
                ),
                format!(
                    "Its last sign-in was on {}. What to do: if nothing uses it, delete it (Entra admin center > App registrations > Certificates & secrets).",
                    last.format("%Y-%m-%d")
                ),
            );
        }
    }
}

/// The credentials of an app that are not the agent's: those the application signed in with
/// lately (`signed_in`) alert on their expiry as the agent's own do; the others only as they
/// near it (info).
#[allow(clippy::too_many_arguments)]
pub(super) fn credential_alerts(
    b: &mut Builder,
    target: &str,
    app: &str,
    reg: &crate::checks::graph::Registration,
    signed_in: &dyn Fn(&str) -> bool,
    fix: &str,
    settings: &AlertSettings,
    now: DateTime<Utc>,
) {
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    for c in reg
        .credentials
        .iter()
        .filter(|c| !c.in_use && signed_in(&c.key_id))
    {
        let Some(end) = c.end else { continue };
        let left = end - now;
        let name = c.display_name.clone().unwrap_or_default();
        let labels = [
            ("target", target),
            ("app", app),
            ("type", c.kind.as_str()),
            ("origin", c.origin.as_str()),
            ("key_id", c.key_id.as_str()),
            ("display_name", name.as_str()),
        ];
        if left < dur(settings.credential_critical) {
            b.push(
                AlertName::ActiveCredentialExpiring,
                &labels,
                None,
                format!(
                    "The application signs in with a {} of app {target} ({name}) that {}",
                    c.kind.as_str(),
                    if left <= chrono::Duration::zero() {
                        "has expired".to_string()
                    } else {
                        format!("expires in {:.1} days", days(left))
                    }
                ),
                format!("The agent signs in with another, so its own checks stay green. What to do now: {fix}"),
            );
        } else if left < dur(settings.credential_warning) {
            b.push(
                AlertName::ActiveCredentialExpiringSoon,
                &labels,
                None,
                format!(
                    "The application signs in with a {} of app {target} ({name}) that expires in {:.0} days",
                    c.kind.as_str(),
                    days(left)
                ),
                format!("The agent signs in with another, so its own checks stay green the day the application stops. What to do: {fix}"),
            );
        }
    }
    // The credential in use has its own alerts, and so have those the application signs
    // in with: this one is about the others.
    for c in reg
        .credentials
        .iter()
        .filter(|c| !c.in_use && !signed_in(&c.key_id))
    {
        let Some(end) = c.end else { continue };
        let left = end - now;
        if left > chrono::Duration::zero() && left < dur(settings.credential_warning) {
            let name = c.display_name.clone().unwrap_or_default();
            b.push(
                AlertName::AppCredentialExpiring,
                &[("target", target), ("app", app), ("type", c.kind.as_str()), ("origin", c.origin.as_str()), ("key_id", &c.key_id), ("display_name", &name)],
                None,
                format!("A {} of app {target} ({name}) expires in {:.0} days", c.kind.as_str(), days(left)),
                "It is not the one the agent signs in with. What to do: if an application signs in with it, plan its rotation: add a new one, configure it, delete the old one (Entra admin center > App registrations > Certificates & secrets); if nothing uses it, delete it.".into(),
            );
        }
    }
}
