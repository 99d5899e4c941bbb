//! Section 6, the index: a file of small records written directly as a
//! JSON array, the daemon's memory on an empty log and on that file
//! (resident bytes per indexed record), timed round trips of `ping`,
//! `stats`, `failed`, sorted `jobs`, one subject's `stats` and `report`
//! (all records and one subject's), and `joblogctl report --html` end to
//! end (its process, the request, the page, the file).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::Bench;
use crate::daemon::{Client, Daemon};
use crate::records::Kind;
use crate::scan::ScanStats;
use crate::stats::{Latency, latency};
use crate::util::{evict_from_cache, other, thousands};

/// What [`Bench::index_queries`] measures: VmRSS and VmHWM after the
/// first `stats`, `index_bytes`, VmRSS after the requests, the round
/// trips, and `joblogctl report --html`'s runs.
type Measured = (u64, u64, u64, u64, [Rtt; 7], Result<Latency, String>);

/// Sequential round trips of one request on one connection.
pub(crate) struct Rtt {
    pub(crate) request: &'static str,
    /// The first (unmeasured warm-up) request.
    pub(crate) first_us: f64,
    pub(crate) latency_us: Latency,
    pub(crate) reply_bytes: usize,
}

impl Rtt {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "request": self.request,
            "first_us": self.first_us,
            "latency_us": self.latency_us.to_json(),
            "reply_bytes": self.reply_bytes,
        })
    }
}

/// Section 6, everything but the seed-sized file's start-up.
pub(crate) struct IndexStats {
    pub(crate) records: u64,
    pub(crate) failed: u64,
    pub(crate) videos: u64,
    pub(crate) file_bytes: u64,
    pub(crate) scan: ScanStats,
    pub(crate) ping: Rtt,
    pub(crate) stats: Rtt,
    pub(crate) failed_100: Rtt,
    pub(crate) sort_5: Rtt,
    pub(crate) stats_ai: Rtt,
    pub(crate) report: Rtt,
    pub(crate) report_ai: Rtt,
    /// Milliseconds of `joblogctl report --html FILE` runs, or why none ran.
    pub(crate) report_html_ms: Result<Latency, String>,
    /// VmRSS / VmHWM of a daemon on an empty log, after one `stats`.
    pub(crate) rss_empty: u64,
    pub(crate) hwm_empty: u64,
    pub(crate) index_bytes_empty: u64,
    /// The same on the full file, after start-up and one `stats`.
    pub(crate) rss_full: u64,
    pub(crate) hwm_full: u64,
    pub(crate) index_bytes: u64,
    /// VmRSS after all the measured requests.
    pub(crate) rss_after: u64,
}

impl IndexStats {
    pub(crate) fn rss_per_record(&self) -> f64 {
        (self.rss_full as f64 - self.rss_empty as f64) / self.records.max(1) as f64
    }

    pub(crate) fn index_bytes_per_record(&self) -> f64 {
        self.index_bytes as f64 / self.records.max(1) as f64
    }
}

const PING: &str = r#"{"op":"ping"}"#;
const STATS: &str = r#"{"op":"stats"}"#;
const FAILED_100: &str = r#"{"op":"failed","limit":100}"#;
const SORT_5: &str = r#"{"op":"jobs","sort_by":"processing_duration","order":"desc","limit":5}"#;
/// Filtered stats: one subject of [`SUBJECTS`] (an eighth of the records),
/// whose `timings` are read back from the file.
const STATS_AI: &str = r#"{"op":"stats","subject":"AI"}"#;
/// What `joblogctl report` asks: one pass over the index, the running
/// aggregate's copy, the newest failures read back.
const REPORT: &str = r#"{"op":"report"}"#;
/// One subject's report: its timings read back, as [`STATS_AI`]'s.
const REPORT_AI: &str = r#"{"op":"report","subject":"AI"}"#;
/// The stage names of a successful record's `timings` in [`Gen::record`].
const STAGES: [&str; 5] = [
    "export_pdfs",
    "fetch_transcript",
    "generate_assessment",
    "generate_notes",
    "write_files",
];
/// Longest a set of round trips may run before it stops early.
const RTT_CAP: Duration = Duration::from_secs(60);
const SORT_CAP: Duration = Duration::from_secs(30);

/// One warm-up and then up to `n` sequential round trips of `request` (for
/// at most `cap`); microseconds from writing the request to having read the
/// whole reply line. Every reply must be `"ok":true` and pass `check`
/// (parsed and checked outside the clock).
fn round_trips(
    c: &mut Client,
    request: &'static str,
    n: usize,
    cap: Duration,
    mut check: impl FnMut(&Value) -> io::Result<()>,
) -> io::Result<Rtt> {
    let line = format!("{request}\n");
    let mut samples = Vec::with_capacity(n);
    let mut first_us = 0.0;
    let mut reply_bytes = 0;
    let t0 = Instant::now();
    for i in 0..=n {
        let t = Instant::now();
        c.send(line.as_bytes())?;
        let reply = c.read_line()?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        if i == 0 {
            first_us = us;
        } else {
            samples.push(us);
        }
        reply_bytes = reply.len();
        let v: Value = serde_json::from_str(reply).map_err(|e| {
            let head: String = reply.chars().take(300).collect();
            other(format!("{request}: bad reply {head:?}: {e}"))
        })?;
        if v["ok"] != true {
            let head: String = v.to_string().chars().take(300).collect();
            return Err(other(format!("{request}: error reply {head}")));
        }
        check(&v).map_err(|e| other(format!("{request}: {e}")))?;
        if i > 0 && t0.elapsed() > cap {
            break;
        }
    }
    Ok(Rtt {
        request,
        first_us,
        latency_us: latency(&samples),
        reply_bytes,
    })
}

impl Bench {
    /// Section 6's file: `records` small records as a compact JSON array,
    /// each with a `logged_at` 50 ms after the previous one. Every 10th
    /// record is a failure (n % 10 == 3) and every 20th (n % 20 == 7) a
    /// retry of the failure four records before it (same `video_id`), so
    /// half the failed videos later succeeded. Synced and dropped from the
    /// page cache. Returns bytes, failed records and distinct videos.
    fn prepare_index_file(&self, path: &Path, records: u64) -> io::Result<(u64, u64, u64)> {
        let file = File::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut rec = Vec::with_capacity(4096);
        let mut id = String::new();
        w.write_all(b"[")?;
        let mut bytes = 1u64;
        let (mut failed, mut videos) = (0u64, 0u64);
        for n in 0..records {
            rec.clear();
            rec.extend_from_slice(if n == 0 { b"\n  " } else { b",\n  " });
            let video = if n % 20 == 7 {
                n - 4
            } else {
                videos += 1;
                n
            };
            id.clear();
            let _ = write!(id, "ix{video:07}");
            self.rg
                .record(&mut rec, Kind::Small, &id, (n % 16) as usize, n);
            if n % 10 == 3 {
                failed += 1;
            }
            rec.pop(); // the record's closing brace: logged_at goes last
            let us = 8 * 3_600_000_000 + n * 50_000;
            let (secs, micros) = (us / 1_000_000, us % 1_000_000);
            let _ = write!(
                rec,
                r#","logged_at":"2025-10-{:02}T{:02}:{:02}:{:02}"#,
                17 + secs / 86_400,
                secs / 3_600 % 24,
                secs / 60 % 60,
                secs % 60
            );
            if micros != 0 {
                let _ = write!(rec, ".{micros:06}");
            }
            rec.extend_from_slice(b"\"}");
            w.write_all(&rec)?;
            bytes += rec.len() as u64;
        }
        let end: &[u8] = if records == 0 { b"]" } else { b"\n]" };
        w.write_all(end)?;
        bytes += end.len() as u64;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        evict_from_cache(&file);
        Ok((bytes, failed, videos))
    }

    /// Section 6: baseline memory on an empty log, then the small-record
    /// file's start-up scans, memory and query round trips.
    pub(crate) fn index(&mut self) -> io::Result<IndexStats> {
        let base = self.index_baseline()?;
        let n = self.plan.index_records;
        let log = self.dir.join("ix.json");
        self.progress(&format!(
            "index: writing {} small records as a JSON array",
            thousands(n as f64)
        ));
        let t0 = Instant::now();
        let result = self.index_file(&log, n, t0, base);
        let _ = fs::remove_file(&log);
        result
    }

    /// VmRSS, VmHWM and `index_bytes` of a daemon on an empty log, after
    /// one `stats`: the baseline of the memory per record.
    fn index_baseline(&mut self) -> io::Result<(u64, u64, u64)> {
        self.progress("index: daemon on an empty log (memory baseline)");
        let (d, log) = self.start_daemon("ixempty")?;
        let base = (|| {
            let mut c = Client::connect(d.socket())?;
            let v = c.request(STATS)?;
            if v["ok"] != true {
                return Err(other(format!("stats on an empty log: {v}")));
            }
            let ping = c.request(PING)?;
            let (rss, hwm) = d.memory()?;
            Ok((rss, hwm, ping["index_bytes"].as_u64().unwrap_or(0)))
        })();
        self.stop_daemon(d, &log, "index: empty log");
        base
    }

    /// Writes the index file of `n` records at `log`, times its start-ups
    /// and runs the queries on the last warm daemon; `base` is
    /// [`Bench::index_baseline`]'s.
    fn index_file(
        &mut self,
        log: &Path,
        n: u64,
        t0: Instant,
        base: (u64, u64, u64),
    ) -> io::Result<IndexStats> {
        let (rss_empty, hwm_empty, index_bytes_empty) = base;
        let (file_bytes, failed, videos) = self.prepare_index_file(log, n)?;
        let prepare_secs = t0.elapsed().as_secs_f64();
        self.progress(&format!(
            "index: {:.1} MB, {} failed, {} videos, written and synced in {prepare_secs:.1} s",
            file_bytes as f64 / 1e6,
            thousands(failed as f64),
            thousands(videos as f64)
        ));
        let label = format!("{} small", thousands(n as f64));
        let (scan, d) = self.startup_scans(log, label, (file_bytes, n), prepare_secs, true)?;
        let d = d.ok_or_else(|| other("no daemon left running for the queries"))?;
        self.progress("index: round trips");
        let q = self.index_queries(&d, n, failed);
        self.stop_daemon(d, log, "index: queries");
        let (rss_full, hwm_full, index_bytes, rss_after, rtts, report_html_ms) = q?;
        let [ping, stats, failed_100, sort_5, stats_ai, report, report_ai] = rtts;
        Ok(IndexStats {
            records: n,
            failed,
            videos,
            file_bytes,
            scan,
            ping,
            stats,
            failed_100,
            sort_5,
            stats_ai,
            report,
            report_ai,
            report_html_ms,
            rss_empty,
            hwm_empty,
            index_bytes_empty,
            rss_full,
            hwm_full,
            index_bytes,
            rss_after,
        })
    }

    /// On the daemon left running: the first `stats` (checked against the
    /// file), memory after it, the timed round trips, and memory after them.
    fn index_queries(&self, d: &Daemon, n: u64, failed: u64) -> io::Result<Measured> {
        let mut c = Client::connect(d.socket())?;
        let v = c.request(STATS)?;
        let st = &v["stats"];
        if st["total_jobs"].as_u64() != Some(n) || st["failed"].as_u64() != Some(failed) {
            let head: String = v.to_string().chars().take(300).collect();
            return Err(other(format!(
                "first stats: expected total_jobs {n} and failed {failed}: {head}"
            )));
        }
        let (rss_full, hwm_full) = d.memory()?;
        let ping = c.request(PING)?;
        if ping["records"].as_u64() != Some(n) {
            return Err(other(format!("ping: expected {n} records: {ping}")));
        }
        let index_bytes = ping["index_bytes"].as_u64().unwrap_or(0);
        let rtts = self.query_round_trips(&mut c, n, failed)?;
        let html = self.report_html(d, n).map_err(|e| e.to_string());
        if let Err(e) = &html {
            self.progress(&format!("index: joblogctl report --html not timed: {e}"));
        }
        let (rss_after, _) = d.memory()?;
        Ok((rss_full, hwm_full, index_bytes, rss_after, rtts, html))
    }

    /// The timed round trips of [`PING`], [`STATS`], [`FAILED_100`],
    /// [`SORT_5`], [`STATS_AI`], [`REPORT`] and [`REPORT_AI`], every reply
    /// checked.
    fn query_round_trips(&self, c: &mut Client, n: u64, failed: u64) -> io::Result<[Rtt; 7]> {
        let iters = self.plan.index_stats_iters;
        let ping = round_trips(c, PING, iters, RTT_CAP, |_| Ok(()))?;
        let stats = round_trips(c, STATS, iters, RTT_CAP, |v| check_stats(v, n))?;
        let want = failed.min(100);
        let failed_100 = round_trips(c, FAILED_100, self.plan.index_failed_iters, RTT_CAP, |v| {
            check_failed_100(v, want, failed)
        })?;
        let sort_5 = round_trips(c, SORT_5, self.plan.index_sort_iters, SORT_CAP, |v| {
            check_sort_5(v, n)
        })?;
        let stats_ai = round_trips(c, STATS_AI, self.plan.index_filtered_iters, SORT_CAP, |v| {
            check_stats_ai(v, n)
        })?;
        let iters = self.plan.index_filtered_iters;
        let report = round_trips(c, REPORT, iters, SORT_CAP, |v| check_report(v, n, true))?;
        let report_ai = round_trips(c, REPORT_AI, iters, SORT_CAP, |v| check_report(v, n, false))?;
        Ok([ping, stats, failed_100, sort_5, stats_ai, report, report_ai])
    }

    /// Milliseconds of `joblogctl report --html FILE` (the `joblogctl`
    /// beside the daemon) over the daemon's `n` records: a process, one
    /// `report`, the page made and written.
    fn report_html(&self, d: &Daemon, n: u64) -> io::Result<Latency> {
        let ctl = self.bin.with_file_name("joblogctl");
        if !ctl.is_file() {
            return Err(other(format!(
                "{} is missing (cargo build --release --bins)",
                ctl.display()
            )));
        }
        let page = self.dir.join("report.html");
        let want = format!(
            "wrote the report of {} jobs",
            crate::util::thousands(n as f64)
        );
        let mut samples = Vec::new();
        for _ in 0..self.plan.index_filtered_iters.min(5) {
            let t = Instant::now();
            let out = Command::new(&ctl)
                .arg("--socket")
                .arg(d.socket())
                .args(["report", "--html"])
                .arg(&page)
                .output()?;
            samples.push(t.elapsed().as_secs_f64() * 1e3);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() || !stderr.contains(&want) {
                return Err(other(format!("joblogctl report: {}", stderr.trim())));
            }
        }
        let _ = fs::remove_file(&page);
        Ok(latency(&samples))
    }
}

/// The check of a `report` reply: `stats` over all `n` records (or some
/// of them, for one subject), a time series and recent failures.
fn check_report(v: &Value, n: u64, all: bool) -> io::Result<()> {
    let total = v["stats"]["total_jobs"].as_u64().unwrap_or(0);
    let buckets = v["time_series"]["buckets"].as_array().map_or(0, Vec::len);
    let recent = v["recent_failures"].as_array().map_or(0, Vec::len);
    let total_ok = if all {
        total == n
    } else {
        total > 0 && total < n
    };
    if total_ok && buckets > 0 && recent == 20 {
        Ok(())
    } else {
        Err(other(format!(
            "total_jobs {total} of {n}, {buckets} buckets, {recent} recent failures"
        )))
    }
}

/// The check of a `stats` reply: all `n` records.
fn check_stats(v: &Value, n: u64) -> io::Result<()> {
    match v["stats"]["total_jobs"].as_u64() {
        Some(t) if t == n => Ok(()),
        t => Err(other(format!("total_jobs {t:?}, expected {n}"))),
    }
}

/// The check of a `failed` limit 100 reply: `want` jobs, all failed, of
/// `failed` in all.
fn check_failed_100(v: &Value, want: u64, failed: u64) -> io::Result<()> {
    let jobs = v["jobs"].as_array().map_or(&[][..], Vec::as_slice);
    let all_failed = jobs.iter().all(|j| j["success"] == false);
    if v["count"].as_u64() == Some(want)
        && v["total"].as_u64() == Some(failed)
        && jobs.len() as u64 == want
        && all_failed
    {
        Ok(())
    } else {
        Err(other(format!(
            "count {} total {} jobs {} all failed {all_failed}; expected {want} of {failed}",
            v["count"],
            v["total"],
            jobs.len()
        )))
    }
}

/// The check of a sorted `jobs` reply: 5 durations (fewer in a smaller
/// file), descending.
fn check_sort_5(v: &Value, n: u64) -> io::Result<()> {
    let d: Vec<f64> = v["jobs"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|j| j["processing_duration"].as_f64())
        .collect();
    if d.len() == 5.min(n as usize) && d.windows(2).all(|w| w[0] >= w[1]) {
        Ok(())
    } else {
        Err(other(format!("durations {d:?}: expected 5, descending")))
    }
}

/// The check of one subject's `stats`: some but not all of the `n`
/// records, one subject, and the stage names of [`STAGES`].
fn check_stats_ai(v: &Value, n: u64) -> io::Result<()> {
    let st = &v["stats"];
    let total = st["total_jobs"].as_u64().unwrap_or(0);
    let subjects = st["by_subject"].as_object().map_or(0, |m| m.len());
    let stages: Vec<&String> = st["timings"]
        .as_object()
        .map_or(Vec::new(), |m| m.keys().collect());
    if total > 0 && total < n && subjects == 1 && stages == STAGES {
        Ok(())
    } else {
        Err(other(format!(
            "total_jobs {total} of {n}, {subjects} subjects, timings {stages:?}; expected one subject and {STAGES:?}"
        )))
    }
}
