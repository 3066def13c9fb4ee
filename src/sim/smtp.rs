//! The simulated Exchange Online SMTP submission endpoint (smtp.office365.com:587): real
//! STARTTLS, Office 365's replies, XOAUTH2 checked against tokens the simulator issued, and
//! scriptable faults. Every client line is kept in a transcript for the tests.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::smtp_fault::{SmtpFault, SmtpStep};
use super::{Directory, SimMessage, ROLE_SMTP};

/// What a listener does with the next connection: its fault and the certificate it presents.
pub(super) struct Mode {
    pub fault: Option<SmtpFault>,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

impl Mode {
    pub fn new(fault: Option<SmtpFault>, tls: Arc<rustls::ServerConfig>) -> Self {
        Self {
            fault,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
        }
    }
}

/// What one connection sent us, line by line (the AUTH line included, as received).
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub listener: Option<SocketAddr>,
    pub lines: Vec<String>,
}

#[derive(Clone)]
pub(super) struct SmtpShared {
    pub directory: Arc<Mutex<Directory>>,
    pub signing_key: Arc<Vec<u8>>,
    pub transcripts: Arc<Mutex<Vec<Transcript>>>,
    /// Bytes written by `EndlessLine` listeners so far.
    pub streamed: Arc<std::sync::atomic::AtomicU64>,
    /// SMTP connections accepted so far.
    pub sessions: Arc<std::sync::atomic::AtomicU64>,
    /// Whether transcripts are kept (tests read them; a long benchmark run must not grow).
    pub record: Arc<std::sync::atomic::AtomicBool>,
}

const HOST: &str = "SIM01.prod.outlook.office365.com";

/// Starts one SMTP listener on 127.0.0.1; each connection takes the fault and certificate of
/// `mode` as they are when it is accepted.
pub(super) async fn start(
    shared: SmtpShared,
    mode: Arc<Mutex<Mode>>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    super::serve_loopback(stop, move |stream, addr| {
        let (fault, acceptor) = {
            let m = mode.lock().expect("sim lock");
            (m.fault.clone(), m.acceptor.clone())
        };
        let _ = stream.set_nodelay(true);
        shared
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let idx = if shared.record.load(std::sync::atomic::Ordering::Relaxed) {
            let mut t = shared.transcripts.lock().expect("sim lock");
            t.push(Transcript {
                listener: Some(addr),
                lines: Vec::new(),
            });
            t.len() - 1
        } else {
            usize::MAX
        };
        let conn = Conn {
            shared: shared.clone(),
            fault,
            idx,
            user: None,
            authed_app: None,
            mail_from: None,
            recipients: Vec::new(),
        };
        let directory = shared.directory.clone();
        {
            let mut d = directory.lock().expect("sim lock");
            let c = d.smtp_connections.entry(addr).or_default();
            c.accepted += 1;
            c.open += 1;
            c.peak = c.peak.max(c.open);
        }
        async move {
            conn.run(stream, acceptor).await;
            let mut d = directory.lock().expect("sim lock");
            if let Some(c) = d.smtp_connections.get_mut(&addr) {
                c.open = c.open.saturating_sub(1);
            }
        }
    })
    .await
}

struct Conn {
    shared: SmtpShared,
    fault: Option<SmtpFault>,
    idx: usize,
    /// The mailbox authenticated as.
    user: Option<String>,
    authed_app: Option<String>,
    /// The envelope of the message in progress: MAIL FROM and RCPT TO.
    mail_from: Option<String>,
    recipients: Vec<String>,
}

enum Next {
    Close,
    StartTls,
    /// Reset the connection (TCP RST), as [`SmtpFault::ResetAt`] asks.
    Reset,
}

/// Resets a connection: RST instead of FIN.
fn reset(tcp: TcpStream) {
    let _ = tcp.set_zero_linger();
    drop(tcp);
}

impl Conn {
    /// The reply that replaces the normal one at `step`, as it goes on the wire.
    fn scripted(&self, step: SmtpStep) -> Option<String> {
        match &self.fault {
            Some(SmtpFault::Reply { at, code, text }) if *at == step => {
                Some(format!("{code} {text}\r\n"))
            }
            Some(SmtpFault::Raw { at, bytes }) if *at == step => Some(bytes.clone()),
            _ => None,
        }
    }

    /// The reply of the authenticated mailbox's scripted [`Delivery`](super::Delivery) refusing
    /// the message at `step` (`Data`: after the final dot), if it does.
    fn refused_at(&self, step: SmtpStep) -> Option<String> {
        let user = self.user.as_deref()?;
        let d = self.shared.directory.lock().expect("sim lock");
        super::mailbox::delivery_of(&d, user).rejects_at(step)
    }

    fn resets_at(&self, step: SmtpStep) -> bool {
        self.fault == Some(SmtpFault::ResetAt(step))
    }

    fn record(&self, line: &str) {
        if let Some(t) = self
            .shared
            .transcripts
            .lock()
            .expect("sim lock")
            .get_mut(self.idx)
        {
            t.lines.push(line.to_string());
        }
    }

    async fn run(mut self, mut tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
        match &self.fault {
            Some(SmtpFault::BannerDelay(d)) => tokio::time::sleep(*d).await,
            Some(SmtpFault::GarbageBanner) => {
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                return;
            }
            Some(SmtpFault::ResetAt(SmtpStep::Banner)) => {
                reset(tcp);
                return;
            }
            Some(SmtpFault::Drip(every)) => {
                let every = *every;
                for b in format!("220 {HOST} Microsoft ESMTP MAIL Service ready\r\n").bytes() {
                    if tcp.write_all(&[b]).await.is_err() {
                        return;
                    }
                    self.shared
                        .streamed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(every).await;
                }
            }
            Some(SmtpFault::EndlessLine) => {
                let chunk = vec![b'A'; 64 * 1024];
                // Until the client hangs up (16 GiB at most): a client that buffered without
                // bound would read until its deadline. The tests read the count.
                for _ in 0..(256 * 1024) {
                    if tcp.write_all(&chunk).await.is_err() {
                        return;
                    }
                    self.shared
                        .streamed
                        .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                return;
            }
            _ => {}
        }
        if let Some(SmtpFault::Reply {
            at: SmtpStep::Banner,
            code,
            text,
        }) = &self.fault
        {
            let _ = tcp.write_all(format!("{code} {text}\r\n").as_bytes()).await;
            return;
        }
        let banner = match self.scripted(SmtpStep::Banner) {
            Some(raw) => raw,
            None if matches!(self.fault, Some(SmtpFault::Drip(_))) => String::new(),
            None => format!(
                "220 {HOST} Microsoft ESMTP MAIL Service ready at {}\r\n",
                chrono::Utc::now().to_rfc2822()
            ),
        };
        if tcp.write_all(banner.as_bytes()).await.is_err() {
            return;
        }
        let mut plain = BufReader::new(tcp);
        match self.commands(&mut plain, false).await {
            Next::Close => {}
            Next::Reset => reset(plain.into_inner()),
            Next::StartTls => {
                let mut tcp = plain.into_inner();
                if self.resets_at(SmtpStep::TlsHandshake) {
                    // Take the client's hello, then cut the handshake short.
                    let mut hello = [0u8; 512];
                    let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut hello).await;
                    reset(tcp);
                    return;
                }
                if self.fault == Some(SmtpFault::StartTlsThenGarbage) {
                    // Take the client's hello, then answer with something that is not TLS.
                    let mut hello = [0u8; 512];
                    let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut hello).await;
                    let _ = tcp.write_all(b"this is not a TLS server hello\r\n").await;
                    return;
                }
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let mut s = BufReader::new(tls);
                if let Next::Reset = self.commands(&mut s, true).await {
                    reset(s.into_inner().into_inner().0);
                }
            }
        }
    }

    async fn commands<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut BufReader<S>,
        tls: bool,
    ) -> Next {
        let mut buf = Vec::new();
        loop {
            let line = match read_line(s, &mut buf).await {
                Some(l) => l,
                None => return Next::Close,
            };
            self.record(&line);
            let upper = line.to_ascii_uppercase();
            let verb = upper.split_whitespace().next().unwrap_or("").to_string();
            let step = match verb.as_str() {
                "EHLO" | "HELO" if tls => Some(SmtpStep::EhloAfterTls),
                "EHLO" | "HELO" => Some(SmtpStep::Ehlo),
                "STARTTLS" if !tls => Some(SmtpStep::StartTls),
                "AUTH" => Some(SmtpStep::Auth),
                "MAIL" => Some(SmtpStep::MailFrom),
                "RCPT" => Some(SmtpStep::RcptTo),
                "DATA" => Some(SmtpStep::Data),
                _ => None,
            };
            if step == Some(SmtpStep::Data) {
                self.shared
                    .directory
                    .lock()
                    .expect("sim lock")
                    .data_commands += 1;
            }
            if let Some(step) = step {
                if self.resets_at(step) {
                    return Next::Reset;
                }
                if let Some(reply) = self.scripted(step) {
                    if write(s, &reply).await.is_err() || reply.starts_with("421") {
                        return Next::Close;
                    }
                    continue;
                }
            }
            let reply: String = match verb.as_str() {
                "EHLO" | "HELO" => {
                    let mut ext = vec![
                        format!("{HOST} Hello [127.0.0.1]"),
                        "SIZE 157286400".into(),
                        "PIPELINING".into(),
                        "DSN".into(),
                        "ENHANCEDSTATUSCODES".into(),
                    ];
                    let stripped = matches!(
                        self.fault,
                        Some(SmtpFault::NoStartTls | SmtpFault::AuthInClear)
                    );
                    if !tls && !stripped {
                        ext.push("STARTTLS".into());
                    }
                    if !tls && self.fault == Some(SmtpFault::AuthInClear) {
                        ext.push("AUTH LOGIN XOAUTH2".into());
                    }
                    if tls {
                        ext.push(if self.fault == Some(SmtpFault::NoXoauth2) {
                            "AUTH LOGIN".into()
                        } else {
                            "AUTH LOGIN XOAUTH2".into()
                        });
                    }
                    ext.extend([
                        "8BITMIME".to_string(),
                        "BINARYMIME".into(),
                        "CHUNKING".into(),
                        "SMTPUTF8".into(),
                    ]);
                    let n = ext.len();
                    ext.iter()
                        .enumerate()
                        .map(|(i, e)| {
                            format!("250{}{e}\r\n", if i + 1 == n { ' ' } else { '-' })
                        })
                        .collect()
                }
                "STARTTLS" if !tls => {
                    if matches!(
                        self.fault,
                        Some(SmtpFault::NoStartTls | SmtpFault::AuthInClear)
                    ) {
                        "500 5.3.3 Unrecognized command 'STARTTLS'\r\n".into()
                    } else if self.fault == Some(SmtpFault::StartTlsInjection) {
                        if write(
                            s,
                            "220 2.0.0 SMTP server ready\r\n250 2.0.0 injected before TLS\r\n",
                        )
                        .await
                        .is_err()
                        {
                            return Next::Close;
                        }
                        return Next::StartTls;
                    } else {
                        if write(s, "220 2.0.0 SMTP server ready\r\n").await.is_err() {
                            return Next::Close;
                        }
                        return Next::StartTls;
                    }
                }
                "AUTH" if !tls && self.fault != Some(SmtpFault::AuthInClear) => {
                    "504 5.7.4 Unrecognized authentication type\r\n".into()
                }
                "AUTH" => {
                    let mut words = line.split_whitespace().skip(1);
                    let mech = words.next().unwrap_or("").to_ascii_uppercase();
                    let initial = words.next().map(str::to_string);
                    if mech != "XOAUTH2" || self.fault == Some(SmtpFault::NoXoauth2) {
                        "504 5.7.4 Unrecognized authentication type\r\n".into()
                    } else {
                        let blob = match initial {
                            Some(b) => b,
                            None => {
                                if write(s, "334 \r\n").await.is_err() {
                                    return Next::Close;
                                }
                                match read_line(s, &mut buf).await {
                                    Some(l) => {
                                        self.record(&l);
                                        l
                                    }
                                    None => return Next::Close,
                                }
                            }
                        };
                        self.auth_xoauth2(&blob)
                    }
                }
                "MAIL" => {
                    match &self.user {
                        None => "530 5.7.57 Client not authenticated to send mail. [SIM01.prod.outlook.office365.com]\r\n".into(),
                        Some(user) => {
                            let from = line.split_once(':').map(|x| x.1).unwrap_or("").trim().trim_start_matches('<');
                            let from = from.split('>').next().unwrap_or("");
                            if self.fault == Some(SmtpFault::DenyMailFrom) || !from.eq_ignore_ascii_case(user) {
                                "554 5.2.252 SendAsDenied; the sender is not allowed to send as this address\r\n".into()
                            } else if let Some(refused) = self.refused_at(SmtpStep::MailFrom) {
                                refused
                            } else {
                                self.mail_from = Some(from.to_string());
                                self.recipients.clear();
                                "250 2.1.0 Sender OK\r\n".into()
                            }
                        }
                    }
                }
                "RCPT" => match &self.mail_from {
                    None => "503 5.5.1 Need MAIL command\r\n".into(),
                    Some(_) => {
                        let to = line.split_once(':').map(|x| x.1).unwrap_or("").trim();
                        let to = to.trim_start_matches('<').split('>').next().unwrap_or("");
                        if !to.contains('@') {
                            "501 5.1.3 Invalid address\r\n".into()
                        } else if let Some(refused) = self.refused_at(SmtpStep::RcptTo) {
                            refused
                        } else {
                            self.recipients.push(to.to_string());
                            "250 2.1.5 Recipient OK\r\n".into()
                        }
                    }
                },
                "DATA" if self.mail_from.is_none() || self.recipients.is_empty() => {
                    "503 5.5.1 Need RCPT command\r\n".into()
                }
                "DATA" => {
                    if write(s, "354 Start mail input; end with <CRLF>.<CRLF>\r\n")
                        .await
                        .is_err()
                    {
                        return Next::Close;
                    }
                    match self.read_data(s, &mut buf).await {
                        Some(reply) => reply,
                        None => return Next::Close,
                    }
                }
                "RSET" => {
                    self.mail_from = None;
                    self.recipients.clear();
                    "250 2.0.0 Resetting\r\n".into()
                }
                "NOOP" => "250 2.0.0 OK\r\n".into(),
                "QUIT" => {
                    let _ = write(s, "221 2.0.0 Service closing transmission channel\r\n").await;
                    return Next::Close;
                }
                _ => "500 5.3.3 Unrecognized command\r\n".into(),
            };
            if write(s, &reply).await.is_err() || reply.starts_with("421") {
                return Next::Close;
            }
            if !tls
                && self.fault == Some(SmtpFault::DropAfterEhlo)
                && (verb == "EHLO" || verb == "HELO")
            {
                return Next::Close;
            }
        }
    }

    /// RFC 4954 + the XOAUTH2 format: `user=<mailbox>^Aauth=Bearer <token>^A^A`, base64.
    fn auth_xoauth2(&mut self, blob: &str) -> String {
        let rejected = format!("535 5.7.3 Authentication unsuccessful [{HOST}]\r\n");
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(blob.trim()) else {
            return "501 5.5.2 Cannot decode response\r\n".into();
        };
        let text = String::from_utf8_lossy(&raw).to_string();
        let mut parts = text.split('\x01');
        let user = parts
            .next()
            .and_then(|p| p.strip_prefix("user="))
            .unwrap_or("")
            .to_string();
        let token = parts
            .next()
            .and_then(|p| p.strip_prefix("auth=Bearer "))
            .unwrap_or("")
            .to_string();
        if user.is_empty() || !text.ends_with("\x01\x01") {
            return "501 5.5.124 Invalid XOAUTH2 response\r\n".into();
        }
        if self.fault == Some(SmtpFault::EchoAuth) {
            // A broken relay that quotes what it was sent.
            return format!(
                "535 5.7.3 Authentication unsuccessful for {} [{HOST}]: {} (bearer {token})\r\n",
                user,
                blob.trim()
            );
        }
        let now = self.shared.directory.lock().expect("sim lock").now();
        let Ok(claims) = super::token::verify(&self.shared.signing_key, &token, now) else {
            return rejected;
        };
        if !super::token::is_exchange_resource(&claims.aud) {
            return rejected;
        }
        let has_role = claims.roles.iter().any(|r| r == ROLE_SMTP);
        let d = self.shared.directory.lock().expect("sim lock");
        let Some(mb) = d.mailboxes.get(&user.to_ascii_lowercase()) else {
            return rejected;
        };
        let tenant_off = self.fault == Some(SmtpFault::TenantSmtpAuthDisabled)
            || d.tenants
                .iter()
                .any(|t| t.id == claims.tid && t.smtp_auth_disabled);
        // The mailbox's own setting wins; $null follows the tenant.
        match mb.smtp_auth_disabled {
            Some(true) => return "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n".into(),
            None if tenant_off => return "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n".into(),
            _ => {}
        }
        // Step 4: Exchange knows the app only through its service principal. A token with the
        // SMTP.SendAsApp role is judged by FullAccess on the mailbox (the classic model); one
        // without it by an "Application SMTP.SendAsApp" role assignment whose scope holds the
        // mailbox (RBAC for Applications). Every refusal is the same plain 5.7.3.
        let app = d.apps.get(&claims.appid);
        let has_principal = app.is_some_and(|a| a.exchange_service_principal);
        let granted = if has_role {
            mb.full_access.contains(&claims.appid)
        } else {
            app.and_then(|a| a.smtp_role_scope.as_ref())
                .is_some_and(|scope| scope.contains(&mb.address.to_ascii_lowercase()))
        };
        if !has_principal || !granted {
            return rejected;
        }
        drop(d);
        self.user = Some(user);
        self.authed_app = Some(claims.appid);
        "235 2.7.0 Authentication successful\r\n".into()
    }
}

impl Conn {
    /// Reads a message after `354` up to the lone dot (RFC 5321 section 4.1.1.4), at most
    /// 1 MiB, and queues it (delivering it into the recipients' stores as the sender's
    /// [`Delivery`](super::Delivery) says, or refusing it here); the reply carries a queue ID as
    /// Exchange's does.
    async fn read_data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        s: &mut BufReader<S>,
        buf: &mut Vec<u8>,
    ) -> Option<String> {
        let mut data = String::new();
        loop {
            let line = read_line(s, buf).await?;
            if line == "." {
                break;
            }
            let line = line.strip_prefix('.').unwrap_or(&line);
            if data.len() + line.len() > 1024 * 1024 {
                return Some(
                    "552 5.3.4 Message size exceeds fixed maximum message size\r\n".into(),
                );
            }
            data.push_str(line);
            data.push_str("\r\n");
        }
        self.record(&format!("<message of {} bytes>", data.len()));
        if let Some(refused) = self.refused_at(SmtpStep::Data) {
            // The transaction is over (RFC 5321 section 4.1.1.4); nothing is queued.
            self.mail_from = None;
            self.recipients.clear();
            return Some(refused);
        }
        let queue_id = format!("{:016X}", rand::random::<u64>());
        let msg = SimMessage {
            sender: self.user.clone().unwrap_or_default(),
            mail_from: self.mail_from.take().unwrap_or_default(),
            recipients: std::mem::take(&mut self.recipients),
            data,
            queue_id: queue_id.clone(),
        };
        let mut d = self.shared.directory.lock().expect("sim lock");
        super::mailbox::deliver(&mut d, &msg.sender, &msg.recipients, &msg.data);
        // The message in its tenant's message trace, one row per recipient.
        let tenant = self
            .authed_app
            .as_ref()
            .and_then(|a| d.apps.get(a))
            .map(|a| a.tenant_id.clone());
        if let Some(t) = tenant {
            super::trace::accepted(&mut d, &t, &msg.sender, &msg.recipients, &msg.data);
        }
        // A demo runs for days: keep the newest (tests look at a handful).
        if d.messages.len() >= super::MESSAGES_KEPT {
            d.messages.remove(0);
        }
        d.messages.push(msg);
        drop(d);
        Some(format!(
            "250 2.6.0 <{queue_id}@{HOST}> [InternalId={}, Hostname={HOST}] Queued mail for delivery\r\n",
            rand::random::<u32>()
        ))
    }
}

async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    text: &str,
) -> std::io::Result<()> {
    let w = s.get_mut();
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}

/// One command line, at most 64 KiB (a long XOAUTH2 blob fits); `None` on close or overflow.
async fn read_line<S: AsyncBufRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<String> {
    buf.clear();
    let mut limited = (&mut *s).take(64 * 1024);
    let n = limited.read_until(b'\n', buf).await.ok()?;
    if n == 0 || !buf.ends_with(b"\n") {
        return None;
    }
    Some(
        String::from_utf8_lossy(buf)
            .trim_end_matches(['\r', '\n'])
            .to_string(),
    )
}
