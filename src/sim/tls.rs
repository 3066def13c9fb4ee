//! Certificates for the simulator, made at start: a CA the agent trusts through `ca_file`, server
//! certificates signed by it, and RSA certificates for apps' certificate credentials.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA that signs the simulator's server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid between the two dates.
    pub fn server_cert(
        &self,
        hosts: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> ServerCert {
        let key = KeyPair::generate().expect("generate server key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("server params");
        for h in hosts {
            match h.parse::<IpAddr>() {
                Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
                Err(_) => params
                    .subject_alt_names
                    .push(SanType::DnsName((*h).try_into().expect("DNS name"))),
            }
        }
        params.distinguished_name.push(
            DnType::CommonName,
            hosts.first().copied().unwrap_or("localhost"),
        );
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign server cert");
        ServerCert {
            chain: vec![cert.der().clone(), self.cert.der().clone()],
            key_der: key.serialize_der(),
        }
    }

    /// A certificate for localhost and 127.0.0.1, valid from yesterday for a year.
    pub fn loopback_cert(&self) -> ServerCert {
        let now = time::OffsetDateTime::now_utc();
        self.server_cert(
            &["localhost", &IpAddr::V4(Ipv4Addr::LOCALHOST).to_string()],
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    }

    /// The certificate a loopback server presents: [`TestCa::loopback_cert`], or one with the
    /// given problem.
    pub fn cert_with(&self, fault: Option<CertFault>) -> ServerCert {
        let now = time::OffsetDateTime::now_utc();
        match fault {
            None => self.loopback_cert(),
            Some(CertFault::Expired) => self.server_cert(
                &["localhost", "127.0.0.1"],
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            ),
            Some(CertFault::WrongHost) => self.server_cert(
                &["mail.example.net"],
                now - time::Duration::days(1),
                now + time::Duration::days(30),
            ),
            // What a TLS-inspecting proxy presents: a certificate for the right host, issued by
            // a CA the agent does not trust.
            Some(CertFault::Untrusted) => TestCa::new("Contoso TLS Inspection CA").loopback_cert(),
            Some(CertFault::SelfSigned) => self_signed_loopback_cert(),
        }
    }
}

/// What is wrong with the certificate a simulated server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFault {
    /// Signed by the simulator's CA, for the right host, but expired yesterday.
    Expired,
    /// Signed by the simulator's CA, valid, but for another host name.
    WrongHost,
    /// For the right host, issued by a CA the agent does not trust (TLS inspection).
    Untrusted,
    /// For the right host, signed by its own key (no CA at all).
    SelfSigned,
}

/// A self-signed certificate for localhost and 127.0.0.1 (no CA at all), valid from yesterday
/// for a year: what a device that answers in a server's place without a CA often presents.
pub fn self_signed_loopback_cert() -> ServerCert {
    let key = KeyPair::generate().expect("generate server key");
    let mut params =
        CertificateParams::new(vec!["localhost".to_string()]).expect("self-signed params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).expect("self-sign server cert");
    ServerCert {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

/// A server certificate chain and its key.
#[derive(Clone)]
pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl ServerCert {
    /// The chain as PEM (leaf first), for servers outside this process.
    pub fn chain_pem(&self) -> String {
        self.chain
            .iter()
            .map(|c| pem("CERTIFICATE", c.as_ref()))
            .collect()
    }

    /// The private key as PKCS#8 PEM, for servers outside this process.
    pub fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key_der)
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .expect("server config");
        Arc::new(cfg)
    }
}

/// An RSA key and a self-signed certificate, as an admin uploads to an app registration.
pub struct AppCertificate {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM.
    pub key_pem: String,
}

/// Makes an RSA-2048 certificate credential (Entra ID takes RSA keys for client assertions).
pub fn app_certificate(common_name: &str) -> AppCertificate {
    use rsa::pkcs8::EncodePrivateKey;
    let mut rng = rand::thread_rng();
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).expect("generate RSA key");
    let key_pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("PKCS#8 PEM")
        .to_string();
    let kp = KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
        .expect("load RSA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&kp).expect("self-sign app cert");
    AppCertificate {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem,
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
