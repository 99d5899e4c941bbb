//! Section 7's text: for each writer mode and record kind, one line per
//! writer count with every peer's records/s (median [min-max]) and server
//! CPU per record, the ratios to syslog-ng, and the section's targets.

use std::fmt::Write as _;

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
        "\n7. Writer processes and threads against the peers (median of {reps} runs [min-max], peers alternating within each run; clock: every writer connected and ready -> each sends its share (processes: one write_all of it; threads: 256 KiB write_all calls), closes its write side and reads until the server closes -> the server holds every record: joblogd's flush returns, the others' file holds every byte; cpu = the server's utime + stime per record)"
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
        for &w in counts.iter().filter(|&&w| w >= 64) {
            if let (Some(one), Some(many)) = (one, median_rate(find(&at(w), Peer::Joblogd))) {
                let _ = write!(own, " x{w} {:.2} {};", many / one, pass(many >= 0.8 * one));
            }
        }
        let _ = writeln!(o, "{own}");
    }
}
