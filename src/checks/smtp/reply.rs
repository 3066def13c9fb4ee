//! Reading SMTP replies (RFC 5321 section 4.2) with hard bounds: a line may hold at most
//! [`MAX_LINE`] bytes and a reply at most [`MAX_LINES`] lines, so a hostile or broken server
//! costs bounded memory however much it sends. Parsing is lettre's.

use std::str::FromStr;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest reply line we accept, CRLF included (RFC 5321 section 4.5.3.1.5 says 512; servers
/// exceed it in EHLO lists and error texts, so allow more, but not without limit).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply (an EHLO reply lists one extension per line).
pub const MAX_LINES: usize = 128;

/// One complete SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, after the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    /// The RFC 3463 enhanced status code the first line starts with (`5.7.139`), if any.
    pub fn enhanced(&self) -> Option<&str> {
        let word = self.lines.first()?.split_whitespace().next()?;
        let mut parts = word.split('.');
        let class = parts.next()?;
        let ok = class.len() == 1
            && class.starts_with(['2', '4', '5'])
            && class.as_bytes()[0] == self.code.to_string().as_bytes()[0]
            && parts.clone().count() == 2
            && parts.all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(word)
    }

    /// The whole reply on one line, as the log shows it.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("{} {l}", self.code))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
}

/// Why a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The server closed the connection.
    Closed,
    /// A line longer than [`MAX_LINE`] or a reply longer than [`MAX_LINES`].
    TooLong(&'static str),
    /// Not an SMTP reply.
    Malformed(String),
    Io(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Closed => write!(f, "the server closed the connection"),
            ReadError::TooLong(what) => write!(f, "the server sent {what}"),
            ReadError::Malformed(l) => write!(f, "not an SMTP reply: {l:?}"),
            ReadError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

/// Printable form of a server line for logs: control characters replaced, length capped.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Reads one line (up to and including LF) without ever buffering more than [`MAX_LINE`].
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, out: &mut Vec<u8>) -> Result<(), ReadError> {
    out.clear();
    loop {
        let buf = r
            .fill_buf()
            .await
            .map_err(|e| ReadError::Io(e.to_string()))?;
        if buf.is_empty() {
            return Err(ReadError::Closed);
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > MAX_LINE {
            return Err(ReadError::TooLong("a line longer than 4096 bytes"));
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if done {
            return Ok(());
        }
    }
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ReadError> {
    let mut raw = String::new();
    let mut line = Vec::with_capacity(256);
    for _ in 0..MAX_LINES {
        read_line(r, &mut line).await?;
        let text =
            std::str::from_utf8(&line).map_err(|_| ReadError::Malformed(printable(&line)))?;
        let trimmed = text.trim_end_matches(['\r', '\n']);
        let b = trimmed.as_bytes();
        if b.len() < 3
            || !b[..3].iter().all(u8::is_ascii_digit)
            || (b.len() > 3 && b[3] != b' ' && b[3] != b'-')
        {
            return Err(ReadError::Malformed(printable(&line)));
        }
        raw.push_str(trimmed);
        // RFC 5321 section 4.2 allows a reply line with no text ("220"); lettre wants the space.
        if b.len() == 3 {
            raw.push(' ');
        }
        raw.push_str("\r\n");
        if b.len() == 3 || b[3] == b' ' {
            // lettre parses the complete reply (code consistency across lines included).
            let parsed = lettre::transport::smtp::response::Response::from_str(&raw)
                .map_err(|_| ReadError::Malformed(printable(raw.as_bytes())))?;
            let code = parsed
                .code()
                .to_string()
                .parse()
                .map_err(|_| ReadError::Malformed(printable(raw.as_bytes())))?;
            return Ok(Reply {
                code,
                lines: parsed.message().map(str::to_string).collect(),
            });
        }
    }
    Err(ReadError::TooLong("a reply of more than 128 lines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &[u8]) -> Result<Reply, ReadError> {
        let mut r = tokio::io::BufReader::new(input);
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn multiline_and_enhanced_codes() {
        let r = parse(
            b"250-outlook.office365.com Hello\r\n250-SIZE 157286400\r\n250 AUTH LOGIN XOAUTH2\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 3);
        let r = parse(b"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.\r\n").await.unwrap();
        assert_eq!(r.enhanced(), Some("5.7.139"));
        let r = parse(b"220 2.0.0 SMTP server ready\r\n").await.unwrap();
        assert_eq!(r.enhanced(), Some("2.0.0"));
        let r = parse(b"250 smtp.example Hello\r\n").await.unwrap();
        assert_eq!(r.enhanced(), None);
        let r = parse(b"220\r\n").await.unwrap();
        assert_eq!((r.code, r.enhanced()), (220, None));
    }

    #[tokio::test]
    async fn bounded() {
        let long = vec![b'a'; 10_000];
        assert_eq!(
            parse(&long).await,
            Err(ReadError::TooLong("a line longer than 4096 bytes"))
        );
        assert!(matches!(
            parse(b"hello world\r\n").await,
            Err(ReadError::Malformed(_))
        ));
        assert_eq!(parse(b"250-partial\r\n").await, Err(ReadError::Closed));
        let many: Vec<u8> = (0..200).flat_map(|_| b"250-x\r\n".to_vec()).collect();
        assert_eq!(
            parse(&many).await,
            Err(ReadError::TooLong("a reply of more than 128 lines"))
        );
    }
}
