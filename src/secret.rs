//! Redacting newtypes for client secrets, private keys and access tokens.
//! They print as `[redacted]` in `Debug` and `Display`, so a stray `{:?}` cannot leak them.

use std::fmt;

/// A string that must never be printed: a client secret, a PEM private key or an access token.
///
/// The only way to read it is [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that must send it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first three characters, as Microsoft Graph shows them in `passwordCredentials[].hint`.
    pub fn hint(&self) -> String {
        self.0.chars().take(3).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Read from configuration (an inline `client_secret`) without ever holding it as a plain String.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The value is overwritten with zeros when the secret is dropped (each clone its own copy).
impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Replaces every occurrence of the given secrets in a text from outside (a server's reply
/// that might echo what we sent) with `[redacted]`: raw, form-encoded, and base64 in both
/// alphabets (standard and URL-safe, with or without padding), also where the secret was
/// encoded inside a longer text (`Basic base64(user:secret)`).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    // Longest first: a secret sent inside another (a token inside the XOAUTH2 response) must not
    // break the outer one's match before it is made.
    let mut needles: Vec<String> = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .flat_map(|s| forms(s))
        .collect();
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = text.to_string();
    for needle in needles {
        out = out.replace(&needle, "[redacted]");
    }
    out
}

/// A secret's base64 inside a longer base64 text is this long at least to be searched for:
/// shorter runs would match ordinary text.
const MIN_BASE64_CORE: usize = 8;

/// The forms a secret can come back in, longest first within each kind.
fn forms(s: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let bytes = s.as_bytes();
    let mut out = vec![
        s.to_string(),
        url::form_urlencoded::byte_serialize(bytes).collect(),
    ];
    for engine in [&STANDARD, &URL_SAFE] {
        out.push(engine.encode(bytes));
    }
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
        // Inside a longer text the secret starts at one of three offsets within a base64
        // group: the characters made of its bits alone are the same whatever surrounds it.
        for offset in 0..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            let first = (8 * offset).div_ceil(6);
            let last = 8 * (offset + bytes.len()) / 6;
            if last >= first + MIN_BASE64_CORE {
                out.push(encoded[first..last].to_string());
            }
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("Abc~very-secret-value");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.hint(), "Abc");
        assert_eq!(s.expose(), "Abc~very-secret-value");
    }

    #[test]
    fn redacts_base64_alone_and_inside_longer_base64() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        use base64::Engine;
        let secret = "Abc~very-secret value?>";
        for echoed in [
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            STANDARD.encode(format!("user:{secret}")),
            STANDARD.encode(format!("us:{secret}!")),
            URL_SAFE_NO_PAD.encode(format!("u:{secret}")),
        ] {
            let r = redact(&format!("got {echoed} back"), &[secret]);
            assert!(r.contains("[redacted]"), "{echoed}: {r}");
            // At most the characters next to the secret's own bits remain around it.
            let left = r.replace("[redacted]", "");
            assert!(left.len() <= "got  back".len() + 12, "{echoed}: {r}");
        }
    }

    #[test]
    fn redacts_raw_and_form_encoded() {
        let echoed = "client_secret=Abc%7Every-secret+value&x=1 and Abc~very-secret value";
        let r = redact(echoed, &["Abc~very-secret value", ""]);
        assert_eq!(r, "client_secret=[redacted]&x=1 and [redacted]");
    }
}
