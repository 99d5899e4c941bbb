//! Section 8: the index as a log of distinct values grows, and whether
//! queries hold ingest up.
//!
//! Memory: records whose video id, subject, worker id and (for every
//! tenth, a failure) error text are all distinct, the worst case for an
//! index that keeps names, go through the socket (8 writer threads,
//! fire-and-forget, then a `flush`) in two equal halves; after each half
//! the daemon's VmRSS and `ping`'s `index_bytes` are read, and the growth
//! per record between the two is what another million records cost.
//!
//! Queries beside ingest: at the full size, one client sends acknowledged
//! `log` requests one at a time, first alone, then while another client
//! sends a filtered `stats` and a `jobs` sorted with a limit in a loop; the
//! ack latency of both runs is compared.

use std::io;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use serde_json::{Value, json};

use crate::bench::Bench;
use crate::daemon::{Client, Daemon};
use crate::stats::{Latency, latency};
use crate::throughput::run_writers;
use crate::util::{join, other};

pub(crate) struct GrowthStats {
    /// Records after the first half and after the second.
    pub(crate) records: [u64; 2],
    pub(crate) rss: [u64; 2],
    pub(crate) index_bytes: [u64; 2],
    /// Ack latency in microseconds, alone and beside the query loop.
    pub(crate) ack_alone: Latency,
    pub(crate) ack_with_queries: Latency,
    /// Queries the loop completed while the acks were measured.
    pub(crate) queries: u64,
}

impl GrowthStats {
    /// VmRSS growth per record from the first half to the second.
    pub(crate) fn rss_per_record(&self) -> f64 {
        self.rss[1].saturating_sub(self.rss[0]) as f64 / (self.records[1] - self.records[0]) as f64
    }

    pub(crate) fn index_per_record(&self) -> f64 {
        self.index_bytes[1].saturating_sub(self.index_bytes[0]) as f64
            / (self.records[1] - self.records[0]) as f64
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "records": self.records,
            "rss_bytes": self.rss,
            "index_bytes": self.index_bytes,
            "rss_growth_per_record": self.rss_per_record(),
            "index_growth_per_record": self.index_per_record(),
            "ack_us_alone": self.ack_alone.to_json(),
            "ack_us_with_queries": self.ack_with_queries.to_json(),
            "queries_during": self.queries,
        })
    }
}

/// A small record whose video id, subject, worker id and error text (every
/// tenth is a failure) are its own.
fn distinct_line(out: &mut Vec<u8>, n: u64) {
    let ok = n % 10 != 3;
    let took = 20.0 + (n % 50) as f64 * 0.8;
    let _ = write!(
        out,
        r#"{{"video_id":"vid-{n:09}","url":"https://youtu.be/vid-{n:09}","subject":"subject {n}","worker_id":"worker-{n}","video_title":"Lecture {n}","stage":"{}","success":{ok},"error":{},"processing_duration":{took:.1},"timings":{{"fetch_transcript":{:.1},"generate_notes":{:.1}}},"retry_count":0,"is_retryable":true,"total_files":{}}}"#,
        if ok { "completed" } else { "generating_notes" },
        if ok {
            "null".to_string()
        } else {
            format!("\"API error for request {n}: 429 Too Many Requests\"")
        },
        took * 0.1,
        took * 0.5,
        if ok { 4 } else { 0 },
    );
    out.push(b'\n');
}

/// `count` distinct records from `first` on, in 8 buffers.
fn distinct_buffers(first: u64, count: u64) -> Vec<Vec<u8>> {
    let writers = 8u64;
    (0..writers)
        .map(|w| {
            let mut buf = Vec::new();
            let mut n = first + w;
            while n < first + count {
                distinct_line(&mut buf, n);
                n += writers;
            }
            buf
        })
        .collect()
}

/// Sends `count` distinct records and waits until they are durable;
/// returns the daemon's VmRSS and `ping`.
fn grow(d: &Daemon, first: u64, count: u64) -> io::Result<(u64, Value)> {
    let bufs = distinct_buffers(first, count);
    let mut ctl = Client::connect(d.socket())?;
    run_writers(d.socket(), &bufs, || ctl.flush())?;
    let ping = ctl.verify(first + count)?;
    let (rss, _) = d.memory()?;
    Ok((rss, ping))
}

/// Ack latency (microseconds) of `n` acknowledged `log` requests sent one
/// at a time on one connection.
fn acks(d: &Daemon, n: usize, tag: &str) -> io::Result<Latency> {
    let mut c = Client::connect(d.socket())?;
    let mut samples = Vec::with_capacity(n);
    let mut line = Vec::new();
    for i in 0..n {
        line.clear();
        line.extend_from_slice(br#"{"op":"log","ack":true,"job":{"video_id":""#);
        let _ = write!(line, "{tag}-{i}");
        line.extend_from_slice(
            br#"","success":true,"stage":"completed","processing_duration":1.5}}"#,
        );
        line.push(b'\n');
        let t0 = Instant::now();
        c.send(&line)?;
        let reply = c.read_line()?;
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
        if !reply.contains("\"ok\":true") {
            return Err(other(format!("ack refused: {reply}")));
        }
    }
    Ok(latency(&samples))
}

impl Bench {
    /// Section 8.
    pub(crate) fn growth(&mut self) -> io::Result<GrowthStats> {
        let half = self.plan.growth_half;
        let (d, log) = self.start_daemon("growth")?;
        let result = (|| {
            self.progress(&format!("growth: first {half} distinct records"));
            let (rss0, p0) = grow(&d, 0, half)?;
            self.progress(&format!("growth: second {half} distinct records"));
            let (rss1, p1) = grow(&d, half, half)?;
            let ib = |p: &Value| p["index_bytes"].as_u64().unwrap_or(0);
            let n = self.plan.growth_acks;
            self.progress(&format!("growth: {n} acks alone, then beside queries"));
            let ack_alone = acks(&d, n, "alone")?;
            let stop = AtomicBool::new(false);
            let queries = AtomicU64::new(0);
            let with = thread::scope(|s| {
                let looper = s.spawn(|| -> io::Result<()> {
                    let mut q = Client::connect(d.socket())?;
                    while !stop.load(Ordering::Relaxed) {
                        for req in [
                            r#"{"op":"stats","subject":"subject 7"}"#,
                            r#"{"op":"jobs","sort_by":"processing_duration","order":"desc","limit":5}"#,
                        ] {
                            let v = q.request(req)?;
                            if v["ok"] != true {
                                return Err(other(format!("query failed: {v}")));
                            }
                            queries.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                });
                let r = acks(&d, n, "beside");
                stop.store(true, Ordering::Relaxed);
                join(looper).and(r)
            })?;
            Ok(GrowthStats {
                records: [half, 2 * half],
                rss: [rss0, rss1],
                index_bytes: [ib(&p0), ib(&p1)],
                ack_alone,
                ack_with_queries: with,
                queries: queries.load(Ordering::Relaxed),
            })
        })();
        self.stop_daemon(d, &log, "growth");
        result
    }
}
