//! The simulated Entra ID v2 token endpoint: client credentials with a secret or a certificate
//! assertion, AADSTS errors in Microsoft's JSON shape, scripted faults, JWT-shaped access tokens.

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;

use super::reply::{json, respond, HttpsState, SimResponse};
use super::TokenFault;

/// The claims the simulator puts in (and checks on) its access tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IssuedClaims {
    pub aud: String,
    pub iss: String,
    pub tid: String,
    pub appid: String,
    pub oid: String,
    pub roles: Vec<String>,
    /// 1 = client secret, 2 = certificate.
    pub appidacr: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

/// Checks a token's signature and its expiry at `now` (Microsoft's clock); the caller checks
/// audience and roles.
pub fn verify(key: &[u8], token: &str, now: DateTime<Utc>) -> Result<IssuedClaims, String> {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    // Expiry on the simulator's clock, below, not the host's.
    v.validate_exp = false;
    v.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<IssuedClaims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(key),
        &v,
    )
    .map(|d| d.claims)
    .map_err(|_| "token not issued by this simulator".to_string())?;
    // As jsonwebtoken decides it (no leeway): expired once `exp` is in the past.
    if claims.exp < now.timestamp() {
        return Err("token expired".into());
    }
    Ok(claims)
}

/// Microsoft's description of an AADSTS code (the start of it), for scripted errors.
fn aadsts_description(code: u32) -> &'static str {
    match code {
        7000222 => "The provided client secret keys for app are expired.",
        7000215 => "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        7000218 => "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        700027 => "Client assertion failed signature validation.",
        700024 => "Client assertion is not within its valid time range.",
        700016 => "Application was not found in the directory.",
        7000112 => "Application is disabled.",
        7000229 => "The client application is missing service principal in the tenant.",
        70001 => "The application is disabled.",
        90002 => "Tenant not found.",
        900023 => "Specified tenant identifier is neither a valid DNS name, nor a valid external domain.",
        70011 => "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid.",
        1002012 => "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        700022 => "The provided value for the input parameter scope is not valid because it contains more than one resource.",
        500011 => "The resource principal was not found in the tenant.",
        65001 => "The user or administrator has not consented to use the application.",
        650056 => "Misconfigured application. The client has not listed any permissions for the resource in the requested permissions in the client's application registration, or the admin has not consented in the tenant.",
        90094 => "Admin consent is required for the permissions requested by this application.",
        53003 => "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        90055 => "The tenant is throttled: too many requests.",
        _ => "An error the simulator has no description for.",
    }
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> SimResponse {
    let trace = uuid::Uuid::new_v4().to_string();
    let corr = uuid::Uuid::new_v4().to_string();
    let ts = Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string();
    json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {corr}\r\nTimestamp: {ts}"),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": corr,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// Resources the simulator issues tokens for (every cloud's Exchange and Graph).
const EXCHANGE_RESOURCES: [&str; 4] = [
    "https://outlook.office365.com",
    "https://outlook.office365.us",
    "https://outlook-dod.office365.us",
    "https://partner.outlook.cn",
];
pub(super) const GRAPH_RESOURCES: [&str; 4] = [
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
];

/// Whether an audience is Exchange Online (any cloud).
pub fn is_exchange_resource(aud: &str) -> bool {
    EXCHANGE_RESOURCES.contains(&aud)
}

pub async fn handle(
    state: &HttpsState,
    tenant: &str,
    host: &str,
    path: &str,
    body: &[u8],
) -> SimResponse {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let client_id = form.get("client_id").cloned().unwrap_or_default();

    let resource_kind = match form.get("scope").and_then(|s| s.strip_suffix("/.default")) {
        Some(r) if EXCHANGE_RESOURCES.contains(&r) => "exchange",
        Some(r) if GRAPH_RESOURCES.contains(&r) => "graph",
        _ => "other",
    };
    let fault = {
        let mut d = state.directory.lock().expect("sim lock");
        *d.token_requests.entry(client_id.clone()).or_default() += 1;
        let times = d.token_request_times.entry(client_id.clone()).or_default();
        if times.len() == super::GRAPH_TIMES_KEPT {
            times.pop_front();
        }
        times.push_back(tokio::time::Instant::now());
        *d.token_requests_by_resource
            .entry(resource_kind)
            .or_default() += 1;
        if d.record {
            // Every assertion received, faults or not (tests search the output for them).
            if let Some(a) = form.get("client_assertion") {
                d.received_assertions.push(a.clone());
            }
        }
        d.token_faults.get(&client_id).cloned()
    };
    match fault {
        Some(TokenFault::ServerError) => {
            return respond(StatusCode::INTERNAL_SERVER_ERROR, "text/html", "<html><body>Internal Server Error</body></html>")
        }
        Some(TokenFault::Slow(d)) => tokio::time::sleep(d).await,
        Some(TokenFault::TooManyRequests { retry_after_seconds }) => {
            let mut r = respond(StatusCode::TOO_MANY_REQUESTS, "text/plain", "Too Many Requests");
            r.headers_mut().insert("retry-after", retry_after_seconds.to_string().parse().expect("header"));
            return r;
        }
        Some(TokenFault::MalformedJson) => {
            return respond(StatusCode::OK, "application/json", "{\"token_type\":\"Bearer\",\"expires_in\":35")
        }
        Some(TokenFault::ExpiredSecret) => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000222,
                &format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."),
            )
        }
        Some(TokenFault::InvalidSecret) => {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            )
        }
        Some(TokenFault::UnknownApp) => return unknown_app(&client_id),
        Some(TokenFault::UnknownTenant) => return unknown_tenant(tenant),
        Some(TokenFault::Aadsts {
            status,
            error,
            code,
        }) => {
            return aad_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                &error,
                code,
                aadsts_description(code),
            )
        }
        Some(f @ (TokenFault::EchoCredential | TokenFault::EchoBase64)) => {
            use base64::engine::general_purpose::STANDARD;
            let sent = form
                .get("client_secret")
                .or_else(|| form.get("client_assertion"))
                .cloned()
                .unwrap_or_default();
            let description = if f == TokenFault::EchoCredential {
                format!("Invalid client secret provided: '{sent}' is not a secret of app '{client_id}'.")
            } else {
                format!(
                    "Invalid client credential {} ({}); the gateway saw Authorization: Basic {}.",
                    STANDARD.encode(&sent),
                    URL_SAFE_NO_PAD.encode(&sent),
                    STANDARD.encode(format!("{client_id}:{sent}"))
                )
            };
            return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &description);
        }
        Some(TokenFault::EchoForm) => {
            let raw = String::from_utf8_lossy(body);
            let from = ["client_secret=", "client_assertion="]
                .iter()
                .find_map(|k| raw.find(k).map(|i| i + k.len()))
                .unwrap_or(0);
            let page = format!("{:<100}{}", "<html><body>400 Bad Request: ", &raw[from..]);
            return respond(StatusCode::BAD_REQUEST, "text/html", page);
        }
        None => {}
    }

    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let Some(resource) = scope.strip_suffix("/.default") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier."),
        );
    };
    let is_exchange = EXCHANGE_RESOURCES.contains(&resource);
    let is_graph = GRAPH_RESOURCES.contains(&resource);
    if !is_exchange && !is_graph {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            500011,
            &format!("The resource principal named {resource} was not found in the tenant."),
        );
    }

    let mut d = state.directory.lock().expect("sim lock");
    let Some(tenant_id) = d.tenant(tenant).map(|t| t.id.clone()) else {
        return unknown_tenant(tenant);
    };
    let Some(app) = d
        .apps
        .get(&client_id)
        .filter(|a| a.tenant_id == tenant_id)
        .cloned()
    else {
        return unknown_app(&client_id);
    };
    if !app.entra_service_principal {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            7000229,
            &format!("The client application {client_id} is missing service principal in the tenant {tenant_id}."),
        );
    }
    let now = d.now();
    let acr;
    // The credential that signs in: its last sign-in is what the activity report shows.
    let key_id;
    if let Some(secret) = form.get("client_secret") {
        match app.secrets.iter().find(|s| &s.value == secret) {
            None => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
                )
            }
            Some(s) if s.end <= now => {
                return aad_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000222,
                    &format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app."),
                )
            }
            Some(s) => {
                acr = "1";
                key_id = s.key_id.clone();
            }
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                7000218,
                "The request body must contain client_assertion_type.",
            );
        }
        let expected_aud_suffix = path.to_string();
        match check_assertion(
            &mut d.seen_jti,
            &app,
            assertion,
            &expected_aud_suffix,
            host,
            now,
        ) {
            Err((code, msg)) => {
                return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", code, &msg)
            }
            Ok(k) => key_id = k,
        }
        acr = "2";
    } else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }

    let lifetime = d
        .token_lifetime
        .unwrap_or_else(|| Duration::from_secs(rand::random::<u64>() % 1801 + 3600));
    let roles = if is_exchange {
        app.exchange_roles.clone()
    } else {
        app.graph_roles.clone()
    };
    let claims = IssuedClaims {
        aud: resource.to_string(),
        iss: format!("https://sts.windows.net/{tenant_id}/"),
        tid: tenant_id,
        appid: app.client_id.clone(),
        oid: app.object_id.clone(),
        roles,
        appidacr: acr.into(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: now.timestamp() + lifetime.as_secs() as i64,
    };
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&state.signing_key),
    )
    .expect("sign token");
    if d.record {
        d.issued_tokens.push(token.clone());
    }
    d.sign_ins.insert(key_id, now);
    drop(d);
    json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": token,
        }),
    )
}

fn unknown_app(client_id: &str) -> SimResponse {
    aad_error(
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700016,
        &format!("Application with identifier '{client_id}' was not found in the directory. This can happen if the application has not been installed by the administrator of the tenant."),
    )
}

fn unknown_tenant(tenant: &str) -> SimResponse {
    aad_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
    )
}

#[derive(Deserialize)]
struct AssertionClaims {
    aud: String,
    iss: String,
    sub: String,
    jti: String,
    exp: i64,
    nbf: i64,
}

/// Verifies a client assertion as Entra ID does (RFC 7523 section 3).
fn check_assertion(
    seen_jti: &mut std::collections::HashSet<String>,
    app: &super::SimApp,
    assertion: &str,
    token_path: &str,
    host: &str,
    now: DateTime<Utc>,
) -> Result<String, (u32, String)> {
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| (700027, "Client assertion is not a valid JWT.".to_string()))?;
    if !matches!(
        header.alg,
        jsonwebtoken::Algorithm::PS256 | jsonwebtoken::Algorithm::RS256
    ) {
        return Err((
            700027,
            "Client assertion must be signed with PS256 or RS256.".into(),
        ));
    }
    let x5t = header.x5t_s256.ok_or((
        700027,
        "Client assertion has no x5t#S256 header.".to_string(),
    ))?;
    let cert = app
        .certificates
        .iter()
        .find(|c| URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&c.der)) == x5t)
        .ok_or((
            700027,
            format!(
                "Client assertion failed signature validation. The key was not found for app '{}'.",
                app.client_id
            ),
        ))?;
    if cert.end <= now {
        return Err((
            700027,
            "The certificate used to sign the client assertion is expired.".into(),
        ));
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert.der)
        .map_err(|_| (700027, "bad stored certificate".to_string()))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_der(&parsed.public_key().subject_public_key.data);
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_aud = false;
    // The time window on the simulator's clock, below, not the host's.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &v).map_err(|_| {
        (
            700027,
            "Client assertion failed signature validation.".to_string(),
        )
    })?;
    let c = data.claims;
    let leeway = 60;
    if c.exp + leeway <= now.timestamp() || c.nbf - leeway > now.timestamp() {
        return Err((
            700024,
            "Client assertion is not within its valid time range.".to_string(),
        ));
    }
    let aud_ok = c.aud.ends_with(token_path) && (host.is_empty() || c.aud.contains(host));
    if !aud_ok {
        return Err((
            700027,
            format!(
                "Client assertion audience {:?} is not this token endpoint.",
                c.aud
            ),
        ));
    }
    if c.iss != app.client_id || c.sub != app.client_id {
        return Err((
            700027,
            "Client assertion iss and sub must be the client ID.".into(),
        ));
    }
    if c.exp - c.nbf > 600 + 60 {
        return Err((
            700024,
            "Client assertion lifetime is longer than 10 minutes.".into(),
        ));
    }
    if !seen_jti.insert(c.jti) {
        return Err((700027, "Client assertion jti was already used.".into()));
    }
    Ok(cert.key_id.clone())
}
