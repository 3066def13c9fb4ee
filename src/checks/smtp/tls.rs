//! What the SMTP check's TLS handshake established: negotiated version and the certificate
//! chain the server presented (for expiry and chain metrics).

use chrono::{DateTime, Utc};
use sha2::Digest;

/// One certificate of the chain the server presented.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_after: DateTime<Utc>,
    pub fingerprint_sha256: String,
}

/// What the TLS handshake established.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFacts {
    /// `TLS 1.2` or `TLS 1.3`.
    pub version: String,
    /// Leaf first, as sent by the server.
    pub chain: Vec<CertFacts>,
}

impl TlsFacts {
    /// The earliest `notAfter` of the presented chain.
    pub fn earliest_expiry(&self) -> Option<DateTime<Utc>> {
        self.chain.iter().map(|c| c.not_after).min()
    }
}

fn label_text(s: String) -> String {
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

/// Reads the facts off an established connection.
pub fn facts(conn: &rustls::ClientConnection) -> TlsFacts {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_string(),
    };
    let chain = conn
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .filter_map(|der| {
            let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
            Some(CertFacts {
                subject: label_text(c.subject().to_string()),
                issuer: label_text(c.issuer().to_string()),
                serial: c.raw_serial_as_string().replace(':', ""),
                not_after: DateTime::from_timestamp(c.validity().not_after.timestamp(), 0)?,
                fingerprint_sha256: hex(&sha2::Sha256::digest(der.as_ref())),
            })
        })
        .collect();
    TlsFacts { version, chain }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
