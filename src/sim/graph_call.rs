//! What the simulated Graph routes about mail and service health share: the request ids, the
//! caller's scripted [`GraphFault`] (keyed by the client ID of the app calling, read from the
//! bearer token), the bearer token's checks, and the little OData the simulator understands.

use hyper::{HeaderMap, StatusCode};

use super::reply::{
    graph_error, respond, unauthenticated, with_ids, with_retry_after, HttpsState, Ids, SimResponse,
};
use super::token::{verify, IssuedClaims, GRAPH_RESOURCES};
use super::{Directory, GraphFault};

/// A request past its fault and its token's checks.
pub(super) struct Call {
    pub ids: Ids,
    pub claims: IssuedClaims,
}

/// How a route answers the scripted [`GraphFault::Forbidden`] and [`GraphFault::NotFound`], and
/// the start of its JSON that [`GraphFault::MalformedJson`] cuts short.
pub(super) struct FaultReplies<'a> {
    pub forbidden: &'a (dyn Fn(&Ids) -> SimResponse + Sync),
    pub not_found: &'a (dyn Fn(&Ids) -> SimResponse + Sync),
    pub malformed: &'static str,
}

/// The reply of a scripted Graph fault, instead of the route's; `None` to go on (after the
/// wait of [`GraphFault::Slow`]). Every Graph route of the simulator answers its faults so.
pub(super) async fn fault_reply(
    fault: Option<GraphFault>,
    ids: &Ids,
    authorization: Option<&str>,
    replies: &FaultReplies<'_>,
) -> Option<SimResponse> {
    let throttled = |status, code, message, retry_after_seconds| {
        with_retry_after(graph_error(status, code, message, ids), retry_after_seconds)
    };
    match fault? {
        GraphFault::Forbidden => Some((replies.forbidden)(ids)),
        GraphFault::NotFound => Some((replies.not_found)(ids)),
        GraphFault::TooManyRequests {
            retry_after_seconds,
        } => Some(throttled(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests.",
            retry_after_seconds,
        )),
        GraphFault::Unavailable {
            retry_after_seconds,
        } => Some(throttled(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable.",
            retry_after_seconds,
        )),
        GraphFault::ServerError => Some(graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generalException",
            "An unexpected error occurred.",
            ids,
        )),
        GraphFault::MalformedJson => Some(with_ids(
            respond(StatusCode::OK, "application/json", replies.malformed),
            ids,
        )),
        GraphFault::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        GraphFault::EchoToken => Some(unauthenticated(
            &format!(
                "Access token validation failure: {:?} is not valid.",
                authorization.unwrap_or_default()
            ),
            ids,
        )),
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Request ids, `count` (under the lock, with the caller's client ID, `""` when the token names
/// none), the caller's scripted fault, then the bearer token: one this simulator issued,
/// unexpired on Microsoft's clock, for Graph. The route checks the roles.
pub(super) async fn begin(
    state: &HttpsState,
    headers: &HeaderMap,
    replies: FaultReplies<'_>,
    count: impl FnOnce(&mut Directory, &str),
) -> Result<Call, SimResponse> {
    let ids = Ids {
        request_id: uuid::Uuid::new_v4().to_string(),
        client_request_id: header(headers, "client-request-id")
            .filter(|v| v.len() <= 64)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
    };
    let authorization = header(headers, "authorization");
    let token = authorization
        .as_deref()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    // Who is calling, from the token's signed claims whatever its expiry (the epoch as "now").
    let caller = verify(&state.signing_key, &token, chrono::DateTime::UNIX_EPOCH)
        .map(|c| c.appid)
        .unwrap_or_default();
    let (fault, now) = {
        let mut d = state.directory.lock().expect("sim lock");
        count(&mut d, &caller);
        (d.graph_faults.get(&caller).cloned(), d.now())
    };
    if let Some(r) = fault_reply(fault, &ids, authorization.as_deref(), &replies).await {
        return Err(r);
    }
    if token.is_empty() {
        return Err(unauthenticated("Access token is empty.", &ids));
    }
    let claims = match verify(&state.signing_key, &token, now) {
        Ok(c) => c,
        Err(m) => {
            return Err(unauthenticated(
                &format!("Access token validation failure: {m}."),
                &ids,
            ))
        }
    };
    if !GRAPH_RESOURCES.contains(&claims.aud.as_str()) {
        return Err(unauthenticated(
            "Access token validation failure. Invalid audience.",
            &ids,
        ));
    }
    Ok(Call { ids, claims })
}

impl Call {
    pub fn has_role(&self, roles: &[&str]) -> bool {
        self.claims
            .roles
            .iter()
            .any(|r| roles.contains(&r.as_str()))
    }
}

/// A literal of an OData `$filter` comparison.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    Str(String),
    Bool(bool),
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
}

fn tokens(filter: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = filter.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next()? {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        s.push('\'');
                    }
                    '\'' => break,
                    other => s.push(other),
                }
            }
            out.push(Tok::Str(s));
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '\'' {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push(Tok::Word(w));
        }
    }
    Some(out)
}

/// `prop eq literal [and prop eq literal]...` (strings in single quotes, a quote doubled inside;
/// `true`/`false`) → the comparisons; `None` for anything else (functions, parentheses, other
/// operators, a string left open).
pub(super) fn eq_clauses(filter: &str) -> Option<Vec<(String, Literal)>> {
    let toks = tokens(filter)?;
    let mut out = Vec::new();
    let mut it = toks.into_iter();
    loop {
        let Some(Tok::Word(prop)) = it.next() else {
            return None;
        };
        if prop.is_empty() || !prop.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        match it.next() {
            Some(Tok::Word(op)) if op.eq_ignore_ascii_case("eq") => {}
            _ => return None,
        }
        let lit = match it.next()? {
            Tok::Str(s) => Literal::Str(s),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Tok::Word(_) => return None,
        };
        out.push((prop, lit));
        match it.next() {
            None => return Some(out),
            Some(Tok::Word(and)) if and.eq_ignore_ascii_case("and") => {}
            Some(_) => return None,
        }
    }
}

/// `prop op literal [and prop op literal]...` with `op` one of `eq`, `ge`, `le`, `gt`, `lt`
/// (in any case) and a literal in single quotes or bare (a date) → (prop, op in lower case,
/// literal text); `None` for anything else.
pub(super) fn comparisons(filter: &str) -> Option<Vec<(String, String, String)>> {
    let toks = tokens(filter)?;
    let mut out = Vec::new();
    let mut it = toks.into_iter();
    loop {
        let Some(Tok::Word(prop)) = it.next() else {
            return None;
        };
        if prop.is_empty() || !prop.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        let op = match it.next()? {
            Tok::Word(op) => op.to_ascii_lowercase(),
            Tok::Str(_) => return None,
        };
        if !matches!(op.as_str(), "eq" | "ge" | "le" | "gt" | "lt") {
            return None;
        }
        let lit = match it.next()? {
            Tok::Str(s) | Tok::Word(s) => s,
        };
        out.push((prop, op, lit));
        match it.next() {
            None => return Some(out),
            Some(Tok::Word(and)) if and.eq_ignore_ascii_case("and") => {}
            Some(_) => return None,
        }
    }
}

/// Percent-decodes a path segment; `None` when it is not valid percent-encoded UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The query's parameters, decoded (`%24filter` is `$filter`, `+` a space).
pub(super) fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// `$top` when given: 1 to 1000, as Graph takes it for messages; `Err` for anything else.
pub(super) fn top(params: &[(String, String)]) -> Result<Option<usize>, String> {
    match params.iter().find(|(k, _)| k == "$top") {
        None => Ok(None),
        Some((_, v)) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(Some(n)),
            _ => Err(format!("Invalid value '{v}' for query option $top.")),
        },
    }
}

/// The `$select` list when given.
pub(super) fn select(params: &[(String, String)]) -> Option<Vec<String>> {
    params
        .iter()
        .find(|(k, _)| k == "$select")
        .map(|(_, v)| v.split(',').map(|s| s.trim().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_eq_comparisons_joined_by_and() {
        assert_eq!(
            eq_clauses("internetMessageId eq '<a''b@c>'"),
            Some(vec![(
                "internetMessageId".into(),
                Literal::Str("<a'b@c>".into())
            )])
        );
        assert_eq!(
            eq_clauses("isResolved eq false and service   EQ 'Exchange Online'"),
            Some(vec![
                ("isResolved".into(), Literal::Bool(false)),
                ("service".into(), Literal::Str("Exchange Online".into())),
            ])
        );
        for bad in [
            "",
            "internetMessageId eq '<open",
            "internetMessageId ne 'x'",
            "startswith(subject,'x')",
            "(isResolved eq false)",
            "isResolved eq false or isResolved eq true",
            "isResolved eq 1",
            "a eq 'x' and",
        ] {
            assert_eq!(eq_clauses(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_decodes_path_segments() {
        assert_eq!(percent_decode("a%40b.c%3D").as_deref(), Some("a@b.c="));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn top_is_one_to_a_thousand() {
        let p = |v: &str| vec![("$top".to_string(), v.to_string())];
        assert_eq!(top(&p("5")), Ok(Some(5)));
        assert!(top(&p("0")).is_err());
        assert!(top(&p("1001")).is_err());
        assert_eq!(top(&[]), Ok(None));
    }
}
