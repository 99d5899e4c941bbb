//! Sections 1 and 2: fire-and-forget throughput. The writers (a thread per
//! buffer of lines, 256 KiB `write_all` calls, the clock running from all
//! connected until a final `flush` returns), [`TpRow`] with its rates, and
//! the repetitions against a fresh daemon, each followed by the raw ceiling
//! and the write path alone of `peers.rs` on the same bytes.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::Bench;
use crate::daemon::{Client, IO_TIMEOUT};
use crate::peers::{DISK_CHUNK, disk_run, raw_run};
use crate::records::Kind;
use crate::stats::{Spread, spread};
use crate::util::{join, other, thousands};

/// Bytes per `write_all` call of a throughput writer.
const WRITE_CHUNK: usize = 256 * 1024;

/// One throughput writer: connect, wait for the start, write the buffer in
/// large chunks, close the write side and read until the daemon closes
/// (which it does once everything sent is handed to its writer). Returns any
/// reply lines (errors: records get no reply).
fn writer(socket: &Path, buf: &[u8], barrier: &Barrier) -> io::Result<Vec<String>> {
    let conn = UnixStream::connect(socket).and_then(|c| {
        c.set_write_timeout(Some(IO_TIMEOUT))?;
        c.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(c)
    });
    barrier.wait(); // even after a failed connect, or the others would hang
    let mut conn = conn?;
    for chunk in buf.chunks(WRITE_CHUNK) {
        conn.write_all(chunk)?;
    }
    conn.shutdown(Shutdown::Write)?;
    let mut replies = String::new();
    conn.read_to_string(&mut replies)?;
    Ok(replies.lines().map(str::to_owned).collect())
}

/// Runs one writer thread per buffer; the clock starts when all are
/// connected and stops when `finish` (run after every writer is done)
/// returns. Returns the time and any reply lines the writers received.
pub(crate) fn run_writers(
    socket: &Path,
    bufs: &[Vec<u8>],
    finish: impl FnOnce() -> io::Result<()>,
) -> io::Result<(Duration, Vec<String>)> {
    let barrier = Barrier::new(bufs.len() + 1);
    thread::scope(|s| {
        let handles: Vec<_> = bufs
            .iter()
            .map(|buf| {
                let barrier = &barrier;
                s.spawn(move || writer(socket, buf, barrier))
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let results: Vec<_> = handles.into_iter().map(join).collect();
        let mut replies = Vec::new();
        for r in results {
            replies.extend(r?);
        }
        finish()?;
        Ok((t0.elapsed(), replies))
    })
}

/// One throughput configuration.
pub(crate) struct TpRow {
    pub(crate) kind: Kind,
    pub(crate) writers: usize,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) joblogd_secs: Vec<f64>,
    pub(crate) raw_secs: Vec<f64>,
    /// [`disk_run`] of `file_bytes`, once per repetition.
    pub(crate) disk_secs: Vec<f64>,
    /// Size of joblogd's file after a run (pretty-printed, with logged_at).
    pub(crate) file_bytes: u64,
}

impl TpRow {
    pub(crate) fn rec_per_s(&self, secs: &[f64]) -> Spread {
        let v: Vec<f64> = secs.iter().map(|s| self.records as f64 / s).collect();
        spread(&v)
    }

    pub(crate) fn mb_per_s(&self, secs: &[f64]) -> Spread {
        let v: Vec<f64> = secs.iter().map(|s| self.bytes as f64 / 1e6 / s).collect();
        spread(&v)
    }

    /// The write path alone in MB/s of joblogd's file (not of input lines).
    pub(crate) fn disk_mb_per_s(&self) -> Spread {
        let v: Vec<f64> = self
            .disk_secs
            .iter()
            .map(|s| self.file_bytes as f64 / 1e6 / s)
            .collect();
        spread(&v)
    }

    pub(crate) fn to_json(&self) -> Value {
        let j = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        let jr = self.mb_per_s(&self.joblogd_secs).median;
        let rr = self.mb_per_s(&self.raw_secs).median;
        json!({
            "record": self.kind.label(),
            "writers": self.writers,
            "records": self.records,
            "bytes": self.bytes,
            "joblogd_seconds": self.joblogd_secs,
            "joblogd_records_per_s": j(self.rec_per_s(&self.joblogd_secs)),
            "joblogd_mb_per_s": j(self.mb_per_s(&self.joblogd_secs)),
            "raw_seconds": self.raw_secs,
            "joblogd_file_bytes": self.file_bytes,
            "raw_mb_per_s": j(self.mb_per_s(&self.raw_secs)),
            "joblogd_to_raw": if rr > 0.0 { jr / rr } else { 0.0 },
            "disk_seconds": self.disk_secs,
            "disk_mb_per_s": j(self.disk_mb_per_s()),
            "disk_records_per_s": j(self.rec_per_s(&self.disk_secs)),
        })
    }
}

impl Bench {
    /// One fire-and-forget run against a fresh daemon; returns seconds and
    /// the size of the resulting file.
    fn joblogd_run(
        &mut self,
        bufs: &[Vec<u8>],
        records: u64,
        what: &str,
    ) -> io::Result<(f64, u64)> {
        let (d, log) = self.start_daemon("tp")?;
        let result = (|| {
            let mut ctl = Client::connect(d.socket())?;
            let (took, replies) = run_writers(d.socket(), bufs, || ctl.flush())?;
            if let Some(first) = replies.first() {
                return Err(other(format!(
                    "{} replies to fire-and-forget records, first: {first}",
                    replies.len()
                )));
            }
            let ping = ctl.verify(records)?;
            Ok((took.as_secs_f64(), ping["file_bytes"].as_u64().unwrap_or(0)))
        })();
        self.stop_daemon(d, &log, what);
        result
    }

    /// Sections 1 and 2.
    pub(crate) fn throughput(&mut self, kind: Kind) -> io::Result<Vec<TpRow>> {
        let total = match kind {
            Kind::Small => self.plan.small_total,
            Kind::Seed => self.plan.seed_total,
        };
        let mut rows = Vec::new();
        let counts = self.plan.writer_counts.clone();
        for (ci, &writers) in counts.iter().enumerate() {
            let tag = format!("{}{ci}", &kind.label()[..2]);
            let bufs = self.rg.writer_buffers(kind, total, writers, &tag);
            let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            let mut row = TpRow {
                kind,
                writers,
                records: total as u64,
                bytes,
                joblogd_secs: Vec::new(),
                file_bytes: 0,
                raw_secs: Vec::new(),
                disk_secs: Vec::new(),
            };
            let src: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(b" ", |b| b);
            let mut chunk = Vec::with_capacity(DISK_CHUNK);
            while chunk.len() < DISK_CHUNK {
                chunk.extend_from_slice(&src[..src.len().min(DISK_CHUNK - chunk.len())]);
            }
            for rep in 0..self.plan.reps {
                let what = format!("{} x{writers} run {}", kind.label(), rep + 1);
                let (secs, file_bytes) = self.joblogd_run(&bufs, total as u64, &what)?;
                row.file_bytes = file_bytes;
                let raw = raw_run(&self.dir, &bufs)?.as_secs_f64();
                let disk = disk_run(&self.dir, file_bytes, &chunk)?.as_secs_f64();
                self.progress(&format!(
                    "{what}: joblogd {} rec/s {:.1} MB/s ({secs:.2} s); raw {:.1} MB/s; write path alone {} rec/s",
                    thousands(total as f64 / secs),
                    bytes as f64 / 1e6 / secs,
                    bytes as f64 / 1e6 / raw,
                    thousands(total as f64 / disk)
                ));
                row.joblogd_secs.push(secs);
                row.raw_secs.push(raw);
                row.disk_secs.push(disk);
            }
            rows.push(row);
        }
        Ok(rows)
    }
}
