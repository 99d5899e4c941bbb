//! Sections 7 and 8 in text. Section 7: for each writer mode and record
//! kind, one line per peer with its records/s (median [min-max]) and
//! server CPU per record at each writer count, the ratios to the better
//! syslog-ng, and the section's targets. Section 8: memory growth per
//! record and ack latency beside queries, with their targets.

use std::fmt::Write as _;

use crate::growth::GrowthStats;
use crate::procs::{Mode, Peer, PeerRow};
use crate::records::Kind;
use crate::report::pass;
use crate::util::thousands;

/// The row of `peer` among `rows` (one mode, kind and writer count).
fn find<'a>(rows: &[&'a PeerRow], peer: Peer) -> Option<&'a PeerRow> {
    rows.iter().copied().find(|r| r.peer == peer)
}

fn median_rate(row: Option<&PeerRow>) -> Option<f64> {
    row.map(|r| r.rec_per_s().median)
}

/// The faster of the two syslog-ng configurations among `rows`.
fn best_syslog_ng<'a>(rows: &[&'a PeerRow]) -> Option<&'a PeerRow> {
    rows.iter()
        .copied()
        .filter(|r| r.peer.is_syslog_ng())
        .max_by(|a, b| a.rec_per_s().median.total_cmp(&b.rec_per_s().median))
}

/// Section 7's table and notes.
pub(crate) fn peers_report(o: &mut String, reps: usize, rows: &[PeerRow], errors: &[String]) {
    let _ = writeln!(
        o,
        "\n7. Writer processes and threads against the peers (median of {reps} runs [min-max], peers alternating within each run, in turn first; sync(2) before each run; clock: every writer connected and ready -> each sends its share (processes: one write_all of it; threads: 256 KiB write_all calls), closes its write side and reads until the server closes -> the server holds every record: joblogd's flush returns, the others' file holds every byte; cpu = the server's utime + stime per record)"
    );
    for mode in [Mode::Processes, Mode::Threads] {
        for kind in [Kind::Small, Kind::Seed] {
            let these: Vec<&PeerRow> = rows
                .iter()
                .filter(|r| r.mode == mode && r.kind == kind)
                .collect();
            if these.is_empty() {
                continue;
            }
            let _ = writeln!(
                o,
                "   {} records, writers as {}: records/s (cpu us/record)",
                kind.label(),
                mode.label()
            );
            let mut counts: Vec<usize> = these.iter().map(|r| r.writers).collect();
            counts.dedup();
            for peer in Peer::ALL {
                let _ = write!(o, "     {:<40}", peer.label());
                for &w in &counts {
                    let at: Vec<&PeerRow> =
                        these.iter().copied().filter(|r| r.writers == w).collect();
                    match find(&at, peer) {
                        Some(r) => {
                            let s = r.rec_per_s();
                            let _ = write!(
                                o,
                                " x{w}: {} [{}-{}] ({:.2})",
                                thousands(s.median),
                                thousands(s.min),
                                thousands(s.max),
                                r.cpu_us_per_record().median
                            );
                        }
                        None => {
                            let _ = write!(o, " x{w}: not run");
                        }
                    }
                }
                let _ = writeln!(o);
            }
            for &w in &counts {
                let at: Vec<&PeerRow> = these.iter().copied().filter(|r| r.writers == w).collect();
                let best = median_rate(best_syslog_ng(&at));
                let copier = median_rate(find(&at, Peer::Copier));
                let ratio = |p: Peer, q: Option<f64>| match (median_rate(find(&at, p)), q) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "-".to_string(),
                };
                let _ = writeln!(
                    o,
                    "     x{w}: joblogd --fsync never / the better syslog-ng {}; default / the better syslog-ng {}; joblogd never / copier {}",
                    ratio(Peer::JoblogdNever, best),
                    ratio(Peer::Joblogd, best),
                    ratio(Peer::JoblogdNever, copier)
                );
            }
        }
    }
    for e in errors {
        let _ = writeln!(o, "   FAILED: {e}");
    }
    if !rows.iter().any(|r| r.peer.is_syslog_ng()) && !rows.is_empty() {
        let _ = writeln!(
            o,
            "   syslog-ng not run: /usr/sbin/syslog-ng is missing (Debian's syslog-ng-core)"
        );
    }
}

/// Section 7's targets (writer processes): joblogd `--fsync never` at least
/// syslog-ng's records/s; the default at 64 and more writers at least 0.8
/// times its own 1-writer figure; joblogd's CPU per record at most
/// syslog-ng's.
pub(crate) fn peers_targets(o: &mut String, rows: &[PeerRow]) {
    for kind in [Kind::Small, Kind::Seed] {
        let these: Vec<&PeerRow> = rows
            .iter()
            .filter(|r| r.mode == Mode::Processes && r.kind == kind)
            .collect();
        if these.is_empty() {
            continue;
        }
        let mut counts: Vec<usize> = these.iter().map(|r| r.writers).collect();
        counts.dedup();
        let at = |w: usize| -> Vec<&PeerRow> {
            these.iter().copied().filter(|r| r.writers == w).collect()
        };
        let mut line = format!(
            "   {} writer processes, joblogd --fsync never >= 1.0x the better syslog-ng:",
            kind.label()
        );
        let mut cpu = format!(
            "   {} writer processes, joblogd cpu/record <= the better syslog-ng's:",
            kind.label()
        );
        for &w in &counts {
            let rows = at(w);
            if let (Some(j), Some(s)) = (
                median_rate(find(&rows, Peer::JoblogdNever)),
                median_rate(best_syslog_ng(&rows)),
            ) {
                let _ = write!(line, " x{w} {:.2} {};", j / s, pass(j >= s));
            }
            if let (Some(j), Some(s)) = (find(&rows, Peer::JoblogdNever), best_syslog_ng(&rows)) {
                let (jc, sc) = (j.cpu_us_per_record().median, s.cpu_us_per_record().median);
                let _ = write!(cpu, " x{w} {jc:.2} vs {sc:.2} us {};", pass(jc <= sc));
            }
        }
        let _ = writeln!(o, "{line}");
        let _ = writeln!(o, "{cpu}");
        let one = median_rate(find(&at(1), Peer::Joblogd));
        let mut own = format!(
            "   {} writer processes, joblogd default at 64+ writers >= 0.8x its 1-writer figure:",
            kind.label()
        );
        let mut measured = false;
        for &w in counts.iter().filter(|&&w| w >= 64) {
            if let (Some(one), Some(many)) = (one, median_rate(find(&at(w), Peer::Joblogd))) {
                let _ = write!(own, " x{w} {:.2} {};", many / one, pass(many >= 0.8 * one));
                measured = true;
            }
        }
        if !measured {
            own.push_str(" not measured (needs 1 and 64+ writers)");
        }
        let _ = writeln!(o, "{own}");
    }
}

/// Section 8's text.
pub(crate) fn growth_report(o: &mut String, g: Option<&Result<GrowthStats, String>>) {
    let _ = writeln!(
        o,
        "\n8. Index growth with distinct names, and acks beside queries (records whose video id, subject, worker id and error text are all distinct, sent through the socket by 8 writer threads in two halves; one client's acked `log` requests one at a time, alone and while another client loops a filtered `stats` and `jobs` sorted by duration with limit 5)"
    );
    match g {
        None => {
            let _ = writeln!(o, "   not run (--only)");
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   FAILED: {e}");
        }
        Some(Ok(g)) => {
            let mb = |b: u64| b as f64 / 1e6;
            let _ = writeln!(
                o,
                "   VmRSS {:.1} MB at {} records, {:.1} MB at {}: {:.1} B per record more; index_bytes {:.1} MB, {:.1} MB: {:.1} B per record",
                mb(g.rss[0]),
                g.records[0],
                mb(g.rss[1]),
                g.records[1],
                g.rss_per_record(),
                mb(g.index_bytes[0]),
                mb(g.index_bytes[1]),
                g.index_per_record()
            );
            let l = |x: &crate::stats::Latency| {
                format!(
                    "p50 {:.0} us, p99 {:.0} us, max {:.0} us",
                    x.p50, x.p99, x.max
                )
            };
            let _ = writeln!(
                o,
                "   ack latency at {} records: alone {}; beside queries {} ({} queries meanwhile)",
                g.records[1],
                l(&g.ack_alone),
                l(&g.ack_with_queries),
                g.queries
            );
        }
    }
}

/// Section 8's targets: at most 100 B of VmRSS per record more, with
/// `index_bytes` within 10% of it; ack p99 beside queries within 2x of
/// alone.
pub(crate) fn growth_targets(o: &mut String, g: Option<&Result<GrowthStats, String>>) {
    let Some(Ok(g)) = g else {
        return;
    };
    let (rss, ib) = (g.rss_per_record(), g.index_per_record());
    let _ = writeln!(
        o,
        "   <= 100 B VmRSS growth per distinct record: {rss:.1} B {}; index_bytes within 10% of it: {ib:.1} B {}",
        pass(rss <= 100.0),
        pass((ib - rss).abs() <= 0.1 * rss)
    );
    let ratio = g.ack_with_queries.p99 / g.ack_alone.p99.max(1.0);
    let _ = writeln!(
        o,
        "   ack p99 beside queries within 2x of alone: {ratio:.2}x {}",
        pass(ratio <= 2.0)
    );
}
