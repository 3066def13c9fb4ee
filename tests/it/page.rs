//! The status page in a real browser: headless Chromium loads it from a running agent and takes
//! a screenshot, which the test decodes and reads pixel by pixel: each mailbox's heartbeat bar
//! (one mark per run, green while it passes, red while it fails) and a watched mailbox's 24-hour
//! traffic chart (sent in blue, failed or quarantined in dark red) are drawn, not only in the
//! HTML. The screenshot stays in the test's temporary directory of the target (its path is
//! printed) for a person to look at.

use std::io::Read;
use std::time::Duration;

use chrono::Utc;
use smtp_oauth_exporter::sim::{SimApp, ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL};

use crate::common::*;

/// The page's colours under test (`src/server/page.rs`).
const BEAT_OK: [u8; 3] = [0x34, 0xa8, 0x53];
const BEAT_CRITICAL: [u8; 3] = [0xea, 0x43, 0x35];
const CHART_SENT: [u8; 3] = [0x1a, 0x73, 0xe8];
const CHART_FAILED: [u8; 3] = [0xa5, 0x0e, 0x0e];

/// An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as rows of RGB pixels.
fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut w, mut h, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut i = 8;
    while i + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        let kind = &bytes[i + 4..i + 8];
        let data = &bytes[i + 8..i + 8 + len];
        match kind {
            b"IHDR" => {
                w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                h = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "8-bit samples");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    t => panic!("colour type {t}"),
                };
                assert_eq!(data[12], 0, "not interlaced");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        i += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = w * channels;
    let mut out = Vec::with_capacity(w * h);
    let mut prev = vec![0u8; stride];
    for y in 0..h {
        let row = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, data) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for x in 0..stride {
            let a = if x >= channels { cur[x - channels] } else { 0 };
            let b = prev[x];
            let c = if x >= channels { prev[x - channels] } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            cur[x] = data[x].wrapping_add(predictor);
        }
        for px in cur.chunks(channels) {
            out.push([px[0], px[1], px[2]]);
        }
        prev = cur;
    }
    (w, h, out)
}

fn count(pixels: &[[u8; 3]], colour: [u8; 3]) -> usize {
    pixels
        .iter()
        .filter(|p| p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 3))
        .count()
}

/// Chromium's screenshot of a page (Debian's chromium, installed by scripts/test.sh).
fn screenshot(url: &str, path: &std::path::Path) {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--disable-background-networking",
            "--disable-component-update",
            "--window-size=1400,1400",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", path.display()),
            url,
        ])
        .output()
        .unwrap_or_else(|e| panic!("chromium is required (scripts/test.sh installs it): {e}"));
    assert!(
        out.status.success() && path.exists(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_bars_and_the_traffic_chart_are_drawn_in_a_real_browser() {
    let w = World::new().await;
    let now = Utc::now();
    let id = client_id(1);
    let secret = "Pg1~the-page-test-secret";
    w.sim.add_app(
        SimApp::new(TENANT, &id, "sender")
            .with_secret(
                secret,
                None,
                now - chrono::Duration::days(1),
                now + chrono::Duration::days(300),
            )
            .with_graph_role(ROLE_EXCHANGE_MESSAGE_TRACE_READ_ALL),
    );
    w.sim.add_mailbox("ok@contoso.com", &[&id]);
    w.sim.add_mailbox("off@contoso.com", &[&id]);
    // SMTP AUTH off for one: its runs fail.
    w.sim
        .set_mailbox_smtp_auth_disabled("off@contoso.com", true);
    // Its traffic over the last day: a steady flow, a few quarantined (under the 10% finding).
    for (n, status) in [(140, "delivered"), (10, "quarantined")] {
        w.sim.add_traffic(
            TENANT,
            "ok@contoso.com",
            "customer@fabrikam.com",
            n,
            status,
            now - chrono::Duration::hours(23),
            now - chrono::Duration::minutes(10),
        );
    }
    let file = w.file("s.secret", secret);
    let port = w.sim.smtp_addr.port();
    let yaml = format!(
        "scheduler:\n  startup_spread: 200ms\ndefaults:\n  checks:\n    token: {{ schedule: 1s }}\n    smtp: {{ schedule: 1s, timeout: 5s }}\n    graph: {{ enabled: false }}\napps:\n{}    checks:\n      traffic: {{ enabled: true, schedule: 1s }}\nmailboxes:\n  - {{ name: ok, app: sender, address: ok@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n  - {{ name: off, app: sender, address: off@contoso.com, smtp_host: 127.0.0.1, smtp_port: {port} }}\n",
        secret_app(&w, "sender", &id, &file, "")
    );
    let agent = w.agent(&yaml).await;
    // A few runs each.
    let start = std::time::Instant::now();
    loop {
        let s = agent.status();
        if s.mailboxes.iter().all(|m| m.recent_runs.len() >= 4)
            && s.mailboxes
                .iter()
                .any(|m| m.traffic.as_ref().is_some_and(|t| t.last_24h == 150))
        {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{s:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = agent.status();
    for m in &status.mailboxes {
        let sev = if m.name == "ok" { "ok" } else { "critical" };
        assert!(
            m.recent_runs.iter().skip(1).all(|r| r.severity == sev),
            "{}: {:?}",
            m.name,
            m.recent_runs
        );
        assert!(
            m.recent_runs.windows(2).all(|p| p[0].at < p[1].at),
            "one mark per run, oldest first: {:?}",
            m.recent_runs
        );
    }

    let url = format!("http://{}/", agent.local_addr());
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let shot = path.clone();
    tokio::task::spawn_blocking(move || screenshot(&url, &shot))
        .await
        .unwrap();
    eprintln!("the status page as Chromium drew it: {}", path.display());
    let (width, height, pixels) = decode_png(&std::fs::read(&path).unwrap());
    assert_eq!((width, height), (1400, 1400));
    // Each mark is 6 x 16 pixels: several of each, and the chart's bars.
    for (what, colour, at_least) in [
        ("passing runs' marks", BEAT_OK, 3 * 96),
        ("failing runs' marks", BEAT_CRITICAL, 3 * 96),
        ("the chart's sent messages", CHART_SENT, 100),
        ("the chart's quarantined messages", CHART_FAILED, 10),
    ] {
        let n = count(&pixels, colour);
        assert!(
            n >= at_least,
            "{what}: {n} pixels of {colour:02x?} in {} (at least {at_least})",
            path.display()
        );
    }
    agent.stop().await;
}
