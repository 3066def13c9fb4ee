//! The simulator's delivery canary and service health support, over real sockets: mail a mailbox
//! submits over SMTP (STARTTLS, XOAUTH2) is delivered as scripted per sender (Inbox or Junk
//! Email after a delay, lost, refused at MAIL FROM, RCPT TO or after the final dot), found with
//! Microsoft Graph by `internetMessageId` and deleted, with Graph's roles, errors and faults;
//! service health issues by tenant, open and resolved.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Timelike, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use smtp_oauth_exporter::sim::{
    Delivery, GraphFault, HealthIssue, SimApp, Simulator, SmtpStep, ROLE_MAIL_READ,
    ROLE_MAIL_READ_WRITE, ROLE_SERVICE_HEALTH_READ_ALL,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::*;

const SECRET: &str = "Cnr~simulated-secret-value";
const SENDER: &str = "canary@contoso.com";
const INBOX_OWNER: &str = "helpdesk@contoso.com";
const SELECT: &str = "id,internetMessageId,receivedDateTime,parentFolderId,subject";

/// The apps of these tests: a sender (SMTP.SendAsApp, FullAccess on the senders) and Graph
/// readers with one role each.
struct Apps {
    sender: String,
    read: String,
    read_write: String,
    none: String,
    health: String,
}

fn setup(w: &World, senders: &[&str]) -> Apps {
    let now = Utc::now();
    let app = |n: u32, name: &str, roles: &[&str]| {
        let id = client_id(n);
        let mut a = SimApp::new(TENANT, &id, name).with_secret(
            SECRET,
            None,
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(90),
        );
        for r in roles {
            a = a.with_graph_role(r);
        }
        w.sim.add_app(a);
        id
    };
    let apps = Apps {
        sender: app(1, "sender", &[]),
        read: app(2, "reader", &[ROLE_MAIL_READ]),
        read_write: app(3, "cleaner", &[ROLE_MAIL_READ_WRITE]),
        none: app(4, "no-roles", &[]),
        health: app(5, "health", &[ROLE_SERVICE_HEALTH_READ_ALL]),
    };
    for s in senders {
        w.sim.add_mailbox(s, &[&apps.sender]);
    }
    w.sim.add_mailbox(INBOX_OWNER, &[]);
    apps
}

fn https_client(sim: &Simulator) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// A token from the simulator's token endpoint for `resource` (`https://graph.microsoft.com`
/// or `https://outlook.office365.com`).
async fn token(sim: &Simulator, client_id: &str, resource: &str) -> String {
    let resp = https_client(sim)
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", SECRET),
            ("scope", &format!("{resource}/.default")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

async fn graph_token(sim: &Simulator, client_id: &str) -> String {
    token(sim, client_id, "https://graph.microsoft.com").await
}

/// One Graph request: status, `Retry-After`, body (`Null` when empty).
async fn graph(
    sim: &Simulator,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, &str)],
    token: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = https_client(sim).request(method, format!("{}{path}", sim.base_url()));
    if !query.is_empty() {
        req = req.query(query);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, retry_after, body)
}

fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The messages of a mailbox with this internetMessageId, as a client finds them.
async fn find(sim: &Simulator, token: &str, mailbox: &str, message_id: &str) -> (u16, Value) {
    let filter = format!("internetMessageId eq {}", odata_string(message_id));
    let (status, _, body) = graph(
        sim,
        reqwest::Method::GET,
        &format!("/v1.0/users/{mailbox}/messages"),
        &[("$filter", &filter), ("$select", SELECT), ("$top", "5")],
        Some(token),
    )
    .await;
    (status, body)
}

async fn folder_id(sim: &Simulator, token: &str, mailbox: &str, folder: &str) -> (String, String) {
    let (status, _, body) = graph(
        sim,
        reqwest::Method::GET,
        &format!("/v1.0/users/{mailbox}/mailFolders/{folder}"),
        &[],
        Some(token),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["displayName"].as_str().unwrap().to_string(),
    )
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

/// A raw SMTP client over STARTTLS, authenticated with XOAUTH2.
struct Smtp {
    s: BufReader<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
}

type Reply = (u16, String);

impl Smtp {
    async fn connect(sim: &Simulator, user: &str, token: &str) -> Smtp {
        let tcp = tokio::net::TcpStream::connect(sim.smtp_addr).await.unwrap();
        let mut plain = BufReader::new(tcp);
        assert_eq!(read_reply(&mut plain).await.0, 220);
        command(&mut plain, "EHLO canary.test").await;
        assert_eq!(command(&mut plain, "STARTTLS").await.0, 220);
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(sim.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(
                ServerName::try_from("127.0.0.1").unwrap(),
                plain.into_inner(),
            )
            .await
            .unwrap();
        let mut s = BufReader::new(tls);
        assert_eq!(command(&mut s, "EHLO canary.test").await.0, 250);
        let blob = base64::engine::general_purpose::STANDARD
            .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        let auth = command(&mut s, &format!("AUTH XOAUTH2 {blob}")).await;
        assert_eq!(auth.0, 235, "{auth:?}");
        Smtp { s }
    }

    async fn cmd(&mut self, line: &str) -> Reply {
        command(&mut self.s, line).await
    }
}

async fn read_reply<S: tokio::io::AsyncRead + Unpin>(s: &mut BufReader<S>) -> Reply {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        assert!(
            s.read_line(&mut line).await.unwrap() > 0,
            "connection closed"
        );
        let line = line.trim_end();
        text.push_str(line.get(4..).unwrap_or(""));
        if line.as_bytes().get(3) != Some(&b'-') {
            return (line[..3].parse().unwrap(), text);
        }
        text.push('\n');
    }
}

async fn command<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
) -> Reply {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    s.get_mut().flush().await.unwrap();
    read_reply(s).await
}

/// Submits one message from `from` to `to`: the final reply to the message (`250 ...` with the
/// queue id), or the step that refused it and its reply.
async fn submit(
    sim: &Simulator,
    smtp_token: &str,
    from: &str,
    to: &[&str],
    message_id: Option<&str>,
    subject: &str,
) -> Result<Reply, (SmtpStep, Reply)> {
    let mut c = Smtp::connect(sim, from, smtp_token).await;
    let r = c.cmd(&format!("MAIL FROM:<{from}>")).await;
    if r.0 != 250 {
        return Err((SmtpStep::MailFrom, r));
    }
    for t in to {
        let r = c.cmd(&format!("RCPT TO:<{t}>")).await;
        if r.0 != 250 {
            return Err((SmtpStep::RcptTo, r));
        }
    }
    let r = c.cmd("DATA").await;
    assert_eq!(r.0, 354, "{r:?}");
    let mut msg = format!("From: <{from}>\r\nTo: <{}>\r\n", to.join(">, <"));
    if let Some(id) = message_id {
        msg += &format!("Message-ID: {id}\r\n");
    }
    msg += &format!("Subject: {subject}\r\n\r\nCanary body.\r\n..dot-stuffed line\r\n.");
    let r = c.cmd(&msg).await;
    let _ = c.cmd("QUIT").await;
    if r.0 == 250 {
        Ok(r)
    } else {
        Err((SmtpStep::Data, r))
    }
}

fn received(v: &Value) -> DateTime<Utc> {
    v["receivedDateTime"].as_str().unwrap().parse().unwrap()
}

/// Runs on the current-thread runtime, so that the test can pause tokio's clock between
/// requests (`advance` moves the simulator's delivery clock; I/O runs on real time).
#[tokio::test]
async fn mail_shows_in_the_inbox_after_its_delay_and_is_found_by_internet_message_id() {
    let w = World::new().await;
    let apps = setup(&w, &[SENDER]);
    let sim = &w.sim;
    let smtp_token = token(sim, &apps.sender, "https://outlook.office365.com").await;
    let reader = graph_token(sim, &apps.read).await;
    sim.set_delivery(SENDER, Some(Delivery::Inbox(Duration::from_secs(120))));

    let id = "<canary.1.it's@smtp-oauth-exporter>";
    let before = Utc::now();
    let reply = submit(
        sim,
        &smtp_token,
        SENDER,
        &["HelpDesk@Contoso.com"],
        Some(id),
        "Canary one",
    )
    .await
    .unwrap();
    let after = Utc::now();
    assert!(reply.1.contains("Queued mail for delivery"), "{reply:?}");
    assert_eq!(sim.data_commands(), 1);
    assert_eq!(sim.messages().len(), 1, "recorded as accepted at once");

    // Not delivered yet: neither in the store nor found.
    assert!(sim.stored_messages(INBOX_OWNER).is_empty());
    let (status, body) = find(sim, &reader, INBOX_OWNER, id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], serde_json::json!([]), "{body}");

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(119)).await;
    tokio::time::resume();
    assert!(
        sim.stored_messages(INBOX_OWNER).is_empty(),
        "one second early"
    );
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();

    let stored = sim.stored_messages("HELPDESK@contoso.com");
    assert_eq!(stored.len(), 1, "{stored:?}");
    let m = &stored[0];
    assert_eq!(m.internet_message_id, id);
    assert_eq!(m.folder, "inbox");
    assert_eq!(m.subject, "Canary one");
    let (status, body) = find(sim, &reader, INBOX_OWNER, id).await;
    assert_eq!(status, 200, "{body}");
    let found = body["value"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{body}");
    let (inbox_id, inbox_name) = folder_id(sim, &reader, INBOX_OWNER, "inbox").await;
    assert_eq!(inbox_name, "Inbox");
    assert_eq!(found[0]["id"], m.id.as_str());
    assert_eq!(found[0]["internetMessageId"], id);
    assert_eq!(found[0]["parentFolderId"], inbox_id.as_str());
    assert_eq!(found[0]["subject"], "Canary one");
    // receivedDateTime: acceptance plus the delay, on Microsoft's clock.
    let at = received(&found[0]);
    assert_eq!(at, m.received);
    let delay = chrono::Duration::seconds(120);
    assert!(
        at >= before.with_nanosecond(0).unwrap() + delay && at <= after + delay,
        "{at} not 120 s after acceptance ({before} .. {after})"
    );
    // Another id, and a prefix of this one, find nothing; the sender's own mailbox has nothing.
    for other in ["<canary.1.it@smtp-oauth-exporter>", "<canary.1.it's"] {
        let (status, body) = find(sim, &reader, INBOX_OWNER, other).await;
        assert_eq!(
            (status, body["value"].clone()),
            (200, serde_json::json!([]))
        );
    }
    assert!(sim.stored_messages(SENDER).is_empty());

    // Every request the test made was a filtered search or a folder read.
    let requests = sim.graph_mail_requests();
    assert_eq!(requests.len(), 5, "{requests:?}");
    for r in &requests {
        assert!(
            r.contains("%24filter=internetMessageId") || r.contains("/mailFolders/"),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_lost_and_default_deliveries_are_per_sending_mailbox() {
    let w = World::new().await;
    let junk = "junk-sender@contoso.com";
    let lost = "lost-sender@contoso.com";
    let apps = setup(&w, &[SENDER, junk, lost]);
    let sim = &w.sim;
    let smtp_token = token(sim, &apps.sender, "https://outlook.office365.com").await;
    let reader = graph_token(sim, &apps.read).await;
    sim.set_delivery(junk, Some(Delivery::Junk(Duration::ZERO)));
    sim.set_delivery(lost, Some(Delivery::Lost));

    for (from, id) in [
        (SENDER, "<inbox@t>"),
        (junk, "<junk@t>"),
        (lost, "<lost@t>"),
    ] {
        let r = submit(sim, &smtp_token, from, &[INBOX_OWNER], Some(id), "canary")
            .await
            .unwrap_or_else(|e| panic!("{from}: {e:?}"));
        assert!(r.1.starts_with("2.6.0 <"), "{r:?}");
    }
    assert_eq!(sim.messages().len(), 3, "all three accepted");
    let (inbox, _) = folder_id(sim, &reader, INBOX_OWNER, "inbox").await;
    let (junk_folder, junk_name) = folder_id(sim, &reader, INBOX_OWNER, "junkemail").await;
    assert_eq!(junk_name, "Junk Email");
    assert_ne!(inbox, junk_folder);
    for (id, folder) in [
        ("<inbox@t>", Some(&inbox)),
        ("<junk@t>", Some(&junk_folder)),
        ("<lost@t>", None),
    ] {
        let (status, body) = find(sim, &reader, INBOX_OWNER, id).await;
        assert_eq!(status, 200);
        let found = body["value"].as_array().unwrap();
        match folder {
            Some(f) => {
                assert_eq!(found.len(), 1, "{id}: {body}");
                assert_eq!(found[0]["parentFolderId"], f.as_str(), "{id}");
            }
            None => assert!(found.is_empty(), "{id}: {body}"),
        }
    }
    let folders: Vec<&str> = sim
        .stored_messages(INBOX_OWNER)
        .iter()
        .map(|m| m.folder)
        .collect();
    assert_eq!(folders, ["inbox", "junkemail"]);

    // Back to the default; a message without Message-ID gets one generated, findable, and two
    // recipients get a copy each.
    sim.set_delivery(lost, None);
    w.sim.add_mailbox("second@contoso.com", &[]);
    submit(
        sim,
        &smtp_token,
        lost,
        &[INBOX_OWNER, "second@contoso.com"],
        None,
        "no id",
    )
    .await
    .unwrap();
    let generated = sim
        .stored_messages(INBOX_OWNER)
        .into_iter()
        .find(|m| m.subject == "no id")
        .expect("delivered");
    let mid = &generated.internet_message_id;
    assert!(
        mid.starts_with('<') && mid.ends_with('>') && mid.contains('@'),
        "{mid}"
    );
    let copy = &sim.stored_messages("second@contoso.com")[0];
    assert_eq!(&copy.internet_message_id, mid);
    assert_ne!(copy.id, generated.id, "each mailbox has its own item id");
    let (_, body) = find(sim, &reader, INBOX_OWNER, mid).await;
    assert_eq!(body["value"][0]["id"], generated.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_refuses_at_its_step_and_nothing_is_stored() {
    let w = World::new().await;
    let other = "other-sender@contoso.com";
    let apps = setup(&w, &[SENDER, other]);
    let sim = &w.sim;
    let smtp_token = token(sim, &apps.sender, "https://outlook.office365.com").await;
    let cases = [
        (
            SmtpStep::MailFrom,
            550,
            "5.1.8 Access denied, bad outbound sender",
        ),
        (
            SmtpStep::MailFrom,
            554,
            "5.2.252 SendAsDenied; canary@contoso.com not allowed to send as canary@contoso.com",
        ),
        (
            SmtpStep::RcptTo,
            550,
            "5.7.708 Access denied, traffic not accepted from this IP",
        ),
        (
            SmtpStep::Data,
            550,
            "5.7.705 Access denied, tenant has exceeded threshold",
        ),
    ];
    for (i, (at, code, text)) in cases.iter().enumerate() {
        sim.set_delivery(
            SENDER,
            Some(Delivery::Reject {
                at: *at,
                code: *code,
                text: text.to_string(),
            }),
        );
        let data_before = sim.data_commands();
        let accepted_before = sim.messages().len();
        let id = format!("<rejected.{i}@t>");
        let err = submit(sim, &smtp_token, SENDER, &[INBOX_OWNER], Some(&id), "x")
            .await
            .expect_err("refused");
        assert_eq!(err, (*at, (*code, text.to_string())), "case {i}");
        // DATA went out only when the refusal came after the final dot.
        let data_sent = u64::from(*at == SmtpStep::Data);
        assert_eq!(sim.data_commands(), data_before + data_sent, "case {i}");
        assert_eq!(
            sim.messages().len(),
            accepted_before,
            "case {i}: not accepted"
        );
        // Another mailbox of the same app is not affected.
        submit(
            sim,
            &smtp_token,
            other,
            &[INBOX_OWNER],
            Some(&format!("<ok.{i}@t>")),
            "ok",
        )
        .await
        .unwrap_or_else(|e| panic!("case {i}: the other sender was refused: {e:?}"));
    }
    let stored = sim.stored_messages(INBOX_OWNER);
    assert_eq!(
        stored.len(),
        cases.len(),
        "only the other sender's: {stored:?}"
    );
    assert!(stored
        .iter()
        .all(|m| m.internet_message_id.starts_with("<ok.")));

    // A 421 closes the connection, as Exchange's throttling does.
    sim.set_delivery(
        SENDER,
        Some(Delivery::Reject {
            at: SmtpStep::RcptTo,
            code: 421,
            text: "4.7.0 Temporary server error. Please try again later.".into(),
        }),
    );
    let mut c = Smtp::connect(sim, SENDER, &smtp_token).await;
    assert_eq!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).await.0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{INBOX_OWNER}>")).await.0, 421);
    let mut rest = String::new();
    // Closed (with or without TLS close_notify).
    let n = c.s.read_line(&mut rest).await.unwrap_or(0);
    assert_eq!(n, 0, "still open: {rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_mail_needs_a_filter_and_the_roles_and_deletes_with_read_write() {
    let w = World::new().await;
    let apps = setup(&w, &[SENDER]);
    let sim = &w.sim;
    let smtp_token = token(sim, &apps.sender, "https://outlook.office365.com").await;
    let reader = graph_token(sim, &apps.read).await;
    let writer = graph_token(sim, &apps.read_write).await;
    let nobody = graph_token(sim, &apps.none).await;
    let id = "<delete.me@t>";
    submit(sim, &smtp_token, SENDER, &[INBOX_OWNER], Some(id), "x")
        .await
        .unwrap();
    let messages = format!("/v1.0/users/{INBOX_OWNER}/messages");
    let get = reqwest::Method::GET;

    // Listing a mailbox is refused: no filter, another filter, another query option.
    let filter = format!("internetMessageId eq '{id}'");
    for query in [
        vec![],
        vec![("$top", "10")],
        vec![("$filter", "subject eq 'x'")],
        vec![("$filter", "internetMessageId ne 'x'")],
        vec![
            ("$filter", filter.as_str()),
            ("$orderby", "receivedDateTime desc"),
        ],
        vec![("$filter", filter.as_str()), ("$top", "0")],
    ] {
        let (status, _, body) = graph(sim, get.clone(), &messages, &query, Some(&reader)).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert!(
            ["ErrorInvalidUrlQueryFilter", "BadRequest"].contains(&error_code(&body)),
            "{body}"
        );
    }
    let (status, _, body) = graph(
        sim,
        get.clone(),
        &format!("/v1.0/users/{INBOX_OWNER}/mailFolders/inbox/messages"),
        &[],
        Some(&reader),
    )
    .await;
    assert_eq!(status, 400, "a folder's messages are a list too: {body}");

    // Without a mail role: 403 in Graph's shape; no token or an Exchange token: 401.
    let (status, body) = find(sim, &nobody, INBOX_OWNER, id).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&body), "ErrorAccessDenied");
    assert_eq!(
        body["error"]["message"],
        "Access is denied. Check credentials and try again."
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
    let (status, _, _) = graph(
        sim,
        get.clone(),
        &format!("/v1.0/users/{INBOX_OWNER}/mailFolders/inbox"),
        &[],
        Some(&nobody),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = graph(sim, get.clone(), &messages, &[("$filter", &filter)], None).await;
    assert_eq!(status, 401);
    let (status, body) = find(sim, &smtp_token, INBOX_OWNER, id).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "InvalidAuthenticationToken")
    );
    // An unknown user.
    let (status, body) = find(sim, &reader, "nobody@contoso.com", id).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "ErrorInvalidUser");
    assert_eq!(
        body["error"]["message"],
        "The requested user 'nobody@contoso.com' is invalid."
    );

    // Found with the address percent-encoded too.
    let (status, body) = find(sim, &reader, "helpdesk%40contoso.com", id).await;
    assert_eq!(status, 200);
    let item = body["value"][0]["id"].as_str().unwrap().to_string();
    assert!(item.ends_with('='), "{item}");
    let one = format!("{messages}/{}", item.replace('=', "%3D"));

    // Mail.Read cannot delete; Mail.ReadWrite can, once.
    let delete = reqwest::Method::DELETE;
    let (status, _, body) = graph(sim, delete.clone(), &one, &[], Some(&reader)).await;
    assert_eq!((status, error_code(&body)), (403, "ErrorAccessDenied"));
    assert_eq!(sim.stored_messages(INBOX_OWNER).len(), 1);
    let (status, _, body) = graph(
        sim,
        get.clone(),
        &one,
        &[("$select", "internetMessageId")],
        Some(&writer),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["internetMessageId"], id);
    // DELETE moves it to Deleted Items, where it has another id (the old one is gone)...
    let (status, _, body) = graph(sim, delete.clone(), &one, &[], Some(&writer)).await;
    assert_eq!(status, 204, "{body}");
    let stored = sim.stored_messages(INBOX_OWNER);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].folder, "deleteditems");
    let (status, _, body) = graph(sim, delete.clone(), &one, &[], Some(&writer)).await;
    assert_eq!((status, error_code(&body)), (404, "ErrorItemNotFound"));
    let (_, body) = find(sim, &writer, INBOX_OWNER, id).await;
    let (deleted_items, name) = folder_id(sim, &writer, INBOX_OWNER, "deleteditems").await;
    assert_eq!(name, "Deleted Items");
    assert_eq!(body["value"][0]["parentFolderId"], deleted_items.as_str());
    let moved = body["value"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(moved, item);
    // ... and a DELETE there takes it out of Graph's sight (to Recoverable Items).
    let moved = format!("{messages}/{}", moved.replace('=', "%3D"));
    let (status, _, body) = graph(sim, delete.clone(), &moved, &[], Some(&writer)).await;
    assert_eq!(status, 204, "{body}");
    assert!(sim.stored_messages(INBOX_OWNER).is_empty());
    let (_, body) = find(sim, &writer, INBOX_OWNER, id).await;
    assert_eq!(body["value"], serde_json::json!([]));

    // The caller's scripted Graph fault applies to these routes; another app's does not.
    let throttled = GraphFault::TooManyRequests {
        retry_after_seconds: 7,
    };
    sim.set_graph_fault(&apps.read, Some(throttled));
    let (status, retry, _) = graph(
        sim,
        get.clone(),
        &messages,
        &[("$filter", &filter)],
        Some(&reader),
    )
    .await;
    assert_eq!((status, retry.as_deref()), (429, Some("7")));
    let (status, _, _) = graph(
        sim,
        get.clone(),
        &messages,
        &[("$filter", &filter)],
        Some(&writer),
    )
    .await;
    assert_eq!(status, 200);
    sim.set_graph_fault(
        &apps.read,
        Some(GraphFault::Unavailable {
            retry_after_seconds: 3,
        }),
    );
    let (status, retry, _) = graph(
        sim,
        get.clone(),
        &messages,
        &[("$filter", &filter)],
        Some(&reader),
    )
    .await;
    assert_eq!((status, retry.as_deref()), (503, Some("3")));
    sim.set_graph_fault(&apps.read, Some(GraphFault::MalformedJson));
    let (status, _, body) = graph(
        sim,
        get.clone(),
        &messages,
        &[("$filter", &filter)],
        Some(&reader),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.is_string(), "not JSON: {body}");
    sim.set_graph_fault(&apps.read, None);
    let (status, _) = find(sim, &reader, INBOX_OWNER, id).await;
    assert_eq!(status, 200);

    // Every request was recorded, in order, the refused ones included.
    let calls = sim.graph_mail_calls();
    assert_eq!(calls.len(), sim.graph_mail_requests().len());
    assert_eq!(calls[0], ("GET".to_string(), messages.clone()));
    assert!(calls
        .iter()
        .any(|(m, p)| m == "DELETE" && p.ends_with("%3D")));
    assert_eq!(calls.len(), 26, "{calls:#?}");
}

/// With `Prefer: IdType="ImmutableId"` a message keeps its id through `DELETE`'s move to Deleted
/// Items, so a second `DELETE` finds it; `permanentDelete` is the global cloud's alone (Graph's
/// documentation lists no national cloud for it): a national cloud's token gets 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_ids_survive_the_move_and_permanent_delete_is_the_global_clouds() {
    let w = World::new().await;
    let apps = setup(&w, &[SENDER]);
    let sim = &w.sim;
    let smtp_token = token(sim, &apps.sender, "https://outlook.office365.com").await;
    let global = graph_token(sim, &apps.read_write).await;
    let usgov = token(sim, &apps.read_write, "https://graph.microsoft.us").await;
    for id in ["<imm.1@t>", "<imm.2@t>"] {
        submit(sim, &smtp_token, SENDER, &[INBOX_OWNER], Some(id), "x")
            .await
            .unwrap();
    }
    let messages = format!("{}/v1.0/users/{INBOX_OWNER}/messages", sim.base_url());
    let request = |method: reqwest::Method, url: String, token: &str| {
        https_client(sim)
            .request(method, url)
            .bearer_auth(token)
            .header("Prefer", "IdType=\"ImmutableId\"")
    };
    let immutable_id = |internet_id: &'static str| {
        let req = request(reqwest::Method::GET, messages.clone(), &usgov)
            .query(&[("$filter", format!("internetMessageId eq '{internet_id}'"))]);
        async move {
            let body: Value = req.send().await.unwrap().json().await.unwrap();
            body["value"][0]["id"].as_str().unwrap().to_string()
        }
    };
    let one = immutable_id("<imm.1@t>").await;
    assert!(one.starts_with("AAkALg"), "an immutable id: {one}");
    let url = |id: &str| format!("{messages}/{}", id.replace('=', "%3D"));
    for (n, folder_after) in [(1, Some("deleteditems")), (2, None)] {
        let status = request(reqwest::Method::DELETE, url(&one), &usgov)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204, "DELETE {n}");
        let folder = sim
            .stored_messages(INBOX_OWNER)
            .into_iter()
            .find(|m| m.internet_message_id == "<imm.1@t>")
            .map(|m| m.folder);
        assert_eq!(folder, folder_after, "after DELETE {n}");
    }
    let two = immutable_id("<imm.2@t>").await;
    let permanent = format!("{}/permanentDelete", url(&two));
    let resp = request(reqwest::Method::POST, permanent.clone(), &usgov)
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "BadRequest");
    assert_eq!(sim.stored_messages(INBOX_OWNER).len(), 1);
    let status = request(reqwest::Method::POST, permanent, &global)
        .body("")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    assert!(sim.stored_messages(INBOX_OWNER).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_health_serves_the_tenants_issues_open_and_resolved() {
    let w = World::new().await;
    let apps = setup(&w, &[]);
    let sim = &w.sim;
    let other_tenant = "99999999-2222-3333-4444-555555555555";
    sim.add_tenant(other_tenant, &["fabrikam.onmicrosoft.com"]);
    let start = Utc::now() - chrono::Duration::hours(2);
    sim.add_health_issue(
        TENANT,
        HealthIssue::exchange_incident("EX123456", "Users may be unable to send email", start),
    );
    sim.add_health_issue(
        TENANT,
        HealthIssue {
            id: "MO222222".into(),
            service: "Microsoft 365 suite".into(),
            classification: "advisory".into(),
            status: "investigating".into(),
            title: "Admin center slow".into(),
            impact_description: "Pages may load slowly.".into(),
            feature: "Portal".into(),
            feature_group: "Administration".into(),
            start,
        },
    );
    sim.add_health_issue(
        other_tenant,
        HealthIssue::exchange_incident("EX999999", "Another tenant's", start),
    );
    let health = graph_token(sim, &apps.health).await;
    let reader = graph_token(sim, &apps.read).await;
    let issues = "/v1.0/admin/serviceAnnouncement/issues";
    let get = reqwest::Method::GET;
    let ids = |body: &Value| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };

    let (status, _, body) = graph(sim, get.clone(), issues, &[], Some(&health)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body), ["EX123456", "MO222222"], "this tenant's only");
    let ex = &body["value"][0];
    assert_eq!(ex["service"], "Exchange Online");
    assert_eq!(ex["classification"], "incident");
    assert_eq!(ex["status"], "serviceDegradation");
    assert_eq!(ex["isResolved"], false);
    assert_eq!(ex["endDateTime"], Value::Null);
    assert_eq!(ex["title"], "Users may be unable to send email");
    assert!(ex["featureGroup"].is_string() && ex["feature"].is_string());
    assert!(ex["impactDescription"].is_string() && ex["lastModifiedDateTime"].is_string());
    assert_eq!(received_start(ex), start.with_nanosecond(0).unwrap());

    let open = [("$filter", "isResolved eq false")];
    let (_, _, body) = graph(sim, get.clone(), issues, &open, Some(&health)).await;
    assert_eq!(ids(&body), ["EX123456", "MO222222"]);
    let exchange_open = [(
        "$filter",
        "isResolved eq false and service eq 'Exchange Online'",
    )];
    let (_, _, body) = graph(sim, get.clone(), issues, &exchange_open, Some(&health)).await;
    assert_eq!(ids(&body), ["EX123456"]);

    sim.resolve_health_issue("EX123456");
    let (_, _, body) = graph(sim, get.clone(), issues, &open, Some(&health)).await;
    assert_eq!(ids(&body), ["MO222222"]);
    let (_, _, body) = graph(sim, get.clone(), issues, &[], Some(&health)).await;
    assert_eq!(ids(&body), ["EX123456", "MO222222"], "resolved issues stay");
    let ex = &body["value"][0];
    assert_eq!(ex["isResolved"], true);
    assert_eq!(ex["status"], "serviceRestored");
    assert!(ex["endDateTime"].is_string(), "{ex}");
    let (status, _, body) = graph(
        sim,
        get.clone(),
        &format!("{issues}/EX123456"),
        &[],
        Some(&health),
    )
    .await;
    assert_eq!((status, body["id"].as_str()), (200, Some("EX123456")));
    // The other tenant's issue is not open to this tenant.
    let (status, _, _) = graph(
        sim,
        get.clone(),
        &format!("{issues}/EX999999"),
        &[],
        Some(&health),
    )
    .await;
    assert_eq!(status, 404);

    // A filter the simulator does not know; no role; the caller's fault.
    let (status, _, _) = graph(
        sim,
        get.clone(),
        issues,
        &[("$filter", "startswith(title,'x')")],
        Some(&health),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, body) = graph(sim, get.clone(), issues, &open, Some(&reader)).await;
    assert_eq!(status, 403);
    assert_eq!(error_code(&body), "Forbidden");
    sim.set_graph_fault(&apps.health, Some(GraphFault::ServerError));
    let (status, _, _) = graph(sim, get.clone(), issues, &open, Some(&health)).await;
    assert_eq!(status, 500);
    sim.set_graph_fault(&apps.health, None);

    assert_eq!(sim.health_requests(&apps.health), 9);
    assert_eq!(sim.health_requests(&apps.read), 1);
    assert!(sim.graph_mail_requests().is_empty());
}

fn received_start(v: &Value) -> DateTime<Utc> {
    v["startDateTime"].as_str().unwrap().parse().unwrap()
}

/// The agent's own test message (`check --send-test-to`) lands in the Inbox, found by the
/// Message-ID the agent gave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_test_message_is_delivered_and_found() {
    let w = World::new().await;
    let apps = setup(&w, &[SENDER]);
    let sim = &w.sim;
    let file = w.file("s.secret", SECRET);
    let port = sim.smtp_addr.port();
    let yaml = format!(
        "defaults:\n  checks:\n    graph: {{ enabled: false }}\napps:\n{}mailboxes:\n  - {{ name: canary, app: sender, address: {SENDER}, smtp_host: 127.0.0.1, smtp_port: {port} }}\n",
        secret_app(&w, "sender", &apps.sender, &file, "")
    );
    let config = w.file("check.yml", &yaml);
    let (out, err, code) = run_binary_async(&[
        "check",
        "--config.file",
        &config,
        "canary",
        "--send-test-to",
        INBOX_OWNER,
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(sim.data_commands(), 1);
    let sent = &sim.messages()[0];
    let header = sent
        .data
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("the agent sets a Message-ID");
    let stored = sim.stored_messages(INBOX_OWNER);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].internet_message_id, header);
    assert_eq!(stored[0].subject, "smtp-oauth-exporter test message");
    let reader = graph_token(sim, &apps.read).await;
    let (status, body) = find(sim, &reader, INBOX_OWNER, header).await;
    assert_eq!(status, 200);
    assert_eq!(body["value"][0]["id"], stored[0].id.as_str());
}
