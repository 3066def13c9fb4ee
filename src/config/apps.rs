//! Apps and mailboxes validated one by one: IDs, credential (secret from a file, the
//! environment or inline; or a certificate), clouds and endpoints, checks, SMTP host and EHLO
//! name, the mailbox address and the canary. Part of [`Validator`].

use std::collections::HashMap;
use std::sync::Arc;

use super::credentials::{self, CertificateError};
use super::raw::{self, RawChecks};
use super::validate::{
    TrafficTenants, Validator, ACTIVITY_DEFAULT, CANARY_DEFAULT, CANARY_MIN_INTERVAL,
    DISCOVERY_DEFAULT, GRAPH_DEFAULT, HEALTH_DEFAULT, SMTP_DEFAULT, TOKEN_DEFAULT, TRAFFIC_DEFAULT,
};
use super::ConfigError;
use crate::plan::{
    is_guid, App, AssertionAlgorithm, Authorization, Canary, Cloud, Credential, MailAddress,
    Mailbox, TrafficWatch,
};

impl Validator<'_> {
    /// One app, and the name of its Graph reader (resolved once every app is known).
    pub(super) fn app(
        &mut self,
        p: &str,
        a: raw::RawApp,
        default_cloud: Cloud,
        defaults: &RawChecks,
    ) -> Result<(App, Option<String>), ConfigError> {
        let name = self.required(&format!("{p}.name"), a.name)?;
        let tenant = self.required(&format!("{p}.tenant"), a.tenant)?;
        let is_domain = tenant.contains('.')
            && tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !is_guid(&tenant) && !is_domain {
            return Err(self.err(
                format!("{p}.tenant"),
                format!("invalid tenant {}: expected the directory (tenant) ID, a GUID, or a verified domain such as contoso.onmicrosoft.com", shown(&tenant)),
            ));
        }
        let client_id = self.required(&format!("{p}.client_id"), a.client_id)?;
        if !is_guid(&client_id) {
            return Err(self.err(
                format!("{p}.client_id"),
                format!("invalid client_id {}: expected the application (client) ID, a GUID such as 00000000-0000-0000-0000-000000000000", shown(&client_id)),
            ));
        }
        let cloud = match a.cloud {
            Some(c) => c
                .parse::<Cloud>()
                .map_err(|m| self.err(format!("{p}.cloud"), m))?,
            None => default_cloud,
        };
        if a.checks.smtp.is_some() {
            return Err(self.err(
                format!("{p}.checks.smtp"),
                "the smtp check belongs to mailboxes; apps take token and graph",
            ));
        }

        let sources = [
            a.client_secret.is_some(),
            a.client_secret_file.is_some(),
            a.client_secret_env.is_some(),
            a.certificate.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if sources != 1 {
            return Err(self.err(
                p,
                format!(
                    "app {name:?} needs exactly one credential: client_secret_file, client_secret_env, client_secret or certificate (found {sources})"
                ),
            ));
        }
        let credential = if let Some(s) = a.client_secret {
            self.inline_secrets += 1;
            self.warnings.push(format!(
                "{}: {p}.client_secret: app {name:?} has its client secret inline in the configuration file; prefer client_secret_file or client_secret_env",
                self.file
            ));
            credentials::secret(s.expose().to_string())
                .map_err(|m| self.err(format!("{p}.client_secret"), m))?
        } else if let Some(f) = a.client_secret_file {
            let path = self.resolve(&f);
            let s = crate::input::read_to_string_capped(&path, crate::input::MAX_FILE_BYTES)
                .map_err(|e| {
                    self.err(
                        format!("{p}.client_secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
            self.warn_if_others_read(&format!("{p}.client_secret_file"), &path);
            credentials::secret(s).map_err(|m| self.err(format!("{p}.client_secret_file"), m))?
        } else if let Some(var) = a.client_secret_env {
            let s = std::env::var(&var).map_err(|_| {
                self.err(
                    format!("{p}.client_secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?;
            credentials::secret(s).map_err(|m| self.err(format!("{p}.client_secret_env"), m))?
        } else {
            let c = a.certificate.unwrap_or_default();
            Credential::Certificate(Arc::new(self.certificate(&format!("{p}.certificate"), c)?))
        };

        let ca_file = a.ca_file.map(|f| self.resolve(&f));
        let net = match self.clients.get(&ca_file) {
            Some(c) => c.clone(),
            None => {
                let c = credentials::net_clients(ca_file.as_deref())
                    .map_err(|m| self.err(format!("{p}.ca_file"), m))?;
                self.clients.insert(ca_file.clone(), c.clone());
                c
            }
        };

        let app = App {
            login_url: self.url(&format!("{p}.login_url"), a.login_url, cloud.login_url())?,
            graph_url: self.url(&format!("{p}.graph_url"), a.graph_url, cloud.graph_url())?,
            token_check: self.check_settings(
                &format!("{p}.checks.token"),
                a.checks.token.as_ref(),
                defaults.token.as_ref(),
                TOKEN_DEFAULT,
            )?,
            graph_check: self.check_settings(
                &format!("{p}.checks.graph"),
                a.checks.graph.as_ref(),
                defaults.graph.as_ref(),
                GRAPH_DEFAULT,
            )?,
            health_check: self.opt_in(
                &format!("{p}.checks.health"),
                a.checks.health.as_ref(),
                defaults.health.as_ref(),
                HEALTH_DEFAULT,
            )?,
            activity_check: {
                let c = self.opt_in(
                    &format!("{p}.checks.activity"),
                    a.checks.activity.as_ref(),
                    defaults.activity.as_ref(),
                    ACTIVITY_DEFAULT,
                )?;
                self.global_only(
                    &format!("{p}.checks.activity"),
                    &c,
                    &name,
                    cloud,
                    "credential sign-in activity (Graph beta reports/appCredentialSignInActivities)",
                )?;
                c
            },
            traffic_check: {
                let c = self.opt_in(
                    &format!("{p}.checks.traffic"),
                    a.checks.traffic.as_ref(),
                    defaults.traffic.as_ref(),
                    TRAFFIC_DEFAULT,
                )?;
                self.global_only(
                    &format!("{p}.checks.traffic"),
                    &c,
                    &name,
                    cloud,
                    "message trace (Graph admin/exchange/tracing/messageTraces)",
                )?;
                c
            },
            discovery_check: self.opt_in(
                &format!("{p}.checks.discovery"),
                a.checks.discovery.as_ref(),
                defaults.discovery.as_ref(),
                DISCOVERY_DEFAULT,
            )?,
            name,
            tenant,
            client_id,
            cloud,
            credential,
            ca_file,
            graph_reader: None,
            authorization: match a.authorization.as_deref() {
                None => Authorization::Auto,
                Some(v) => v
                    .parse()
                    .map_err(|m| self.err(format!("{p}.authorization"), m))?,
            },
            app_management_policy: a.app_management_policy.unwrap_or(false),
            net,
        };
        Ok((app, a.graph_reader))
    }

    /// An opt-in check's settings: off unless the app or `defaults.checks` enables it (each
    /// needs a permission the app usually lacks).
    fn opt_in(
        &self,
        path: &str,
        own: Option<&raw::RawCheck>,
        default: Option<&raw::RawCheck>,
        built_in: (&str, &str),
    ) -> Result<crate::plan::CheckSettings, ConfigError> {
        let mut c = self.check_settings(path, own, default, built_in)?;
        c.enabled = own
            .and_then(|h| h.enabled)
            .or_else(|| default.and_then(|h| h.enabled))
            .unwrap_or(false);
        Ok(c)
    }

    /// Refuses an enabled check whose Microsoft API exists in the global cloud only.
    pub(super) fn global_only(
        &self,
        path: &str,
        check: &crate::plan::CheckSettings,
        app: &str,
        cloud: Cloud,
        what: &str,
    ) -> Result<(), ConfigError> {
        if check.enabled && cloud != Cloud::Global {
            return Err(self.err(
                path,
                format!("{what} exists in the global cloud only, and app {app:?} uses cloud {cloud}: leave it off there"),
            ));
        }
        Ok(())
    }

    fn certificate(
        &mut self,
        p: &str,
        c: raw::RawCertificate,
    ) -> Result<crate::plan::CertificateCredential, ConfigError> {
        let cert_file = self.required(&format!("{p}.cert_file"), c.cert_file)?;
        let key_file = self.required(&format!("{p}.key_file"), c.key_file)?;
        let algorithm = match c.algorithm.as_deref() {
            None | Some("PS256") => AssertionAlgorithm::Ps256,
            Some("RS256") => AssertionAlgorithm::Rs256,
            Some(o) => {
                return Err(self.err(
                    format!("{p}.algorithm"),
                    format!("unknown algorithm {o:?}, expected PS256 or RS256"),
                ))
            }
        };
        let key_path = self.resolve(&key_file);
        self.warn_if_others_read(&format!("{p}.key_file"), &key_path);
        credentials::certificate(&self.resolve(&cert_file), &key_path, algorithm).map_err(|e| {
            match e {
                CertificateError::Cert(m) => self.err(format!("{p}.cert_file"), m),
                CertificateError::Key(m) => self.err(format!("{p}.key_file"), m),
            }
        })
    }

    pub(super) fn mailbox(
        &mut self,
        p: &str,
        m: raw::RawMailbox,
        apps: &HashMap<&str, &Arc<App>>,
        defaults: &RawChecks,
        traffic: &TrafficTenants,
    ) -> Result<Mailbox, ConfigError> {
        let name = self.required(&format!("{p}.name"), m.name)?;
        let app_name = self.required(&format!("{p}.app"), m.app)?;
        let app = apps.get(app_name.as_str()).copied().ok_or_else(|| {
            let mut known: Vec<&str> = apps.keys().copied().collect();
            known.sort_unstable();
            self.err(
                format!("{p}.app"),
                format!(
                    "no app is named {app_name:?} (known apps: {})",
                    known.join(", ")
                ),
            )
        })?;
        let address = self.required(&format!("{p}.address"), m.address)?;
        let address = MailAddress::parse(&address).ok_or_else(|| {
            self.err(
                format!("{p}.address"),
                format!("invalid mailbox address {address:?}: expected user@domain"),
            )
        })?;
        if m.checks.token.is_some()
            || m.checks.graph.is_some()
            || m.checks.health.is_some()
            || m.checks.activity.is_some()
            || m.checks.traffic.is_some()
            || m.checks.discovery.is_some()
        {
            return Err(self.err(
                format!("{p}.checks"),
                "mailboxes take only the smtp check; token, graph, health, activity, traffic and discovery belong to apps (the canary and expect_traffic_within are the mailbox's own)",
            ));
        }
        let tenant_trace = traffic.get(&app.tenant.to_ascii_lowercase());
        let canary = match m.canary {
            None => None,
            Some(c) => self
                .canary(&format!("{p}.canary"), c, app, &address, apps)?
                .map(|c| Canary {
                    trace_reader: tenant_trace.map(|(_, first)| first.graph_reader_or_self()),
                    ..c
                }),
        };
        let expect_within = match &m.expect_traffic_within {
            None => None,
            Some(v) => {
                let d = crate::plan::parse_duration(v)
                    .map_err(|e| self.err(format!("{p}.expect_traffic_within"), e))?;
                if d.is_zero() {
                    return Err(self.err(
                        format!("{p}.expect_traffic_within"),
                        "must be greater than 0s",
                    ));
                }
                Some(d)
            }
        };
        let traffic = match (app.traffic_check.enabled, tenant_trace) {
            (true, Some((tenant, _))) => Some(Box::new(TrafficWatch {
                tenant: tenant.clone(),
                expect_within,
            })),
            _ if expect_within.is_some() => {
                return Err(self.err(
                    format!("{p}.expect_traffic_within"),
                    format!(
                    "app {:?} does not watch its mailboxes' traffic: enable checks.traffic on it",
                    app.name
                ),
                ))
            }
            _ => None,
        };
        Ok(Mailbox {
            smtp_host: match m.smtp_host {
                Some(h) if !is_host(&h) => {
                    return Err(self.err(
                        format!("{p}.smtp_host"),
                        format!("invalid host {h:?}: expected a host name or IP address, without port (use smtp_port)"),
                    ))
                }
                Some(h) => h,
                None => app.cloud.smtp_host().to_string(),
            },
            smtp_port: match m.smtp_port {
                Some(0) => {
                    return Err(self.err(
                        format!("{p}.smtp_port"),
                        "must be a port number from 1 to 65535",
                    ))
                }
                Some(port) => port,
                None => 587,
            },
            ehlo_name: match m.ehlo_name {
                // It goes on the wire before TLS: no spaces or line breaks (RFC 5321 section 4.1.1.1).
                Some(n) if !(is_host(&n) || is_address_literal(&n)) => {
                    return Err(self.err(
                        format!("{p}.ehlo_name"),
                        format!("invalid EHLO name {n:?}: expected a domain name such as monitoring.contoso.com or an address literal such as [192.0.2.1]"),
                    ))
                }
                Some(n) => n,
                None => "smtp-oauth-exporter.localhost".to_string(),
            },
            mail_from: m.mail_from.unwrap_or(true),
            tls_insecure_skip_verify: if m.tls_insecure_skip_verify == Some(true) {
                self.warnings.push(format!(
                    "{}: {p}.tls_insecure_skip_verify: server certificate verification is OFF for mailbox {name:?}: anyone in the path can read its token",
                    self.file
                ));
                true
            } else {
                false
            },
            smtp_check: self.check_settings(
                &format!("{p}.checks.smtp"),
                m.checks.smtp.as_ref(),
                defaults.smtp.as_ref(),
                SMTP_DEFAULT,
            )?,
            name,
            app: app.clone(),
            address,
            canary,
            traffic,
        })
    }

    /// A mailbox's `canary:` block: the recipient (the mailbox itself by default), the reader
    /// app (the mailbox's own by default) and a schedule no faster than once a minute.
    fn canary(
        &self,
        p: &str,
        c: raw::RawCanary,
        app: &Arc<App>,
        address: &MailAddress,
        apps: &HashMap<&str, &Arc<App>>,
    ) -> Result<Option<Canary>, ConfigError> {
        let to = match c.to {
            None => address.clone(),
            Some(to) => MailAddress::parse(&to).ok_or_else(|| {
                self.err(
                    format!("{p}.to"),
                    format!("invalid address {to:?}: expected user@domain"),
                )
            })?,
        };
        let reader = match c.reader {
            None => app.clone(),
            Some(r) => (*apps.get(r.as_str()).ok_or_else(|| {
                self.err(format!("{p}.reader"), format!("no app is named {r:?}"))
            })?)
            .clone(),
        };
        let raw = raw::RawCheck {
            enabled: c.enabled,
            schedule: c.schedule,
            timeout: c.timeout,
        };
        let check = self.check_settings(p, Some(&raw), None, CANARY_DEFAULT)?;
        if check.schedule.typical_interval() < CANARY_MIN_INTERVAL {
            return Err(self.err(
                format!("{p}.schedule"),
                "the canary sends a message each run: at most once a minute (Exchange Online allows a mailbox 30 messages a minute, and they are the application's)",
            ));
        }
        Ok(check.enabled.then_some(Canary {
            to,
            reader,
            check,
            trace_reader: None,
        }))
    }
}
/// A DNS name (letters, digits, `-`, `.`) or an IP address.
fn is_host(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
        || (!s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 section 4.1.3).
fn is_address_literal(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| {
            inner.parse::<std::net::Ipv4Addr>().is_ok()
                || inner
                    .strip_prefix("IPv6:")
                    .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
        })
}

/// A wrong ID as an error shows it: quoted when it looks like a mistyped ID or name, withheld
/// when it could be a secret pasted into the wrong field (Entra secret values carry `~`, older
/// ones `+`, `/`, `=` and the like, and are long).
fn shown(value: &str) -> String {
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ' '));
    if plain && value.chars().count() <= 40 {
        format!("{value:?}")
    } else {
        format!(
            "({} characters, not shown: it may be a secret pasted into the wrong field)",
            value.chars().count()
        )
    }
}
