//! The daemon's counters for Prometheus: the `metrics` operation renders
//! them (`ops/metrics.rs`), `joblogctl metrics` prints that text, and
//! `--metrics-textfile` has the daemon write the same text for
//! node_exporter's textfile collector (`textfile.rs`).
//!
//! Each counter is bumped where its event happens (the writer per chunk
//! and per batch, a connection per refused line, the accept loop per
//! connection) with one relaxed atomic add, and only read when metrics
//! are asked for: no event waits for another, and nothing is counted per
//! record on the ingest path. Gauges that other parts already keep (the
//! writer's pending records, the index's size, the connections served)
//! are read from there at render time instead of being kept twice. The
//! per-stage job counters come from the index's own tallies, see
//! `writer/stages.rs`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::tuning::FLUSH_SECONDS_BUCKETS;
use crate::protocol::ErrorCode;

pub(crate) mod textfile;

/// Buckets of the flush histogram: one per bound, and `+Inf`.
const BUCKETS: usize = FLUSH_SECONDS_BUCKETS.len() + 1;

/// Counters since the daemon started, shared by the writer, every
/// connection and the accept loop (through `conn::Shared` and the writer's
/// `BatcherConfig`).
#[derive(Debug)]
pub(crate) struct Metrics {
    /// When the daemon started, in Unix seconds.
    started_at: f64,
    /// Records handed to the writer to be written (duplicates by
    /// `record_id` are not: they are never written).
    records_accepted: AtomicU64,
    /// Records and bytes of successful flushes.
    records_written: AtomicU64,
    bytes_written: AtomicU64,
    /// Lines refused as they were read, by [`ErrorCode`] (`code as usize`).
    rejected: [AtomicU64; ErrorCode::ALL.len()],
    /// Connections accepted (refused ones included), and those refused by
    /// the access policy.
    connections: AtomicU64,
    connections_refused: AtomicU64,
    /// Flush attempts that failed (each retried), and those of them whose
    /// `fdatasync` (of the log or of its commit) failed.
    flush_failures: AtomicU64,
    fsync_failures: AtomicU64,
    /// Successful flushes by duration, one count per bucket (not
    /// cumulative: summed when rendered, so `_count` always equals the
    /// `+Inf` bucket), and their durations' sum in microseconds.
    flush_buckets: [AtomicU64; BUCKETS],
    flush_micros: AtomicU64,
    /// Retention: automatic rotations, archives removed, and archives past
    /// the limits kept at the last look because a consumer is behind.
    rotations: AtomicU64,
    archives_removed: AtomicU64,
    archives_held: AtomicU64,
    /// The last successful flush, in Unix milliseconds; the start until
    /// the first (the file is complete on disk as the start-up left it).
    last_flush_ms: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let now = unix_ms();
        Metrics {
            started_at: now as f64 / 1000.0,
            records_accepted: AtomicU64::new(0),
            records_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            rejected: std::array::from_fn(|_| AtomicU64::new(0)),
            connections: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
            fsync_failures: AtomicU64::new(0),
            flush_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            flush_micros: AtomicU64::new(0),
            rotations: AtomicU64::new(0),
            archives_removed: AtomicU64::new(0),
            archives_held: AtomicU64::new(0),
            last_flush_ms: AtomicU64::new(now),
        }
    }

    /// The writer took a chunk of `records` records.
    pub(crate) fn accepted(&self, records: u64) {
        self.records_accepted.fetch_add(records, Relaxed);
    }

    /// A batch of `records` records, `bytes` bytes, was written and synced
    /// in `took`.
    pub(crate) fn flushed(&self, records: u64, bytes: u64, took: Duration) {
        self.records_written.fetch_add(records, Relaxed);
        self.bytes_written.fetch_add(bytes, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = FLUSH_SECONDS_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(FLUSH_SECONDS_BUCKETS.len());
        if let Some(b) = self.flush_buckets.get(bucket) {
            b.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.flush_micros.fetch_add(micros, Relaxed);
        self.last_flush_ms.store(unix_ms(), Relaxed);
    }

    /// A flush attempt failed; `in_sync` when its `fdatasync` did.
    pub(crate) fn flush_failed(&self, in_sync: bool) {
        self.flush_failures.fetch_add(1, Relaxed);
        if in_sync {
            self.fsync_failures.fetch_add(1, Relaxed);
        }
    }

    /// The live log was rotated on its own (`--rotate-at-*`).
    pub(crate) fn rotated(&self) {
        self.rotations.fetch_add(1, Relaxed);
    }

    /// Retention looked at the archives: `removed` went, `held` past the
    /// limits stayed for a consumer that has not read them.
    pub(crate) fn pruned(&self, removed: u64, held: u64) {
        self.archives_removed.fetch_add(removed, Relaxed);
        self.archives_held.store(held, Relaxed);
    }

    /// A line was refused with `code`.
    pub(crate) fn rejected(&self, code: ErrorCode) {
        if let Some(n) = self.rejected.get(code as usize) {
            n.fetch_add(1, Relaxed);
        }
    }

    /// A connection was accepted; `refused` when the access policy then
    /// turned it away.
    pub(crate) fn connection(&self, refused: bool) {
        self.connections.fetch_add(1, Relaxed);
        if refused {
            self.connections_refused.fetch_add(1, Relaxed);
        }
    }

    /// The counters as they are now. Each is read once; two read at the
    /// same moment as an event may be one event apart, which a scrape
    /// cannot tell from being taken a moment earlier or later.
    pub(crate) fn counters(&self) -> Counters {
        let flush_buckets: [u64; BUCKETS] =
            std::array::from_fn(|i| self.flush_buckets[i].load(Relaxed));
        Counters {
            started_at: self.started_at,
            records_accepted: self.records_accepted.load(Relaxed),
            records_written: self.records_written.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            rejected: std::array::from_fn(|i| self.rejected[i].load(Relaxed)),
            connections: self.connections.load(Relaxed),
            connections_refused: self.connections_refused.load(Relaxed),
            flush_failures: self.flush_failures.load(Relaxed),
            fsync_failures: self.fsync_failures.load(Relaxed),
            flush_buckets,
            flush_seconds: self.flush_micros.load(Relaxed) as f64 / 1e6,
            rotations: self.rotations.load(Relaxed),
            archives_removed: self.archives_removed.load(Relaxed),
            archives_held: self.archives_held.load(Relaxed),
            last_flush: self.last_flush_ms.load(Relaxed) as f64 / 1000.0,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Milliseconds since 1970 by the wall clock (0 if it is set before).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// [`Metrics`] read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Counters {
    pub started_at: f64,
    pub records_accepted: u64,
    pub records_written: u64,
    pub bytes_written: u64,
    /// By [`ErrorCode`], in [`ErrorCode::ALL`]'s order.
    pub rejected: [u64; ErrorCode::ALL.len()],
    pub connections: u64,
    pub connections_refused: u64,
    pub flush_failures: u64,
    pub fsync_failures: u64,
    /// Per bucket of [`FLUSH_SECONDS_BUCKETS`], then `+Inf`; not
    /// cumulative.
    pub flush_buckets: [u64; BUCKETS],
    pub flush_seconds: f64,
    pub last_flush: f64,
    pub rotations: u64,
    pub archives_removed: u64,
    pub archives_held: u64,
}

/// Jobs accepted since start at one stage (a `stage` label value), by
/// outcome (`success` truthy or not, as `stats` counts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StageCount {
    pub stage: String,
    pub succeeded: u64,
    pub failed: u64,
}

/// Everything the exposition text shows, gathered at one moment (by
/// `conn::metrics_text`, from the counters, the writer and the archives
/// on disk).
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub version: &'static str,
    pub uptime: f64,
    pub counters: Counters,
    /// Records not written because their `record_id` was already held.
    pub duplicates: u64,
    /// Per stage label: at most `METRICS_STAGES` names, then `other`.
    pub stages: Vec<StageCount>,
    /// Connections being served now.
    pub connections_open: u64,
    /// The live log: records durable in it, accepted and not yet
    /// durable, their bytes and the most there may be (the budget), the
    /// file's size.
    pub records: u64,
    pub pending_records: u64,
    pub pending_bytes: u64,
    pub pending_bytes_limit: u64,
    pub file_bytes: u64,
    /// Memory of the index and of the record-id table.
    pub index_bytes: u64,
    pub record_ids_bytes: u64,
    /// Logs put aside beside the live one (`clear`, rotations), and the
    /// bytes of their files; `None` when the directory cannot be listed.
    pub archives: Option<(u64, u64)>,
}
