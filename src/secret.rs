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
/// that might echo what we sent) with `[redacted]`, raw and form-encoded alike.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        for needle in [s.to_string(), encoded] {
            out = out.replace(&needle, "[redacted]");
        }
    }
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
    fn redacts_raw_and_form_encoded() {
        let echoed = "client_secret=Abc%7Every-secret+value&x=1 and Abc~very-secret value";
        let r = redact(echoed, &["Abc~very-secret value", ""]);
        assert_eq!(r, "client_secret=[redacted]&x=1 and [redacted]");
    }
}
