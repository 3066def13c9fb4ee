//! The application object and its service principal as the credential check reads them from
//! Graph: their secrets and certificates with their dates (checked: a keyId for each, unique
//! across both, times in ISO 8601), and which of them the agent's own credential is, by a
//! secret's hint or a certificate's thumbprint.

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::{CredentialInfo, CredentialOrigin, CredentialType, Registration};
use crate::checks::graph_call::clean;
use crate::plan::Credential;

/// The application object, as far as the check reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Application {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    #[serde(default)]
    created_date_time: Option<String>,
    #[serde(default)]
    password_credentials: Option<Vec<PasswordCredential>>,
    #[serde(default)]
    key_credentials: Option<Vec<KeyCredential>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordCredential {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    start_date_time: Option<String>,
    #[serde(default)]
    end_date_time: Option<String>,
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyCredential {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    start_date_time: Option<String>,
    #[serde(default)]
    end_date_time: Option<String>,
    #[serde(default)]
    custom_key_identifier: Option<String>,
    #[serde(default)]
    usage: Option<String>,
}

/// A registration as read, with what the in-use match needs (not part of the report).
#[derive(Debug)]
pub(super) struct Parsed {
    pub registration: Registration,
    /// Per credential, in the same order: the secret's hint or the certificate's thumbprint.
    matchers: Vec<Matcher>,
}

#[derive(Debug)]
enum Matcher {
    Hint(Option<String>),
    /// `None` when the certificate is not for client authentication (usage other than Verify)
    /// or its `customKeyIdentifier` is not a SHA-1 thumbprint.
    Thumbprint(Option<[u8; 20]>),
}

/// ISO 8601 from Graph: `2026-01-01T00:00:00Z`, with or without fractional seconds; a time
/// without an offset is UTC (Graph's DateTimeOffset values always are).
fn parse_time(field: &str, s: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| Some(t.and_utc()))
        .map_err(|_| format!("{field} {:?} is not an ISO 8601 time", clean(s)))
}

/// A certificate thumbprint as Graph's `customKeyIdentifier` may hold it: base64 of the 20 SHA-1
/// bytes (what Graph's JSON carries for an uploaded certificate), 40 hex digits (what the portal
/// and the Azure CLI show), or base64 of those 40 hex digits (what some upload scripts set).
pub fn thumbprint_from_graph(s: &str) -> Option<[u8; 20]> {
    fn from_hex(h: &str) -> Option<[u8; 20]> {
        let h: Vec<u8> = h
            .bytes()
            .filter(|b| !matches!(b, b':' | b' ' | b'-'))
            .collect();
        if h.len() != 40 || !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut out = [0u8; 20];
        for (i, pair) in h.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).ok()?;
            out[i] = u8::from_str_radix(text, 16).ok()?;
        }
        Some(out)
    }
    let s = s.trim();
    if let Some(t) = from_hex(s) {
        return Some(t);
    }
    let bytes = STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok()?;
    match bytes.len() {
        20 => bytes.try_into().ok(),
        40 => from_hex(std::str::from_utf8(&bytes).ok()?),
        _ => None,
    }
}

/// Reads the application object, or its service principal (`origin`: both list credentials in
/// the same shape); `now` is the time of the run, which decides which credentials have expired.
pub(super) fn read_registration(
    client_id: &str,
    body: &[u8],
    now: DateTime<Utc>,
    origin: CredentialOrigin,
) -> Result<Parsed, String> {
    let a: Application = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not {}: {e}",
            match origin {
                CredentialOrigin::Application => "an application object",
                CredentialOrigin::ServicePrincipal => "a service principal",
            }
        )
    })?;
    // The appId proves the reply is about the app asked for (not another object behind a wrong
    // graph_url or a proxy); $select asks for it, so a reply without it is not trusted.
    let Some(got) = &a.app_id else {
        return Err(format!("the reply has no appId (expected {client_id})"));
    };
    if !got.eq_ignore_ascii_case(client_id) {
        return Err(format!(
            "the reply is about appId {:?}, not {client_id}",
            clean(got)
        ));
    }
    let mut credentials = Vec::new();
    let mut matchers = Vec::new();
    let mut seen = HashSet::new();
    let mut key_id = |kind: CredentialType, k: Option<String>| -> Result<String, String> {
        let k = k.unwrap_or_default();
        // keyId keys the series: it must be present, unique and a plausible label value.
        if k.is_empty() || k.len() > 128 || k.chars().any(char::is_control) {
            return Err(format!(
                "a {} credential has no usable keyId",
                kind.as_str()
            ));
        }
        if !seen.insert((kind, k.clone())) {
            return Err(format!(
                "keyId {k} appears twice among the {} credentials",
                kind.as_str()
            ));
        }
        Ok(k)
    };
    for p in a.password_credentials.unwrap_or_default() {
        let kind = CredentialType::Password;
        credentials.push(CredentialInfo {
            key_id: key_id(kind, p.key_id)?,
            kind,
            origin,
            display_name: p.display_name,
            start: parse_time("startDateTime", p.start_date_time.as_deref())?,
            end: parse_time("endDateTime", p.end_date_time.as_deref())?,
            in_use: false,
        });
        matchers.push(Matcher::Hint(p.hint));
    }
    for c in a.key_credentials.unwrap_or_default() {
        let kind = CredentialType::Certificate;
        credentials.push(CredentialInfo {
            key_id: key_id(kind, c.key_id)?,
            kind,
            origin,
            display_name: c.display_name,
            start: parse_time("startDateTime", c.start_date_time.as_deref())?,
            end: parse_time("endDateTime", c.end_date_time.as_deref())?,
            in_use: false,
        });
        // A certificate registered for signing (usage Sign) can share the thumbprint of the one
        // that verifies client assertions; only the Verify one is what the agent signs in with.
        let verify = c
            .usage
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case("Verify"));
        let thumb = c
            .custom_key_identifier
            .as_deref()
            .filter(|_| verify)
            .and_then(thumbprint_from_graph);
        matchers.push(Matcher::Thumbprint(thumb));
    }
    let created = parse_time("createdDateTime", a.created_date_time.as_deref())?;
    let mut parsed = Parsed {
        registration: Registration {
            object_id: a.id,
            created,
            credentials,
            ..Registration::default()
        },
        matchers,
    };
    parsed.set_expiries(now);
    Ok(parsed)
}

impl Parsed {
    fn set_expiries(&mut self, now: DateTime<Utc>) {
        let reg = &mut self.registration;
        reg.earliest_expiry = reg.credentials.iter().filter_map(|c| c.end).min();
        reg.next_expiry = reg
            .credentials
            .iter()
            .filter_map(|c| c.end)
            .filter(|&end| end > now)
            .min();
    }

    /// Adds the service principal's credentials to the application's: a secret on either signs
    /// in. Key IDs are unique across both objects; one on both is refused (it would make two
    /// series of one credential).
    pub(super) fn merge(&mut self, sp: Parsed, now: DateTime<Utc>) -> Result<(), String> {
        for c in &sp.registration.credentials {
            if self
                .registration
                .credentials
                .iter()
                .any(|o| o.kind == c.kind && o.key_id == c.key_id)
            {
                return Err(format!(
                    "keyId {} is listed on both the application and its service principal",
                    c.key_id
                ));
            }
        }
        self.registration
            .credentials
            .extend(sp.registration.credentials);
        self.matchers.extend(sp.matchers);
        self.set_expiries(now);
        Ok(())
    }
}

/// Marks the credential(s) matching the agent's configured one. A secret is known to Graph only
/// by its `hint` (first three characters), so two secrets may share it: then all candidates are
/// marked and the registration says it is ambiguous, rather than guessing.
pub(super) fn mark_in_use(own: &Credential, parsed: &mut Parsed) {
    let reg = &mut parsed.registration;
    for (c, m) in reg.credentials.iter_mut().zip(&parsed.matchers) {
        c.in_use = match (own, m) {
            (Credential::ClientSecret(s), Matcher::Hint(Some(h))) => *h == s.hint(),
            (Credential::Certificate(cert), Matcher::Thumbprint(Some(t))) => {
                *t == cert.thumbprint_sha1
            }
            _ => false,
        };
    }
    reg.in_use_matches = reg.credentials.iter().filter(|c| c.in_use).count();
    reg.hint_ambiguous = reg.in_use_matches > 1;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    use super::*;
    use crate::plan::{AssertionAlgorithm, CertificateCredential, SigningKey};
    use crate::secret::Secret;

    const CLIENT: &str = "00000000-0000-4000-8000-000000000001";

    fn secret(v: &str) -> Credential {
        Credential::ClientSecret(Secret::new(v))
    }

    fn certificate(thumb: [u8; 20]) -> Credential {
        Credential::Certificate(Arc::new(CertificateCredential {
            cert_der: Vec::new(),
            key: SigningKey(jsonwebtoken::EncodingKey::from_secret(b"unused")),
            algorithm: AssertionAlgorithm::Ps256,
            thumbprint_sha1: thumb,
            thumbprint_sha256: [0; 32],
        }))
    }

    fn password(key: &str, name: Option<&str>, hint: &str, end: &str) -> serde_json::Value {
        json!({"customKeyIdentifier": null, "displayName": name, "hint": hint, "keyId": key,
               "secretText": null, "startDateTime": "2025-01-01T00:00:00Z", "endDateTime": end})
    }

    fn key(key: &str, ski: &str, usage: &str, end: &str) -> serde_json::Value {
        json!({"customKeyIdentifier": ski, "displayName": "CN=app", "keyId": key, "key": null,
               "type": "AsymmetricX509Cert", "usage": usage,
               "startDateTime": "2025-01-01T00:00:00Z", "endDateTime": end})
    }

    fn app_json(passwords: Vec<serde_json::Value>, keys: Vec<serde_json::Value>) -> Vec<u8> {
        json!({"@odata.context": "x", "id": "obj", "appId": CLIENT, "displayName": "App",
               "passwordCredentials": passwords, "keyCredentials": keys})
        .to_string()
        .into_bytes()
    }

    /// The time of the test runs: after the January 2025 start dates, before the 2026 ends.
    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn read(body: &[u8]) -> Result<Parsed, String> {
        read_registration(CLIENT, body, now(), CredentialOrigin::Application)
    }

    fn analyse(own: &Credential, body: &[u8]) -> Registration {
        let mut p = read(body).expect("valid body");
        mark_in_use(own, &mut p);
        p.registration
    }

    #[test]
    fn the_secret_in_use_is_found_by_its_hint() {
        let body = app_json(
            vec![
                password("k1", Some("erp"), "Abc", "2026-03-01T00:00:00Z"),
                password("k2", Some("erp"), "Xyz", "2026-02-01T00:00:00.1234567Z"),
            ],
            vec![],
        );
        let reg = analyse(&secret("Abc~value"), &body);
        assert_eq!(reg.in_use_matches, 1);
        assert!(!reg.hint_ambiguous);
        let used = reg.in_use().expect("one in use");
        assert_eq!(used.key_id, "k1");
        assert_eq!(used.end.unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
        // Fractional seconds parse; the earliest expiry is the other secret's.
        assert_eq!(
            reg.earliest_expiry.unwrap().timestamp(),
            DateTime::parse_from_rfc3339("2026-02-01T00:00:00Z")
                .unwrap()
                .timestamp()
        );
    }

    #[test]
    fn a_shared_hint_is_ambiguous_and_no_secret_is_picked() {
        let body = app_json(
            vec![
                password("k1", None, "Abc", "2026-03-01T00:00:00Z"),
                password("k2", None, "Abc", "2027-03-01T00:00:00Z"),
                password("k3", None, "Qrs", "2027-03-01T00:00:00Z"),
            ],
            vec![],
        );
        let reg = analyse(&secret("Abc~value"), &body);
        assert_eq!(reg.in_use_matches, 2);
        assert!(reg.hint_ambiguous);
        assert!(reg.in_use().is_none());
        let none = analyse(&secret("Zzz~value"), &body);
        assert_eq!(none.in_use_matches, 0);
        assert!(!none.hint_ambiguous);
    }

    #[test]
    fn a_certificate_is_found_by_its_thumbprint_in_every_spelling() {
        let thumb: [u8; 20] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let hex: String = thumb.iter().map(|b| format!("{b:02X}")).collect();
        for ski in [
            STANDARD.encode(thumb),
            hex.clone(),
            hex.to_lowercase(),
            STANDARD.encode(hex.as_bytes()),
        ] {
            assert_eq!(thumbprint_from_graph(&ski), Some(thumb), "{ski}");
            let body = app_json(
                vec![password("p1", None, "Abc", "2026-03-01T00:00:00Z")],
                vec![
                    key("c1", &ski, "Verify", "2027-01-01T00:00:00Z"),
                    key(
                        "c2",
                        &STANDARD.encode([9u8; 20]),
                        "Verify",
                        "2027-01-01T00:00:00Z",
                    ),
                ],
            );
            let reg = analyse(&certificate(thumb), &body);
            assert_eq!(reg.in_use().map(|c| c.key_id.as_str()), Some("c1"), "{ski}");
        }
        assert_eq!(thumbprint_from_graph("not a thumbprint"), None);
    }

    #[test]
    fn a_signing_twin_of_the_certificate_is_not_in_use() {
        let thumb = [7u8; 20];
        let ski = STANDARD.encode(thumb);
        let body = app_json(
            vec![],
            vec![
                key("sign", &ski, "Sign", "2027-01-01T00:00:00Z"),
                key("verify", &ski, "Verify", "2027-01-01T00:00:00Z"),
            ],
        );
        let reg = analyse(&certificate(thumb), &body);
        assert_eq!(reg.in_use().map(|c| c.key_id.as_str()), Some("verify"));
        // A secret never matches a certificate and vice versa.
        assert_eq!(analyse(&secret("Abc"), &body).in_use_matches, 0);
    }

    #[test]
    fn malformed_registrations_are_refused() {
        let dup = app_json(
            vec![
                password("k1", None, "Abc", "2026-03-01T00:00:00Z"),
                password("k1", None, "Abc", "2026-03-01T00:00:00Z"),
            ],
            vec![],
        );
        assert!(read(&dup).unwrap_err().contains("twice"));
        let no_key = app_json(vec![json!({"hint": "Abc"})], vec![]);
        assert!(read(&no_key).is_err());
        let bad_date = app_json(vec![password("k1", None, "Abc", "next tuesday")], vec![]);
        assert!(read(&bad_date).unwrap_err().contains("endDateTime"));
        let other = json!({"appId": "00000000-0000-4000-8000-000000000002"}).to_string();
        assert!(read(other.as_bytes()).unwrap_err().contains("not"));
        // The client ID matches in any letter case.
        let upper = json!({"appId": CLIENT.to_uppercase()}).to_string();
        assert!(read(upper.as_bytes()).is_ok());
        // No appId: nothing proves the reply is about this app.
        let mut anonymous: serde_json::Value = serde_json::from_slice(&app_json(
            vec![password("k1", None, "Abc", "2026-03-01T00:00:00Z")],
            vec![],
        ))
        .unwrap();
        anonymous.as_object_mut().unwrap().remove("appId");
        assert!(read(anonymous.to_string().as_bytes())
            .unwrap_err()
            .contains("no appId"));
        let null_app_id =
            json!({"id": "obj", "appId": null, "passwordCredentials": []}).to_string();
        assert!(read(null_app_id.as_bytes()).is_err());
        assert!(read(b"{\"id\":").is_err());
        // A password and a certificate may carry the same keyId: their series differ by type.
        let same = app_json(
            vec![password("k1", None, "Abc", "2026-03-01T00:00:00Z")],
            vec![key("k1", "x", "Verify", "2027-01-01T00:00:00Z")],
        );
        assert_eq!(read(&same).unwrap().registration.credentials.len(), 2);
    }

    #[test]
    fn the_next_expiry_skips_expired_credentials() {
        let body = app_json(
            vec![
                // Expired before the run: Entra keeps listing it.
                password("old", None, "Old", "2025-06-01T00:00:00Z"),
                password("new", None, "New", "2026-09-01T00:00:00Z"),
                // Expires exactly at the run: already expired.
                password("now", None, "Now", "2026-01-15T12:00:00Z"),
            ],
            vec![key("c1", "x", "Verify", "2026-04-01T00:00:00Z")],
        );
        let reg = read(&body).unwrap().registration;
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(reg.earliest_expiry, Some(at("2025-06-01T00:00:00Z")));
        assert_eq!(reg.next_expiry, Some(at("2026-04-01T00:00:00Z")));

        // Every credential expired: no next expiry, the earliest one stays.
        let body = app_json(
            vec![password("old", None, "Old", "2025-06-01T00:00:00Z")],
            vec![key("c1", "x", "Verify", "2025-12-01T00:00:00Z")],
        );
        let reg = read(&body).unwrap().registration;
        assert_eq!(reg.earliest_expiry, Some(at("2025-06-01T00:00:00Z")));
        assert_eq!(reg.next_expiry, None);

        // No credentials, or none with an end date: neither.
        let reg = read(&app_json(vec![], vec![])).unwrap().registration;
        assert_eq!((reg.earliest_expiry, reg.next_expiry), (None, None));
        let no_end = app_json(vec![json!({"keyId": "k", "hint": "Abc"})], vec![]);
        let reg = read(&no_end).unwrap().registration;
        assert_eq!((reg.earliest_expiry, reg.next_expiry), (None, None));
    }
}
