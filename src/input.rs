//! What people and files hand the agent, taken with bounds: files read up to a size cap (a
//! configuration, a secret, a certificate: `/dev/zero` is an error, not an exhausted memory),
//! YAML checked for flow nesting before it is parsed (the parser takes quadratic time in it), and
//! values quoted short in error messages.

use std::io::Read;
use std::path::Path;

/// The configuration file: a 10,000-mailbox fleet takes about 1.1 MB, so 16 MiB holds well over
/// 100,000 mailboxes.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Every other file the agent reads: a secret, a key, a certificate, a CA bundle (the Mozilla
/// bundle is about 220 KB), a password, the web configuration.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Flow collections (`[…]`, `{…}`) nested deeper than this are refused before parsing: a real
/// configuration nests two or three, and the YAML parser takes quadratic time in the depth (196 KB
/// of `[` took 22 s).
pub const MAX_YAML_NESTING: usize = 32;

/// Characters of a quoted value an error message shows.
pub const MAX_QUOTED_CHARS: usize = 200;

/// Reads a file of at most `limit` bytes; a larger one (or an endless one, such as `/dev/zero`) is
/// an error after `limit + 1` bytes, never an attempt to hold it all.
pub fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        zeroize::Zeroize::zeroize(&mut buf);
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} (is it the right file?)", size(limit)),
        ));
    }
    Ok(buf)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_to_string_capped(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_capped(path, limit)?).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
    })
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MiB", bytes / (1024 * 1024))
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// The file's permission bits when group or others may read it (Unix).
pub fn others_may_read(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o044 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Where YAML nests its flow collections deeper than allowed: line and column (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooDeep {
    pub line: usize,
    pub column: usize,
}

impl TooDeep {
    /// The message for people.
    pub fn message(&self) -> String {
        format!("flow collections ([…], {{…}}) nested deeper than {MAX_YAML_NESTING} levels")
    }
}

/// Checks the depth of YAML's flow collections without parsing it. A bracket counts unless it
/// is in a comment, a quoted scalar or a block scalar (`|`, `>`), as YAML reads them; where the
/// scan is unsure it counts (a bracket too many refuses a weird file, one too few would let the
/// quadratic parse in).
pub fn yaml_nesting(text: &str, limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    // Inside a quoted scalar that goes on past the end of a line.
    let mut quote: Option<char> = None;
    // Inside a block scalar: lines indented deeper than this are its text.
    let mut block: Option<usize> = None;
    for (n, line) in text.split('\n').enumerate() {
        let indent = line.chars().take_while(|c| *c == ' ').count();
        if let Some(parent) = block {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block = None;
        }
        let chars: Vec<char> = line.chars().collect();
        // The last character that was not a space, and whether a space followed it.
        let mut last: Option<char> = None;
        let mut spaced = true;
        // Where this line's node starts (after `- ` entries): a block scalar's parent indent.
        let mut node = indent;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if let Some(q) = quote {
                if c == '\\' && q == '"' {
                    i += 2;
                    continue;
                }
                if c == q {
                    if q == '\'' && chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                    last = Some(c);
                    spaced = false;
                }
                i += 1;
                continue;
            }
            if c == ' ' || c == '\t' || c == '\r' {
                spaced = true;
                i += 1;
                continue;
            }
            let starts_scalar = match last {
                None => true,
                Some('[' | '{' | ',') => true,
                Some(':' | '-' | '?') => spaced,
                _ => false,
            };
            match c {
                '#' if spaced => break,
                '"' | '\'' if starts_scalar => quote = Some(c),
                '|' | '>' if starts_scalar && depth == 0 => {
                    let rest: String = chars[i + 1..].iter().collect();
                    let rest = rest.trim_start_matches([
                        '+', '-', '1', '2', '3', '4', '5', '6', '7', '8', '9',
                    ]);
                    let rest = rest.trim_start();
                    if rest.is_empty() || rest.starts_with('#') {
                        block = Some(if last == Some('-') { i - 1 } else { node });
                        break;
                    }
                }
                '-' if last.is_none() && chars.get(i + 1).is_none_or(|n| *n == ' ') => {
                    node = i + 2;
                }
                '[' | '{' => {
                    depth += 1;
                    if depth > limit {
                        return Err(TooDeep {
                            line: n + 1,
                            column: i + 1,
                        });
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            // A `- ` entry keeps the line's start: what follows starts a node too.
            last = if c == '-' && last.is_none() && chars.get(i + 1).is_none_or(|n| *n == ' ') {
                None
            } else {
                Some(c)
            };
            spaced = false;
            i += 1;
        }
    }
    Ok(())
}

/// An error message with every quoted value (`"…"`, `` `…` ``) cut to [`MAX_QUOTED_CHARS`]
/// characters: a 50 MB value is named, not repeated.
pub fn clip_quoted(message: &str) -> String {
    let chars: Vec<char> = message.chars().collect();
    if chars.len() <= MAX_QUOTED_CHARS {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len().min(4 * MAX_QUOTED_CHARS + 256));
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '"' && c != '`' {
            out.push(c);
            i += 1;
            continue;
        }
        // The quoted value, escapes kept whole (`\"`, `\u{1f}`).
        let mut units: Vec<(usize, usize)> = Vec::new();
        let mut j = i + 1;
        while j < chars.len() && chars[j] != c {
            let start = j;
            if c == '"' && chars[j] == '\\' {
                j += 1;
                if chars.get(j) == Some(&'u') && chars.get(j + 1) == Some(&'{') {
                    while j < chars.len() && chars[j] != '}' {
                        j += 1;
                    }
                }
            }
            j += 1;
            units.push((start, j.min(chars.len())));
        }
        out.push(c);
        if units.len() > MAX_QUOTED_CHARS {
            let end = units[MAX_QUOTED_CHARS - 1].1;
            out.extend(&chars[i + 1..end]);
            out.push('…');
            out.push(c);
            out.push_str(&format!(" ({} characters)", units.len()));
        } else {
            out.extend(&chars[i + 1..j.min(chars.len())]);
            if j < chars.len() {
                out.push(c);
            }
        }
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        yaml_nesting(text, 3).is_ok()
    }

    #[test]
    fn flow_nesting_is_counted_where_yaml_sees_it() {
        assert!(depth_ok("a: [[[1]]]\n"));
        assert!(!depth_ok("a: [[[[1]]]]\n"));
        assert_eq!(
            yaml_nesting("a: 1\nb: {x: [[[y]]]}\n", 3),
            Err(TooDeep {
                line: 2,
                column: 10
            })
        );
        // Brackets in comments, quoted and block scalars are text.
        assert!(depth_ok("a: 1 # [[[[[[\n"));
        assert!(depth_ok("a: \"[[[[[[\\\" # [[\"\n"));
        assert!(depth_ok("a: '[[[['' [[[['\n"));
        assert!(depth_ok("a: |\n  [[[[[[\n  ]]]]\nb: 1\n"));
        assert!(depth_ok("- x: >-\n    {{{{{{\n- y\n"));
        // A quote inside a plain scalar starts nothing, so it cannot hide what follows.
        assert!(!depth_ok("a: it's [[[[\n"));
        assert!(!depth_ok("a: b '\n[[[[[[\n"));
        // Closing brackets in a string do not cancel real ones.
        assert!(!depth_ok(
            "a: [\"]]]]\", [\"]]]]\", [\"]]]]\", [\"]]]]\"]]]]\n"
        ));
        // A block scalar ends where a line is not indented under its parent.
        assert!(!depth_ok("- k: |\n    text\n  l: [[[[1]]]]\n"));
        assert!(!depth_ok("k: |\n  text\nl: [[[[1]]]]\n"));
        // `#` is a comment only after a space: `a#[` is no comment.
        assert!(!depth_ok("a: [b#[[[[\n"));
    }

    #[test]
    fn long_quoted_values_are_cut() {
        let long = "x".repeat(5000);
        let m = clip_quoted(&format!("invalid URL {long:?}: relative URL"));
        assert!(m.len() < 300, "{m}");
        assert!(m.ends_with("…\" (5000 characters): relative URL"), "{m}");
        let m = clip_quoted(&format!("unknown field `{long}`, expected `a`"));
        assert!(m.contains("(5000 characters), expected `a`"), "{m}");
        let short = "invalid value \"abc\"";
        assert_eq!(clip_quoted(short), short);
        // Escapes stay whole.
        let escaped = format!("{:?}", "\u{1}".repeat(300));
        let m = clip_quoted(&format!("bad {escaped}"));
        assert!(m.contains("\\u{1}…\""), "{m}");
    }

    #[test]
    fn files_are_read_up_to_their_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'a'; 2048]).unwrap();
        assert_eq!(read_capped(&p, 2048).unwrap().len(), 2048);
        let e = read_capped(&p, 1024).unwrap_err();
        assert!(e.to_string().contains("larger than 1 KiB"), "{e}");
        #[cfg(unix)]
        {
            let e = read_capped(Path::new("/dev/zero"), 1024).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        }
    }
}
