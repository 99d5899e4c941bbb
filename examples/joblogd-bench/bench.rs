//! The run's shared context: [`Plan`] (how much work each measurement does,
//! `--quick` or full) and [`Bench`] (the daemon binary, the temp dir, the
//! record generator, the clock and the problems found so far), with the
//! start and stop of a daemon that every section uses.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::daemon::Daemon;
use crate::records::Gen;

/// How much work each measurement does.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) small_total: usize,
    pub(crate) seed_total: usize,
    pub(crate) writer_counts: Vec<usize>,
    /// Section 7: records per run (about 200 MB of lines in full mode,
    /// 50 MB quick) and writer counts.
    pub(crate) peer_small_total: usize,
    pub(crate) peer_seed_total: usize,
    pub(crate) peer_writer_counts: Vec<usize>,
    /// Section 8: distinct records in each half, acks per measurement.
    pub(crate) growth_half: u64,
    pub(crate) growth_acks: usize,
    pub(crate) reps: usize,
    pub(crate) single_records: usize,
    pub(crate) ack_sequential: usize,
    pub(crate) ack_clients: usize,
    pub(crate) ack_per_client: usize,
    /// Section 4's Python client row: `log_job` calls per run.
    pub(crate) python_records: usize,
    pub(crate) flush_iters: usize,
    pub(crate) flush_batch: usize,
    pub(crate) small_file: u64,
    pub(crate) big_file: u64,
    pub(crate) fsync_floor_iters: usize,
    /// Small records in the index section's file.
    pub(crate) index_records: u64,
    pub(crate) index_stats_iters: usize,
    pub(crate) index_failed_iters: usize,
    pub(crate) index_sort_iters: usize,
    pub(crate) index_filtered_iters: usize,
    /// Cold and warm start-ups per file in the index section.
    pub(crate) scan_reps: usize,
    /// Section 9: the backlog forwarded, and the runs of each loader.
    pub(crate) forward_records: u64,
    pub(crate) forward_reps: usize,
}

impl Plan {
    pub(crate) fn new(quick: bool) -> Plan {
        Plan {
            small_total: if quick { 60_000 } else { 400_000 },
            seed_total: if quick { 6_000 } else { 40_000 },
            writer_counts: vec![1, 8, 64],
            peer_small_total: if quick { 40_000 } else { 160_000 },
            peer_seed_total: if quick { 3_600 } else { 14_500 },
            peer_writer_counts: vec![1, 8, 64, 256],
            growth_half: if quick { 250_000 } else { 1_000_000 },
            growth_acks: if quick { 1_000 } else { 2_000 },
            reps: 3,
            single_records: if quick { 20_000 } else { 100_000 },
            ack_sequential: if quick { 400 } else { 2_000 },
            ack_clients: 8,
            ack_per_client: if quick { 100 } else { 500 },
            python_records: if quick { 5_000 } else { 20_000 },
            flush_iters: 50,
            flush_batch: 100,
            small_file: 10_000_000,
            big_file: if quick { 100_000_000 } else { 1_000_000_000 },
            fsync_floor_iters: if quick { 100 } else { 300 },
            index_records: if quick { 200_000 } else { 1_000_000 },
            index_stats_iters: 2_000,
            index_failed_iters: 200,
            index_sort_iters: if quick { 50 } else { 100 },
            index_filtered_iters: if quick { 5 } else { 10 },
            scan_reps: 3,
            forward_records: if quick { 100_000 } else { 1_000_000 },
            forward_reps: if quick { 1 } else { 3 },
        }
    }
}

/// The run's context, handed to every section.
pub(crate) struct Bench {
    pub(crate) bin: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) plan: Plan,
    pub(crate) rg: Gen,
    pub(crate) started: Instant,
    pub(crate) problems: Vec<String>,
}

impl Bench {
    pub(crate) fn progress(&self, msg: &str) {
        eprintln!("[{:6.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    pub(crate) fn start_daemon(&self, name: &str) -> io::Result<(Daemon, PathBuf)> {
        let log = self.dir.join(format!("{name}.json"));
        let _ = fs::remove_file(&log);
        let d = Daemon::start(&self.bin, &self.dir.join(format!("{name}.sock")), &log)?;
        Ok((d, log))
    }

    pub(crate) fn stop_daemon(&mut self, d: Daemon, log: &Path, what: &str) {
        let problems = d.stop(what);
        for p in &problems {
            self.progress(&format!("PROBLEM {p}"));
        }
        self.problems.extend(problems);
        let _ = fs::remove_file(log);
    }
}
