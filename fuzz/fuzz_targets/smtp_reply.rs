//! The SMTP reply reader (`checks::smtp::reply::read_reply`): what a hostile or broken server
//! sends, read reply after reply as on one connection, then everything the check derives from a
//! reply (enhanced code, log text, the reason for each phase, the 5.7.139 scope).
//!
//! Input: the first byte sets the reader's buffer size (1 to 255 bytes; 0: 8 KiB), so lines
//! straddle `fill_buf` boundaries; the rest is the server's byte stream. The same stream read
//! through an 8 KiB buffer must give the same replies: the bounds may not depend on chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_oauth_exporter::checks::smtp::reply::{read_reply, ReadError, Reply, MAX_LINE, MAX_LINES};
use smtp_oauth_exporter::checks::smtp::{self, Phase};

/// Replies read from one connection at most (the dialog reads fewer).
const MAX_REPLIES: usize = 16;

fn read_all(stream: &[u8], capacity: usize) -> Vec<Result<Reply, ReadError>> {
    let mut r = tokio::io::BufReader::with_capacity(capacity, stream);
    futures::executor::block_on(async {
        let mut out = Vec::new();
        while out.len() < MAX_REPLIES {
            let reply = read_reply(&mut r).await;
            let stop = reply.is_err();
            out.push(reply);
            if stop {
                break;
            }
        }
        out
    })
}

fn check(reply: &Reply) {
    assert!((200..600).contains(&reply.code), "code {}", reply.code);
    assert!(reply.lines.len() <= MAX_LINES);
    assert!(reply.lines.iter().all(|l| l.len() < MAX_LINE));
    if let Some(e) = reply.enhanced() {
        assert!(reply.lines[0].trim_start().starts_with(e));
        assert_eq!(e.as_bytes()[0], reply.code.to_string().as_bytes()[0]);
    }
    let text = reply.text();
    let _ = smtp::reply::printable(text.as_bytes());
    let _ = reply.is_positive();
    for phase in Phase::ALL.into_iter().chain([Phase::Send]) {
        let _ = smtp::classify(phase, reply).as_str();
    }
    let _ = smtp::auth_disabled_scope(&text);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let capacity = match first {
        0 => 8192,
        n => n as usize,
    };
    let replies = read_all(stream, capacity);
    for r in &replies {
        match r {
            Ok(reply) => check(reply),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if capacity != 8192 {
        assert_eq!(
            replies,
            read_all(stream, 8192),
            "depends on the buffer size"
        );
    }
});
