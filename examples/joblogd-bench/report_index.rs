//! Section 6 of the text report (index round trips, memory per record,
//! start-up scan rates) and its lines of the Targets summary.

use std::fmt::Write as _;

use crate::bench::Bench;
use crate::index::IndexStats;
use crate::records::TRANSCRIPT_CHARS;
use crate::report::{NOT_RUN, Results, fmt_spread, pass};
use crate::scan::ScanStats;
use crate::stats::{Latency, spread};
use crate::util::thousands;

/// Bytes as MB (10^6) with one decimal.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Section 6 of the report.
pub(crate) fn index_report(o: &mut String, b: &Bench, r: &Results) {
    let n = b.plan.index_records;
    let _ = writeln!(
        o,
        "\n6. Index at {} small records (the file written directly as a compact JSON array, not through the socket; every record with logged_at; every 10th a failure, half of the failed videos retried later with success); one connection, requests one at a time after 1 unmeasured warm-up; clock: write the request -> whole reply line read",
        thousands(n as f64)
    );
    let ix = match &r.index {
        None => {
            let _ = writeln!(o, "{NOT_RUN}");
            return;
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   FAILED: {e}");
            None
        }
        Some(Ok(ix)) => Some(ix),
    };
    if let Some(ix) = ix {
        index_queries_report(o, ix);
    }
    scans_report(o, b, r, ix);
}

/// Section 6, the index file: its round trips and the memory per record.
fn index_queries_report(o: &mut String, ix: &IndexStats) {
    let _ = writeln!(
        o,
        "   file: {} records, {}, {} failed, {} distinct video_ids; written and synced in {:.1} s",
        thousands(ix.records as f64),
        mb(ix.file_bytes),
        thousands(ix.failed as f64),
        thousands(ix.videos as f64),
        ix.scan.prepare_secs
    );
    let _ = writeln!(
        o,
        "   {:<72} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "request", "n", "first us", "p50 us", "p99 us", "max us", "mean us", "reply B"
    );
    for rt in [
        &ix.ping,
        &ix.stats,
        &ix.failed_100,
        &ix.sort_5,
        &ix.stats_ai,
        &ix.report,
        &ix.report_ai,
    ] {
        let l = rt.latency_us;
        let _ = writeln!(
            o,
            "   {:<72} {:>5} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>9}",
            rt.request,
            l.n,
            rt.first_us,
            l.p50,
            l.p99,
            l.max,
            l.mean,
            thousands(rt.reply_bytes as f64)
        );
    }
    let ms = |l: Latency| format!("p50 {:.2} ms, p99 {:.2} ms", l.p50 / 1e3, l.p99 / 1e3);
    let _ = writeln!(
        o,
        "   in ms: failed limit 100 {}; jobs sorted limit 5 {}; stats of one subject {} (ping is the round-trip floor of this connection)",
        ms(ix.failed_100.latency_us),
        ms(ix.sort_5.latency_us),
        ms(ix.stats_ai.latency_us)
    );
    match &ix.report_html_ms {
        Ok(l) => {
            let _ = writeln!(
                o,
                "   joblogctl report --html FILE at {} records (its process, the report request, the page made and written): p50 {:.0} ms, max {:.0} ms over {} runs; the report request alone {}",
                thousands(ix.records as f64),
                l.p50,
                l.max,
                l.n,
                ms(ix.report.latency_us)
            );
        }
        Err(e) => {
            let _ = writeln!(o, "   joblogctl report --html not timed: {e}");
        }
    }
    let _ = writeln!(
        o,
        "   memory (VmRSS of /proc/<pid>/status, after start-up and one stats): empty log {}, {} records {} (peak VmHWM {}; empty-log peak {}); after the measured requests {}",
        mb(ix.rss_empty),
        thousands(ix.records as f64),
        mb(ix.rss_full),
        mb(ix.hwm_full),
        mb(ix.hwm_empty),
        mb(ix.rss_after)
    );
    let _ = writeln!(
        o,
        "   per indexed record: (VmRSS full - VmRSS empty) / records = {:.1} B; ping index_bytes {} / records = {:.1} B (empty log: index_bytes {})",
        ix.rss_per_record(),
        thousands(ix.index_bytes as f64),
        ix.index_bytes_per_record(),
        thousands(ix.index_bytes_empty as f64)
    );
}

/// Section 6, the start-up scans of the index file (when it was written)
/// and of the seed-sized file.
fn scans_report(o: &mut String, b: &Bench, r: &Results, ix: Option<&IndexStats>) {
    let _ = writeln!(
        o,
        "   start-up scan: took_ms of \"Log file ready.\", {} starts each, median [min-max]; cold = file fdatasync'd and dropped from the page cache (POSIX_FADV_DONTNEED) before each start",
        b.plan.scan_reps
    );
    let _ = writeln!(
        o,
        "   {:<22} {:>9} {:>8} {:>20} {:>20} {:>20} {:>20} {:>18}",
        "file", "MB", "records", "cold ms", "cold MB/s", "warm ms", "warm MB/s", "warm records/s"
    );
    let mut scans = Vec::new();
    if let Some(ix) = ix {
        scans.push(&ix.scan);
    }
    match &r.seed_scan {
        Some(Ok(s)) => scans.push(s),
        Some(Err(e)) => {
            let _ = writeln!(o, "   seed-sized file FAILED: {e}");
        }
        None => {}
    }
    for s in &scans {
        let _ = writeln!(
            o,
            "   {:<22} {:>9.1} {:>8} {:>20} {:>20} {:>20} {:>20} {:>18}",
            s.label,
            s.file_bytes as f64 / 1e6,
            s.records,
            fmt_spread(spread(&s.cold_ms), 0),
            fmt_spread(s.mb_per_s(&s.cold_ms), 0),
            fmt_spread(spread(&s.warm_ms), 0),
            fmt_spread(s.mb_per_s(&s.warm_ms), 0),
            thousands(s.rec_per_s(&s.warm_ms).median)
        );
    }
    if r.seed_scan.is_some() {
        let _ = writeln!(
            o,
            "   (the seed-sized file is written by section 5's code: compact records of {TRANSCRIPT_CHARS} transcript characters, without logged_at)"
        );
    }
    for s in &scans {
        let _ = writeln!(
            o,
            "   {}: socket accepting after {:.0} ms cold, {:.0} ms warm (median; includes process start)",
            s.label,
            spread(&s.cold_accept_ms).median,
            spread(&s.warm_accept_ms).median
        );
    }
}

/// Section 6's lines of the Targets summary.
pub(crate) fn index_targets(o: &mut String, r: &Results) {
    let ix = match &r.index {
        Some(Ok(ix)) => Some(ix),
        _ => None,
    };
    match ix {
        Some(ix) => {
            let at = thousands(ix.records as f64);
            let p99 = ix.stats.latency_us.p99;
            let _ = writeln!(
                o,
                "   stats p99 < 200 us at {at} records: {p99:.0} us {}",
                pass(p99 < 200.0)
            );
            let p99 = ix.failed_100.latency_us.p99 / 1e3;
            let _ = writeln!(
                o,
                "   failed limit 100 p99 < 5 ms at {at} records: {p99:.2} ms {}",
                pass(p99 < 5.0)
            );
            let (rss, ib) = (ix.rss_per_record(), ix.index_bytes_per_record());
            let _ = writeln!(
                o,
                "   <= 100 B resident per indexed record: VmRSS delta {rss:.1} B {}; index_bytes {ib:.1} B {}",
                pass(rss <= 100.0),
                pass(ib <= 100.0)
            );
        }
        None => {
            let _ = writeln!(o, "   index queries and memory: not measured");
        }
    }
    let rate = |s: &ScanStats| {
        let (c, w) = (s.mb_per_s(&s.cold_ms).median, s.mb_per_s(&s.warm_ms).median);
        format!(
            "cold {c:.0} MB/s {}; warm {w:.0} MB/s {}",
            pass(c >= 500.0),
            pass(w >= 500.0)
        )
    };
    match &r.seed_scan {
        Some(Ok(s)) => {
            let _ = writeln!(
                o,
                "   >= 500 MB/s start-up scan, {} file (median): {}",
                s.label,
                rate(s)
            );
        }
        _ => {
            let _ = writeln!(o, "   start-up scan of the seed-sized file: not measured");
        }
    }
    if let Some(ix) = ix {
        let _ = writeln!(
            o,
            "   (same bar, not a stated target) start-up scan, {} file (median): {}",
            ix.scan.label,
            rate(&ix.scan)
        );
    }
}
