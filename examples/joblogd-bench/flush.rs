//! Section 5: start-up scan time and `flush` latency at a ~10 MB and a
//! ~1 GB (100 MB with `--quick`) file, and the writer of seed-sized JSON
//! array files, which section 6 reuses for its seed-sized start-up scans.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use crate::bench::Bench;
use crate::daemon::{Client, Daemon};
use crate::records::Kind;
use crate::stats::{Latency, latency};
use crate::util::{evict_from_cache, other};

pub(crate) struct FlushStats {
    pub(crate) label: &'static str,
    pub(crate) file_bytes: u64,
    pub(crate) file_records: u64,
    pub(crate) prepare_secs: f64,
    pub(crate) cold_took_ms: Option<u64>,
    pub(crate) cold_accept_ms: f64,
    pub(crate) warm_took_ms: Option<u64>,
    pub(crate) warm_accept_ms: f64,
    pub(crate) flush_ms: Latency,
}

impl Bench {
    /// Writes a valid JSON array of seed-sized compact records of about
    /// `target` bytes, syncs it and drops it from the page cache.
    pub(crate) fn prepare_array(
        &self,
        path: &Path,
        target: u64,
        label: &str,
    ) -> io::Result<(u64, u64)> {
        let file = File::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut rec = Vec::with_capacity(16 * 1024);
        w.write_all(b"[\n  ")?;
        let mut bytes = 4u64;
        let mut n = 0u64;
        while bytes + 2 < target {
            rec.clear();
            if n > 0 {
                rec.extend_from_slice(b",\n  ");
            }
            let id = format!("pre{label}{n:08}");
            self.rg
                .record(&mut rec, Kind::Seed, &id, (n % 64) as usize, n);
            w.write_all(&rec)?;
            bytes += rec.len() as u64;
            n += 1;
        }
        w.write_all(b"\n]")?;
        bytes += 2;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        evict_from_cache(&file);
        Ok((bytes, n))
    }

    /// Section 5 for one file size.
    pub(crate) fn flush_vs_size(
        &mut self,
        target: u64,
        label: &'static str,
    ) -> io::Result<FlushStats> {
        let name = format!("fl{}", label.replace(' ', ""));
        let log = self.dir.join(format!("{name}.json"));
        let socket = self.dir.join(format!("{name}.sock"));
        self.progress(&format!("preparing a {label} array file"));
        let t0 = Instant::now();
        let (file_bytes, file_records) = self.prepare_array(&log, target, label)?;
        let prepare_secs = t0.elapsed().as_secs_f64();
        self.progress(&format!(
            "{label}: {file_records} records, {:.1} MB written and synced in {prepare_secs:.1} s",
            file_bytes as f64 / 1e6
        ));

        // Cold start (file evicted from the page cache), then a warm one.
        let cold = Daemon::start(&self.bin, &socket, &log)?;
        let cold_took_ms = cold.ready_took_ms();
        let cold_accept_ms = cold.accept_after.as_secs_f64() * 1e3;
        let p = cold.stop(&format!("flush {label} (cold start)"));
        self.problems.extend(p);
        let warm = Daemon::start(&self.bin, &socket, &log)?;
        let warm_took_ms = warm.ready_took_ms();
        let warm_accept_ms = warm.accept_after.as_secs_f64() * 1e3;

        let iters = self.plan.flush_iters;
        let per = self.plan.flush_batch;
        let payloads: Vec<Vec<u8>> = (0..=iters)
            .map(|it| {
                let mut p = Vec::with_capacity(per * 1_300 + 16);
                for j in 0..per {
                    let id = format!("fl{name}{it:03}r{j:03}");
                    self.rg
                        .line(&mut p, Kind::Small, &id, j, (it * per + j) as u64);
                }
                p.extend_from_slice(b"{\"op\":\"flush\"}\n");
                p
            })
            .collect();
        let result = (|| {
            let mut c = Client::connect(warm.socket())?;
            let mut samples = Vec::with_capacity(iters);
            for (i, p) in payloads.iter().enumerate() {
                let t = Instant::now();
                c.send(p)?;
                let reply = c.read_line()?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if reply != r#"{"ok":true}"# {
                    return Err(other(format!("flush reply: {reply}")));
                }
                if i > 0 {
                    samples.push(ms); // the first round is a warm-up
                }
            }
            c.verify(file_records + ((iters + 1) * per) as u64)?;
            Ok(latency(&samples))
        })();
        self.stop_daemon(warm, &log, &format!("flush {label}"));
        let flush_ms = result?;
        Ok(FlushStats {
            label,
            file_bytes,
            file_records,
            prepare_secs,
            cold_took_ms,
            cold_accept_ms,
            warm_took_ms,
            warm_accept_ms,
            flush_ms,
        })
    }
}
