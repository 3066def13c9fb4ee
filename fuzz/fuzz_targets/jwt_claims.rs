//! The access-token claim decoder (`auth::claims::decode`): diagnosis only, so it must never
//! panic whatever the token endpoint (or something in its place) hands back.
//!
//! Input: byte 0 picks the mode. Even: the rest is the token as received (any text). Odd: the
//! rest is the payload JSON, wrapped into `header.payload.signature` with base64url, so the
//! fuzzer reaches the claims' JSON directly. Whatever decodes must decode the same once encoded
//! again.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use smtp_oauth_exporter::auth::claims::{self, TokenClaims};

/// `{"typ":"JWT","alg":"RS256","x5t":"fuzz","kid":"fuzz"}`
const HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6ImZ1enoiLCJraWQiOiJmdXp6In0";

fn jwt(payload: &[u8]) -> String {
    format!("{HEADER}.{}.c2lnbmF0dXJl", URL_SAFE_NO_PAD.encode(payload))
}

fn use_claims(c: &TokenClaims) {
    let _ = c.has_role("SMTP.SendAsApp");
    let _ = c.credential_kind();
    let _ = c.client_id();
    let again = claims::decode(&jwt(&serde_json::to_vec(c).expect("claims serialise")));
    assert_eq!(
        again.as_ref(),
        Some(c),
        "claims do not survive a round trip"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        jwt(rest)
    };
    if let Some(c) = claims::decode(&token) {
        use_claims(&c);
    }
});
