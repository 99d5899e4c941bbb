//! Section 9 in text: for each loader (the forwarder at each batch size,
//! and COPY) its records/s and drain time (median [min-max]), its ratio to
//! COPY and the CPU per record of the client, PostgreSQL and joblogd; and
//! the section's line of the Targets summary.

use std::fmt::Write as _;

use crate::forward::{ForwardStats, Loader, TARGET_RATE};
use crate::report::{fmt_spread, pass};
use crate::stats::spread;
use crate::util::thousands;

/// Section 9's text.
pub(crate) fn forward_report(o: &mut String, r: Option<&Result<ForwardStats, String>>) {
    let _ = writeln!(
        o,
        "\n9. A backlog forwarded to PostgreSQL: small records logged through the socket (8 writer threads, then a flush), drained by `joblogctl forward --host-id bench --batch B --once` (the release joblogctl beside joblogd), and the same record texts (read back with `read`, one a line) loaded by psql's `\\copy t(record) FROM file WITH (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')` into `CREATE TABLE t(record jsonb)` (no index), as a user would instead; a fresh cluster on a Unix socket with PostgreSQL's default settings, fsync and synchronous_commit on (a durable server, not tuned for the bench); each run into an empty database (`forward --init`, or the table t) after a CHECKPOINT; the loaders taking turns, each repetition starting with the next; clock: spawn of the client -> its exit; cpu = utime + stime per record of the client (joblogctl or psql), of PostgreSQL (all its processes, and the backends that ended) and of joblogd"
    );
    let f = match r {
        None => {
            let _ = writeln!(o, "   not run (--only)");
            return;
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   FAILED: {e}");
            return;
        }
        Some(Ok(f)) => f,
    };
    let _ = writeln!(
        o,
        "   {}: {}\n   backlog: {} records, {:.1} MB of JSON ({:.0} B a record, compact, with the daemon's logged_at), logged and flushed in {:.1} s; median of {} run(s) [min-max]",
        f.server,
        f.settings,
        thousands(f.records as f64),
        f.record_bytes as f64 / 1e6,
        f.record_bytes as f64 / f.records.max(1) as f64,
        f.log_secs,
        f.reps
    );
    let _ = writeln!(
        o,
        "   {:<24} {:>28} {:>22} {:>7} {:>7}   {:>21} {:>9} {:>8}",
        "loader",
        "records/s",
        "drain s",
        "MB/s",
        "/ COPY",
        "cpu us/record: client",
        "postgres",
        "joblogd"
    );
    let copy = f
        .row(Loader::Copy)
        .map(|c| c.rec_per_s().median)
        .filter(|&c| c > 0.0);
    for row in &f.rows {
        let rate = row.rec_per_s();
        let ratio = copy.map_or("-".to_owned(), |c| format!("{:.2}", rate.median / c));
        let cpu = |v: &[f64]| format!("{:.1}", row.cpu_us(v).median);
        let _ = writeln!(
            o,
            "   {:<24} {:>28} {:>22} {:>7.1} {:>7}   {:>21} {:>9} {:>8}",
            row.loader.label(),
            fmt_spread(rate, 0),
            fmt_spread(spread(&row.secs), 1),
            rate.median * f.record_bytes as f64 / f.records.max(1) as f64 / 1e6,
            ratio,
            cpu(&row.client_cpu),
            cpu(&row.server_cpu),
            cpu(&row.daemon_cpu)
        );
    }
    let _ = writeln!(
        o,
        "   every run checked: SELECT count(*) = {} (joblog_records, or t), and the forwarder's checkpoint at seq {}; MB/s of the records' JSON text",
        thousands(f.records as f64),
        thousands(f.records as f64)
    );
}

/// Section 9's line of the Targets summary: the forwarder at its default
/// batch against the rate, the larger batch beside it.
pub(crate) fn forward_targets(o: &mut String, r: Option<&Result<ForwardStats, String>>) {
    let Some(Ok(f)) = r else {
        return;
    };
    let Some(row) = f.default_forward() else {
        return;
    };
    let rate = row.rec_per_s().median;
    let others: Vec<String> = f
        .rows
        .iter()
        .filter(|r| r.loader != row.loader && r.loader != Loader::Copy)
        .map(|r| {
            format!(
                "{} {} rec/s",
                r.loader.label(),
                thousands(r.rec_per_s().median)
            )
        })
        .collect();
    let _ = writeln!(
        o,
        "   >= {} small records/s forwarded ({}, median, {} records): {} rec/s {} ({})",
        thousands(TARGET_RATE),
        row.loader.label(),
        thousands(f.records as f64),
        thousands(rate),
        pass(rate >= TARGET_RATE),
        others.join("; ")
    );
}
