//! Every compile-time tuning constant of the daemon, in one place beside
//! the options (`config.rs` holds the run-time defaults and limits): sizes
//! of reads, writes and hand-offs, queue capacities, polling intervals. The
//! modules that use them import them from here. What is here is a choice
//! that could be made otherwise; constants that are part of a format (the
//! sidecar's layout, the index's field numbers) stay with their format.

use std::time::Duration;

// Connections: reading, the chunk handed to the writer, replies.
/// Read granularity: enough for a few seed-sized records per syscall.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Replies a connection may have queued before its reading pauses.
pub(crate) const MAX_QUEUED_REPLIES: usize = 256;
/// A chunk of formatted records is sent to the writer at this size even in
/// the middle of a read, to keep per-connection memory small.
pub(crate) const CHUNK_SEND_BYTES: usize = 1 << 20;
/// Formatted bytes a connection gathers from reads that are already
/// possible before it hands its chunk to the writer.
pub(crate) const HANDOFF_BYTES: usize = 256 << 10;
/// At shutdown, read at most this much more of what a client already sent
/// (more than a socket buffer can hold; a safety net only).
pub(crate) const DRAIN_LIMIT: usize = 64 << 20;
/// Permits are taken ahead in pieces of this size (or the budget's
/// sixteenth, if smaller): one semaphore operation per piece, not per
/// record.
pub(crate) const PERMIT_PIECE: usize = 64 << 10;
/// Depth of the connection → writer channel, in messages (each message is a
/// read's worth of records). Bytes are bounded separately by the budget.
pub(crate) const COMMAND_QUEUE: usize = 1024;
/// After the grace period, how long connections get to hand over the
/// records they have read (no waiting for the budget or for replies then).
pub(crate) const LAST_CALL: Duration = Duration::from_secs(2);

// Records.
/// Deepest nesting accepted in a record received from a client. Python's own
/// decoder gives up near 1000; 128 matches serde_json's limit used for
/// requests, and keeps the indentation of the output bounded.
pub(crate) const MAX_RECORD_DEPTH: usize = 128;
/// Python's decoder recurses; this is far beyond what it reads.
pub(crate) const FILE_DEPTH: usize = 10_000;
/// Distinct timing names `stats` keeps figures for. Timing names are a
/// pipeline's stages (a handful); a client that puts ids into them (`"t_<video
/// id>"`) would otherwise grow the index by a histogram and a name per
/// record, and every `stats` reply with it. Values under later names are
/// counted in `timings_untracked` instead.
pub(crate) const MAX_TIMING_NAMES: usize = 1024;

// The writer: indexing, subscribers, other writers of the file.
/// Records handed from the scan to the indexing thread at a time, in
/// bytes (see `writer::file`).
pub(crate) const INDEX_BATCH_BYTES: usize = 1 << 20;
/// ... or this many records, whichever comes first: large records add only
/// their facts (about 200 bytes each) and tiny ones barely any bytes, so
/// the byte count alone would let a batch grow with the file. Small in
/// unit tests, so that their files cross many batch boundaries.
pub(crate) const INDEX_BATCH_RECORDS: usize = if cfg!(test) { 100 } else { 4096 };
/// Records this long or longer go to the indexing thread as their facts
/// (computed on the scanning thread) rather than as their bytes: copying a
/// seed-sized record would cost more than the indexing saved.
pub(crate) const DETACH_AT: usize = 4096;
/// How often the writer looks for another process's change to the file
/// while no flush does (a flush always looks first).
pub(crate) const FOREIGN_CHECK: Duration = Duration::from_secs(1);
/// The daemon's own records lost to another writer are named in the
/// warning up to this many; the count is always whole.
pub(crate) const LOST_NAMED: usize = 20;
/// Records a subscriber may fall behind by before it starts missing some.
pub(crate) const EVENTS_CAPACITY: usize = 16 * 1024;

// The file: writing, reading at start-up, settling.
/// A large batch is written in pieces of this size (see
/// `store::append`).
pub(crate) const WRITE_PIECE: usize = 4 << 20;
/// At most this many buffers per `pwritev` (the kernel's `IOV_MAX`).
pub(crate) const MAX_IOVECS: usize = 1024;
/// Bytes read per step of the start-up scan; a record larger than this
/// grows the window to hold it whole.
pub(crate) const SCAN_CHUNK: usize = 1 << 20;
/// `Store::settle`: how often it looks, how long the file must stay
/// unchanged (ending like an array, or not), and how long it waits at most.
pub(crate) const SETTLE_POLL: Duration = Duration::from_millis(20);
pub(crate) const SETTLE_QUIET: Duration = Duration::from_millis(100);
pub(crate) const SETTLE_QUIET_DAMAGED: Duration = Duration::from_secs(1);
pub(crate) const SETTLE_MAX: Duration = Duration::from_secs(30);
/// How often a long log-file scan reports its progress.
pub(crate) const SCAN_REPORT_EVERY: Duration = Duration::from_secs(5);
/// How much each report extends the service manager's timeout: several
/// reports' worth, so one slow moment (a cold disk) does not get the
/// service killed.
pub(crate) const SCAN_EXTEND: Duration = Duration::from_secs(30);

// Answers read back from the file.
/// Flush the socket buffer at about this size while streaming.
pub(crate) const STREAM_CHUNK: usize = 64 * 1024;
/// Most bytes one `pread` of `ops::read::Windowed` fetches (a larger record is read
/// alone, whole). Held per connection while it streams an answer, so it is
/// kept small: 1,024 connections answering at once hold 256 MiB at most.
pub(crate) const READ_WINDOW: u64 = 256 << 10;
/// Records at most this far apart share one `pread`: copying a gap of a
/// few records costs less than another system call, and with the page
/// cache dropped (`--page-cache drop`) each `pread` of a record not cached
/// is a disk read of its own.
pub(crate) const READ_GAP: u64 = 16 << 10;

/// Entries a query's scan reads per turn of the writer (about a
/// millisecond's work at most): what waits for the writer meanwhile (a
/// chunk of records, a batch to write, an ack) waits at most that long.
pub(crate) const QUERY_SLICE: usize = 4 * 1024;

/// `read`'s page of records when the client names none, and the most it
/// may ask for (one reply holds them, built as it streams).
pub(crate) const READ_DEFAULT_LIMIT: usize = 1_000;
pub(crate) const READ_MAX_LIMIT: usize = 100_000;

// The index's string cache.
/// Distinct spellings each map of `Interner::by_hash` remembers; past it
/// (unique error messages, say) values take the decoding path uncached, so
/// the maps never grow with the log.
pub(crate) const RAW_CACHE_MAX: usize = 4096;
/// Longest spelling `Interner::by_hash` keeps.
pub(crate) const RAW_CACHE_SPELLING: usize = 256;
/// Longest spelling a `index::NameRef` carries with it.
pub(crate) const INLINE_SPELLING: usize = 24;

// Metrics (the `metrics` operation, `--metrics-textfile`).
/// Stage names that get a `stage` label of their own in the per-stage job
/// counters; any later name is counted under `stage="other"`. Every label
/// value is a time series Prometheus keeps for weeks: a client that puts
/// ids into `stage` would otherwise make a series per record. A pipeline
/// has a handful of stages, so 20 leaves room without inviting that.
pub(crate) const METRICS_STAGES: usize = 20;
/// Upper bounds, in seconds, of `joblogd_flush_duration_seconds`'s
/// buckets. A flush is a `pwritev` and an `fdatasync`: well under a
/// millisecond on a fast SSD with small batches, tens of milliseconds on a
/// disk or a busy VM, seconds when a batch of 8 MiB meets a slow device;
/// roughly ×2.5 apart from 0.5 ms to 10 s, so each of those shows.
pub(crate) const FLUSH_SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

// Retention (`--rotate-at-*`, `--keep-archives*`; `writer::retention`).
/// How often archives are looked at for their age (`--keep-archives-days`):
/// a day is the unit, so every ten minutes is prompt and costs nothing.
pub(crate) const PRUNE_CHECK: Duration = Duration::from_secs(600);
/// After an automatic rotation failed (a full disk, a directory not
/// writable), the next try waits this long rather than follow every flush.
pub(crate) const ROTATE_RETRY: Duration = Duration::from_secs(60);
/// How long a subscriber from a position waits for the records taken
/// before it joined to be durable before it reads the backlog
/// (`conn::write::follow_from`): a healthy flush takes milliseconds; a
/// failing disk would otherwise keep the subscriber from even its reply.
pub(crate) const SUBSCRIBE_FLUSH_WAIT: Duration = Duration::from_secs(2);
/// Most consumers (`consumer` requests) the daemon keeps positions for: a
/// forwarder or two per central database, with room to spare; each one
/// can hold archives back, and the file is rewritten whole on a change.
pub(crate) const MAX_CONSUMERS: usize = 64;
