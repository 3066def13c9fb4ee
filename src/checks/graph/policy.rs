//! The tenant's rules for client secrets, from its app management policies: whether a new
//! secret may be added to the app at all (`passwordAddition`) and how long one may live
//! (`passwordLifetime`). Read only when `app_management_policy: true` (it needs
//! `Policy.Read.All`); the answer is a fact for the verdict, never a failure of the check.
//! Facts: `shared/reference/microsoft-365.md`, "App management policies".

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::plan::parse_iso8601_duration;

/// What the policies say about the app's next secret.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecretPolicy {
    /// Where the facts come from: `None` while they are unknown (the read was refused, 403, or
    /// failed), with the reason in `unknown`.
    pub known: Option<SecretRules>,
    /// Why the policy is unknown (for the log and `/status`).
    pub unknown: Option<String>,
}

/// The restrictions in force for the app's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecretRules {
    /// No new client secret may be added to the app: the next rotation will be refused.
    pub addition_blocked: bool,
    /// New secrets may live at most this long.
    pub max_lifetime: Option<Duration>,
    /// Whether the rule comes from a policy assigned to the app (else the tenant default).
    pub from_app_policy: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantPolicy {
    #[serde(default)]
    is_enabled: Option<bool>,
    #[serde(default)]
    application_restrictions: Option<Configuration>,
}

#[derive(Debug, Deserialize)]
struct AppPolicies {
    #[serde(default)]
    value: Vec<AppPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AppPolicy {
    #[serde(default)]
    is_enabled: Option<bool>,
    #[serde(default)]
    restrictions: Option<Configuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    #[serde(default)]
    password_credentials: Option<Vec<Restriction>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Restriction {
    #[serde(default)]
    restriction_type: Option<String>,
    /// `enabled` or `disabled` (newer policies); absent counts as enabled.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    max_lifetime: Option<String>,
    #[serde(default)]
    restrict_for_apps_created_after_date_time: Option<String>,
}

/// One restriction type's rule as a policy states it: whether it applies to the app, and its
/// lifetime.
#[derive(Debug, Clone, Copy)]
struct Rule {
    applies: bool,
    max_lifetime: Option<Duration>,
}

fn rules_of(
    config: Option<&Configuration>,
    enabled: bool,
    created: Option<DateTime<Utc>>,
) -> Result<Vec<(String, Rule)>, String> {
    let mut out = Vec::new();
    for r in config
        .and_then(|c| c.password_credentials.as_deref())
        .unwrap_or_default()
    {
        let Some(kind) = r.restriction_type.clone() else {
            continue;
        };
        let on = enabled
            && r.state
                .as_deref()
                .is_none_or(|s| !s.eq_ignore_ascii_case("disabled"));
        // The restriction binds apps created after its date. Microsoft treats an object without
        // a creation date as created on 2019-01-01.
        let after = match r.restrict_for_apps_created_after_date_time.as_deref() {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| {
                        format!("restrictForAppsCreatedAfterDateTime {t:?} is not a time")
                    })?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        let created = created.unwrap_or_else(|| {
            DateTime::from_timestamp(1_546_300_800, 0).expect("2019-01-01 is a valid time")
        });
        let max_lifetime = match r.max_lifetime.as_deref() {
            Some(m) => Some(
                parse_iso8601_duration(m)
                    .ok_or_else(|| format!("maxLifetime {m:?} is not an ISO 8601 duration"))?,
            ),
            None => None,
        };
        out.push((
            kind,
            Rule {
                applies: on && after.is_none_or(|a| created > a),
                max_lifetime,
            },
        ));
    }
    Ok(out)
}

/// The rules in force for the app, from the tenant default (`GET policies/
/// defaultAppManagementPolicy`) and the policies assigned to the app (`GET applications/{id}/
/// appManagementPolicies`): an app policy that defines a restriction type overrides the tenant
/// default for it, enabled or not (Microsoft: "the app management policy takes precedence").
pub fn read(
    tenant_body: &[u8],
    app_body: &[u8],
    created: Option<DateTime<Utc>>,
) -> Result<SecretRules, String> {
    let tenant: TenantPolicy = serde_json::from_slice(tenant_body)
        .map_err(|e| format!("the default app management policy is not readable: {e}"))?;
    let apps: AppPolicies = serde_json::from_slice(app_body)
        .map_err(|e| format!("the app's management policies are not readable: {e}"))?;
    let mut in_force: Vec<(String, Rule, bool)> = rules_of(
        tenant.application_restrictions.as_ref(),
        tenant.is_enabled.unwrap_or(false),
        created,
    )?
    .into_iter()
    .map(|(k, r)| (k, r, false))
    .collect();
    for p in &apps.value {
        for (kind, rule) in rules_of(
            p.restrictions.as_ref(),
            p.is_enabled.unwrap_or(false),
            created,
        )? {
            in_force.retain(|(k, _, from_app)| *k != kind || *from_app);
            in_force.push((kind, rule, true));
        }
    }
    let mut rules = SecretRules::default();
    for (kind, rule, from_app) in in_force.iter().filter(|(_, r, _)| r.applies) {
        match kind.as_str() {
            "passwordAddition" => {
                rules.addition_blocked = true;
                rules.from_app_policy |= from_app;
            }
            "passwordLifetime" => {
                if let Some(m) = rule.max_lifetime {
                    rules.max_lifetime = Some(rules.max_lifetime.map_or(m, |x| x.min(m)));
                    rules.from_app_policy |= from_app;
                }
            }
            _ => {}
        }
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn restriction(kind: &str, max: Option<&str>, after: &str) -> serde_json::Value {
        json!({"restrictionType": kind, "maxLifetime": max,
               "restrictForAppsCreatedAfterDateTime": after})
    }

    fn tenant(enabled: bool, restrictions: Vec<serde_json::Value>) -> Vec<u8> {
        json!({"isEnabled": enabled,
               "applicationRestrictions": {"passwordCredentials": restrictions, "keyCredentials": []}})
        .to_string()
        .into_bytes()
    }

    fn apps(policies: Vec<(bool, Vec<serde_json::Value>)>) -> Vec<u8> {
        let value: Vec<serde_json::Value> = policies
            .into_iter()
            .map(|(enabled, r)| json!({"isEnabled": enabled, "restrictions": {"passwordCredentials": r}}))
            .collect();
        json!({"value": value}).to_string().into_bytes()
    }

    fn created(y: i32) -> Option<DateTime<Utc>> {
        Some(
            DateTime::parse_from_rfc3339(&format!("{y}-06-01T00:00:00Z"))
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn the_default_policy_binds_apps_created_after_its_date_when_enabled() {
        let blocked = tenant(
            true,
            vec![restriction(
                "passwordAddition",
                None,
                "2021-01-01T00:00:00Z",
            )],
        );
        let none = apps(vec![]);
        assert!(
            read(&blocked, &none, created(2022))
                .unwrap()
                .addition_blocked
        );
        // An older app is exempt.
        assert!(
            !read(&blocked, &none, created(2020))
                .unwrap()
                .addition_blocked
        );
        // A disabled default (as Entra ships it) binds nothing.
        let off = tenant(
            false,
            vec![restriction(
                "passwordAddition",
                None,
                "2021-01-01T00:00:00Z",
            )],
        );
        assert_eq!(
            read(&off, &none, created(2022)).unwrap(),
            SecretRules::default()
        );
        // A lifetime cap.
        let capped = tenant(
            true,
            vec![restriction(
                "passwordLifetime",
                Some("P14D"),
                "2021-01-01T00:00:00Z",
            )],
        );
        assert_eq!(
            read(&capped, &none, created(2022)).unwrap().max_lifetime,
            Some(Duration::from_secs(14 * 86_400))
        );
    }

    #[test]
    fn an_app_policy_overrides_the_default_for_the_restrictions_it_defines() {
        let blocked = tenant(
            true,
            vec![
                restriction("passwordAddition", None, "2021-01-01T00:00:00Z"),
                restriction("passwordLifetime", Some("P30D"), "2021-01-01T00:00:00Z"),
            ],
        );
        // The app's own (disabled) policy exempts it from passwordAddition only.
        let exempt = apps(vec![(
            false,
            vec![restriction(
                "passwordAddition",
                None,
                "2021-01-01T00:00:00Z",
            )],
        )]);
        let r = read(&blocked, &exempt, created(2022)).unwrap();
        assert!(!r.addition_blocked);
        assert_eq!(r.max_lifetime, Some(Duration::from_secs(30 * 86_400)));
        // An app policy that blocks, on a tenant that does not.
        let open = tenant(false, vec![]);
        let strict = apps(vec![(
            true,
            vec![restriction(
                "passwordAddition",
                None,
                "2019-01-01T00:00:00Z",
            )],
        )]);
        let r = read(&open, &strict, created(2022)).unwrap();
        assert!(r.addition_blocked && r.from_app_policy);
    }

    #[test]
    fn bad_replies_are_errors_not_guesses() {
        assert!(read(b"<html>", &apps(vec![]), None).is_err());
        let bad_time = tenant(true, vec![restriction("passwordAddition", None, "soon")]);
        assert!(read(&bad_time, &apps(vec![]), None).is_err());
        let bad_life = tenant(
            true,
            vec![restriction(
                "passwordLifetime",
                Some("a month"),
                "2021-01-01T00:00:00Z",
            )],
        );
        assert!(read(&bad_life, &apps(vec![]), None).is_err());
    }
}
