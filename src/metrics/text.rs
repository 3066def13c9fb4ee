//! The Prometheus text exposition format (version 0.0.4), written directly into one buffer: one
//! `# HELP` and `# TYPE` per family, its samples together, label values escaped. Writing text beats building
//! the `prometheus` crate's protobuf model at scrape time: that model costs a few hundred bytes
//! of small allocations per series, which at 10,000 mailboxes was most of the agent's memory
//! and 0.5 s per scrape.

use std::fmt::Write as _;

pub use crate::histogram::{Histogram, LATENCY_BUCKETS};

/// The kind of a family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// The exposition being written into one buffer, a family at a time: a family's `# HELP` and
/// `# TYPE` go out with its first sample (a family without samples leaves no trace), and all of
/// its samples must follow before the next family starts.
pub struct Exposition {
    prefix: &'static str,
    out: String,
    /// The family being written, and whether its header is out.
    current: Option<(&'static str, &'static str, Kind)>,
    header_written: bool,
    #[cfg(debug_assertions)]
    seen: std::collections::HashSet<&'static str>,
}

/// A label value with `\`, `"` and line feeds escaped (the format's three escapes).
fn escape_into(out: &mut String, v: &str) {
    // Most values (names, addresses, ids) need no escape: one copy, not a push per character.
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A sample value: whole numbers without a fraction, others in Rust's shortest round-trip form.
fn value_into(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else if let Some((r, digits)) = decimal(v) {
        // What `{v}` writes (see `decimal`), without the float formatter: the page's values
        // are mostly timestamps in milliseconds and durations in microseconds.
        if r < 0 {
            out.push('-');
        }
        let scale = 10u64.pow(digits);
        let (int, mut frac) = (r.unsigned_abs() / scale, r.unsigned_abs() % scale);
        out.push_str(itoa::Buffer::new().format(int));
        out.push('.');
        let mut width = digits as usize;
        while frac % 10 == 0 {
            frac /= 10;
            width -= 1;
        }
        let mut buf = itoa::Buffer::new();
        let s = buf.format(frac);
        for _ in s.len()..width {
            out.push('0');
        }
        out.push_str(s);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `v` as `r / 10^digits` when it is the double nearest that decimal, with 3 or 6 digits and
/// `v` small enough that no shorter decimal is as near: then that decimal, trailing zeros
/// dropped, is Rust's shortest round-trip form, which `{v}` writes.
fn decimal(v: f64) -> Option<(i64, u32)> {
    for (digits, limit) in [(3, 1e11), (6, 1e8)] {
        if v.abs() >= limit {
            continue;
        }
        let scale = 10f64.powi(digits as i32);
        let r = (v * scale).round();
        if r / scale == v {
            return Some((r as i64, digits));
        }
    }
    None
}

/// Labels as a sample writes them between the braces (`k="v",k2="v2"`, values escaped), into
/// `out`: for [`Exposition::sample_escaped`].
pub fn escaped_labels(out: &mut String, labels: &[(&str, &str)]) {
    push_labels(out, labels, true);
}

/// `labels` as `k="v"` pairs, values escaped, each after a comma but the first of the braces.
fn push_labels<'a>(
    out: &mut String,
    labels: impl IntoIterator<Item = &'a (&'a str, &'a str)>,
    mut first: bool,
) {
    for (k, v) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_into(out, v);
        out.push('"');
    }
}

impl Exposition {
    /// Series named `{prefix}_{name}`, into a buffer of about `capacity` bytes (the size of the
    /// last page, so that writing does not grow it step by step).
    pub fn new(prefix: &'static str, capacity: usize) -> Self {
        Self {
            prefix,
            out: String::with_capacity(capacity),
            current: None,
            header_written: false,
            #[cfg(debug_assertions)]
            seen: Default::default(),
        }
    }

    /// Starts a family; its samples follow.
    pub fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) {
        #[cfg(debug_assertions)]
        assert!(self.seen.insert(name), "family {name} written twice");
        self.current = Some((name, help, kind));
        self.header_written = false;
    }

    fn start_sample(&mut self, suffix: &str) {
        let (name, help, kind) = self.current.expect("a family is started");
        if !self.header_written {
            let _ = writeln!(self.out, "# HELP {}_{name} {help}", self.prefix);
            let _ = writeln!(self.out, "# TYPE {}_{name} {}", self.prefix, kind.as_str());
            self.header_written = true;
        }
        self.out.push_str(self.prefix);
        self.out.push('_');
        self.out.push_str(name);
        self.out.push_str(suffix);
    }

    /// The labels (`escaped` ones first, as [`escaped_labels`] writes them), the value and the
    /// line's end.
    fn finish_sample(
        &mut self,
        escaped: &str,
        labels: &[(&str, &str)],
        more: &[(&str, &str)],
        v: f64,
    ) {
        let out = &mut self.out;
        if !escaped.is_empty() || !labels.is_empty() || !more.is_empty() {
            out.push('{');
            out.push_str(escaped);
            push_labels(out, labels.iter().chain(more), escaped.is_empty());
            out.push('}');
        }
        out.push(' ');
        value_into(out, v);
        out.push('\n');
    }

    /// A sample whose first labels were written (escaped, as `k="v",k2="v2"`) by
    /// [`escaped_labels`], then `more`: for a target's labels written once and read by every
    /// family of the target.
    pub fn sample_escaped(&mut self, escaped: &str, more: &[(&str, &str)], value: f64) {
        self.start_sample("");
        self.finish_sample(escaped, &[], more, value);
    }

    /// A sample of the current gauge or counter family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.sample_with(labels, &[], value);
    }

    /// A sample with labels in two parts (a target's base labels, then its own): what
    /// `sample(&[base, more].concat(), ..)` writes, without building the list.
    pub fn sample_with(&mut self, base: &[(&str, &str)], more: &[(&str, &str)], value: f64) {
        self.start_sample("");
        self.finish_sample("", base, more, value);
    }

    /// The samples of one histogram of the current histogram family.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) {
        let mut le = String::with_capacity(8);
        for (bound, cumulative) in h.cumulative() {
            le.clear();
            value_into(&mut le, bound);
            self.start_sample("_bucket");
            self.finish_sample("", labels, &[("le", &le)], cumulative as f64);
        }
        self.start_sample("_bucket");
        self.finish_sample("", labels, &[("le", "+Inf")], h.count as f64);
        self.start_sample("_sum");
        self.finish_sample("", labels, &[], h.sum);
        self.start_sample("_count");
        self.finish_sample("", labels, &[], h.count as f64);
    }

    /// Starts a family and writes one sample: for families of a single series.
    pub fn one(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.family(name, help, kind);
        self.sample(labels, value);
    }

    /// The exposition text.
    pub fn encode(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::Buckets;

    #[test]
    fn families_are_written_with_their_header_escaped_and_empty_ones_left_out() {
        let mut e = Exposition::new("p", 0);
        e.one("a_total", "A.", Kind::Counter, &[], 3.0);
        e.family("empty", "Never written.", Kind::Gauge);
        e.family("b", "B.", Kind::Gauge);
        e.sample(&[("t", "x\"y\\z\nw")], 1.0);
        e.sample(&[("t", "2")], 0.25);
        let text = e.encode();
        assert_eq!(
            text,
            "# HELP p_a_total A.\n# TYPE p_a_total counter\np_a_total 3\n# HELP p_b B.\n# TYPE p_b gauge\np_b{t=\"x\\\"y\\\\z\\nw\"} 1\np_b{t=\"2\"} 0.25\n"
        );
    }

    #[test]
    fn labels_escaped_once_write_what_labels_given_each_time_write() {
        let base = [("t", "x\"y\\z\nw"), ("c", "smtp")];
        for more in [&[][..], &[("r", "a\"b")][..], &[("r", "a"), ("s", "b")][..]] {
            let mut once = String::new();
            escaped_labels(&mut once, &base);
            let mut a = Exposition::new("p", 0);
            a.family("f", "F.", Kind::Gauge);
            a.sample_escaped(&once, more, 0.5);
            let mut b = Exposition::new("p", 0);
            b.family("f", "F.", Kind::Gauge);
            b.sample_with(&base, more, 0.5);
            assert_eq!(a.encode(), b.encode());
        }
        let mut a = Exposition::new("p", 0);
        a.family("f", "F.", Kind::Gauge);
        a.sample_escaped("", &[], 2.0);
        a.sample_escaped("", &[("r", "x")], 3.0);
        assert_eq!(
            a.encode(),
            "# HELP p_f F.\n# TYPE p_f gauge\np_f 2\np_f{r=\"x\"} 3\n"
        );
    }

    #[test]
    fn values_are_written_as_rusts_shortest_form() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            0.001,
            0.000001,
            0.1 + 0.2,
            1e-7,
            123.456,
            1e11,
            9.99e10,
            1e15,
            2e15,
            -3.25,
            1796528645.671,
            0.000435,
            99999999.999999,
        ];
        for _ in 0..200_000 {
            let n = next();
            values.push(match n % 5 {
                // timestamps in milliseconds, durations in microseconds, seconds, anything
                0 => (1_700_000_000_000 + (n >> 8) % 200_000_000_000) as f64 / 1000.0,
                1 => ((n >> 8) % 100_000_000) as f64 / 1e6,
                2 => ((n >> 8) % 10_000_000) as f64 / 1000.0 - 5000.0,
                3 => f64::from_bits(n >> 2),
                _ => (n >> 11) as f64 / (1u64 << 20) as f64,
            });
        }
        for v in values {
            let mut out = String::new();
            value_into(&mut out, v);
            let want = if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{}", v as i64)
            } else {
                format!("{v}")
            };
            assert_eq!(out, want, "{v:?}");
        }
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut h = Histogram::new(Buckets::Latency);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut e = Exposition::new("p", 0);
        e.family("d_seconds", "D.", Kind::Histogram);
        e.histogram(&[("k", "v")], &h);
        let text = e.encode();
        assert!(
            text.contains("p_d_seconds_bucket{k=\"v\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("p_d_seconds_bucket{k=\"v\",le=\"1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("p_d_seconds_bucket{k=\"v\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("p_d_seconds_sum{k=\"v\"} 4.25\n"), "{text}");
        assert!(text.contains("p_d_seconds_count{k=\"v\"} 4\n"), "{text}");
    }
}
