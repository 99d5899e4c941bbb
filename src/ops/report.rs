//! `report`: every figure `joblogctl report --html` draws, in one answer
//! computed from the index, so a report over a million records costs one
//! pass over the entries (64 bytes each) and a read of the few newest
//! failures, never a read of every record. The `stats` part is the very
//! object `stats` gives for the same filter (the same code), so the page
//! and `joblogctl stats --json` cannot disagree.
//!
//! Reply: `{"ok":true,"stats":{…},"time_series":{…},
//! "failures_by_stage":[…],"recent_failures":[…]}` (protocol.md, `report`).

use std::fs::File;
use std::io;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::AsyncWrite;

use super::Span;
use super::stats::TimingsFrom;
use crate::query::{Filter, Matcher, StatsValue};

mod fold;

pub(crate) use fold::ReportFold;

/// Newest failures listed when the request names no number.
const RECENT_FAILURES: usize = 20;
/// The most a request may ask for: each is read back from the file.
const MAX_RECENT_FAILURES: usize = 1_000;

/// The fields of each recent failure (`host_id` is there in answers over
/// the central store, `null` otherwise).
const FAILURE_FIELDS: [&str; 9] = [
    "logged_at",
    "video_id",
    "video_title",
    "url",
    "subject",
    "worker_id",
    "stage",
    "error",
    "host_id",
];

/// A `report` answer, as the writer hands it over.
#[derive(Debug)]
pub(crate) struct Report {
    stats: StatsValue,
    /// Set for a filtered report: its timings are read back as a filtered
    /// `stats` reads them.
    timings_from: TimingsFrom,
    series: Value,
    by_stage: Value,
    reader: Arc<File>,
    /// The newest failures, newest first.
    recent: Vec<Span>,
}

#[cfg(test)]
impl Report {
    /// What the answer holds, to compare two: its figures as JSON text and
    /// the places of the records read back for it.
    pub(crate) fn summary(&self) -> (String, Vec<(u64, u32)>) {
        let text = format!(
            "{} {} {}",
            serde_json::to_string(&self.stats).unwrap_or_default(),
            self.series,
            self.by_stage
        );
        let timings = self.timings_from.iter().flat_map(|(_, s)| s.iter());
        let spans = timings
            .chain(&self.recent)
            .map(|s| (s.offset, s.len))
            .collect();
        (text, spans)
    }
}

/// `{"op":"report", "subject", "worker_id", "since", "until",
/// "recent_failures"}`.
pub(crate) fn parse<'a>(
    f: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, crate::protocol::ProtocolError> {
    let recent_failures = f
        .typed::<usize>("recent_failures", "a non-negative integer")?
        .unwrap_or(RECENT_FAILURES);
    if recent_failures > MAX_RECENT_FAILURES {
        return Err(f.invalid(format!(
            "field `recent_failures` must be at most {MAX_RECENT_FAILURES}"
        )));
    }
    Ok(super::Request::Query(super::Query::Report {
        filter: f.filter()?,
        recent_failures,
    }))
}

/// The whole report at once (`joblogctl --database`; the daemon answers
/// it a slice at a time through `ops::Scan`, with the same fold).
pub(crate) fn run(view: &super::View<'_>, filter: &Filter, recent: usize) -> super::Answer {
    let ix = view.index;
    let mut fold = ReportFold::new(ix, filter, recent, ix.len());
    let m = Matcher::new(ix, filter);
    for i in 0..ix.len() {
        if m.matches(ix, i) {
            fold.add(ix, i);
        }
    }
    answer(view, fold)
}

/// The answer from a finished fold.
pub(crate) fn answer(view: &super::View<'_>, fold: ReportFold) -> super::Answer {
    let done = fold.finish(view.index);
    let (agg, successful, candidates) = done.stats;
    let (stats, timings_from) = match successful {
        Some(successful) => super::stats::parts(view, (agg, successful, candidates)),
        None => (crate::query::stats_json(view.index, &agg, candidates), None),
    };
    let recent: Vec<u32> = done
        .recent
        .into_iter()
        .filter(|&i| (i as usize) < view.durable)
        .collect();
    super::Answer::Report(Box::new(Report {
        stats,
        timings_from,
        series: done.series,
        by_stage: done.by_stage,
        reader: Arc::clone(view.reader),
        recent: view.spans(&recent),
    }))
}

/// Writes the answer: the `stats` object completed with timings read back
/// (filtered reports), the series and stages, then the recent failures
/// read back and projected, streamed as `jobs` streams its records.
pub(super) async fn write<W: AsyncWrite + Unpin>(w: &mut W, r: Report) -> io::Result<()> {
    let mut stats = r.stats;
    super::stats::complete(&mut stats, r.timings_from)?;
    let stats = serde_json::to_string(&stats).map_err(io::Error::other)?;
    let head = format!(
        "{{\"ok\":true,\"stats\":{stats},\"time_series\":{},\"failures_by_stage\":{},\"recent_failures\":[",
        r.series, r.by_stage
    );
    super::read::records(w, head, &r.reader, &r.recent, Some(&FAILURE_FIELDS)).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn answer(records: &[serde_json::Value], request: &str) -> serde_json::Value {
        let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
        let reply = super::super::offline::answer(&lines, request.as_bytes()).expect("answer");
        serde_json::from_slice(&reply).expect("one JSON line")
    }

    fn records() -> Vec<serde_json::Value> {
        let mut v = Vec::new();
        for i in 0..50 {
            let ok = i % 5 != 0;
            v.push(json!({
                "video_id": format!("v{}", i % 40),
                "url": format!("https://youtu.be/v{i}"),
                "subject": if i % 2 == 0 { "AI" } else { "Physics" },
                "worker_id": i % 3,
                "stage": if ok { "completed" } else if i % 10 == 0 { "generating_notes" } else { "exporting_pdfs" },
                "success": ok,
                "error": if ok { json!(null) } else { json!(format!("Err{}: detail {i}", i % 2)) },
                "processing_duration": 10 + i,
                "timings": {"fetch": 1.5, "notes": i},
                "logged_at": format!("2025-10-17T{:02}:{:02}:00", 8 + i / 10, i % 60),
            }));
        }
        v
    }

    /// The report's `stats` is `stats` itself, filtered or not.
    #[test]
    fn the_stats_part_is_the_stats_answer() {
        let recs = records();
        for (report, stats) in [
            (r#"{"op":"report"}"#, r#"{"op":"stats"}"#),
            (
                r#"{"op":"report","subject":"AI"}"#,
                r#"{"op":"stats","subject":"AI"}"#,
            ),
            (
                r#"{"op":"report","since":"2025-10-17T10:00:00","worker_id":1}"#,
                r#"{"op":"stats","since":"2025-10-17T10:00:00","worker_id":1}"#,
            ),
        ] {
            let r = answer(&recs, report);
            assert_eq!(r["ok"], true, "{r}");
            assert_eq!(r["stats"], answer(&recs, stats)["stats"], "{report}");
        }
    }

    #[test]
    fn failures_by_stage_over_time_and_the_newest_first() {
        let r = answer(&records(), r#"{"op":"report","recent_failures":3}"#);
        assert_eq!(
            r["failures_by_stage"],
            json!([
                {"stage": "exporting_pdfs", "failed": 5, "error_types": [{"error_type": "Err1", "count": 5}]},
                {"stage": "generating_notes", "failed": 5, "error_types": [{"error_type": "Err0", "count": 5}]},
            ])
        );
        let series = &r["time_series"];
        assert_eq!(series["unit"], "hour");
        let buckets = series["buckets"].as_array().expect("buckets");
        assert_eq!(buckets.len(), 5);
        assert_eq!(
            buckets[0],
            json!({"start": "2025-10-17T08:00:00", "successful": 8, "failed": 2})
        );
        let recent: Vec<&str> = r["recent_failures"]
            .as_array()
            .expect("recent")
            .iter()
            .map(|f| f["url"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            recent,
            [
                "https://youtu.be/v45",
                "https://youtu.be/v40",
                "https://youtu.be/v35"
            ]
        );
        assert_eq!(r["recent_failures"][0]["error"], "Err1: detail 45");
        assert_eq!(r["recent_failures"][0]["host_id"], json!(null));
    }

    #[test]
    fn an_empty_log_and_bad_requests() {
        let r = answer(&[], "report");
        assert_eq!(r["stats"]["total_jobs"], 0);
        assert_eq!(r["time_series"]["buckets"], json!([]));
        assert_eq!(r["failures_by_stage"], json!([]));
        assert_eq!(r["recent_failures"], json!([]));
        for bad in [
            r#"{"op":"report","recent_failures":1001}"#,
            r#"{"op":"report","recent_failures":-1}"#,
            r#"{"op":"report","success":true}"#,
        ] {
            let r = answer(&records(), bad);
            assert_eq!(r["error"]["code"], "invalid_request", "{bad}: {r}");
        }
    }
}
