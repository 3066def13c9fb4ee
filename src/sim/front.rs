//! A fault front: a loopback port in front of one of the simulator's servers that misbehaves as
//! scripted (refuses, accepts and says nothing, drips, resets, speaks no TLS, presents a bad
//! certificate, or answers HTTP with a scripted reply: errors, redirects, truncated, huge or
//! dripping bodies) and, once the fault is cleared, passes every connection through to the
//! server unchanged, so that a test can show a check failing and then recovering on the same
//! configuration.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use super::tls::{CertFault, TestCa};

/// How a front misbehaves.
#[derive(Debug, Clone, PartialEq)]
pub enum NetFault {
    /// Nothing listens: the port is bound but not listening, so connections are refused. Only
    /// as the first fault of a front: any change starts listening, for good.
    Refuse,
    /// Accepts, reads and discards, never answers (a firewall that drops, a hung server).
    Silence,
    /// Accepts, then resets the connection (TCP RST) at once.
    Reset,
    /// Writes these bytes one at a time, `every` apart (in plain TCP: an SMTP banner, say).
    Drip { bytes: Vec<u8>, every: Duration },
    /// Answers the client's first bytes (its TLS hello) with this plain text, then closes.
    NotTls(String),
    /// Completes no TLS handshake: presents a certificate with this problem.
    Certificate(CertFault),
    /// TLS with the simulator's good certificate, reads the request, then sends this reply.
    Http(HttpReply),
    /// TLS with the good certificate, reads the request, then resets the connection.
    ResetAfterRequest,
}

/// A scripted HTTP/1.1 reply (always with `Connection: close`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: HttpBody,
}

impl HttpReply {
    /// A complete reply with this content type and body.
    pub fn new(status: u16, content_type: &str, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: HttpBody::Full(body.as_bytes().to_vec()),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// How the body of an [`HttpReply`] goes out.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    /// All of it, with its `Content-Length`.
    Full(Vec<u8>),
    /// A `Content-Length` of `declared`, only `sent` of it, then the connection closes.
    Truncated { declared: usize, sent: Vec<u8> },
    /// `len` bytes that start like a JSON object, chunked (no `Content-Length`) or with their
    /// length declared up front. The front counts what it managed to write.
    Huge { len: u64, declare_length: bool },
    /// The whole reply, status line first, one byte at a time, `every` apart.
    Drip { body: Vec<u8>, every: Duration },
}

struct Inner {
    mode: Mutex<Mode>,
    /// The bound socket while the front refuses (not listening yet).
    pending: Mutex<Option<TcpSocket>>,
    upstream: SocketAddr,
    ca: Arc<TestCa>,
    stop: CancellationToken,
    connections: AtomicU64,
    written: AtomicU64,
    requests: Mutex<Vec<String>>,
}

struct Mode {
    fault: Option<NetFault>,
    /// The TLS configuration the fault presents (the good certificate, or a bad one).
    tls: Arc<rustls::ServerConfig>,
}

/// A running front; clones share it. It stops with the simulator.
#[derive(Clone)]
pub struct Front {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Front {
    pub(super) fn start(
        upstream: SocketAddr,
        fault: Option<NetFault>,
        ca: Arc<TestCa>,
        stop: CancellationToken,
    ) -> std::io::Result<Front> {
        let socket = TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse().expect("loopback address"))?;
        let addr = socket.local_addr()?;
        let front = Front {
            addr,
            inner: Arc::new(Inner {
                mode: Mutex::new(Mode {
                    fault: None,
                    tls: ca.loopback_cert().server_config(),
                }),
                pending: Mutex::new(Some(socket)),
                upstream,
                ca,
                stop,
                connections: AtomicU64::new(0),
                written: AtomicU64::new(0),
                requests: Mutex::new(Vec::new()),
            }),
        };
        front.set_fault(fault)?;
        Ok(front)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Scripts (or with `None` clears) the fault for the connections to come.
    pub fn set_fault(&self, fault: Option<NetFault>) -> std::io::Result<()> {
        let refuse = fault == Some(NetFault::Refuse);
        let tls = match &fault {
            Some(NetFault::Certificate(c)) => self.inner.ca.cert_with(Some(*c)).server_config(),
            _ => self.inner.ca.loopback_cert().server_config(),
        };
        *self.inner.mode.lock().expect("sim lock") = Mode { fault, tls };
        let pending = self.inner.pending.lock().expect("sim lock").take();
        match pending {
            Some(socket) if refuse => {
                *self.inner.pending.lock().expect("sim lock") = Some(socket);
            }
            Some(socket) => {
                let listener = socket.listen(1024)?;
                let inner = self.inner.clone();
                super::serve_listener(listener, self.inner.stop.clone(), move |stream, _| {
                    serve(inner.clone(), stream)
                })?;
            }
            None if refuse => {
                return Err(std::io::Error::other(
                    "a front that listens cannot refuse again",
                ))
            }
            None => {}
        }
        Ok(())
    }

    /// Connections accepted so far (a refusing front accepts none).
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Bytes of scripted replies written so far (drips and huge bodies count as they go out).
    pub fn bytes_written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    /// The request line of every HTTP request read under an `Http` or `ResetAfterRequest`
    /// fault, in order.
    pub fn requests(&self) -> Vec<String> {
        self.inner.requests.lock().expect("sim lock").clone()
    }
}

fn reset(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

async fn serve(inner: Arc<Inner>, mut tcp: TcpStream) {
    inner.connections.fetch_add(1, Ordering::Relaxed);
    let _ = tcp.set_nodelay(true);
    let (fault, tls) = {
        let m = inner.mode.lock().expect("sim lock");
        (m.fault.clone(), m.tls.clone())
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match fault {
        None => {
            if let Ok(mut up) = TcpStream::connect(inner.upstream).await {
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
            }
        }
        Some(NetFault::Refuse | NetFault::Reset) => reset(tcp),
        Some(NetFault::Silence) => {
            let mut sink = [0u8; 4096];
            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Some(NetFault::Drip { bytes, every }) => {
            let _ = drip(&inner, &mut tcp, &bytes, every).await;
        }
        Some(NetFault::NotTls(text)) => {
            let mut hello = [0u8; 512];
            let _ = tcp.read(&mut hello).await;
            let _ = tcp.write_all(text.as_bytes()).await;
            let _ = tcp.shutdown().await;
        }
        Some(NetFault::Certificate(_)) => {
            // The client gives up on the certificate; nothing follows.
            let _ = acceptor.accept(tcp).await;
        }
        Some(NetFault::Http(reply)) => {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            if read_request(&inner, &mut s).await.is_some() {
                let _ = write_reply(&inner, &mut s, &reply).await;
            }
            let _ = s.shutdown().await;
        }
        Some(NetFault::ResetAfterRequest) => {
            let Ok(mut s) = acceptor.accept(tcp).await else {
                return;
            };
            if read_request(&inner, &mut s).await.is_some() {
                reset(s.into_inner().0);
            }
        }
    }
}

async fn drip<S: AsyncWrite + Unpin>(
    inner: &Inner,
    s: &mut S,
    bytes: &[u8],
    every: Duration,
) -> std::io::Result<()> {
    for b in bytes {
        s.write_all(std::slice::from_ref(b)).await?;
        s.flush().await?;
        inner.written.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(every).await;
    }
    Ok(())
}

/// Reads one request (head and `Content-Length` body, 64 KiB at most) and records its line.
async fn read_request<S: AsyncRead + Unpin>(inner: &Inner, s: &mut S) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or("").to_string();
    inner.requests.lock().expect("sim lock").push(line);
    Some(())
}

async fn write_reply<S: AsyncWrite + Unpin>(
    inner: &Inner,
    s: &mut S,
    reply: &HttpReply,
) -> std::io::Result<()> {
    let reason = http::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|c| c.canonical_reason())
        .unwrap_or("Unknown");
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (k, v) in &reply.headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "Connection: close\r\n";
    match &reply.body {
        HttpBody::Full(body) => {
            head += &format!("Content-Length: {}\r\n\r\n", body.len());
            s.write_all(head.as_bytes()).await?;
            s.write_all(body).await?;
            inner
                .written
                .fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        HttpBody::Truncated { declared, sent } => {
            head += &format!("Content-Length: {declared}\r\n\r\n");
            s.write_all(head.as_bytes()).await?;
            s.write_all(sent).await?;
            inner
                .written
                .fetch_add(sent.len() as u64, Ordering::Relaxed);
        }
        HttpBody::Huge {
            len,
            declare_length,
        } => {
            if *declare_length {
                head += &format!("Content-Length: {len}\r\n\r\n");
            } else {
                head += "Transfer-Encoding: chunked\r\n\r\n";
            }
            s.write_all(head.as_bytes()).await?;
            let mut chunk = vec![b'a'; 64 * 1024];
            let start = b"{\"access_token\":\"";
            chunk[..start.len()].copy_from_slice(start);
            let mut left = *len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if *declare_length {
                    s.write_all(&chunk[..n]).await?;
                } else {
                    s.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    s.write_all(&chunk[..n]).await?;
                    s.write_all(b"\r\n").await?;
                }
                inner.written.fetch_add(n as u64, Ordering::Relaxed);
                left -= n as u64;
                chunk[..start.len()].fill(b'a');
            }
            if !*declare_length {
                s.write_all(b"0\r\n\r\n").await?;
            }
        }
        HttpBody::Drip { body, every } => {
            head += &format!("Content-Length: {}\r\n\r\n", body.len());
            let mut all = head.into_bytes();
            all.extend_from_slice(body);
            return drip(inner, s, &all, *every).await;
        }
    }
    s.flush().await
}
