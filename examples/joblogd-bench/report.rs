//! The text report: sections 1 to 5 (6 to 9 come from `report_index`,
//! `report_peers` and `report_forward`), the Targets summary and the problems
//! found, from [`Results`] (what each section returned): medians with their
//! ranges, ratios, and PASS or FAIL against the stated targets.

use std::fmt::Write as _;

use crate::Section;
use crate::ack::AckStats;
use crate::bench::Bench;
use crate::flush::FlushStats;
use crate::index::IndexStats;
use crate::machine::loadavg;
use crate::records::Kind;
use crate::report_index::{index_report, index_targets};
use crate::scan::ScanStats;
use crate::single::SingleStats;
use crate::stats::{Latency, Spread};
use crate::throughput::TpRow;
use crate::util::thousands;

pub(crate) fn fmt_spread(s: Spread, decimals: usize) -> String {
    if decimals == 0 {
        format!(
            "{} [{}-{}]",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max)
        )
    } else {
        format!(
            "{:.d$} [{:.d$}-{:.d$}]",
            s.median,
            s.min,
            s.max,
            d = decimals
        )
    }
}

pub(crate) fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

pub(crate) struct Results {
    /// The sections that ran (all but those left out by `--only`).
    pub(crate) sections: Vec<Section>,
    pub(crate) tp: Vec<TpRow>,
    pub(crate) tp_err: Vec<String>,
    pub(crate) single: Option<Result<SingleStats, String>>,
    pub(crate) acks: Vec<Result<AckStats, String>>,
    pub(crate) floor: Option<Result<Latency, String>>,
    pub(crate) python: Option<Result<crate::python::PyStats, String>>,
    pub(crate) flush: Vec<Result<FlushStats, String>>,
    pub(crate) index: Option<Result<IndexStats, String>>,
    pub(crate) seed_scan: Option<Result<ScanStats, String>>,
    pub(crate) line_sizes: (f64, f64),
    pub(crate) growth: Option<Result<crate::growth::GrowthStats, String>>,
    pub(crate) forward: Option<Result<crate::forward::ForwardStats, String>>,
    pub(crate) peers: Vec<crate::procs::PeerRow>,
    pub(crate) peers_err: Vec<String>,
}

impl Results {
    fn ran(&self, s: Section) -> bool {
        self.sections.contains(&s)
    }
}

pub(crate) const NOT_RUN: &str = "   not run (--only)";

/// The whole text report: the header, sections 1 to 9, Targets, problems.
pub(crate) fn report(b: &Bench, header: &str, r: &Results) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{header}");
    throughput_report(&mut o, b.plan.reps, r);
    raw_report(&mut o, r);
    single_report(&mut o, r);
    ack_report(&mut o, r);
    let ratio = flush_report(&mut o, b, r);
    index_report(&mut o, b, r);
    if r.ran(Section::Peers) {
        crate::report_peers::peers_report(&mut o, b.plan.reps, &r.peers, &r.peers_err);
    } else {
        let _ = writeln!(
            o,
            "\n7. Writer processes and threads against the peers\n{NOT_RUN}"
        );
    }
    crate::report_peers::growth_report(&mut o, r.growth.as_ref());
    crate::report_forward::forward_report(&mut o, r.forward.as_ref());
    targets_report(&mut o, r, ratio);
    problems_report(&mut o, b);
    o
}

/// Section 1: fire-and-forget throughput, one line per kind and writer count.
fn throughput_report(o: &mut String, reps: usize, r: &Results) {
    let _ = writeln!(
        o,
        "\n1. Fire-and-forget throughput, joblogd --fsync always (median of {reps} runs [min-max]; clock: all writers connected -> each writes its lines in 256 KiB write_all calls, closes its write side and reads until joblogd closes -> a final flush on another connection returns)"
    );
    if r.ran(Section::Throughput) {
        let _ = writeln!(
            o,
            "   {:<7} {:>7} {:>8} {:>8}   {:<30} MB/s",
            "record", "writers", "records", "MB", "records/s"
        );
        for row in &r.tp {
            let _ = writeln!(
                o,
                "   {:<7} {:>7} {:>8} {:>8.1}   {:<30} {}",
                row.kind.label(),
                row.writers,
                row.records,
                row.bytes as f64 / 1e6,
                fmt_spread(row.rec_per_s(&row.joblogd_secs), 0),
                fmt_spread(row.mb_per_s(&row.joblogd_secs), 1),
            );
        }
        for e in &r.tp_err {
            let _ = writeln!(o, "   FAILED: {e}");
        }
        let _ = writeln!(
            o,
            "   (MB = 10^6 bytes of input lines; mean line: small {:.0} B, seed-sized {:.0} B; every 10th record a failure)",
            r.line_sizes.0, r.line_sizes.1
        );
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }
}

/// Section 2: the raw ceiling and the write path alone beside joblogd.
fn raw_report(o: &mut String, r: &Results) {
    let _ = writeln!(
        o,
        "\n2. Raw ceiling: same bytes and writers into an in-process server (thread per connection, write_all to one file under a Mutex, one fdatasync at the end); joblogd's file is larger than its input (pretty-printed, logged_at added), so its disk MB/s is shown too. Write path alone: as many bytes as joblogd's file appended by joblogd's own write path (store::Store, the daemon's defaults) in 8 MiB batches of 256 KiB chunks, no socket, no parsing, no index: what the disk allows that path (the daemon's batches grow past 8 MiB under load, so it can beat this)"
    );
    if r.ran(Section::Throughput) {
        let _ = writeln!(
            o,
            "   {:<7} {:>7}   {:<28} {:>12}   {:>18}   {:>18}   {:<28} {:>14}",
            "record",
            "writers",
            "raw MB/s",
            "joblogd/raw",
            "joblogd file MB",
            "joblogd disk MB/s",
            "write path alone MB/s",
            "its rec/s"
        );
        for row in &r.tp {
            let raw = row.mb_per_s(&row.raw_secs);
            let jl = row.mb_per_s(&row.joblogd_secs);
            let _ = writeln!(
                o,
                "   {:<7} {:>7}   {:<28} {:>12.2}   {:>18}   {:>18.1}   {:<28} {:>14}",
                row.kind.label(),
                row.writers,
                fmt_spread(raw, 1),
                if raw.median > 0.0 {
                    jl.median / raw.median
                } else {
                    0.0
                },
                format!(
                    "{:.1} ({:.2}x)",
                    row.file_bytes as f64 / 1e6,
                    row.file_bytes as f64 / row.bytes as f64
                ),
                jl.median * row.file_bytes as f64 / row.bytes as f64,
                fmt_spread(row.disk_mb_per_s(), 1),
                thousands(row.rec_per_s(&row.disk_secs).median)
            );
        }
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }
}

/// Section 3: one `write_all` per record.
fn single_report(o: &mut String, r: &Results) {
    let _ = writeln!(
        o,
        "\n3. Fire-and-forget per-record client cost (1 writer, one write_all per small record)"
    );
    match &r.single {
        Some(Ok(s)) => {
            let _ = writeln!(
                o,
                "   {} records: {:.0} ns/record mean on the client side; end to end (until flush returns) {} records/s",
                thousands(s.records as f64),
                s.client_ns_per_record,
                thousands(s.records as f64 / s.total_secs)
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   FAILED: {e}");
        }
        None => {
            let _ = writeln!(o, "{NOT_RUN}");
        }
    }
}

/// Section 4: ack latency and the disk floor.
fn ack_report(o: &mut String, r: &Results) {
    let _ = writeln!(
        o,
        "\n4. Ack latency ({{\"op\":\"log\",\"job\":<small>,\"ack\":true}}, each client one request at a time)"
    );
    if r.ran(Section::Ack) {
        let _ = writeln!(
            o,
            "   {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "clients", "acks", "p50 us", "p99 us", "max us", "mean us", "acks/s"
        );
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }
    for a in &r.acks {
        match a {
            Ok(a) => {
                let l = a.latency_us;
                let _ = writeln!(
                    o,
                    "   {:>7} {:>6} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9}",
                    a.clients,
                    l.n,
                    l.p50,
                    l.p99,
                    l.max,
                    l.mean,
                    thousands(a.acks_per_s)
                );
            }
            Err(e) => {
                let _ = writeln!(o, "   FAILED: {e}");
            }
        }
    }
    match &r.floor {
        Some(Ok(l)) => {
            let _ = writeln!(
                o,
                "   disk floor (no joblogd): append one small line + fdatasync, {} times: p50 {:.0} us, p99 {:.0} us",
                l.n, l.p50, l.p99
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   disk floor FAILED: {e}");
        }
        None => {}
    }
    match &r.python {
        Some(Ok(p)) => {
            let _ = writeln!(
                o,
                "   Python client, {} log_job calls of a small record (python3, median [range] of runs): \
                 pipelined {} us, durable=True {} us per record",
                thousands(p.records as f64),
                fmt_spread(p.pipelined_us, 1),
                fmt_spread(p.durable_us, 1)
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   Python client FAILED: {e}");
        }
        None => {}
    }
}

/// Section 5: flush time vs file size; returns the big file's label and
/// its flush p50 over the small file's, for the Targets summary.
fn flush_report(o: &mut String, b: &Bench, r: &Results) -> Option<(&'static str, f64)> {
    let _ = writeln!(
        o,
        "\n5. Flush time vs file size ({} small records + {{\"op\":\"flush\"}} on one connection, {} times after 1 warm-up; nearest-rank p99, so with 50 samples p99 = max)",
        b.plan.flush_batch, b.plan.flush_iters
    );
    if r.ran(Section::Flush) {
        let _ = writeln!(
            o,
            "   {:<7} {:>9} {:>8} {:>22} {:>22} {:>9} {:>9} {:>9}",
            "file",
            "MB",
            "records",
            "scan cold ms (MB/s)",
            "scan warm ms (MB/s)",
            "flush p50",
            "p99 ms",
            "mean ms"
        );
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }
    let scan = |took: Option<u64>, bytes: u64| match took {
        Some(ms) => format!(
            "{ms} ({:.0})",
            bytes as f64 / 1e6 / (ms.max(1) as f64 / 1e3)
        ),
        None => "n/a".to_owned(),
    };
    let mut ok_flush = Vec::new();
    for f in &r.flush {
        match f {
            Ok(f) => {
                let _ = writeln!(
                    o,
                    "   {:<7} {:>9.1} {:>8} {:>22} {:>22} {:>9.2} {:>9.2} {:>9.2}",
                    f.label,
                    f.file_bytes as f64 / 1e6,
                    f.file_records,
                    scan(f.cold_took_ms, f.file_bytes),
                    scan(f.warm_took_ms, f.file_bytes),
                    f.flush_ms.p50,
                    f.flush_ms.p99,
                    f.flush_ms.mean
                );
                ok_flush.push(f);
            }
            Err(e) => {
                let _ = writeln!(o, "   FAILED: {e}");
            }
        }
    }
    for f in &ok_flush {
        let _ = writeln!(
            o,
            "   {}: prepared in {:.1} s; socket accepting after {:.0} ms cold, {:.0} ms warm (scan = took_ms of \"Log file ready.\")",
            f.label, f.prepare_secs, f.cold_accept_ms, f.warm_accept_ms
        );
    }
    match ok_flush.as_slice() {
        [small, big] if small.flush_ms.p50 > 0.0 => {
            let p50 = big.flush_ms.p50 / small.flush_ms.p50;
            let p99 = big.flush_ms.p99 / small.flush_ms.p99.max(1e-9);
            let _ = writeln!(
                o,
                "   ratio {}/{}: p50 {p50:.2}x, p99 {p99:.2}x",
                big.label, small.label
            );
            Some((big.label, p50))
        }
        _ => None,
    }
}

/// The Targets summary (section 6's lines come from `report_index`).
fn targets_report(o: &mut String, r: &Results, ratio: Option<(&'static str, f64)>) {
    let _ = writeln!(o, "\nTargets");
    let small: Vec<&TpRow> = r.tp.iter().filter(|t| t.kind == Kind::Small).collect();
    let seed: Vec<&TpRow> = r.tp.iter().filter(|t| t.kind == Kind::Seed).collect();
    let line = |rows: &[&TpRow], f: &dyn Fn(&TpRow) -> f64, lim: f64, unit: &str| {
        if rows.is_empty() {
            return "not measured".to_owned();
        }
        rows.iter()
            .map(|t| {
                let v = f(t);
                format!("{} writers {v:.0} {unit} {}", t.writers, pass(v >= lim))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = writeln!(
        o,
        "   >= 250,000 small records/s (median): {}",
        line(
            &small,
            &|t| t.rec_per_s(&t.joblogd_secs).median,
            250_000.0,
            "rec/s"
        )
    );
    if !small.is_empty() {
        let _ = writeln!(
            o,
            "      (joblogd's write path alone, same file, section 2: {})",
            small
                .iter()
                .map(|t| format!(
                    "{} writers {} rec/s",
                    t.writers,
                    thousands(t.rec_per_s(&t.disk_secs).median)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let _ = writeln!(
        o,
        "   >= 250 MB/s seed-sized (median):     {}",
        line(
            &seed,
            &|t| t.mb_per_s(&t.joblogd_secs).median,
            250.0,
            "MB/s"
        )
    );
    match ratio {
        Some((label, p50)) => {
            let _ = writeln!(
                o,
                "   flush at {label} within 1.2x of 10 MB (p50): {p50:.2}x {}",
                pass(p50 <= 1.2)
            );
        }
        None => {
            let _ = writeln!(o, "   flush ratio: not measured");
        }
    }
    index_targets(o, r);
    crate::report_peers::peers_targets(o, &r.peers);
    crate::report_peers::growth_targets(o, r.growth.as_ref());
    crate::report_forward::forward_targets(o, r.forward.as_ref());
}

/// The problems found, and the total time and load average at the end.
fn problems_report(o: &mut String, b: &Bench) {
    let _ = writeln!(o, "\nProblems (daemon warnings/errors, failed checks)");
    if b.problems.is_empty() {
        let _ = writeln!(
            o,
            "   none: every run's ping matched the records sent, no error replies, clean exits"
        );
    }
    for p in &b.problems {
        let _ = writeln!(o, "   - {p}");
    }
    let _ = writeln!(
        o,
        "\nTotal bench time: {:.0} s; load average at end {} (2 CPUs: anything else running skews these numbers)",
        b.started.elapsed().as_secs_f64(),
        loadavg()
    );
}
