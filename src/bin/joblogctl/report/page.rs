//! The page: its head (the Content-Security-Policy, the CSS for light,
//! dark and print), the headline figures, the tables, and the number
//! formats they share.
//!
//! Every figure that `stats` also gives carries `data-k`, its path in
//! `stats --json` (`total_jobs`, `error_types/<name>`,
//! `by_worker/<name>/failed`, `timings/<name>/p95`), on the element that
//! shows it: the tests read the page (as the browser built it) against
//! `stats --json` through those.

use std::fmt::Write as _;

use serde_json::Value;

use super::svg::esc;
use super::{Data, Failure, Scope, Stats, Tally, charts};

/// No request of any kind (scripts, images, fonts, styles from
/// elsewhere): only the page's own `<style>`. A browser that blocks
/// something logs it, which the tests look for.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// Light by default; dark under `prefers-color-scheme: dark`; print
/// always light, without scroll boxes, each section on one page when it
/// fits. The charts' colours are the classes' (`.ok`, `.fail`, `.c0`…),
/// so they follow the scheme too.
const CSS: &str = r#"
:root{--bg:#f5f6f8;--card:#fff;--fg:#1c2230;--muted:#5b6477;--line:#d8dce4;--grid:#e9ecf1;
--ok:#3a9a62;--fail:#d5434f;--range:#4a7fc1;--mark:#1c2230;
--c0:#e69f00;--c1:#0072b2;--c2:#cc79a7;--c3:#009e73;--c4:#d55e00;--c5:#56b4e9;--c6:#a88f00;--c7:#8b909a}
@media (prefers-color-scheme:dark){:root{--bg:#10141b;--card:#1a2029;--fg:#e3e7ee;--muted:#9aa3b3;
--line:#2d3541;--grid:#252c37;--ok:#4cbc7a;--fail:#f0646f;--range:#6d9fe0;--mark:#e3e7ee;
--c0:#f0b232;--c1:#3d98d8;--c2:#dc93bc;--c3:#2cbf93;--c4:#f07b3a;--c5:#7cc6f0;--c6:#d4bd3a;--c7:#8e95a1}}
@media print{:root{--bg:#fff;--card:#fff;--fg:#000;--muted:#444;--line:#bbb;--grid:#ddd;
--ok:#3a9a62;--fail:#d5434f;--range:#4a7fc1;--mark:#000;
--c0:#e69f00;--c1:#0072b2;--c2:#cc79a7;--c3:#009e73;--c4:#d55e00;--c5:#56b4e9;--c6:#a88f00;--c7:#8b909a}}
*{box-sizing:border-box}
body{margin:0;padding:24px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 10px}
.scope{color:var(--muted);margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(132px,1fr));gap:12px;margin:0 0 18px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 14px;margin:0}
.kpi dt{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.04em}
.kpi dd{margin:2px 0 0;font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.kpi dd.time{font-size:14px;font-weight:500;padding-top:6px}
.kpi dd.sub{font-size:12px;font-weight:400;color:var(--muted)}
.kpi dd.bad{color:var(--fail)}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:0 0 18px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.two section{margin:0 0 18px;min-width:0}
@media (max-width:820px){.two{grid-template-columns:1fr}}
.chart{display:block;width:100%;height:auto}
.chart text{fill:var(--fg);font-size:12px}
.chart text.axis{fill:var(--muted);font-size:11px}
.chart .grid{stroke:var(--grid);stroke-width:1}
.chart .base{stroke:var(--muted);stroke-width:1}
.chart .hit{fill:transparent}
.chart g:hover rect:not(.hit),.chart g:hover path{opacity:.8}
.ok{fill:var(--ok)}.fail{fill:var(--fail)}.range{fill:var(--range)}.mark{fill:var(--mark)}
.whisker{stroke:var(--range);stroke-width:2}
.c0{fill:var(--c0)}.c1{fill:var(--c1)}.c2{fill:var(--c2)}.c3{fill:var(--c3)}
.c4{fill:var(--c4)}.c5{fill:var(--c5)}.c6{fill:var(--c6)}.c7{fill:var(--c7)}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:0 0 8px;padding:0;list-style:none;color:var(--muted);font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
i.ok{background:var(--ok)}i.fail{background:var(--fail)}i.range{background:var(--range)}i.mark{background:var(--mark)}
i.c0{background:var(--c0)}i.c1{background:var(--c1)}i.c2{background:var(--c2)}i.c3{background:var(--c3)}
i.c4{background:var(--c4)}i.c5{background:var(--c5)}i.c6{background:var(--c6)}i.c7{background:var(--c7)}
.scroll{max-height:290px;overflow:auto;border:1px solid var(--line);border-radius:6px;margin-top:10px}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;position:sticky;top:0;background:var(--card)}
th.n,td.n{text-align:right;white-space:nowrap}
td.err{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;word-break:break-word}
td small{display:block;color:var(--muted)}
a{color:var(--range);overflow-wrap:anywhere}
td.url{min-width:15em}
.empty,.note{color:var(--muted);font-size:12px;margin:6px 0 0}
footer{color:var(--muted);font-size:12px;margin-top:8px}
@media print{body{padding:0;font-size:11px}section,.kpi{break-inside:avoid}
.scroll{max-height:none;overflow:visible;border:0}th{position:static}a{color:inherit;text-decoration:none}}
"#;

/// The whole page.
pub(super) fn render(d: &Data, scope: &Scope) -> String {
    let s = &d.stats;
    let mut p = String::with_capacity(64 * 1024);
    let what = scope_text(scope);
    let _ = write!(
        p,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <title>Job log report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n\
         <h1>Job log report</h1>\n<p class=\"scope\">{}</p>\n",
        esc(&what),
        esc(&format!(
            "{what} · from {} · made {}",
            if scope.central {
                "the central database (every host)"
            } else {
                "joblogd"
            },
            scope.generated.replace('T', " ")
        ))
    );
    p.push_str(&headline(s));
    p.push_str(&charts::over_time(&d.time_series, s));
    p.push_str(&charts::failures(s, &d.failures_by_stage));
    p.push_str(&charts::timings(s));
    p.push_str("<div class=\"two\">\n");
    p.push_str(&groups(
        "By subject",
        "by_subject",
        "Subject",
        &s.by_subject,
    ));
    p.push_str(&groups("By worker", "by_worker", "Worker", &s.by_worker));
    p.push_str("</div>\n");
    p.push_str(&recent(&d.recent_failures));
    let _ = write!(
        p,
        "<footer>Successful: a truthy <code>success</code>, as the old logger counted. \
         Times are <code>logged_at</code> as logged (local time). Percentiles are \
         nearest-rank, read from log-linear histograms (within 0.8% of the exact value). \
         Made by joblogctl {}.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    p
}

/// `subject AI, since …` or `every record`.
fn scope_text(scope: &Scope) -> String {
    if scope.filters.is_empty() {
        return "every record".into();
    }
    scope
        .filters
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The headline row: one card per figure.
fn headline(s: &Stats) -> String {
    let mut h = String::from("<div class=\"cards\">\n");
    let mut card = |label: &str, key: &str, value: String, class: &str, sub: &str| {
        let _ = writeln!(
            h,
            "<dl class=\"kpi\"><dt>{label}</dt><dd class=\"{class}\" data-k=\"{key}\">{}</dd>{sub}</dl>",
            esc(&value)
        );
    };
    let sub = format!(
        "<dd class=\"sub\"><span data-k=\"successful\">{}</span> successful</dd>",
        thousands(s.successful)
    );
    card("Jobs", "total_jobs", thousands(s.total_jobs), "", "");
    card(
        "Success rate",
        "success_rate",
        pct(s.success_rate),
        "",
        &sub,
    );
    let bad = if s.failed > 0 { "bad" } else { "" };
    card("Failed", "failed", thousands(s.failed), bad, "");
    let avg = s
        .average_duration
        .map_or("—".into(), |d| format!("{d:.1} s"));
    card("Average duration", "average_duration", avg, "", "");
    let files = number(&s.total_files_created);
    card("Files created", "total_files_created", files, "", "");
    card(
        "Retry candidates",
        "retry_candidates",
        thousands(s.retry_candidates),
        "",
        "",
    );
    let first = s.first_logged_at.as_deref().map_or("—".into(), time);
    card("First logged", "first_logged_at", first, "time", "");
    let last = s.last_logged_at.as_deref().map_or("—".into(), time);
    card("Last logged", "last_logged_at", last, "time", "");
    h.push_str("</div>\n");
    h
}

/// The table of `by_subject` or `by_worker`, the most jobs first.
fn groups(
    title: &str,
    key: &str,
    name: &str,
    m: &std::collections::BTreeMap<String, Tally>,
) -> String {
    let mut rows: Vec<(&String, &Tally)> = m.iter().collect();
    rows.sort_by(|a, b| b.1.total.cmp(&a.1.total).then(a.0.cmp(b.0)));
    let mut t = Table::new(&[name, "#Jobs", "#Failed", "#Failure rate"]);
    for (n, tally) in rows {
        let rate = tally.failed as f64 / tally.total.max(1) as f64;
        t.row(vec![
            Cell::text(n),
            Cell::num(thousands(tally.total)).key(format!("{key}/{n}/total")),
            Cell::num(thousands(tally.failed)).key(format!("{key}/{n}/failed")),
            Cell::num(pct(rate)),
        ]);
    }
    let body = if t.is_empty() {
        empty("No records.")
    } else {
        t.finish()
    };
    format!("<section>\n<h2>{}</h2>\n{body}</section>\n", esc(title))
}

/// The newest failures, with their error and URL.
fn recent(failures: &[Failure]) -> String {
    let hosts = failures.iter().any(|f| !f.host_id.is_null());
    let mut cols = vec![
        "When", "Video", "Subject", "Worker", "Stage", "Error", "URL",
    ];
    if hosts {
        cols.push("Host");
    }
    let mut t = Table::new(&cols);
    for f in failures {
        let mut video = esc(&value_text(&f.video_title));
        let id = value_text(&f.video_id);
        if !id.is_empty() {
            let _ = write!(video, "<small>{}</small>", esc(&id));
        }
        let mut row = vec![
            Cell::text(&time(&value_text(&f.logged_at))),
            Cell::html(video),
            Cell::text(&value_text(&f.subject)),
            Cell::text(&value_text(&f.worker_id)),
            Cell::text(&value_text(&f.stage)),
            Cell::text(&value_text(&f.error)).class("err"),
            Cell::html(link(&value_text(&f.url))).class("url"),
        ];
        if hosts {
            row.push(Cell::text(&value_text(&f.host_id)));
        }
        t.row(row);
    }
    let body = if t.is_empty() {
        empty("No failures.")
    } else {
        t.finish()
    };
    format!("<section>\n<h2>Most recent failures</h2>\n{body}</section>\n")
}

/// A URL as a link when it is one (http or https: nothing else, such as
/// `javascript:`, becomes clickable), else as text; escaped either way.
fn link(url: &str) -> String {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let u = esc(url);
        format!("<a href=\"{u}\" rel=\"noreferrer noopener\">{u}</a>")
    } else {
        esc(url)
    }
}

/// A record's value as text: a string as it is, nothing for null, and
/// anything else as compact JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table cell: its HTML (escaped already), right-aligned or not, and the
/// `stats --json` path of the figure it shows.
pub(super) struct Cell {
    html: String,
    numeric: bool,
    key: Option<String>,
    class: &'static str,
}

impl Cell {
    /// Text, escaped here.
    pub(super) fn text(s: &str) -> Cell {
        Cell::html(esc(s))
    }

    pub(super) fn html(html: String) -> Cell {
        Cell {
            html,
            numeric: false,
            key: None,
            class: "",
        }
    }

    /// A figure (digits, escaped anyway), right-aligned.
    pub(super) fn num(s: String) -> Cell {
        Cell {
            numeric: true,
            ..Cell::text(&s)
        }
    }

    pub(super) fn key(mut self, k: String) -> Cell {
        self.key = Some(k);
        self
    }

    pub(super) fn class(mut self, c: &'static str) -> Cell {
        self.class = c;
        self
    }
}

/// An HTML table, one row a line; past 10 rows in a box that scrolls on
/// screen (never in print).
pub(super) struct Table {
    head: String,
    rows: Vec<String>,
}

impl Table {
    /// Columns; a name starting with `#` is a figure's, right-aligned.
    pub(super) fn new(cols: &[&str]) -> Table {
        let mut head = String::from("<thead><tr>");
        for c in cols {
            match c.strip_prefix('#') {
                Some(c) => write!(head, "<th class=\"n\">{}</th>", esc(c)),
                None => write!(head, "<th>{}</th>", esc(c)),
            }
            .unwrap_or_default();
        }
        head.push_str("</tr></thead>");
        Table {
            head,
            rows: Vec::new(),
        }
    }

    pub(super) fn row(&mut self, cells: Vec<Cell>) {
        let mut r = String::from("<tr>");
        for c in cells {
            let class = match (c.numeric, c.class) {
                (true, _) => " class=\"n\"".to_string(),
                (false, "") => String::new(),
                (false, cl) => format!(" class=\"{cl}\""),
            };
            let key = c
                .key
                .map(|k| format!(" data-k=\"{}\"", esc(&k)))
                .unwrap_or_default();
            let _ = write!(r, "<td{class}{key}>{}</td>", c.html);
        }
        r.push_str("</tr>");
        self.rows.push(r);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(super) fn finish(self) -> String {
        let (open, close) = if self.rows.len() > 10 {
            ("<div class=\"scroll\">", "</div>")
        } else {
            ("", "")
        };
        format!(
            "{open}<table>{}<tbody>\n{}\n</tbody></table>{close}\n",
            self.head,
            self.rows.join("\n")
        )
    }
}

/// A note in place of a chart or table with nothing to show.
pub(super) fn empty(what: &str) -> String {
    format!("<p class=\"empty\">{}</p>\n", esc(what))
}

/// `1234567` as `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A share as a percentage with one decimal.
pub(super) fn pct(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Seconds with two decimals, `—` when there is no value.
pub(super) fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2}"))
}

/// A JSON number: an integer with separators, else as written.
fn number(n: &serde_json::Number) -> String {
    n.as_u64().map_or_else(|| n.to_string(), thousands)
}

/// An isoformat time for reading: a space for the `T`, no fraction of a
/// second.
pub(super) fn time(t: &str) -> String {
    let t = t.replacen('T', " ", 1);
    match t.split_once('.') {
        Some((whole, _)) => whole.to_string(),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(pct(0.9336), "93.4%");
        assert_eq!(secs(Some(24.805)), "24.80");
        assert_eq!(secs(None), "—");
        assert_eq!(time("2025-10-17T09:33:10.187500"), "2025-10-17 09:33:10");
        assert_eq!(time("2025-10-17T09:33:10"), "2025-10-17 09:33:10");
    }

    #[test]
    fn only_web_addresses_become_links() {
        assert_eq!(
            link("https://youtu.be/a?b=1&c=\"2\""),
            "<a href=\"https://youtu.be/a?b=1&amp;c=&quot;2&quot;\" rel=\"noreferrer noopener\">\
             https://youtu.be/a?b=1&amp;c=&quot;2&quot;</a>"
        );
        assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
        assert_eq!(link("<x>"), "&lt;x&gt;");
    }

    #[test]
    fn cells_escape_their_text_and_their_key() {
        let mut t = Table::new(&["Name", "#Jobs"]);
        t.row(vec![
            Cell::text("<img src=x>"),
            Cell::num("3".into()).key("by_subject/\"<s>\"/total".into()),
        ]);
        let html = t.finish();
        assert!(html.contains("<td>&lt;img src=x&gt;</td>"), "{html}");
        assert!(
            html.contains(
                "<td class=\"n\" data-k=\"by_subject/&quot;&lt;s&gt;&quot;/total\">3</td>"
            ),
            "{html}"
        );
        assert!(html.contains("<th class=\"n\">Jobs</th>"), "{html}");
    }
}
