//! `joblogctl report --html FILE`: one self-contained HTML page for a
//! person to open in a browser (inline CSS and SVG, no script, no request
//! of any kind: a Content-Security-Policy of `default-src 'none'` says so
//! to the browser), drawn from one `report` answer (protocol.md), so a
//! report over a million records costs what the daemon's one pass over
//! its index costs.
//!
//! `mod.rs` asks and writes; `page.rs` lays the page out (headline,
//! tables, CSS); `charts.rs` draws each chart with its table; `svg.rs` is
//! the small SVG writer under them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;

mod charts;
mod page;
mod svg;

#[derive(Debug, clap::Args)]
pub(super) struct ReportArgs {
    /// Write the report to FILE as one HTML page (`-` for standard
    /// output): open it in a browser, print it, mail it.
    #[arg(long, value_name = "FILE")]
    html: PathBuf,
    #[command(flatten)]
    filter: crate::StatsFilters,
    /// How many of the newest failures to list (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u16).range(0..=1000))]
    failures: u16,
}

/// The `report` answer, as the page reads it.
#[derive(Deserialize)]
pub(super) struct Data {
    pub(super) stats: Stats,
    pub(super) time_series: Series,
    pub(super) failures_by_stage: Vec<StageFailures>,
    pub(super) recent_failures: Vec<Failure>,
}

/// The `stats` object (the same as `stats --json` prints).
#[derive(Deserialize)]
pub(super) struct Stats {
    pub(super) total_jobs: u64,
    pub(super) successful: u64,
    pub(super) failed: u64,
    pub(super) success_rate: f64,
    pub(super) average_duration: Option<f64>,
    pub(super) total_files_created: serde_json::Number,
    /// In the order first seen (the page sorts them by count, keeping
    /// that order for ties).
    pub(super) error_types: stats::Ordered,
    pub(super) by_subject: BTreeMap<String, Tally>,
    pub(super) by_worker: BTreeMap<String, Tally>,
    pub(super) timings: BTreeMap<String, Summary>,
    pub(super) duration: Summary,
    pub(super) first_logged_at: Option<String>,
    pub(super) last_logged_at: Option<String>,
    pub(super) retry_candidates: u64,
}

#[derive(Deserialize)]
pub(super) struct Tally {
    pub(super) total: u64,
    pub(super) failed: u64,
}

/// A timing's (or the duration's) figures, in seconds.
#[derive(Deserialize, Default)]
pub(super) struct Summary {
    #[serde(default)]
    pub(super) count: Option<u64>,
    #[serde(default)]
    pub(super) mean: Option<f64>,
    pub(super) p50: Option<f64>,
    pub(super) p95: Option<f64>,
    pub(super) max: Option<f64>,
}

#[derive(Deserialize)]
pub(super) struct Series {
    pub(super) unit: String,
    pub(super) undated: u64,
    pub(super) buckets: Vec<Bucket>,
}

#[derive(Deserialize)]
pub(super) struct Bucket {
    pub(super) start: String,
    pub(super) successful: u64,
    pub(super) failed: u64,
}

#[derive(Deserialize)]
pub(super) struct StageFailures {
    pub(super) stage: String,
    pub(super) failed: u64,
    pub(super) error_types: Vec<ErrorCount>,
}

#[derive(Deserialize)]
pub(super) struct ErrorCount {
    pub(super) error_type: String,
    pub(super) count: u64,
}

/// One of the newest failures: each field as the record holds it.
#[derive(Deserialize)]
pub(super) struct Failure {
    pub(super) logged_at: Value,
    pub(super) video_id: Value,
    pub(super) video_title: Value,
    pub(super) url: Value,
    pub(super) subject: Value,
    pub(super) worker_id: Value,
    pub(super) stage: Value,
    pub(super) error: Value,
    #[serde(default)]
    pub(super) host_id: Value,
}

/// What the page says it covers, besides the figures.
pub(super) struct Scope {
    /// `subject AI`, `since 2025-10-17T00:00:00`, … (empty: every record).
    pub(super) filters: Vec<(&'static str, String)>,
    /// Answered from the central store rather than one daemon.
    pub(super) central: bool,
    /// Local time the page was made.
    pub(super) generated: String,
}

pub(super) fn report(out: &mut impl Write, socket: &Socket, a: ReportArgs) -> Result<(), Fail> {
    let mut q = json!({"op": "report", "recent_failures": a.failures});
    let mut scope = Scope {
        filters: Vec::new(),
        central: socket.database.is_some(),
        generated: when::now_iso(),
    };
    for (key, label, v) in a.filter.given() {
        q[key] = json!(v);
        scope.filters.push((label, v));
    }
    let mut c = Conn::open(socket)?;
    c.send(&q)?;
    let (_, line) = c.reply_raw()?;
    let data: Data = serde_json::from_str(&line)
        .map_err(|e| Fail(1, format!("joblogctl: bad reply to report: {e}")))?;
    let html = page::render(&data, &scope);
    if a.html.as_os_str() == "-" {
        out.write_all(html.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    write_aside(&a.html, |f| {
        f.write_all(html.as_bytes())
            .map_err(|e| cannot_write(&a.html, &e))
    })?;
    eprintln!(
        "wrote the report of {} jobs to {}",
        page::thousands(data.stats.total_jobs),
        a.html.display()
    );
    Ok(())
}
