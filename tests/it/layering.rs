//! The layers written at the top of `src/lib.rs`, checked against every import in `src/`: no
//! import runs up a layer, the named rules hold, the simulator stays apart, and no files import
//! each other in a cycle. A second test feeds the checker the up-imports the crate once had, one
//! at a time, to show that each would fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Where a top-level module stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// Layer `n` of `lib.rs`, 0 the ground floor.
    At(usize),
    /// Apart from the agent (the simulator): imports nothing of it, imported only by the top.
    Apart,
}

/// The explicit rules of `lib.rs`, beyond "never up": what some modules must never import.
const NEVER: &[(&str, &[&str])] = &[
    ("config", &["checks", "alerts", "state", "server"]),
    ("checks", &["state", "metrics", "server"]),
    ("state", &["metrics"]),
];
/// The ground floor's plan imports nothing of the agent but this.
const PLAN_MAY_IMPORT: &[&str] = &["secret"];

/// The layers as `lib.rs` lists them: `// ── layer N, …` or `// ── apart, …` lines, each
/// followed by its `pub mod` lines.
fn layers(lib: &str) -> BTreeMap<String, Layer> {
    let mut out = BTreeMap::new();
    let mut current = None;
    for line in lib.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("// ── ") {
            current = if let Some(n) = rest.strip_prefix("layer ") {
                let n: String = n.chars().take_while(char::is_ascii_digit).collect();
                Some(Layer::At(n.parse().expect("a layer number")))
            } else if rest.starts_with("apart") {
                Some(Layer::Apart)
            } else {
                panic!("src/lib.rs: a layer heading that is neither `layer N` nor `apart`: {line}")
            };
        } else if let Some(m) = line
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'))
        {
            let layer =
                current.unwrap_or_else(|| panic!("src/lib.rs: `{line}` before any layer heading"));
            out.insert(m.to_string(), layer);
        }
    }
    out
}

/// Source without comments, string and character literals, and inline `#[cfg(test)] mod … { }`
/// blocks; and the names of the test-only child modules it declares (`#[cfg(test)] mod tests;`).
fn strip(src: &str) -> (String, Vec<String>) {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (next == Some('"') || next == Some('#'))
            && !c
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\''), or a lifetime ('a), which stays.
            if next == Some('\\') {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c[i]);
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    // Test-only code: inline blocks removed, child files named.
    let mut test_children = Vec::new();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at + "#[cfg(test)]".len()..];
        let rest = after.trim_start();
        let skipped = after.len() - rest.len();
        let Some(decl) = rest.strip_prefix("mod ") else {
            // Another test-only item: nothing to do with imports; drop the attribute alone.
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        };
        let name: String = decl
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let decl_at = at + "#[cfg(test)]".len() + skipped;
        let Some(open) = out[decl_at..].find(['{', ';']).map(|k| decl_at + k) else {
            break;
        };
        if out[open..].starts_with(';') {
            test_children.push(name);
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0;
        let mut end = out.len();
        for (k, ch) in out[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        let start = at;
        out.replace_range(start..end, "");
    }
    (out, test_children)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path after `crate::`, `super::` or `self::` in stripped code, with `use` trees
/// expanded, as segments relative to that start: (`crate` | `super`… | `self`, segments).
fn paths(code: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let boundary = i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':');
        let word: String = c[i..].iter().take_while(|ch| is_ident(**ch)).collect();
        if boundary && matches!(word.as_str(), "crate" | "super" | "self") {
            let mut j = i;
            let mut start = Vec::new();
            // crate / self / super::super…
            loop {
                let w: String = c[j..].iter().take_while(|ch| is_ident(**ch)).collect();
                if !(w == "super" || (start.is_empty() && (w == "crate" || w == "self"))) {
                    break;
                }
                let k = j + w.len();
                if c.get(k) == Some(&':') && c.get(k + 1) == Some(&':') {
                    start.push(w);
                    j = k + 2;
                } else {
                    break;
                }
            }
            if start.is_empty() {
                i += word.len().max(1);
                continue;
            }
            let (trees, end) = tree(&c, j);
            for t in trees {
                out.push((start.clone(), t));
            }
            i = end.max(i + 1);
        } else {
            i += word.len().max(1);
        }
    }
    out
}

/// A path or `use` tree at `i`: every full path it names, and where it ends.
fn tree(c: &[char], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |c: &[char], mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut prefix = Vec::new();
    loop {
        i = skip_ws(c, i);
        if c.get(i) == Some(&'{') {
            let mut all = Vec::new();
            i += 1;
            loop {
                i = skip_ws(c, i);
                match c.get(i) {
                    None => return (all, i),
                    Some('}') => return (all, i + 1),
                    Some(',') => i += 1,
                    _ => {
                        let (sub, end) = tree(c, i);
                        for s in sub {
                            let mut p = prefix.clone();
                            p.extend(s.into_iter().filter(|x| x != "self" && x != "*"));
                            all.push(p);
                        }
                        // `x as y`: the rest of the item.
                        i = end;
                        while i < c.len() && !matches!(c[i], ',' | '}') {
                            i += 1;
                        }
                    }
                }
            }
        }
        let w: String = c[i..].iter().take_while(|ch| is_ident(**ch)).collect();
        if w.is_empty() {
            if c.get(i) == Some(&'*') {
                i += 1;
            }
            return (vec![prefix], i);
        }
        prefix.push(w.clone());
        i += w.len();
        if c.get(i) == Some(&':') && c.get(i + 1) == Some(&':') {
            i += 2;
        } else {
            return (vec![prefix], i);
        }
    }
}

/// `src/` as (module path, source): `plan/mod.rs` is `plan`, `plan/app.rs` is `plan::app`.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(root).unwrap().with_extension("");
                let mut parts: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if parts == ["main"] {
                    continue; // the binary: it uses the library as any user does
                }
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                    parts.pop();
                }
                out.insert(parts.join("::"), std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new("src"), Path::new("src"), &mut out);
    out
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

fn within(inner: &str, outer: &str) -> bool {
    outer.is_empty() || inner == outer || inner.starts_with(&format!("{outer}::"))
}

/// Every rule broken by the sources, in words.
fn violations(files: &BTreeMap<String, String>) -> Vec<String> {
    let layers = layers(&files[""]);
    let mut bad = Vec::new();
    let mut tops: BTreeSet<&str> = files.keys().map(|m| top(m)).collect();
    tops.remove("");
    for t in &tops {
        if !layers.contains_key(*t) {
            bad.push(format!("src/lib.rs lists module {t} under no layer"));
        }
    }
    // Test-only files are left out, like inline test modules.
    let mut stripped = BTreeMap::new();
    let mut test_only = BTreeSet::new();
    for (m, src) in files {
        let (code, children) = strip(src);
        for c in children {
            test_only.insert(if m.is_empty() { c } else { format!("{m}::{c}") });
        }
        stripped.insert(m.clone(), code);
    }
    let modules: BTreeSet<&String> = stripped
        .keys()
        .filter(|m| !test_only.contains(*m))
        .collect();
    let resolve = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .find(|p| modules.contains(p))
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &modules {
        let here: Vec<String> = if m.is_empty() {
            Vec::new()
        } else {
            m.split("::").map(String::from).collect()
        };
        for (start, rest) in paths(&stripped[*m]) {
            // `crate::` from the root; `self::` from this module; each `super::` one up.
            let mut base = if start[0] == "crate" {
                Vec::new()
            } else {
                here.clone()
            };
            for s in &start {
                if s == "super" {
                    base.pop();
                }
            }
            let mut full = base;
            full.extend(rest);
            let Some(target) = resolve(&full) else {
                continue;
            };
            if within(m, &target) || within(&target, m) {
                continue; // a file and its own parent or children
            }
            edges.entry(m.to_string()).or_default().insert(target);
        }
    }
    for (from, tos) in &edges {
        for to in tos {
            let (f, t) = (top(from), top(to));
            let file = |m: &str| format!("src/{}", m.replace("::", "/"));
            if f == "plan" && t != "plan" && !PLAN_MAY_IMPORT.contains(&t) {
                bad.push(format!(
                    "{} imports {to}: the plan imports nothing but {PLAN_MAY_IMPORT:?}",
                    file(from)
                ));
            }
            for (who, never) in NEVER {
                if f == *who && never.contains(&t) {
                    bad.push(format!(
                        "{} imports {to}: {who} never imports {never:?}",
                        file(from)
                    ));
                }
            }
            if f == t {
                continue;
            }
            match (layers.get(f), layers.get(t)) {
                (Some(Layer::Apart), _) => bad.push(format!(
                    "{} imports {to}: {f} stands apart and imports nothing of the agent",
                    file(from)
                )),
                (Some(Layer::At(a)), Some(Layer::Apart)) => {
                    let highest = layers.values().filter_map(|l| match l {
                        Layer::At(n) => Some(*n),
                        Layer::Apart => None,
                    });
                    if Some(*a) != highest.max() {
                        bad.push(format!("{} imports {to}: only the top layer uses {t}", file(from)));
                    }
                }
                (Some(Layer::At(a)), Some(Layer::At(b))) if b > a => bad.push(format!(
                    "{} (layer {a}) imports {to} (layer {b}): an import up the layers of src/lib.rs",
                    file(from)
                )),
                _ => {}
            }
        }
    }
    for cycle in cycles(&edges) {
        bad.push(format!("an import cycle: {}", cycle.join(" → ")));
    }
    bad
}

/// The strongly connected components of more than one file (Tarjan), each as a list.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn every_import_runs_down_the_layers_of_lib_rs_and_none_in_a_cycle() {
    let files = sources();
    let layers = layers(&files[""]);
    assert!(
        layers.len() >= 20,
        "src/lib.rs lists its modules by layer: {layers:?}"
    );
    let bad = violations(&files);
    assert!(
        bad.is_empty(),
        "the layers of src/lib.rs are broken:\n{}",
        bad.join("\n")
    );
}

/// The up-imports and cycles the crate had at `ee78431` (or their like, the items having moved
/// since), put back one at a time: each must be reported.
#[test]
fn the_check_fails_on_each_import_the_crate_used_to_have() {
    let files = sources();
    let cases: &[(&str, &str, &str)] = &[
        (
            "plan",
            "pub use crate::config::{Cloud, Schedule};",
            "the plan imports nothing",
        ),
        (
            "plan::settings",
            "use crate::alerts::AlertSettings;",
            "the plan imports nothing",
        ),
        (
            "config::validate",
            "use crate::checks::smtp::is_plain_address;",
            "config never imports",
        ),
        (
            "config::validate",
            "use crate::alerts::AlertSettings;",
            "config never imports",
        ),
        (
            "diagnosis",
            "use crate::status::days_until;",
            "(layer 4) imports status (layer 7)",
        ),
        (
            "state",
            "use crate::metrics::text::{Histogram, LATENCY_BUCKETS};",
            "state never imports",
        ),
        (
            "server",
            "use crate::agent::ReloadRequest;",
            "(layer 8) imports agent (layer 9)",
        ),
        (
            "checks::canary",
            "use crate::state::StateStore;",
            "checks never imports",
        ),
        (
            "checks::smtp::wire",
            "use super::session::Run;",
            "an import cycle",
        ),
        ("sim::reply", "use super::https::start;", "an import cycle"),
        ("sim::token", "use crate::plan::App;", "stands apart"),
        (
            "metrics",
            "use crate::sim::Simulator;",
            "only the top layer uses sim",
        ),
    ];
    for (module, import, says) in cases {
        let mut changed = files.clone();
        let src = changed
            .get_mut(*module)
            .unwrap_or_else(|| panic!("no module {module}"));
        // After the module's doc comment, where imports go.
        *src = format!("{import}\n{src}");
        let bad = violations(&changed);
        assert!(
            bad.iter().any(|b| b.contains(says)),
            "`{import}` in {module} is not reported as {says:?}: {bad:?}"
        );
    }
}

/// Tables may run long (one row per scenario, reason or rule); nothing else does.
const TABLES: &[(&str, &str)] = &[
    ("demo", "the demo's scenarios, one per failure mode"),
    (
        "reasons",
        "the reason tables, one row per reason of each check",
    ),
    ("alerts::rules", "the rule table, one entry per alert"),
];

/// About 600 lines: a file that grows past this does more than one job.
const MAX_LINES: usize = 650;

#[test]
fn every_file_has_one_job_a_doc_line_that_names_it_and_about_600_lines_at_most() {
    let files = sources();
    let mut long = Vec::new();
    for (module, src) in &files {
        assert!(
            src.trim_start().starts_with("//!"),
            "{module} does not open with a `//!` line naming its job"
        );
        // Unit tests beside the code do not count.
        let code = src.split("\n#[cfg(test)]").next().unwrap_or(src);
        let lines = code.lines().count();
        if lines > MAX_LINES && !TABLES.iter().any(|(t, _)| t == module) {
            long.push(format!("{module}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines without being a table: {long:?}"
    );
    for (t, why) in TABLES {
        assert!(files.contains_key(*t), "{t} ({why}) is gone: drop it here");
    }
}
