//! Network failures in the words every check shares (DNS, refused connection, timeout, TLS), read
//! off the errors of tokio, rustls and reqwest, so that the token, SMTP and Graph checks report a
//! broken network the same way. A TLS certificate problem says which one: an untrusted issuer is
//! what a TLS-inspecting proxy looks like. A failure of the agent's own host (no file descriptor
//! left, no buffer space) is told apart from all of them: it is never the network's fault.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::reasons::CommonReason;

/// What is wrong with a server certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertProblem {
    /// Not issued by a trusted CA: a TLS-inspecting proxy, or a missing `ca_file`.
    Untrusted,
    /// Expired (or not valid yet).
    Expired,
    /// For another host name.
    WrongHost,
    /// Any other certificate error (bad signature, revoked, unsupported algorithm).
    Other,
}

impl CertProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            CertProblem::Untrusted => "untrusted",
            CertProblem::Expired => "expired",
            CertProblem::WrongHost => "wrong_host",
            CertProblem::Other => "other",
        }
    }
}

/// A network failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetFailure {
    Dns,
    ConnectRefused,
    Timeout,
    TlsHandshake,
    TlsCert(CertProblem),
    /// The agent's host refused a socket or a buffer (EMFILE, ENFILE, ENOBUFS, ENOMEM).
    LocalResources,
}

impl NetFailure {
    /// The reason every check kind exports for it.
    pub fn reason(self) -> CommonReason {
        match self {
            NetFailure::Dns => CommonReason::Dns,
            NetFailure::ConnectRefused => CommonReason::ConnectRefused,
            NetFailure::Timeout => CommonReason::Timeout,
            NetFailure::TlsHandshake => CommonReason::TlsHandshake,
            NetFailure::TlsCert(_) => CommonReason::TlsCertInvalid,
            NetFailure::LocalResources => CommonReason::LocalResources,
        }
    }

    pub fn cert_problem(self) -> Option<CertProblem> {
        match self {
            NetFailure::TlsCert(p) => Some(p),
            _ => None,
        }
    }
}

/// A rustls error: certificate problems apart from other handshake failures.
pub fn from_rustls(e: &rustls::Error) -> NetFailure {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => NetFailure::TlsCert(match c {
            C::UnknownIssuer => CertProblem::Untrusted,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => CertProblem::Expired,
            C::NotValidForName | C::NotValidForNameContext { .. } => CertProblem::WrongHost,
            _ => CertProblem::Other,
        }),
        _ => NetFailure::TlsHandshake,
    }
}

/// The failure behind an error and its chain of sources, if it is a network one.
pub fn classify(e: &(dyn Error + 'static)) -> Option<NetFailure> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    let mut found = None;
    while let Some(err) = cur {
        if err.downcast_ref::<DnsError>().is_some() {
            return Some(NetFailure::Dns);
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(from_rustls(r));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // An io::Error's source() skips the error it wraps (tokio-rustls wraps the rustls
            // error, hyper-util wraps that again): look inside each layer.
            let mut inner = io;
            loop {
                if local_resources(inner) {
                    return Some(NetFailure::LocalResources);
                }
                if let Some(f) = from_io_kind(inner.kind()) {
                    found.get_or_insert(f);
                }
                match inner.get_ref() {
                    Some(i) if i.is::<rustls::Error>() => {
                        return i.downcast_ref::<rustls::Error>().map(from_rustls);
                    }
                    Some(i) if i.is::<DnsError>() => return Some(NetFailure::Dns),
                    Some(i) => match i.downcast_ref::<std::io::Error>() {
                        Some(next) => inner = next,
                        None => break,
                    },
                    None => break,
                }
            }
        }
        cur = err.source();
    }
    found
}

/// Whether an I/O error is the agent's host running out of something: file descriptors (of the
/// process, EMFILE, or of the system, ENFILE), socket buffers (ENOBUFS) or memory. Such an error
/// says nothing about the network or the tenant (the connect never left the host).
pub fn local_resources(e: &std::io::Error) -> bool {
    if e.kind() == std::io::ErrorKind::OutOfMemory {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn from_io_kind(kind: std::io::ErrorKind) -> Option<NetFailure> {
    use std::io::ErrorKind as K;
    match kind {
        // A reset or abort happens after the connection was made (a device in the path cutting
        // a TLS handshake, say): not a refusal, so it is left to the caller's own reason.
        K::ConnectionRefused | K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
            Some(NetFailure::ConnectRefused)
        }
        K::TimedOut => Some(NetFailure::Timeout),
        _ => None,
    }
}

/// A name that did not resolve (the error our resolver gives reqwest, so that it can be told
/// apart from other connection failures).
#[derive(Debug)]
pub struct DnsError(pub String);

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DNS: {}", self.0)
    }
}

impl Error for DnsError {}

/// The resolver of the agent's HTTP clients: the system's (through tokio), with a typed error.
#[derive(Debug, Default)]
pub struct Resolver;

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => {
                    let v: Vec<SocketAddr> = addrs.collect();
                    if v.is_empty() {
                        Err(Box::new(DnsError(format!("{host} has no address")))
                            as Box<dyn Error + Send + Sync>)
                    } else {
                        Ok(Box::new(v.into_iter()) as reqwest::dns::Addrs)
                    }
                }
                // No descriptor for the lookup's socket: the host's fault, not DNS's.
                Err(e) if local_resources(&e) => Err(Box::new(e) as Box<dyn Error + Send + Sync>),
                Err(e) => Err(Box::new(DnsError(format!("cannot resolve {host}: {e}")))
                    as Box<dyn Error + Send + Sync>),
            }
        })
    }
}

/// The shared resolver instance.
pub fn resolver() -> Arc<Resolver> {
    Arc::new(Resolver)
}
