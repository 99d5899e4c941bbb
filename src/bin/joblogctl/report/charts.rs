//! The report's charts, each a `<section>` with its SVG (a tooltip on
//! every bar) and its figures in a table beneath: successes and failures
//! over time, failures by error type and by stage, stage timings and the
//! processing duration as ranges.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::page::{Cell, Table, empty, pct, secs, thousands, time};
use super::svg::{Scale, Svg, clip, esc, tick_label};
use super::{Series, StageFailures, Stats, Summary};

/// Every chart's width in SVG units (the page scales it to its column).
const W: f64 = 1100.0;
/// Error types drawn in the error chart (all are in its table).
const MAX_ERROR_ROWS: usize = 15;
/// Error types with a colour of their own; the rest share the last one.
const COLOURS: usize = 7;

/// Successes and failures per bucket as stacked bars.
pub(super) fn over_time(ts: &Series, s: &Stats) -> String {
    let unit = ts.unit.as_str();
    let mut out = format!(
        "<section>\n<h2>Successes and failures per {}</h2>\n",
        esc(unit)
    );
    if ts.buckets.is_empty() {
        out.push_str(&empty("No record has a readable logged_at."));
        out.push_str("</section>\n");
        return out;
    }
    out.push_str(
        "<ul class=\"legend\"><li><i class=\"ok\"></i>successful</li>\
         <li><i class=\"fail\"></i>failed</li></ul>\n",
    );
    out.push_str(&over_time_svg(ts));
    let mut t = Table::new(&["Period", "#Successful", "#Failed", "#Failure rate"]);
    for b in ts.buckets.iter().filter(|b| b.successful + b.failed > 0) {
        t.row(vec![
            Cell::text(&period(unit, &b.start)),
            Cell::num(thousands(b.successful)),
            Cell::num(thousands(b.failed)),
            Cell::num(pct(b.failed as f64 / (b.successful + b.failed) as f64)),
        ]);
    }
    out.push_str(&t.finish());
    if ts.undated > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">Not in the chart: {} of the {} jobs, whose logged_at is missing or unreadable.</p>",
            thousands(ts.undated),
            thousands(s.total_jobs)
        );
    }
    out.push_str("</section>\n");
    out
}

fn over_time_svg(ts: &Series) -> String {
    let (left, right, top, bottom) = (56.0, 10.0, 10.0, 30.0);
    let h = 250.0;
    let (pw, ph) = (W - left - right, h - top - bottom);
    let largest = ts.buckets.iter().map(|b| b.successful + b.failed).max();
    let y = Scale::counts(largest.unwrap_or(0), ph, 5);
    let base = top + ph;
    let mut svg = Svg::new(W, h, &format!("Successes and failures per {}", ts.unit));
    for t in y.ticks() {
        let py = base - y.px(t);
        svg.line((left, py), (W - right, py), "grid");
        svg.text(left - 6.0, py + 4.0, "end", "axis", &tick_label(t, y.step));
    }
    let n = ts.buckets.len();
    let band = pw / n as f64;
    let bar = if band >= 3.0 { band * 0.78 } else { band };
    for (i, b) in ts.buckets.iter().enumerate() {
        let x = left + i as f64 * band;
        let all = b.successful + b.failed;
        svg.group(&format!(
            "{}: {} successful, {} failed ({} failed)",
            period(&ts.unit, &b.start),
            thousands(b.successful),
            thousands(b.failed),
            pct(b.failed as f64 / all.max(1) as f64)
        ));
        svg.rect(x, top, band, ph, "hit");
        let (ok, bad) = (y.px(b.successful as f64), y.px(b.failed as f64));
        let bx = x + (band - bar) / 2.0;
        svg.rect(bx, base - ok, bar, ok, "ok");
        svg.rect(bx, base - ok - bad, bar, bad, "fail");
        svg.end();
    }
    svg.line((left, base), (W - right, base), "base");
    // About a dozen labels, under the bar they name.
    let every = n.div_ceil(12).max(1);
    for (i, b) in ts.buckets.iter().enumerate().step_by(every) {
        let x = left + (i as f64 + 0.5) * band;
        svg.line((x, base), (x, base + 4.0), "base");
        svg.text(x, base + 18.0, "middle", "axis", &short(&ts.unit, &b.start));
    }
    svg.finish()
}

/// A bucket's period in full, for its tooltip and table row.
fn period(unit: &str, start: &str) -> String {
    let t = time(start);
    // The first `n` bytes, or all of it (not a time as the daemon writes
    // them: never cut inside a character).
    let head = |n: usize| t.get(..n).unwrap_or(&t).to_string();
    match unit {
        "hour" => format!("{}–{:02}:00", head(16), hour(start) + 1),
        "day" => head(10),
        "week" => format!("week of {}", head(10)),
        "month" => head(7),
        _ => head(4),
    }
}

/// A bucket's label under its bar.
fn short(unit: &str, start: &str) -> String {
    let t = time(start);
    let at = |r: std::ops::Range<usize>| t.get(r).unwrap_or_default().to_string();
    match unit {
        "hour" => at(5..16),
        "day" | "week" => at(5..10),
        "month" => at(0..7),
        _ => at(0..4),
    }
}

fn hour(start: &str) -> u32 {
    start.get(11..13).and_then(|h| h.parse().ok()).unwrap_or(0)
}

/// The error types by count (ties in the order first seen).
fn error_counts(s: &Stats) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = s
        .error_types
        .0
        .iter()
        .map(|(k, n)| (k.as_str(), n.as_u64().unwrap_or(0)))
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1));
    v
}

/// The error types' colour classes: the most frequent get one each, the
/// rest share the last (`c7`), in both failure charts alike.
fn colours<'a>(errors: &[(&'a str, u64)]) -> HashMap<&'a str, usize> {
    errors
        .iter()
        .enumerate()
        .map(|(i, (e, _))| (*e, i.min(COLOURS)))
        .collect()
}

/// Failures by error type (sorted bars) and by stage (bars split by
/// error type), side by side with their tables.
pub(super) fn failures(s: &Stats, stages: &[StageFailures]) -> String {
    let errors = error_counts(s);
    let colour = colours(&errors);
    let mut out = String::from("<section>\n<h2>Failures by error type</h2>\n");
    if errors.is_empty() {
        out.push_str(&empty("No failures."));
        out.push_str("</section>\n");
        return out;
    }
    out.push_str(&error_svg(&errors, &colour, s.failed));
    if errors.len() > MAX_ERROR_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"note\">The {MAX_ERROR_ROWS} most frequent of {} error types; all are in the table.</p>",
            errors.len()
        );
    }
    let mut t = Table::new(&[
        "Error type",
        "#Failed jobs",
        "#Share of failures",
        "#Share of all jobs",
    ]);
    for (e, n) in &errors {
        t.row(vec![
            Cell::text(e),
            Cell::num(thousands(*n)).key(format!("error_types/{e}")),
            Cell::num(pct(*n as f64 / s.failed.max(1) as f64)),
            Cell::num(pct(*n as f64 / s.total_jobs.max(1) as f64)),
        ]);
    }
    out.push_str(&t.finish());
    out.push_str("</section>\n");
    out.push_str(&stage_section(stages, &errors, &colour, s.failed));
    out
}

fn error_svg(errors: &[(&str, u64)], colour: &HashMap<&str, usize>, failed: u64) -> String {
    let shown = &errors[..errors.len().min(MAX_ERROR_ROWS)];
    let (label, right, row, top) = (330.0, 150.0, 26.0, 4.0);
    let h = top + row * shown.len() as f64 + 24.0;
    let x = Scale::counts(shown[0].1, W - label - right, 5);
    let mut svg = Svg::new(W, h, "Failures by error type");
    let bottom = top + row * shown.len() as f64;
    for t in x.ticks() {
        let px = label + x.px(t);
        svg.line((px, top), (px, bottom), "grid");
        svg.text(px, bottom + 16.0, "middle", "axis", &tick_label(t, x.step));
    }
    for (i, (e, n)) in shown.iter().enumerate() {
        let y = top + row * i as f64;
        let share = pct(*n as f64 / failed.max(1) as f64);
        svg.group(&format!(
            "{e}: {} failed jobs, {share} of failures",
            thousands(*n)
        ));
        svg.rect(0.0, y, W, row, "hit");
        svg.text(
            label - 8.0,
            y + row / 2.0 + 4.0,
            "end",
            "label",
            &clip(e, 46),
        );
        let class = format!("c{}", colour.get(e).copied().unwrap_or(COLOURS));
        let w = x.px(*n as f64).max(1.0);
        svg.rect(label, y + 5.0, w, row - 10.0, &class);
        let value = format!("{} · {share}", thousands(*n));
        svg.text(
            label + w + 6.0,
            y + row / 2.0 + 4.0,
            "start",
            "label",
            &value,
        );
        svg.end();
    }
    svg.line((label, top), (label, bottom), "base");
    svg.finish()
}

/// Failures per stage, each bar split by error type.
fn stage_section(
    stages: &[StageFailures],
    errors: &[(&str, u64)],
    colour: &HashMap<&str, usize>,
    failed: u64,
) -> String {
    let mut out = String::from("<section>\n<h2>Failures by stage</h2>\n<ul class=\"legend\">");
    for (i, (e, _)) in errors.iter().take(COLOURS).enumerate() {
        let _ = write!(out, "<li><i class=\"c{i}\"></i>{}</li>", esc(&clip(e, 40)));
    }
    if errors.len() > COLOURS {
        let _ = write!(
            out,
            "<li><i class=\"c{COLOURS}\"></i>other error types</li>"
        );
    }
    out.push_str("</ul>\n");
    out.push_str(&stage_svg(stages, colour, failed));
    let mut t = Table::new(&[
        "Stage",
        "Error type",
        "#Failed jobs",
        "#Share of the stage's failures",
    ]);
    for st in stages {
        for e in &st.error_types {
            t.row(vec![
                Cell::text(&st.stage),
                Cell::text(&e.error_type),
                Cell::num(thousands(e.count)),
                Cell::num(pct(e.count as f64 / st.failed.max(1) as f64)),
            ]);
        }
    }
    out.push_str(&t.finish());
    out.push_str("</section>\n");
    out
}

fn stage_svg(stages: &[StageFailures], colour: &HashMap<&str, usize>, failed: u64) -> String {
    let (label, right, row, top) = (220.0, 150.0, 28.0, 4.0);
    let h = top + row * stages.len() as f64 + 24.0;
    let largest = stages.iter().map(|s| s.failed).max().unwrap_or(0);
    let x = Scale::counts(largest, W - label - right, 5);
    let bottom = top + row * stages.len() as f64;
    let mut svg = Svg::new(W, h, "Failures by stage and error type");
    for t in x.ticks() {
        let px = label + x.px(t);
        svg.line((px, top), (px, bottom), "grid");
        svg.text(px, bottom + 16.0, "middle", "axis", &tick_label(t, x.step));
    }
    for (i, st) in stages.iter().enumerate() {
        let y = top + row * i as f64;
        svg.text(
            label - 8.0,
            y + row / 2.0 + 4.0,
            "end",
            "label",
            &clip(&st.stage, 30),
        );
        let mut at = label;
        for e in &st.error_types {
            let share = pct(e.count as f64 / st.failed.max(1) as f64);
            svg.group(&format!(
                "{} · {}: {} failed jobs, {share} of the stage's failures",
                st.stage,
                e.error_type,
                thousands(e.count)
            ));
            let class = format!(
                "c{}",
                colour
                    .get(e.error_type.as_str())
                    .copied()
                    .unwrap_or(COLOURS)
            );
            let w = x.px(e.count as f64);
            svg.rect(at, y + 5.0, w, row - 10.0, &class);
            svg.end();
            at += w;
        }
        let value = format!(
            "{} · {}",
            thousands(st.failed),
            pct(st.failed as f64 / failed.max(1) as f64)
        );
        svg.text(at + 6.0, y + row / 2.0 + 4.0, "start", "label", &value);
    }
    svg.line((label, top), (label, bottom), "base");
    svg.finish()
}

/// One row of a range chart: a name, the figures, and their `stats`
/// path.
struct Range<'a> {
    name: &'a str,
    key: String,
    s: &'a Summary,
}

/// Stage timings and the processing duration, each as p50–p95 ranges with
/// the max marked, and their tables.
pub(super) fn timings(s: &Stats) -> String {
    let mut out = String::from("<section>\n<h2>Stage timings (successful jobs, seconds)</h2>\n");
    let rows: Vec<Range<'_>> = s
        .timings
        .iter()
        .map(|(name, t)| Range {
            name,
            key: format!("timings/{name}"),
            s: t,
        })
        .collect();
    out.push_str(&ranges(&rows, "Stage timings", true));
    out.push_str(
        "</section>\n<section>\n<h2>Processing duration (successful jobs, seconds)</h2>\n",
    );
    let duration = [Range {
        name: "processing_duration",
        key: "duration".into(),
        s: &s.duration,
    }];
    out.push_str(&ranges(&duration, "Processing duration", false));
    out.push_str("</section>\n");
    out
}

/// The chart and table of `rows`; `counted`: the figures include a count
/// and a mean (timings do, the duration has only percentiles).
fn ranges(rows: &[Range<'_>], label: &str, counted: bool) -> String {
    if rows.is_empty() {
        return empty("No successful job has timings.");
    }
    let drawn: Vec<&Range<'_>> = rows.iter().filter(|r| r.s.max.is_some()).collect();
    let mut out = if drawn.is_empty() {
        empty("No successful job with a number here.")
    } else {
        let mut out = String::from(
            "<ul class=\"legend\"><li><i class=\"range\"></i>p50 to p95</li>\
             <li><i class=\"mark\"></i>max</li></ul>\n",
        );
        out.push_str(&range_svg(&drawn, label));
        out
    };
    let mut cols = vec!["Name"];
    if counted {
        cols.extend(["#Jobs", "#Mean"]);
    }
    cols.extend(["#p50", "#p95", "#Max"]);
    let mut t = Table::new(&cols);
    for r in rows {
        let mut cells = vec![Cell::text(r.name)];
        if counted {
            let count = r.s.count.unwrap_or(0);
            cells.push(Cell::num(thousands(count)).key(format!("{}/count", r.key)));
            cells.push(Cell::num(secs(r.s.mean)).key(format!("{}/mean", r.key)));
        }
        for (k, v) in [("p50", r.s.p50), ("p95", r.s.p95), ("max", r.s.max)] {
            cells.push(Cell::num(secs(v)).key(format!("{}/{k}", r.key)));
        }
        t.row(cells);
    }
    out.push_str(&t.finish());
    out
}

fn range_svg(rows: &[&Range<'_>], label_text: &str) -> String {
    let (label, right, row, top) = (220.0, 250.0, 30.0, 4.0);
    let h = top + row * rows.len() as f64 + 24.0;
    let largest = rows.iter().filter_map(|r| r.s.max).fold(0.0, f64::max);
    let x = Scale::new(largest, W - label - right, 6);
    let bottom = top + row * rows.len() as f64;
    let mut svg = Svg::new(W, h, label_text);
    for t in x.ticks() {
        let px = label + x.px(t);
        svg.line((px, top), (px, bottom), "grid");
        svg.text(px, bottom + 16.0, "middle", "axis", &tick_label(t, x.step));
    }
    for (i, r) in rows.iter().enumerate() {
        let (y, mid) = (top + row * i as f64, top + row * i as f64 + row / 2.0);
        let (p50, p95, max) = (
            r.s.p50.unwrap_or(0.0),
            r.s.p95.unwrap_or(0.0),
            r.s.max.unwrap_or(0.0),
        );
        let mut tip = format!(
            "{}: p50 {} s, p95 {} s, max {} s",
            r.name,
            secs(r.s.p50),
            secs(r.s.p95),
            secs(r.s.max)
        );
        if let (Some(mean), Some(n)) = (r.s.mean, r.s.count) {
            let _ = write!(tip, ", mean {} s, {} jobs", secs(Some(mean)), thousands(n));
        }
        svg.group(&tip);
        svg.rect(0.0, y, W, row, "hit");
        svg.text(label - 8.0, mid + 4.0, "end", "label", &clip(r.name, 30));
        let (a, b, m) = (label + x.px(p50), label + x.px(p95), label + x.px(max));
        svg.line((b, mid), (m, mid), "whisker");
        svg.rect(a, mid - 7.0, (b - a).max(2.0), 14.0, "range");
        svg.diamond(m, mid, 5.0, "mark");
        let value = format!(
            "p50 {} · p95 {} · max {}",
            secs(r.s.p50),
            secs(r.s.p95),
            secs(r.s.max)
        );
        svg.text(m + 10.0, mid + 4.0, "start", "label", &value);
        svg.end();
    }
    svg.line((label, top), (label, bottom), "base");
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stats(errors: serde_json::Value) -> Stats {
        serde_json::from_value(json!({
            "total_jobs": 10, "successful": 7, "failed": 3, "success_rate": 0.7,
            "average_duration": 2.5, "total_files_created": 4, "error_types": errors,
            "by_subject": {}, "by_worker": {}, "timings": {},
            "duration": {"p50": null, "p95": null, "max": null},
            "first_logged_at": null, "last_logged_at": null, "retry_candidates": 1
        }))
        .expect("stats")
    }

    fn series(buckets: serde_json::Value) -> Series {
        serde_json::from_value(json!({"unit": "hour", "undated": 0, "buckets": buckets}))
            .expect("series")
    }

    /// The number in `attr="…"` of the `n`-th element that has it.
    fn attr(svg: &str, name: &str, n: usize) -> f64 {
        let pat = format!(" {name}=\"");
        let at = svg.match_indices(&pat).nth(n).expect("attribute").0 + pat.len();
        svg[at..svg[at..].find('"').map_or(svg.len(), |e| at + e)]
            .parse()
            .expect("a number")
    }

    #[test]
    fn one_bucket_is_one_bar_within_the_plot() {
        let ts = series(json!([{"start": "2025-10-17T09:00:00", "successful": 3, "failed": 1}]));
        let svg = over_time_svg(&ts);
        assert_eq!(svg.matches("<g>").count(), 1, "{svg}");
        assert!(
            svg.contains(
                "<title>2025-10-17 09:00–10:00: 3 successful, 1 failed (25.0% failed)</title>"
            ),
            "{svg}"
        );
        assert!(svg.contains("class=\"ok\"") && svg.contains("class=\"fail\""));
        // The scale ends at 4 or above: the stacked bar fits the plot.
        let bars: Vec<f64> = (0..3)
            .map(|i| attr(&svg[svg.find("<g>").unwrap_or(0)..], "height", i))
            .collect();
        assert!(bars[1] + bars[2] <= bars[0] + 1e-9, "{bars:?}");
        assert!(bars[1] > 0.0 && bars[2] > 0.0);
    }

    #[test]
    fn periods_name_their_bucket() {
        assert_eq!(
            period("hour", "2025-10-17T09:00:00"),
            "2025-10-17 09:00–10:00"
        );
        assert_eq!(period("week", "2025-10-13T00:00:00"), "week of 2025-10-13");
        assert_eq!(period("month", "2025-10-01T00:00:00"), "2025-10");
        assert_eq!(period("year", "2025-01-01T00:00:00"), "2025");
        assert_eq!(short("hour", "2025-10-17T09:00:00"), "10-17 09:00");
        assert_eq!(period("day", "é"), "é");
    }

    #[test]
    fn nothing_to_draw_says_so() {
        let empty_series = series(json!([]));
        let html = over_time(&empty_series, &stats(json!({})));
        assert!(!html.contains("<svg"));
        assert!(html.contains("No record has a readable logged_at."));
        let html = failures(&stats(json!({})), &[]);
        assert!(!html.contains("<svg") && html.contains("No failures."));
        let html = timings(&stats(json!({})));
        assert!(!html.contains("<svg") && html.contains("No successful job"));
        // Empty buckets between two are drawn as empty bars.
        let ts = series(json!([
            {"start": "2025-10-17T09:00:00", "successful": 1, "failed": 0},
            {"start": "2025-10-17T10:00:00", "successful": 0, "failed": 0},
        ]));
        assert_eq!(over_time_svg(&ts).matches("<g>").count(), 2);
    }

    #[test]
    fn error_types_are_escaped_sorted_and_coloured_alike_in_both_charts() {
        let s = stats(json!({"<i>x</i>": 1, "Timeout": 2}));
        let stages: Vec<StageFailures> = serde_json::from_value(json!([
            {"stage": "notes", "failed": 3, "error_types": [
                {"error_type": "Timeout", "count": 2}, {"error_type": "<i>x</i>", "count": 1}]}
        ]))
        .expect("stages");
        let html = failures(&s, &stages);
        assert!(!html.contains("<i>x"), "{html}");
        assert!(html.contains("&lt;i&gt;x&lt;/i&gt;"));
        let first = html.find("Timeout").expect("Timeout");
        assert!(
            first < html.find("&lt;i&gt;x").expect("x"),
            "the larger first"
        );
        // Timeout is c0 and <i>x</i> c1 in the error chart and the stage chart.
        assert_eq!(html.matches("<rect class=\"c0\"").count(), 2, "{html}");
        assert_eq!(html.matches("<rect class=\"c1\"").count(), 2, "{html}");
    }
}
