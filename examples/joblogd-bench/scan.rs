//! Section 6, start-up scans: [`ScanStats`] (cold and warm `took_ms` of
//! "Log file ready." and the time until the socket accepts), the loop that
//! starts the daemon on a prepared file, and the seed-sized file's scans.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::bench::Bench;
use crate::daemon::Daemon;
use crate::stats::{Spread, spread};
use crate::util::{evict_from_cache, other, thousands};

/// Start-up scans of one file: `took_ms` of "Log file ready.", cold (file
/// synced and dropped from the page cache first) and warm.
pub(crate) struct ScanStats {
    pub(crate) label: String,
    pub(crate) file_bytes: u64,
    pub(crate) records: u64,
    pub(crate) prepare_secs: f64,
    pub(crate) cold_ms: Vec<f64>,
    pub(crate) warm_ms: Vec<f64>,
    pub(crate) cold_accept_ms: Vec<f64>,
    pub(crate) warm_accept_ms: Vec<f64>,
}

impl ScanStats {
    pub(crate) fn mb_per_s(&self, ms: &[f64]) -> Spread {
        let v: Vec<f64> = ms
            .iter()
            .map(|m| self.file_bytes as f64 / 1e6 / (m.max(1.0) / 1e3))
            .collect();
        spread(&v)
    }

    pub(crate) fn rec_per_s(&self, ms: &[f64]) -> Spread {
        let v: Vec<f64> = ms
            .iter()
            .map(|m| self.records as f64 / (m.max(1.0) / 1e3))
            .collect();
        spread(&v)
    }

    pub(crate) fn to_json(&self) -> Value {
        let j = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        json!({
            "label": self.label,
            "file_bytes": self.file_bytes,
            "records": self.records,
            "prepare_seconds": self.prepare_secs,
            "cold_scan_ms": self.cold_ms,
            "warm_scan_ms": self.warm_ms,
            "cold_accept_ms": self.cold_accept_ms,
            "warm_accept_ms": self.warm_accept_ms,
            "cold_mb_per_s": j(self.mb_per_s(&self.cold_ms)),
            "warm_mb_per_s": j(self.mb_per_s(&self.warm_ms)),
            "cold_records_per_s": j(self.rec_per_s(&self.cold_ms)),
            "warm_records_per_s": j(self.rec_per_s(&self.warm_ms)),
        })
    }
}

impl Bench {
    /// Starts the daemon on `log` `scan_reps` times cold (the file synced
    /// and dropped from the page cache first) and as often warm, checking
    /// the record count of its "Log file ready." line. With `keep`, the last
    /// warm daemon is returned still running.
    pub(crate) fn startup_scans(
        &mut self,
        log: &Path,
        label: String,
        counts: (u64, u64),
        prepare_secs: f64,
        keep: bool,
    ) -> io::Result<(ScanStats, Option<Daemon>)> {
        let (file_bytes, records) = counts;
        let socket = log.with_extension("sock");
        let reps = self.plan.scan_reps;
        let mut s = ScanStats {
            label,
            file_bytes,
            records,
            prepare_secs,
            cold_ms: Vec::new(),
            warm_ms: Vec::new(),
            cold_accept_ms: Vec::new(),
            warm_accept_ms: Vec::new(),
        };
        let mut kept = None;
        for cold in [true, false] {
            for rep in 0..reps {
                let what = format!(
                    "{} start-up {} {}",
                    s.label,
                    if cold { "cold" } else { "warm" },
                    rep + 1
                );
                if cold {
                    let f = File::open(log)?;
                    f.sync_all()?;
                    evict_from_cache(&f);
                }
                let d = Daemon::start(&self.bin, &socket, log)?;
                let accept_ms = d.accept_after.as_secs_f64() * 1e3;
                let (took, found) = (d.ready_took_ms(), d.ready_field("records"));
                let took = match (took, found) {
                    (Some(t), Some(f)) if f == records => t as f64,
                    _ => {
                        self.problems.extend(d.stop(&what));
                        return Err(other(format!(
                            "{what}: \"Log file ready.\" gave took_ms {took:?} records {found:?}, expected {records} records"
                        )));
                    }
                };
                self.progress(&format!(
                    "{what}: scan {took:.0} ms ({:.0} MB/s, {} records/s), accepting after {accept_ms:.0} ms",
                    file_bytes as f64 / 1e6 / (took.max(1.0) / 1e3),
                    thousands(records as f64 / (took.max(1.0) / 1e3))
                ));
                if cold {
                    s.cold_ms.push(took);
                    s.cold_accept_ms.push(accept_ms);
                } else {
                    s.warm_ms.push(took);
                    s.warm_accept_ms.push(accept_ms);
                }
                if keep && !cold && rep + 1 == reps {
                    kept = Some(d);
                } else {
                    self.problems.extend(d.stop(&what));
                }
            }
        }
        Ok((s, kept))
    }

    /// Section 6: start-up scans of a seed-sized file of about `big_file`
    /// bytes (written by the same code as section 5's).
    pub(crate) fn seed_scan(&mut self, label: &str) -> io::Result<ScanStats> {
        let log = self.dir.join("ixseed.json");
        self.progress(&format!("index: preparing a {label} seed-sized array file"));
        let t0 = Instant::now();
        let result = (|| {
            let (bytes, records) = self.prepare_array(&log, self.plan.big_file, "ix")?;
            let prepare_secs = t0.elapsed().as_secs_f64();
            self.progress(&format!(
                "index: {records} seed-sized records, {:.1} MB written and synced in {prepare_secs:.1} s",
                bytes as f64 / 1e6
            ));
            let label = format!("{label} seed-sized");
            self.startup_scans(&log, label, (bytes, records), prepare_secs, false)
                .map(|(s, _)| s)
        })();
        let _ = fs::remove_file(&log);
        result
    }
}
