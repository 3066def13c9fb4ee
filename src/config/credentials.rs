//! Loading what the configuration points at: client secrets, certificate credentials (the key
//! parsed once, here), and CA files with the network clients built on them.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::Digest;

use crate::plan::{AssertionAlgorithm, CertificateCredential, Credential, NetClients, SigningKey};
use crate::secret::Secret;

/// A client secret value: trimmed, never empty. The buffer it came in (a file's content, an
/// environment variable) is zeroed once copied.
pub fn secret(mut value: String) -> Result<Credential, String> {
    let s = Secret::new(value.trim());
    zeroize::Zeroize::zeroize(&mut value);
    if s.is_empty() {
        return Err("the client secret is empty".into());
    }
    Ok(Credential::ClientSecret(s))
}

/// Why a certificate credential cannot be used, and which of its two files is at fault.
pub enum CertificateError {
    Cert(String),
    Key(String),
}

/// Reads a certificate and its RSA private key, checks that they belong together and parses
/// the key once into the signing key every assertion uses.
pub fn certificate(
    cert_path: &Path,
    key_path: &Path,
    algorithm: AssertionAlgorithm,
) -> Result<CertificateCredential, CertificateError> {
    use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::DecodePrivateKey;

    let pem = crate::input::read_capped(cert_path, crate::input::MAX_FILE_BYTES)
        .map_err(|e| CertificateError::Cert(format!("cannot read {}: {e}", cert_path.display())))?;
    let cert_der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(|r| r.ok())
        .ok_or_else(|| {
            CertificateError::Cert(format!("{} holds no PEM certificate", cert_path.display()))
        })?
        .to_vec();
    let key_pem = Secret::new(
        crate::input::read_to_string_capped(key_path, crate::input::MAX_FILE_BYTES).map_err(
            |e| CertificateError::Key(format!("cannot read {}: {e}", key_path.display())),
        )?,
    );
    let not_a_key = || {
        CertificateError::Key(format!(
            "{} holds no RSA private key in PEM (PKCS#1 or PKCS#8)",
            key_path.display()
        ))
    };
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem.expose())
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(key_pem.expose()))
        .map_err(|_| not_a_key())?;
    // A key that does not belong to the certificate would fail every run with AADSTS700027.
    let public = key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(|_| not_a_key())?;
    let matches = x509_parser::parse_x509_certificate(&cert_der)
        .map(|(_, c)| c.public_key().subject_public_key.data.as_ref() == public.as_bytes())
        .unwrap_or(false);
    if !matches {
        return Err(CertificateError::Key(format!(
            "the private key in {} does not belong to the certificate in {}",
            key_path.display(),
            cert_path.display()
        )));
    }
    let der = key.to_pkcs1_der().map_err(|_| not_a_key())?;
    Ok(CertificateCredential {
        thumbprint_sha1: sha1::Sha1::digest(&cert_der).into(),
        thumbprint_sha256: sha2::Sha256::digest(&cert_der).into(),
        cert_der,
        key: SigningKey(jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes())),
        algorithm,
    })
}

/// The network clients for apps with this CA file (or none): one TLS configuration with the
/// system roots plus the file's certificates, and an HTTP client on it.
pub fn net_clients(ca_file: Option<&Path>) -> Result<Arc<NetClients>, String> {
    let mut ca_digest = [0u8; 32];
    let extra = match ca_file {
        None => Vec::new(),
        Some(path) => {
            let pem = crate::input::read_capped(path, crate::input::MAX_FILE_BYTES)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            ca_digest = sha2::Sha256::digest(&pem).into();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
            if certs.is_empty() {
                return Err(format!("{} holds no PEM certificate", path.display()));
            }
            certs
        }
    };
    let tls = crate::tls::client_config(extra).map_err(|e| match ca_file {
        Some(p) => format!("{}: {e}", p.display()),
        None => e,
    })?;
    let http = crate::http_client::client(&tls)?;
    Ok(Arc::new(NetClients {
        http,
        smtp_tls: tls,
        ca_digest,
    }))
}
