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
//! The batcher also owns the [`Index`]: records are indexed as they are
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

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::sleep_until;

use crate::index::{Facts, Index, RawMeta, TimingFact};
use crate::query::{self, Filter, Paging};
use crate::store::{Store, StoreError};

/// Answer to a waiter: `Err` holds a short reason when the records could not
/// be made durable before the daemon gave up (only at shutdown).
pub type Durable = Result<(), String>;

/// Where one record sits inside an [`Ingest`]'s `data`, with what it
/// contributes to the index.
#[derive(Debug, Clone, Copy)]
pub struct RecordMeta {
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
pub struct Ingest {
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

/// The unfiltered `stats` reply, shared with the connections so that they
/// answer it themselves while the index has not changed. Going through the
/// writer thread costs two wake-ups of another thread; on this VM that took
/// up to a millisecond in noisy moments (a halted vCPU waits for the
/// hypervisor), against tens of microseconds for the answer itself.
///
/// **Invariant:** a connection answers from the cache only when every chunk
/// it sent has been indexed (its `indexed` count equals what it sent) and
/// the cached line's generation is the current one. The writer bumps the
/// generation after indexing a chunk and before bumping the sender's count,
/// so the line then describes an index holding all of that connection's
/// records.
#[derive(Debug, Default)]
pub struct StatsCache {
    /// Bumped by the writer after every change to the index.
    generation: AtomicU64,
    /// The reply line, with the generation it describes.
    line: Mutex<Option<(u64, Arc<[u8]>)>>,
}

impl StatsCache {
    /// The reply line, if it describes the index as it is now.
    pub fn current(&self) -> Option<Arc<[u8]>> {
        let g = self.generation.load(Ordering::Acquire);
        let line = self.line.lock().ok()?;
        match line.as_ref() {
            Some((at, line)) if *at == g => Some(Arc::clone(line)),
            _ => None,
        }
    }

    /// The index changed (writer only).
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current line, computed by `make` if it is out of date (writer
    /// only: the generation cannot move meanwhile).
    fn get_or_make(&self, make: impl FnOnce() -> Arc<[u8]>) -> Arc<[u8]> {
        if let Some(line) = self.current() {
            return line;
        }
        let g = self.generation.load(Ordering::Acquire);
        let line = make();
        if let Ok(mut slot) = self.line.lock() {
            *slot = Some((g, Arc::clone(&line)));
        }
        line
    }
}

/// The broadcasts of records to subscribers, each a bounded ring (a slow
/// subscriber loses the oldest and is told how many; the writer never
/// waits for it): records as they become durable (`subscribe`, the
/// default: a crash cannot take back what a subscriber saw), and as they
/// are accepted (`"include_pending": true`).
#[derive(Debug, Clone)]
pub struct Events {
    pub durable: tokio::sync::broadcast::Sender<Arc<[u8]>>,
    pub accepted: tokio::sync::broadcast::Sender<Arc<[u8]>>,
}

impl Events {
    pub fn new() -> Events {
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

/// Records a subscriber may fall behind by before it starts missing some.
pub const EVENTS_CAPACITY: usize = 16 * 1024;

/// A record's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u32,
}

/// Questions answered from the index.
#[derive(Debug)]
pub enum Query {
    Stats {
        filter: Filter,
        /// Over every accepted record, not only the durable ones (which
        /// the writer makes everything accepted before answering).
        include_pending: bool,
    },
    Select {
        filter: Filter,
        paging: Paging,
    },
    RetryCandidates {
        limit: Option<usize>,
    },
    /// The durable prefix of the file, to copy.
    Snapshot,
}

/// What a query returns. Records are returned as spans of the file plus a
/// read handle, so the connection streams them without the writer holding
/// their bytes.
#[derive(Debug)]
pub enum Answer {
    Stats {
        /// The `stats` object (timings missing when `timings_from` is set).
        value: Value,
        /// Filtered stats: the successful matching records whose `timings`
        /// the connection reads back to complete the object.
        timings_from: Option<(Arc<File>, Vec<Span>)>,
    },
    Records {
        reader: Arc<File>,
        spans: Vec<Span>,
        /// Matches before paging.
        total: usize,
    },
    /// The whole reply line of an unfiltered `stats`, shared with the cache.
    StatsLine(Arc<[u8]>),
    /// The question could not be answered as asked (durable-only `stats`
    /// while writes fail): the message, for a `write_failed` reply.
    Failed(String),
    /// Bytes `0..end` of the file are complete records, immutable from now
    /// on (appends only ever write past them); close the array after them.
    Snapshot {
        reader: Arc<File>,
        end: u64,
        records: u64,
    },
}

/// What connections ask of the writer.
#[derive(Debug)]
pub enum Command {
    Ingest(Ingest),
    /// Answer once everything accepted before is durable.
    Flush(oneshot::Sender<Durable>),
    /// A snapshot of the counters, including records not yet durable.
    Status(oneshot::Sender<Status>),
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
}

/// Records handed from the scan to the indexing thread at a time, in
/// bytes (see [`open_log`]).
const INDEX_BATCH_BYTES: usize = 1 << 20;

/// ... or this many records, whichever comes first: large records add only
/// their facts (about 200 bytes each) and tiny ones barely any bytes, so
/// the byte count alone would let a batch grow with the file. Small in
/// unit tests, so that their files cross many batch boundaries.
const INDEX_BATCH_RECORDS: usize = if cfg!(test) { 100 } else { 4096 };

/// Records this long or longer go to the indexing thread as their facts
/// (computed on the scanning thread) rather than as their bytes: copying a
/// seed-sized record would cost more than the indexing saved.
const DETACH_AT: usize = 4096;

/// Scanned records on their way to the indexing thread, in file order.
#[derive(Default)]
struct ScanBatch {
    /// Small records back to back, then long name spellings of detached
    /// ones.
    bytes: Vec<u8>,
    records: Vec<Scanned>,
    /// The timings of detached records.
    timings: Vec<TimingFact>,
}

enum Scanned {
    /// File offset, range in `bytes`, where its indexed fields are.
    Bytes(u64, std::ops::Range<usize>, RawMeta),
    /// File offset, length, facts (names located in `bytes`).
    Facts(u64, u32, Facts),
}

/// Adds one scanned record to `batch`: its bytes, or for a large record its
/// facts (see [`DETACH_AT`]).
fn hand_over(
    batch: &mut ScanBatch,
    scratch: &mut crate::json::Formatter,
    offset: u64,
    bytes: &[u8],
    meta: &RawMeta,
) {
    if bytes.len() >= DETACH_AT {
        let f = crate::index::facts_detached(
            bytes,
            meta,
            scratch,
            &mut batch.timings,
            &mut batch.bytes,
        );
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        batch.records.push(Scanned::Facts(offset, len, f));
    } else {
        let start = batch.bytes.len();
        batch.bytes.extend_from_slice(bytes);
        let range = start..batch.bytes.len();
        batch.records.push(Scanned::Bytes(offset, range, *meta));
    }
}

/// Opens (or creates, or repairs) the log file and indexes it, logging
/// what recovery found. Used at start-up and on reopen.
///
/// The scan (reading and validating every record) and the indexing (facts
/// and entries) take about the same time, so they run on two threads: the
/// scan hands records over in batches of [`INDEX_BATCH_BYTES`] or
/// [`INDEX_BATCH_RECORDS`] (at most two waiting), the index gets them in
/// file order. Until the log is open
/// nothing else runs, so this is the one place a second core is free.
///
/// # Errors
/// As [`Store::open`].
pub fn open_log(
    path: &std::path::Path,
    fsync: crate::store::FsyncPolicy,
    page_cache: crate::store::PageCache,
    options: crate::store::FileOptions,
) -> Result<(Store, Index), StoreError> {
    let t0 = Instant::now();
    let total = std::fs::metadata(path).map_or(0, |m| m.len());
    let (progress, first) = crate::systemd::ScanProgress::start(total, t0);
    if total > 0 {
        crate::systemd::notify(&first);
    }
    // Shared by the two callbacks below (only one runs at a time).
    let progress = std::cell::RefCell::new(progress);
    let report = |step: crate::systemd::Step, done: u64| {
        if let Some(msg) = progress.borrow_mut().due(step, done, Instant::now()) {
            crate::systemd::notify(&msg);
            tracing::info!(
                log_file = %path.display(),
                mb = done / 1_000_000,
                of_mb = total / 1_000_000,
                step = ?step,
                "Opening the log file."
            );
        }
    };
    let mut scanned = 0u64;
    // Where the clock is next read: every 16 MiB, and every 4,096 records
    // (cheap next to them either way; a record may be megabytes long).
    let mut next_check = 0u64;
    let (opened, index) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ScanBatch>(2);
        // Emptied batches come back, so the buffers are reused.
        let (back_tx, back_rx) = std::sync::mpsc::channel::<ScanBatch>();
        let indexer = scope.spawn(move || {
            let mut index = Index::default();
            for mut batch in rx {
                for r in &batch.records {
                    match r {
                        Scanned::Bytes(offset, range, meta) => {
                            index.add(*offset, &batch.bytes[range.clone()], meta);
                        }
                        Scanned::Facts(offset, len, f) => {
                            let (t0, t1) = f.timings;
                            let timings = &batch.timings[t0 as usize..t1 as usize];
                            index.push_facts_at(*offset, *len, &batch.bytes, f, timings);
                        }
                    }
                }
                batch.bytes.clear();
                batch.records.clear();
                batch.timings.clear();
                let _ = back_tx.send(batch);
            }
            index
        });
        let mut batch = ScanBatch::default();
        let mut scratch = crate::json::Formatter::new();
        // Set when the indexer is gone (it panicked): the scan then only
        // finishes, and the panic is raised below.
        let mut indexer_gone = false;
        let opened = Store::open(
            path,
            fsync,
            options,
            |rec, bytes, meta| {
                if !indexer_gone {
                    hand_over(&mut batch, &mut scratch, rec.offset, bytes, meta);
                    if batch.bytes.len() >= INDEX_BATCH_BYTES
                        || batch.records.len() >= INDEX_BATCH_RECORDS
                    {
                        let next = back_rx.try_recv().unwrap_or_default();
                        // The indexer only stops when this sender is
                        // dropped, or by panicking.
                        indexer_gone = tx.send(std::mem::replace(&mut batch, next)).is_err();
                    }
                }
                scanned += 1;
                if rec.offset >= next_check || scanned.is_multiple_of(4096) {
                    next_check = rec.offset + (16 << 20);
                    report(
                        crate::systemd::Step::Reading { records: scanned },
                        rec.offset,
                    );
                }
            },
            |copied, _| report(crate::systemd::Step::CopyingAside, copied),
        );
        // (An index of a file that failed to open is thrown away.)
        if opened.is_ok() && !batch.records.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
        // A panic in the index is a bug: let it go on as it would have on
        // this thread.
        let index = indexer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (opened, index)
    });
    let (mut store, recovery) = opened?;
    store.set_page_cache(page_cache);
    for partial in &recovery.removed_partials {
        if partial.to_string_lossy().contains(".clearing-") {
            tracing::warn!(
                log_file = %path.display(),
                partial = %partial.display(),
                "Removed the new file of a clear that was stopped before it finished; every record is in the log file or, if the clear had renamed it, in its newest archive beside it."
            );
            continue;
        }
        tracing::warn!(
            log_file = %path.display(),
            partial_copy = %partial.display(),
            "Removed an unfinished file a daemon stopped while making (a copy set aside, or the new file of a clear); the log itself was left as it was."
        );
    }
    if let Some(note) = &recovery.note {
        tracing::warn!(log_file = %path.display(), "Commit sidecar: {note}.");
    }
    if let Some(problem) = &recovery.problem {
        tracing::warn!(
            log_file = %path.display(),
            problem = %problem,
            kept_records = recovery.records,
            cut_bytes = recovery.cut_bytes,
            cut_bytes_copy = %recovery.corrupt_copy.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Log file was not a valid JSON array; kept the complete records, copied the bytes past them aside and re-closed it."
        );
    }
    tracing::info!(
        log_file = %path.display(),
        records = recovery.records,
        bytes = recovery.scanned_bytes,
        took_ms = t0.elapsed().as_millis() as u64,
        created = recovery.created,
        "Log file ready."
    );
    Ok((store, index))
}

/// How often the writer looks for another process's change to the file
/// while no flush does (a flush always looks first).
const FOREIGN_CHECK: Duration = Duration::from_secs(1);

/// The daemon's own records lost to another writer are named in the
/// warning up to this many; the count is always whole.
const LOST_NAMED: usize = 20;

/// Local time as `logged_at` is written, for `ping`'s events.
fn local_now() -> String {
    crate::time::LocalTime::now()
        .iso_quoted()
        .trim_matches('"')
        .to_string()
}

/// Names record `i` of `index` for a log line: its place, time and the
/// fields the index keeps (the `video_id` itself is kept only as a hash).
fn describe(index: &Index, i: usize) -> String {
    let e = &index.entries[i];
    format!(
        "#{i} logged_at={} subject={} worker={} stage={} success={}",
        if e.logged_at == i64::MIN {
            "?".to_string()
        } else {
            crate::time::format_time(e.logged_at)
        },
        index.syms.name(e.subject),
        index.syms.name(e.worker),
        index.syms.name(e.stage),
        e.success()
    )
}

/// Counters for `ping`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Records in the file, durable.
    pub records: u64,
    /// Records accepted and not yet durable.
    pub pending: u64,
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

/// The identity of a record for telling the daemon's own records from
/// another writer's after it rewrote the file: the indexed facts that do
/// not depend on how it was spelled (a rewrite by Python may escape or
/// space it differently). Two records alike in all of them (the same
/// video at the same microsecond, the same outcome and figures) are the
/// same record for this purpose.
fn identity(e: &crate::index::Entry) -> (u64, i64, u64, u32, u8) {
    (
        e.video,
        e.logged_at,
        e.duration.to_bits(),
        e.total_files.to_bits(),
        e.flags,
    )
}

/// Matches the daemon's durable records `ours` against the records
/// `found` in the file after another process changed it, by [`identity`],
/// each found record standing for at most one of ours. Returns the places
/// in `ours` of those no longer found, and how many found records are not
/// ours (taken in).
fn compare(ours: &[crate::index::Entry], found: &[crate::index::Entry]) -> (Vec<usize>, usize) {
    let mut left: std::collections::HashMap<_, u32> = std::collections::HashMap::new();
    for e in found {
        *left.entry(identity(e)).or_default() += 1;
    }
    let mut lost = Vec::new();
    for (i, e) in ours.iter().enumerate() {
        match left.get_mut(&identity(e)) {
            Some(n) if *n > 0 => *n -= 1,
            _ => lost.push(i),
        }
    }
    let taken_in = found.len() - (ours.len() - lost.len());
    (lost, taken_in)
}

/// Chunk buffers whose records are durable, handed back for the
/// connections' next chunks. Without it every read would format into a
/// freshly allocated buffer, and the allocator returns freed memory to the
/// kernel often enough that the next one is new pages: zero-filled on first
/// touch, which on a VM costs more than the formatting itself. Bounded in
/// total bytes by the unflushed-bytes budget: it holds at most what the
/// batches in flight held.
#[derive(Debug, Default)]
pub struct BufferPool {
    /// The buffers and the sum of their capacities.
    inner: std::sync::Mutex<(Vec<Vec<u8>>, usize)>,
    /// Capacity kept at most, in all.
    max_bytes: usize,
}

impl BufferPool {
    /// Buffers larger than this (a huge line's) are not kept.
    const MAX_ONE: usize = 2 << 20;

    pub fn new(max_bytes: usize) -> Self {
        BufferPool {
            inner: Default::default(),
            max_bytes,
        }
    }

    /// An empty buffer: a pooled one if any, else a new one of `capacity`.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        if let Ok(mut g) = self.inner.lock()
            && let Some(v) = g.0.pop()
        {
            g.1 -= v.capacity();
            return v;
        }
        Vec::with_capacity(capacity)
    }

    /// Keeps `v` for reuse if there is room.
    pub fn give(&self, mut v: Vec<u8>) {
        if v.capacity() < 4096 || v.capacity() > Self::MAX_ONE {
            return;
        }
        v.clear();
        if let Ok(mut g) = self.inner.lock()
            && g.1 + v.capacity() <= self.max_bytes
        {
            g.1 += v.capacity();
            g.0.push(v);
        }
    }
}

/// Flush policy.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub flush_interval: Duration,
    pub max_records: u64,
    pub max_bytes: usize,
    /// At shutdown, how long to keep retrying a failing disk before giving up.
    pub shutdown_retry: Duration,
    /// Where chunk buffers go once their records are durable.
    pub pool: Arc<BufferPool>,
    /// The unfiltered `stats` reply, kept current here.
    pub stats: Arc<StatsCache>,
}

#[derive(Default)]
struct Batch {
    /// The connections' chunks, written as they are (no copy).
    chunks: Vec<Vec<u8>>,
    /// Their bytes in all.
    bytes: usize,
    records: u64,
    permits: Vec<OwnedSemaphorePermit>,
    waiters: Vec<oneshot::Sender<Durable>>,
    /// When its first record arrived: the flush timer starts here.
    since: Option<Instant>,
    /// Its records for durable subscribers, published once it is written
    /// (kept only while someone subscribes).
    events: Vec<Arc<[u8]>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Puts `front` (a batch that failed to write) before `self`.
    fn prepend(&mut self, mut front: Batch) {
        front.chunks.append(&mut self.chunks);
        self.chunks = front.chunks;
        self.bytes += front.bytes;
        self.records += front.records;
        self.permits.append(&mut front.permits);
        front.waiters.append(&mut self.waiters);
        self.waiters = front.waiters;
        self.since = front.since.or(self.since);
        front.events.append(&mut self.events);
        self.events = front.events;
    }
}

type FlushOutcome = (Store, Batch, Result<(), StoreError>, Duration);

/// The writer's state between commands.
struct Writer {
    cfg: BatcherConfig,
    status: Status,
    /// The store when no flush is in flight.
    idle: Option<Store>,
    current: Batch,
    inflight: Option<JoinHandle<FlushOutcome>>,
    inflight_records: u64,
    /// Waiters for a flush that found only an in-flight batch to wait for.
    inflight_waiters: Vec<oneshot::Sender<Durable>>,
    backoff: Duration,
    retry_at: Option<Instant>,
    index: Index,
    /// `content_end` of the store after the last successful flush.
    durable_end: u64,
    /// New records for subscribers (`subscribe`), one compact line each.
    events: Events,
    /// Where the next accepted record's separator will be written: the
    /// index knows each record's offset before it is flushed.
    logical_end: u64,
    reader: Arc<File>,
    /// The blocking task that writes a batch panicked (a broken invariant
    /// in the store), seen by [`Writer::settle`]: the store went with it,
    /// so the writer stops as when the main loop sees the panic, rather
    /// than go on accepting records it can never write.
    failed: bool,
    /// Another process changed the file: take it over again
    /// ([`Writer::reconcile`]) before the next flush.
    changed: bool,
}

/// Runs until the channel closes and everything received is flushed (or,
/// with a failing disk, until `shutdown_retry` has passed). Returns the
/// store and the final counters.
///
/// # Errors
/// None at run time; a read handle on the file is needed to start.
pub async fn run(
    store: Store,
    index: Index,
    mut rx: mpsc::Receiver<Command>,
    cfg: BatcherConfig,
    events: Events,
) -> (Option<Store>, Status) {
    let reader = match store.reader() {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::error!(error = %e, "Cannot open a read handle on the log file.");
            return (Some(store), Status::default());
        }
    };
    let mut w = Writer {
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
        inflight_waiters: Vec::new(),
        backoff: Duration::ZERO,
        retry_at: None,
        index,
        events,
        reader,
        failed: false,
        changed: false,
    };
    let mut closed = false;
    let mut closed_at: Option<Instant> = None;
    // Another process's change to the file is noticed within this even
    // when no records come in (an old logger rewriting an idle log).
    let mut look = tokio::time::interval(FOREIGN_CHECK);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if w.failed {
            return (None, w.status);
        }
        // (After a failed take-over, not before its backoff has passed:
        // each try reads the whole file.)
        if w.changed && w.idle.is_some() && w.retry_at.is_none_or(|t| Instant::now() >= t) {
            w.reconcile().await;
        }
        let now = Instant::now();
        w.maybe_start_flush(now, closed);
        if closed && w.inflight.is_none() {
            if w.current.is_empty() {
                break;
            }
            if closed_at.is_some_and(|t| now >= t + w.cfg.shutdown_retry) {
                w.give_up();
                break;
            }
        }
        // Next timer: the batch's interval, or the end of a backoff.
        let deadline = if w.idle.is_some() && !w.current.is_empty() {
            match w.retry_at {
                Some(t) if now < t => Some(t),
                _ => w.current.since.map(|s| s + w.cfg.flush_interval),
            }
        } else {
            None
        };
        tokio::select! {
            biased;
            joined = async { match w.inflight.as_mut() { Some(h) => h.await, None => std::future::pending().await } }, if w.inflight.is_some() => {
                w.inflight = None;
                match joined {
                    Ok(outcome) => w.complete(outcome),
                    Err(e) => {
                        // The blocking task panicked: a broken invariant in
                        // the store. Nothing sane is left to write with.
                        tracing::error!(error = %e, "Writer task failed; stopping.");
                        return (None, w.status);
                    }
                }
            }
            cmd = rx.recv(), if !closed => match cmd {
                None => {
                    closed = true;
                    closed_at = Some(Instant::now());
                }
                Some(cmd) => w.command(cmd).await,
            },
            _ = async { match deadline { Some(d) => sleep_until(d.into()).await, None => std::future::pending().await } }, if deadline.is_some() => {}
            _ = look.tick() => w.look_for_changes(),
        }
    }
    if let Some(Err(e)) = w.idle.as_mut().map(Store::close) {
        tracing::error!(error = %e, "Final sync failed.");
    }
    (w.idle, w.status)
}

impl Writer {
    /// Starts writing the current batch if it is due and nothing is in
    /// flight.
    fn maybe_start_flush(&mut self, now: Instant, closing: bool) {
        let in_backoff = self.retry_at.is_some_and(|t| now < t);
        if self.idle.is_none() || self.current.is_empty() || in_backoff {
            return;
        }
        let c = &self.current;
        let due = closing
            || !c.waiters.is_empty()
            || c.records >= self.cfg.max_records
            || c.bytes >= self.cfg.max_bytes
            || c.since.is_some_and(|s| now >= s + self.cfg.flush_interval);
        if !due {
            return;
        }
        if let Some(mut store) = self.idle.take() {
            let batch = std::mem::take(&mut self.current);
            self.inflight_records = batch.records;
            self.inflight = Some(tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                let res = store.append(&batch.chunks, batch.records);
                (store, batch, res, t0.elapsed())
            }));
        }
    }

    /// Takes back the store after a flush attempt and answers its waiters.
    fn complete(&mut self, (store, mut batch, res, took): FlushOutcome) {
        self.status.file_bytes = store.len();
        let store_end = store.content_end();
        self.idle = Some(store);
        self.inflight_records = 0;
        match res {
            Ok(()) => {
                self.durable_end = store_end;
                self.status.records += batch.records;
                self.status.flushes += 1;
                self.recovered();
                tracing::debug!(
                    records = batch.records,
                    bytes = batch.bytes,
                    took_us = took.as_micros() as u64,
                    "Flushed batch."
                );
                for w in batch
                    .waiters
                    .drain(..)
                    .chain(self.inflight_waiters.drain(..))
                {
                    let _ = w.send(Ok(()));
                }
                for chunk in batch.chunks.drain(..) {
                    self.cfg.pool.give(chunk);
                }
                for line in batch.events.drain(..) {
                    let _ = self.events.durable.send(line);
                }
                // Permits drop with `batch`: the byte budget is free again.
            }
            Err(StoreError::Changed { .. }) => {
                // Nothing was written; the loop takes the file over again
                // before the next try.
                batch.waiters.append(&mut self.inflight_waiters);
                self.current.prepend(batch);
                self.changed = true;
            }
            Err(e) => {
                self.status.failed_flushes += 1;
                self.status.last_error = Some(e.to_string());
                self.back_off();
                tracing::error!(
                    error = %e,
                    records = batch.records,
                    retry_in_ms = self.backoff.as_millis() as u64,
                    "Flush failed; keeping the batch to write again."
                );
                batch.waiters.append(&mut self.inflight_waiters);
                self.current.prepend(batch);
            }
        }
    }

    /// `index` (of the records in the file, up to `durable_end`) with the
    /// records in `current` added, placed as the next flush will write
    /// them after those.
    fn reindex_pending_onto(&mut self, mut index: Index) {
        const DEPTH: usize = 10_000;
        let mut fmt = crate::json::Formatter::new();
        let mut end = self.durable_end;
        let mut first = index.is_empty();
        for chunk in &self.current.chunks {
            // The first chunk written into the new array loses its comma
            // (as `Store::append` writes it), whatever is indexed.
            let skip = u64::from(first && !chunk.is_empty());
            first &= chunk.is_empty();
            let mut pos = 0;
            loop {
                while chunk
                    .get(pos)
                    .is_some_and(|b| matches!(b, b',' | b' ' | b'\n' | b'\r' | b'\t'))
                {
                    pos += 1;
                }
                if pos >= chunk.len() {
                    break;
                }
                // Our own output: always one valid record after another.
                let Ok(f) = fmt.validate(chunk, pos, DEPTH, false) else {
                    tracing::error!(
                        "A pending chunk did not parse while re-indexing; its records stay out of the index."
                    );
                    break;
                };
                let meta = RawMeta::from_scanned(chunk, &fmt, pos);
                index.add(end + pos as u64 - skip, &chunk[pos..f.end], &meta);
                pos = f.end;
            }
            end += chunk.len() as u64 - skip;
        }
        self.index = index;
        self.logical_end = end;
        self.cfg.stats.changed();
    }

    /// Between flushes: has another process changed the file? One `fstat`.
    fn look_for_changes(&mut self) {
        if self.idle.as_ref().is_some_and(Store::changed_underneath) {
            self.changed = true;
        }
    }

    /// Another process changed the file (an in-process logger not yet
    /// migrated rewrote it whole, say). Its complete records are taken
    /// into the log where they are, each once, in file order; bytes that
    /// are not complete records are copied aside and cut off (as at
    /// start-up); the index is rebuilt from the file, and the records not
    /// yet written are placed after it. The daemon's own records that the
    /// other writer destroyed cannot be brought back, but they are counted
    /// and named, never lost silently: records are matched by
    /// [`identity`].
    async fn reconcile(&mut self) {
        self.changed = false;
        let Some((found, recovery)) = self.rescan().await else {
            return;
        };
        if let Some(copy) = recovery.appended_copy {
            // Bytes added past the array, which is as it was: set aside
            // (and logged) by the store; the index still holds.
            self.status.foreign_writes += 1;
            self.status.last_foreign_write = Some(ForeignWrite {
                at: local_now(),
                records_taken_in: 0,
                records_lost: 0,
                copy: Some(copy),
            });
            if let Some(store) = self.idle.as_ref() {
                self.status.file_bytes = store.len();
            }
            self.recovered();
            return;
        }
        // Ours: the records that were durable (the pending ones are
        // indexed too, but were never in the file).
        let durable = usize::try_from(self.status.records)
            .unwrap_or(usize::MAX)
            .min(self.index.entries.len());
        let (lost, taken_in) = compare(&self.index.entries[..durable], &found.entries);
        // Cut to nothing (`copytruncate`, `: > file`): a rotation, not
        // another logger's write. A file rewritten as `[]` (an old
        // logger's `clear_log()`) is a foreign write that lost records.
        let copy = recovery.corrupt_copy;
        if recovery.created && durable > 0 {
            tracing::error!(
                records_no_longer_in_file = lost.len(),
                records_to_write = self.current.records,
                copy_of_what_was_left = %copy.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                "The log file was cut short underneath the daemon; started a new array in it with the records not yet written."
            );
            self.status.truncations += 1;
            self.status.records_truncated += lost.len() as u64;
        } else if lost.is_empty() && taken_in == 0 && copy.is_none() {
            tracing::debug!("The log file's time or size changed, its records did not.");
        } else {
            self.report_foreign_write(&lost, taken_in, copy);
        }
        if let Some(store) = self.idle.as_ref() {
            self.status.records = store.records();
            self.status.file_bytes = store.len();
            self.durable_end = store.content_end();
        }
        self.recovered();
        self.reindex_pending_onto(found);
    }

    /// [`Store::rescan`] on the blocking pool, indexing the file as it is
    /// now. None when it failed: then the take-over is tried again after a
    /// backoff (or, if the task panicked, the writer stops).
    async fn rescan(&mut self) -> Option<(Index, crate::store::Recovery)> {
        let mut store = self.idle.take()?;
        let joined = tokio::task::spawn_blocking(move || {
            let mut index = Index::default();
            let res = store.rescan(|rec, bytes, meta| index.add(rec.offset, bytes, meta));
            (store, index, res)
        })
        .await;
        let (store, found, res) = match joined {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "Writer task failed while taking over a changed log file; stopping.");
                self.status.last_error = Some(format!("writer task failed: {e}"));
                self.failed = true;
                return None;
            }
        };
        self.idle = Some(store);
        match res {
            Ok(recovery) => Some((found, recovery)),
            Err(e) => {
                self.changed = true;
                self.status.last_error = Some(e.to_string());
                self.back_off();
                tracing::error!(error = %e, "Could not take over the log file another process changed; will try again.");
                None
            }
        }
    }

    /// Counts and names, in a warning and in `ping`, what another
    /// process's change did: `lost` (places in the old index of records no
    /// longer found), `taken_in` records of its own, `copy` of bytes that
    /// were not records.
    fn report_foreign_write(&mut self, lost: &[usize], taken_in: usize, copy: Option<PathBuf>) {
        let named: Vec<String> = lost
            .iter()
            .take(LOST_NAMED)
            .map(|&i| describe(&self.index, i))
            .collect();
        let more = lost.len().saturating_sub(LOST_NAMED);
        tracing::warn!(
            log_file = %self.status.log_file.display(),
            records_taken_in = taken_in,
            records_lost = lost.len(),
            lost = %if more > 0 { format!("{}; and {more} more", named.join("; ")) } else { named.join("; ") },
            copy_of_bytes_not_records = %copy.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Another process wrote the log file (an in-process logger not yet switched to joblogd?). Its complete records are taken into the log; records joblogd had written and can no longer find are counted as lost."
        );
        self.status.foreign_writes += 1;
        self.status.records_taken_in += taken_in as u64;
        self.status.records_lost += lost.len() as u64;
        self.status.last_foreign_write = Some(ForeignWrite {
            at: local_now(),
            records_taken_in: taken_in as u64,
            records_lost: lost.len() as u64,
            copy,
        });
    }

    /// A failed write or take-over: try again after a backoff of 50 ms,
    /// doubling to 5 s.
    fn back_off(&mut self) {
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    /// The file is in a known state again: no backoff, no error.
    fn recovered(&mut self) {
        self.backoff = Duration::ZERO;
        self.retry_at = None;
        self.status.last_error = None;
    }

    /// Shutdown with a disk that kept failing: tell the waiters.
    fn give_up(&mut self) {
        let msg = format!(
            "gave up writing {} records at shutdown: {}",
            self.current.records,
            self.status.last_error.as_deref().unwrap_or("unknown error")
        );
        tracing::error!(
            records = self.current.records,
            "Gave up flushing at shutdown; records not written."
        );
        for w in self.current.waiters.drain(..) {
            let _ = w.send(Err(msg.clone()));
        }
        // What `run` returns: the daemon's exit status says records were
        // lost (see `lib::store_failed`).
        self.status.pending = self.current.records;
    }

    /// Waits for the in-flight flush, if any.
    async fn settle(&mut self) -> Result<(), String> {
        if let Some(h) = self.inflight.take() {
            let outcome = h.await.map_err(|e| {
                let msg = format!("writer task failed: {e}");
                tracing::error!(error = %e, "Writer task failed; stopping.");
                self.status.last_error = Some(msg.clone());
                self.failed = true;
                msg
            })?;
            self.complete(outcome);
        }
        Ok(())
    }

    /// Writes everything accepted so far, now, waiting for it.
    async fn flush_now(&mut self) -> Result<(), String> {
        self.settle().await?;
        // A change by another process found by the write is taken over,
        // then the write is tried once more.
        for _ in 0..2 {
            self.take_over_changes().await;
            if self.changed {
                // A take-over that failed is backing off: writing now
                // would only meet the same change (and trying it again at
                // once reads the whole file again).
                break;
            }
            if self.current.is_empty() {
                break;
            }
            self.retry_at = None;
            self.maybe_start_flush(Instant::now(), true);
            self.settle().await?;
        }
        match self.current.is_empty() {
            true => Ok(()),
            false => Err(self.status.last_error.clone().unwrap_or_else(|| {
                "the log file was changed by another process and is not taken over yet".to_string()
            })),
        }
    }

    /// Looks for another process's change to the file, and takes it over
    /// (see [`Writer::reconcile`]) unless a failed take-over is backing off.
    async fn take_over_changes(&mut self) {
        self.look_for_changes();
        if self.changed && self.idle.is_some() && self.retry_at.is_none_or(|t| Instant::now() >= t)
        {
            self.reconcile().await;
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
                let mut s = self.status.clone();
                s.pending = self.current.records + self.inflight_records;
                s.index_bytes = self.index.memory_bytes() as u64;
                s.log_file_at_path = self.idle.as_ref().is_none_or(Store::is_at_path);
                let _ = reply.send(s);
            }
            Command::Query(q, reply) => {
                if let Query::Stats {
                    include_pending: false,
                    ..
                } = &q
                    && let Err(e) = self.flush_now().await
                {
                    let msg = format!(
                        "stats count only records in the file, and those accepted could not be \
                         written: {e}; ask with \"include_pending\": true (joblogctl stats \
                         --pending) for the counts including them"
                    );
                    let _ = reply.send(Answer::Failed(msg));
                    return;
                }
                let _ = reply.send(self.query(q));
            }
            Command::Clear(reply, indexed) => {
                let res = self.clear().await;
                // After the generation moved (see StatsCache's invariant).
                indexed.fetch_add(1, Ordering::Release);
                let _ = reply.send(res);
            }
            Command::Reopen(reply) => {
                let _ = reply.send(self.reopen().await);
            }
        }
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
                let mut line = Vec::with_capacity(rec.len() + 12);
                line.extend_from_slice(b"{\"record\":");
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

    fn spans(&self, idxs: &[u32]) -> Vec<Span> {
        idxs.iter()
            .map(|&i| {
                let e = &self.index.entries[i as usize];
                Span {
                    offset: e.offset,
                    len: e.len,
                }
            })
            .collect()
    }

    /// The unfiltered `stats` reply line over every record in the index.
    fn stats_line(&self) -> Arc<[u8]> {
        let v = query::stats_json(&self.index, &self.index.all, self.index.retry_candidates);
        let mut bytes =
            serde_json::to_vec(&serde_json::json!({"ok": true, "stats": v})).unwrap_or_default();
        bytes.push(b'\n');
        Arc::from(bytes)
    }

    fn query(&self, q: Query) -> Answer {
        // Records beyond this are accepted but not yet in the file.
        let durable = self.status.records as usize;
        match q {
            // Durable-only (the default): asked after `flush_now`, so the
            // index holds no pending record, and the line can be cached.
            Query::Stats {
                filter,
                include_pending: false,
            } if query::is_unfiltered(&filter) => {
                Answer::StatsLine(self.cfg.stats.get_or_make(|| self.stats_line()))
            }
            // Every accepted record: the running aggregate, not cached
            // (the cache holds the durable-only line).
            Query::Stats {
                filter,
                include_pending: true,
            } if query::is_unfiltered(&filter) => Answer::StatsLine(self.stats_line()),
            Query::Stats { filter, .. } => {
                let (agg, successful, candidates) = query::aggregate(&self.index, &filter);
                let readable: Vec<u32> = successful
                    .into_iter()
                    .filter(|&i| (i as usize) < durable)
                    .collect();
                Answer::Stats {
                    value: query::stats_json(&self.index, &agg, candidates),
                    timings_from: Some((self.reader.clone(), self.spans(&readable))),
                }
            }
            Query::Select { filter, paging } => {
                let (page, total) = query::select_page(&self.index, &filter, &paging, durable);
                Answer::Records {
                    reader: self.reader.clone(),
                    spans: self.spans(&page),
                    total,
                }
            }
            Query::Snapshot => Answer::Snapshot {
                reader: self.reader.clone(),
                end: self.durable_end,
                records: self.status.records,
            },
            Query::RetryCandidates { limit } => {
                let all = query::retry_candidates(&self.index, durable);
                let total = all.len();
                let page = &all[..limit.unwrap_or(total).min(total)];
                Answer::Records {
                    reader: self.reader.clone(),
                    spans: self.spans(page),
                    total,
                }
            }
        }
    }

    /// See [`Command::Reopen`].
    async fn reopen(&mut self) -> Result<String, String> {
        let at_path = self.idle.as_ref().or(None).map(Store::is_at_path);
        if at_path == Some(true) && self.inflight.is_none() {
            return Ok(
                "the file at the log path is the one being written; nothing to reopen".into(),
            );
        }
        self.flush_now()
            .await
            .map_err(|e| format!("records not yet written could not be flushed: {e}"))?;
        let Some(store) = self.idle.as_ref() else {
            return Err("the writer is busy".into());
        };
        if store.is_at_path() {
            return Ok(
                "the file at the log path is the one being written; nothing to reopen".into(),
            );
        }
        let path = store.path().to_owned();
        let (fsync, page_cache, options) = (store.fsync(), store.page_cache(), store.options());
        let opened =
            tokio::task::spawn_blocking(move || open_log(&path, fsync, page_cache, options))
                .await
                .map_err(|e| format!("writer task failed: {e}"))?
                .map_err(|e| e.to_string())?;
        let (store, index) = opened;
        let reader = store.reader().map_err(|e| e.to_string())?;
        // The old file is complete, synced and closed as it drops here.
        self.status.records = store.records();
        self.status.log_id = store.log_id();
        self.status.file_bytes = store.len();
        self.logical_end = store.content_end();
        self.durable_end = store.content_end();
        let msg = format!(
            "reopened {} ({} records)",
            store.path().display(),
            store.records()
        );
        self.idle = Some(store);
        self.index = index;
        // A change to the old file no longer matters: it was taken over
        // (or reported) before the reopen, and the new file is new.
        self.changed = false;
        self.cfg.stats.changed();
        self.reader = Arc::new(reader);
        Ok(msg)
    }

    /// Flushes, then archives the file and starts an empty one.
    async fn clear(&mut self) -> Result<PathBuf, String> {
        self.flush_now().await.map_err(|e| {
            format!("cannot clear: records not yet written could not be flushed: {e}")
        })?;
        let Some(mut store) = self.idle.take() else {
            return Err("cannot clear: the writer is busy".into());
        };
        let (store, res) = tokio::task::spawn_blocking(move || {
            let r = store.clear();
            (store, r)
        })
        .await
        .map_err(|e| format!("writer task failed: {e}"))?;
        self.status.file_bytes = store.len();
        self.status.records = store.records();
        self.status.log_id = store.log_id();
        self.logical_end = store.content_end();
        self.durable_end = store.content_end();
        let reader = res.as_ref().ok().map(|_| store.reader());
        self.idle = Some(store);
        match (res, reader) {
            (Ok(archive), Some(Ok(reader))) => {
                self.index = Index::default();
                self.cfg.stats.changed();
                self.reader = Arc::new(reader);
                tracing::info!(archive = %archive.display(), "Log cleared; previous file archived.");
                Ok(archive)
            }
            (Ok(archive), _) => {
                // The file was swapped but cannot be read back (no
                // descriptor left): answers would read the archive at the
                // new file's offsets. Stop, so that a restart serves the
                // new file whole (`Restart=on-failure`).
                tracing::error!(archive = %archive.display(), "Log cleared, but the new file cannot be opened for reading; stopping.");
                self.status.last_error = Some("cannot read the new log file after clear".into());
                self.failed = true;
                Err(format!(
                    "the log was archived to {}, but the daemon cannot read the new file and stops",
                    archive.display()
                ))
            }
            (Err(e), _) => {
                // The store went on with the file it had: so do the index
                // and the reader.
                tracing::error!(error = %e, "Clear failed; nothing changed.");
                Err(format!("clear failed, nothing changed: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FsyncPolicy, PageCache};

    /// The start-up index, built on two threads with large records passed
    /// as facts, equals the one built record by record on one thread:
    /// entries (offsets, lengths, interned names) and the `stats` they give.
    #[test]
    fn the_two_thread_start_up_index_equals_the_sequential_one() {
        let dir = std::env::temp_dir().join(format!("joblogd-openlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.json");
        let mut recs = Vec::new();
        for i in 0..3000 {
            // Every 7th record is large (passed as facts), every 5th failed
            // with an error longer than a NameRef carries; long subject
            // and timing names too.
            let transcript = if i % 7 == 0 {
                "t".repeat(6000)
            } else {
                String::new()
            };
            let ok = i % 5 != 0;
            let error = if ok {
                "null".to_string()
            } else {
                format!(
                    "\"API rate limit exceeded number {}: 429 Too Many Requests\"",
                    i % 3
                )
            };
            recs.push(format!(
                r#"{{"video_id":"v{}","subject":"Subject with a rather long name {}","worker_id":{},"stage":"s{}","success":{ok},"error":{error},"processing_duration":{}.5,"timings":{{"a_timing_name_longer_than_24_bytes":{}.25,"b":1}},"transcript":"{transcript}","logged_at":"2025-01-0{}T00:00:00"}}"#,
                i % 400,
                i % 3,
                i % 4,
                i % 6,
                i % 50,
                i % 9,
                1 + i % 9
            ));
        }
        std::fs::write(&path, format!("[{}]", recs.join(",\n"))).unwrap();
        // Both limits are crossed many times: 3,000 records in batches of
        // at most INDEX_BATCH_RECORDS (100 here), and 3+ MiB of bytes.
        const { assert!(3000 > 10 * INDEX_BATCH_RECORDS) };
        assert!(std::fs::metadata(&path).unwrap().len() > 3 * INDEX_BATCH_BYTES as u64);

        let mut sequential = Index::default();
        drop(
            Store::open(
                &path,
                FsyncPolicy::Always,
                crate::store::FileOptions::default(),
                |rec, bytes, meta| sequential.add(rec.offset, bytes, meta),
                |_, _| {},
            )
            .unwrap(),
        );
        let (_store, parallel) = open_log(
            &path,
            FsyncPolicy::Always,
            PageCache::Keep,
            crate::store::FileOptions::default(),
        )
        .unwrap();
        assert_eq!(parallel.entries.len(), 3000);
        assert_eq!(parallel.entries, sequential.entries);
        let stats = |ix: &Index| crate::query::stats_json(ix, &ix.all, ix.retry_candidates);
        assert_eq!(stats(&parallel), stats(&sequential));
        assert_eq!(parallel.retry_candidates, sequential.retry_candidates);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
