//! The single writer: owns the [`Store`], gathers records from every
//! connection into one batch, and decides when to flush.
//!
//! Connections send [`Command`]s over one bounded mpsc channel, so the order
//! in which records reach the file is the order in which they were accepted,
//! and per-connection order is kept. A batch is flushed when
//! `flush_interval` has passed since its first record, when it reaches
//! `max_records` or `max_bytes`, when somebody waits on it (an `ack` or a
//! `flush`), and when the channel closes (shutdown).
//!
//! The write and `fdatasync` run on the blocking pool while the next batch
//! gathers here (group commit): a slow disk makes batches larger, not the
//! daemon slower, until the byte budget of unflushed data (a semaphore
//! whose permits travel with the records, released only once they are
//! durable) runs out and connections stop reading (backpressure).
//!
//! The writer also owns the [`Index`]: records are indexed as they are
//! accepted (so `stats` includes records not yet flushed), and queries are
//! answered here from the index; reading whole records back from the file
//! is left to the connection.
//!
//! **Invariant:** a waiter is answered `Ok` only after every record accepted
//! before it is durable. A failed flush answers no one: the batch goes back
//! in front of the next one and is written again, whole, after a backoff.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

use crate::index::{Facts, Index, RawMeta, TimingFact};
use crate::query;
use crate::store::{Store, StoreError};

pub(crate) use crate::ops::{Answer, Query};

mod answer;
mod file;
mod flush;
mod foreign;
mod policy;
mod retention;
mod stages;

pub(crate) use answer::StatsCache;
pub(crate) use file::open_log;
pub(crate) use flush::BufferPool;

// Shared by the submodules (each takes `super::*`).
use crate::ops::consumer::ConsumerUpdate;
use flush::{Batch, FlushOutcome};
use foreign::FOREIGN_CHECK;
pub(crate) use policy::Policy;
use policy::{Decision, Gathered, Writing};

/// Answer to a waiter: `Err` holds a short reason when the records could not
/// be made durable before the daemon gave up (only at shutdown).
pub(crate) type Durable = Result<(), String>;

/// Where one record sits inside an [`Ingest`]'s `data`, with what it
/// contributes to the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordMeta {
    pub start: u32,
    pub len: u32,
    /// Where its indexed fields are.
    pub fields: RawMeta,
    /// Its index facts, if the connection computed them (else the writer
    /// does, from `fields`).
    pub facts: Option<Facts>,
}

/// Records from one connection, already pretty-printed and framed (each
/// preceded by `,\n  `).
#[derive(Debug)]
pub(crate) struct Ingest {
    pub data: Vec<u8>,
    /// One per record, in order.
    pub records: Vec<RecordMeta>,
    /// The records' timings ([`Facts::timings`] are ranges of it).
    pub timings: Vec<TimingFact>,
    /// Records in `data` whose `NaN`/`Infinity` were written as null.
    pub coerced: u64,
    /// Byte budget held by these records until they are durable.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Answered once these records are durable (`ack: true`).
    pub done: Option<oneshot::Sender<Durable>>,
    /// The sending connection's count of its chunks the writer has indexed,
    /// bumped once these records are in the index (see [`StatsCache`]).
    pub indexed: Arc<AtomicU64>,
}

/// The broadcasts of records to subscribers, each a bounded ring (a slow
/// subscriber loses the oldest and is told how many; the writer never
/// waits for it): records as they become durable (`subscribe`, the
/// default: a crash cannot take back what a subscriber saw), and as they
/// are accepted (`"include_pending": true`).
#[derive(Debug, Clone)]
pub(crate) struct Events {
    pub durable: tokio::sync::broadcast::Sender<Arc<[u8]>>,
    pub accepted: tokio::sync::broadcast::Sender<Arc<[u8]>>,
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            durable: tokio::sync::broadcast::channel(EVENTS_CAPACITY).0,
            accepted: tokio::sync::broadcast::channel(EVENTS_CAPACITY).0,
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

/// What the connections hold of the writer: the way to it, the buffers it
/// hands back, the record feeds and the cached `stats` line it keeps.
#[derive(Debug)]
pub(crate) struct Link {
    pub tx: mpsc::Sender<Command>,
    /// Chunk buffers to reuse (the writer hands them back).
    pub pool: Arc<BufferPool>,
    /// The unfiltered `stats` reply while the index is unchanged.
    pub stats: Arc<StatsCache>,
    /// New records, for `subscribe`.
    pub events: Events,
}

pub(crate) use crate::config::tuning::EVENTS_CAPACITY;

/// What connections ask of the writer.
#[derive(Debug)]
pub(crate) enum Command {
    Ingest(Ingest),
    /// Answer once everything accepted before is durable.
    Flush(oneshot::Sender<Durable>),
    /// A snapshot of the counters, including records not yet durable.
    Status(oneshot::Sender<Status>),
    /// The same, with the jobs accepted since start per stage label
    /// (`metrics`: the stages cost a walk over their names, so `ping` and
    /// the service status do not ask for them).
    Metrics(oneshot::Sender<(Status, Vec<crate::metrics::StageCount>)>),
    /// Answered over the durable records (send a `Flush` first for
    /// read-your-writes); `Stats` makes every accepted record durable
    /// first, unless it asks to include the pending ones.
    Query(Query, oneshot::Sender<Answer>),
    /// Archive the file and start an empty one; answers the archive path.
    /// The counter is the asking connection's `indexed` (see
    /// [`StatsCache`]): a `stats` it sends next must not be answered from
    /// before the clear.
    Clear(oneshot::Sender<Result<PathBuf, String>>, Arc<AtomicU64>),
    /// SIGHUP: if the file at the log path is no longer the one being
    /// written (rotated away or deleted), flush, close it and open the path
    /// afresh. Answers what was done.
    Reopen(oneshot::Sender<Result<String, String>>),
    /// A consumer's position reported, a consumer removed, or the list
    /// asked for (`consumer`): answers the reply object.
    Consumer(
        ConsumerUpdate,
        oneshot::Sender<Result<serde_json::Value, crate::protocol::ProtocolError>>,
    ),
}

/// Counters for `ping`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Records in the file, durable.
    pub records: u64,
    /// Records accepted and not yet durable, and their bytes.
    pub pending: u64,
    pub pending_bytes: u64,
    /// Records whose non-finite numbers were written as null (since start).
    pub coerced: u64,
    pub flushes: u64,
    pub failed_flushes: u64,
    /// Times the file was found cut to nothing underneath the daemon and
    /// restarted as a new array, and the records those cuts took out of it
    /// (since start): history left the file, which only this and the log
    /// tell.
    pub truncations: u64,
    pub records_truncated: u64,
    /// Times another process was found to have changed the file (an
    /// in-process logger not yet migrated), the records of theirs taken
    /// into the log, and the daemon's own records no longer found in it
    /// afterwards (since start), with the last such event.
    pub foreign_writes: u64,
    pub records_taken_in: u64,
    pub records_lost: u64,
    pub last_foreign_write: Option<ForeignWrite>,
    /// The last write error, cleared by the next successful flush.
    pub last_error: Option<String>,
    pub log_file: PathBuf,
    /// The random id of the log file, from its sidecar (`ping`'s
    /// `log_id`); a new file (a `clear`, a rotation) has a new one.
    pub log_id: String,
    pub file_bytes: u64,
    /// Approximate bytes held by the index.
    pub index_bytes: u64,
    /// False when the file at the log path is not the one being written
    /// (renamed or deleted underneath the daemon; SIGHUP reopens it).
    pub log_file_at_path: bool,
}

/// One change another process made to the file, as `ping` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignWrite {
    /// Local time it was taken over, as `logged_at` is written.
    pub at: String,
    /// Complete records the daemon had not written, now in the log.
    pub records_taken_in: u64,
    /// The daemon's records that were in the file and are no longer.
    pub records_lost: u64,
    /// Where bytes that were not complete records were copied.
    pub copy: Option<PathBuf>,
}

/// Flush policy.
#[derive(Debug, Clone)]
pub(crate) struct BatcherConfig {
    /// When a batch is written.
    pub policy: Policy,
    /// At shutdown, how long to keep retrying a failing disk before giving up.
    pub shutdown_retry: Duration,
    /// Where chunk buffers go once their records are durable.
    pub pool: Arc<BufferPool>,
    /// The unfiltered `stats` reply, kept current here.
    pub stats: Arc<StatsCache>,
    /// Record ids, filled again from a file reopened at SIGHUP.
    pub ids: Arc<crate::index::RecordIds>,
    /// Counters of records taken and batches written, for `metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When the log is rotated on its own and which archives are removed.
    pub retention: crate::config::Retention,
}

/// The writer's state between commands.
struct Writer {
    cfg: BatcherConfig,
    status: Status,
    /// The store when no flush is in flight.
    idle: Option<Store>,
    current: Batch,
    inflight: Option<JoinHandle<FlushOutcome>>,
    inflight_records: u64,
    inflight_bytes: usize,
    /// Waiters for a flush that found only an in-flight batch to wait for.
    inflight_waiters: Vec<oneshot::Sender<Durable>>,
    backoff: Duration,
    retry_at: Option<Instant>,
    index: Index,
    /// Jobs accepted since start per stage, from the index's tallies.
    stages: stages::StageTotals,
    /// `content_end` of the store after the last successful flush.
    durable_end: u64,
    /// New records for subscribers (`subscribe`), one compact line each.
    events: Events,
    /// Where the next accepted record's separator will be written: the
    /// index knows each record's offset before it is flushed.
    logical_end: u64,
    reader: Arc<File>,
    /// Queries being answered a slice at a time (`ops::Scan`).
    scans: std::collections::VecDeque<answer::Scanning>,
    /// Bumped whenever the index is replaced (a `clear`, a take-over, a
    /// reopen): a scan over the old one starts again.
    index_epoch: u64,
    /// The blocking task that writes a batch panicked (a broken invariant
    /// in the store), seen by [`Writer::settle`]: the store went with it,
    /// so the writer stops as when the main loop sees the panic, rather
    /// than go on accepting records it can never write.
    failed: bool,
    /// Another process changed the file: take it over again
    /// ([`Writer::reconcile`]) before the next flush.
    changed: bool,
    /// Rotation, archive removal and the consumers' positions.
    retain: retention::State,
}

/// Runs until the channel closes and everything received is flushed (or,
/// with a failing disk, until `shutdown_retry` has passed). Returns the
/// store and the final counters.
///
/// # Errors
/// None at run time; a read handle on the file is needed to start.
pub(crate) async fn run(
    store: Store,
    index: Index,
    mut rx: mpsc::Receiver<Command>,
    cfg: BatcherConfig,
    events: Events,
) -> (Option<Store>, Status) {
    let reader = match store.reader() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "Cannot open a read handle on the log file.");
            return (Some(store), Status::default());
        }
    };
    let mut w = Writer::new(store, index, cfg, events, Arc::new(reader));
    // Archives already past the limits at start go now.
    w.prune();
    let mut closed = false;
    let mut closed_at: Option<Instant> = None;
    // Another process's change to the file is noticed within this even
    // when no records come in (an old logger rewriting an idle log).
    let mut look = tokio::time::interval(FOREIGN_CHECK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if w.failed {
            // The index still holds: queries already asked get their answer.
            w.finish_scans();
            return (None, w.status);
        }
        // (After a failed take-over, not before its backoff has passed:
        // each try reads the whole file.)
        if w.changed && w.idle.is_some() && w.retry_at.is_none_or(|t| Instant::now() >= t) {
            w.reconcile().await;
        }
        let now = Instant::now();
        w.maybe_start_flush(now, closed);
        if let Some(t) = closed_at
            && w.closing_done(t, now)
        {
            break;
        }
        // One slice of a query's scan per turn: what came meanwhile (a
        // chunk, a batch's end) is served between two slices.
        w.scan_slice();
        let deadline = w.next_deadline(now);
        tokio::select! {
            biased;
            joined = async { match w.inflight.as_mut() { Some(h) => h.await, None => std::future::pending().await } }, if w.inflight.is_some() => {
                w.flushed(joined, closed).await;
            }
            cmd = rx.recv(), if !closed => match cmd {
                None => {
                    closed = true;
                    closed_at = Some(Instant::now());
                }
                Some(cmd) => w.command(cmd).await,
            },
            _ = async { match deadline { Some(d) => sleep_until(d.into()).await, None => std::future::pending().await } }, if deadline.is_some() => {}
            _ = look.tick() => {
                w.look_for_changes();
                w.prune_if_due();
            }
            // A scan waits: nothing else is ready, so on to its next slice
            // (after the runtime has looked at its timers and I/O).
            () = tokio::task::yield_now(), if !w.scans.is_empty() => {}
        }
    }
    w.finish_scans();
    if let Some(Err(e)) = w.idle.as_mut().map(Store::close) {
        tracing::error!(error = %e, "Final sync failed.");
    }
    (w.idle, w.status)
}

impl Writer {
    /// A flush ended: its outcome taken in, and the log rotated if that
    /// flush took it past a `--rotate-at-*` limit (not while closing).
    async fn flushed(
        &mut self,
        joined: Result<FlushOutcome, tokio::task::JoinError>,
        closed: bool,
    ) {
        self.inflight = None;
        match joined {
            Ok(outcome) => {
                self.complete(outcome);
                if !closed && self.rotation_due() {
                    self.rotate().await;
                }
            }
            Err(e) => {
                // The blocking task panicked: a broken invariant in the
                // store. Nothing sane is left to write with.
                tracing::error!(error = %e, "Writer task failed; stopping.");
                self.failed = true;
            }
        }
    }

    /// Closing since `closed_at`: done once nothing is left to write, or
    /// once the disk has kept failing for `shutdown_retry` (the waiters are
    /// then told).
    fn closing_done(&mut self, closed_at: Instant, now: Instant) -> bool {
        if self.inflight.is_some() {
            return false;
        }
        if self.current.is_empty() {
            return true;
        }
        if now >= closed_at + self.cfg.shutdown_retry {
            self.give_up();
            return true;
        }
        false
    }

    /// The writer of `store`, whose records `index` holds.
    fn new(
        store: Store,
        index: Index,
        cfg: BatcherConfig,
        events: Events,
        reader: Arc<File>,
    ) -> Self {
        let retain =
            retention::State::new(cfg.retention.clone(), store.path(), store.options().mode);
        Writer {
            retain,
            status: Status {
                records: store.records(),
                log_file: store.path().to_owned(),
                log_id: store.log_id(),
                file_bytes: store.len(),
                ..Status::default()
            },
            logical_end: store.content_end(),
            durable_end: store.content_end(),
            idle: Some(store),
            cfg,
            current: Batch::default(),
            inflight: None,
            inflight_records: 0,
            inflight_bytes: 0,
            inflight_waiters: Vec::new(),
            backoff: Duration::ZERO,
            retry_at: None,
            stages: stages::StageTotals::new(&index),
            index,
            events,
            reader,
            scans: Default::default(),
            index_epoch: 0,
            failed: false,
            changed: false,
        }
    }

    async fn command(&mut self, cmd: Command) {
        // Every request sees another process's change at once: it is
        // taken over (and reported) before `ping`, a query, `flush`,
        // `clear` or a reopen goes on (a `clear` would archive a file whose
        // losses nobody counted). Not for records: one `fstat` per chunk
        // would be paid by every writer, and the flush looks anyway.
        if !matches!(cmd, Command::Ingest(_)) {
            self.take_over_changes().await;
        }
        match cmd {
            Command::Ingest(ing) => self.ingest(ing),
            Command::Flush(done) => self.when_durable(done),
            Command::Status(reply) => {
                let _ = reply.send(self.status_now());
            }
            Command::Metrics(reply) => {
                let stages = self.stages.totals(&self.index);
                let _ = reply.send((self.status_now(), stages));
            }
            Command::Query(q, reply) => {
                if q.flushes_first()
                    && let Err(e) = self.flush_now().await
                {
                    let msg = format!(
                        "stats and reports count only records in the file, and those accepted \
                         could not be written: {e}; ask `stats` with \"include_pending\": true \
                         (joblogctl stats --pending) for the counts including them"
                    );
                    let _ = reply.send(Answer::Failed(msg));
                    return;
                }
                self.ask(q, reply);
            }
            Command::Clear(reply, indexed) => {
                let res = self.clear().await;
                if res.is_ok() {
                    // Before the reply: once told, the caller sees the
                    // archives retention keeps.
                    self.prune();
                }
                // After the generation moved (see StatsCache's invariant).
                indexed.fetch_add(1, Ordering::Release);
                let _ = reply.send(res);
            }
            Command::Reopen(reply) => {
                let _ = reply.send(self.reopen().await);
                self.prune();
            }
            Command::Consumer(update, reply) => {
                let _ = reply.send(self.consumer(update));
            }
        }
    }

    /// The counters as they are now, pending records included.
    fn status_now(&self) -> Status {
        let mut s = self.status.clone();
        s.pending = self.current.records + self.inflight_records;
        s.pending_bytes = (self.current.bytes + self.inflight_bytes) as u64;
        s.index_bytes = self.index.memory_bytes() as u64;
        s.log_file_at_path = self.idle.as_ref().is_none_or(Store::is_at_path);
        s
    }

    /// Makes `index` the live index (a `clear`, a reopen, a take-over): the
    /// per-stage counters carry what the old one gained, and scans over the
    /// old one start again.
    fn replace_index(&mut self, index: Index) {
        self.stages.replaced(&self.index, &index);
        self.index = index;
        self.index_epoch += 1;
    }

    /// Answers `done` once everything accepted so far is durable: with the
    /// current batch if it holds anything, else with the batch in flight,
    /// else at once (an empty `log_batch`, a `flush` with nothing pending).
    fn when_durable(&mut self, done: oneshot::Sender<Durable>) {
        if !self.current.is_empty() {
            self.current.waiters.push(done);
        } else if self.inflight.is_some() {
            self.inflight_waiters.push(done);
        } else {
            let _ = done.send(Ok(()));
        }
    }

    fn ingest(&mut self, ing: Ingest) {
        let n = ing.records.len() as u64;
        if self.current.since.is_none() && n > 0 {
            self.current.since = Some(Instant::now());
        }
        // The very first record of the file is written without its comma.
        let skip = u64::from(self.index.is_empty() && n > 0);
        let base = self.logical_end;
        // Only with subscribers does an accepted record cost a copy.
        let accepted = self.events.accepted.receiver_count() > 0;
        let durable = self.events.durable.receiver_count() > 0;
        for r in &ing.records {
            let rec = &ing.data[r.start as usize..(r.start + r.len) as usize];
            let offset = base + u64::from(r.start) - skip;
            match &r.facts {
                Some(f) => {
                    let (t0, t1) = f.timings;
                    let timings = ing
                        .timings
                        .get(t0 as usize..t1 as usize)
                        .unwrap_or_default();
                    self.index.push_facts(offset, rec, f, timings);
                }
                None => self.index.add(offset, rec, &r.fields),
            }
            if accepted || durable {
                // The record's position: it was just indexed, at the end.
                let seq = self.index.len().saturating_sub(1);
                let mut line = Vec::with_capacity(rec.len() + 32);
                line.extend_from_slice(format!("{{\"seq\":{seq},\"record\":").as_bytes());
                crate::json::minify_into(rec, &mut line);
                line.extend_from_slice(b"}\n");
                let line: Arc<[u8]> = Arc::from(line);
                if durable {
                    self.current.events.push(Arc::clone(&line));
                }
                if accepted {
                    let _ = self.events.accepted.send(line);
                }
            }
        }
        if n > 0 {
            self.cfg.stats.changed();
            self.cfg.metrics.accepted(n);
        }
        // After the generation: see StatsCache's invariant.
        ing.indexed.fetch_add(1, Ordering::Release);
        self.logical_end = base + ing.data.len() as u64 - skip;
        if ing.data.is_empty() {
            self.cfg.pool.give(ing.data);
        } else {
            self.current.bytes += ing.data.len();
            self.current.chunks.push(ing.data);
        }
        self.current.records += n;
        self.status.coerced += ing.coerced;
        self.current.permits.extend(ing.permit);
        if let Some(done) = ing.done {
            self.when_durable(done);
        }
    }
}
