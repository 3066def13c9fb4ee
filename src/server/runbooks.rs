//! `GET /runbooks`: the runbooks (`docs/runbooks.md`, built into the binary) as one HTML page,
//! each heading with the anchor GitHub gives it, so that an alert's `runbook_url`
//! (`http://<agent>/runbooks#smtpoauthtokenfailing`) opens where the pager is read, even where
//! nobody can reach the project's repository.

use std::sync::OnceLock;

use pulldown_cmark::{html, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// The runbooks' Markdown, as shipped.
const RUNBOOKS: &str = include_str!("../../docs/runbooks.md");

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-` and `_`), spaces to
/// `-`.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page, rendered once.
pub fn page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| render(RUNBOOKS))
}

/// Markdown to a page: headings get their anchors (as `id`), the rest is CommonMark with
/// tables.
fn render(markdown: &str) -> String {
    let events: Vec<Event> = Parser::new_ext(markdown, Options::ENABLE_TABLES).collect();
    let mut out: Vec<Event> = Vec::with_capacity(events.len());
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { level, .. }) = &events[i] {
            let level = *level;
            // The heading's text, up to its end.
            let end = events[i..]
                .iter()
                .position(|e| matches!(e, Event::End(TagEnd::Heading(_))))
                .map_or(events.len(), |p| i + p);
            let text: String = events[i + 1..end]
                .iter()
                .filter_map(|e| match e {
                    Event::Text(t) | Event::Code(t) => Some(t.as_ref()),
                    _ => None,
                })
                .collect();
            let mut inner = String::new();
            html::push_html(&mut inner, events[i + 1..end].iter().cloned());
            let n = match level {
                HeadingLevel::H1 => 1,
                HeadingLevel::H2 => 2,
                HeadingLevel::H3 => 3,
                HeadingLevel::H4 => 4,
                HeadingLevel::H5 => 5,
                HeadingLevel::H6 => 6,
            };
            let id = escape(&anchor(&text));
            out.push(Event::Html(
                format!("<h{n} id=\"{id}\"><a href=\"#{id}\">{inner}</a></h{n}>\n").into(),
            ));
            i = end + 1;
            continue;
        }
        out.push(events[i].clone());
        i += 1;
    }
    let mut body = String::new();
    html::push_html(&mut body, out.into_iter());
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>smtp-oauth-exporter runbooks</title><style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}h1 a,h2 a,h3 a{{color:inherit;text-decoration:none}}code,pre{{background:#f4f4f4;border-radius:3px}}pre{{padding:.5rem;overflow-x:auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .4rem;vertical-align:top}}:target{{background:#fff3c4}}</style></head><body>\n<p><a href=\"/\">status</a> · <a href=\"/alerts\">alerts</a></p>\n{body}</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_heading_gets_githubs_anchor() {
        assert_eq!(anchor("SmtpOAuthTokenFailing"), "smtpoauthtokenfailing");
        assert_eq!(
            anchor("Before you start: what every alert has"),
            "before-you-start-what-every-alert-has"
        );
        let html = render("# Title\n\n## SmtpOAuthX\n\ntext with `code` and a [link](#smtpoauthx)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert!(
            html.contains("<h2 id=\"smtpoauthx\"><a href=\"#smtpoauthx\">SmtpOAuthX</a></h2>"),
            "{html}"
        );
        assert!(html.contains("<table>") && html.contains("<code>code</code>"));
    }

    #[test]
    fn the_shipped_runbooks_have_a_section_for_every_alert() {
        for name in crate::alerts::AlertName::ALL {
            assert!(
                page().contains(&format!("id=\"{}\"", name.anchor())),
                "no section {}",
                name.anchor()
            );
        }
    }
}
