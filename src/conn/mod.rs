//! One client connection: framing, records, requests, replies in order.
//!
//! Two halves run concurrently. The read half frames lines, formats records
//! straight into a chunk and handles requests. The chunk goes to the writer
//! (not once per record) when no more bytes are waiting, when it holds
//! `HANDOFF_BYTES`, and before any request. Replies go through a bounded
//! queue to the write half, which waits for the durability of acknowledged writes in
//! order. A client that never reads its replies fills its own queue and then
//! only its own connection stops being read; nobody else waits.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::index::{self, RawMeta, TimingFact};
use crate::json::{Formatter, MAX_RECORD_DEPTH};
use crate::ops::Request;
use crate::protocol::{self, ErrorCode, ProtocolError, reply_line};
use crate::query;
use crate::shutdown::Shutdown;
use crate::time::LocalTime;
use crate::writer::{Command, Durable, Ingest, Link, Query, RecordMeta};
use lines::{Frame, Lines, READ_CHUNK, trim_line};

pub(crate) mod lines;
mod read;
mod requests;
mod write;

use read::*;
use requests::*;
pub(crate) use write::metrics_text;
use write::*;

use crate::config::tuning::{CHUNK_SEND_BYTES, DRAIN_LIMIT, HANDOFF_BYTES, MAX_QUEUED_REPLIES};

/// How far printing a line may go before it is stopped: a multiple of
/// `--max-record-bytes`, since a `log_batch` line prints its jobs two
/// levels deeper than they are stored (each of their lines carries 4 more
/// spaces, at most doubling them) and is judged on the jobs as stored.
/// Without it a deeply nested 16 MiB line would print to 2 GB, all of it in
/// memory, before anything could be judged.
fn print_guard(max_record: usize) -> usize {
    max_record.saturating_mul(3)
}

/// Separator before each record in the array, as indent=2 prints it.
pub(crate) const RECORD_PREFIX: &[u8] = b",\n  ";

/// What every connection shares, in parts each side uses on its own: the
/// read half takes records within [`Limits`] and the [`Budget`] and hands
/// them over the writer's [`Link`]; the write half asks the writer through
/// the same link and shows [`About`] in `ping`; the accept loop consults
/// `access`.
#[derive(Debug)]
pub(crate) struct Shared {
    pub writer: Link,
    pub budget: Budget,
    pub limits: Limits,
    pub about: About,
    /// Who may connect, who may `clear`, and whether to stamp records.
    pub access: crate::access::Access,
    /// Record ids the log holds: a record sent again is not written twice.
    pub ids: Arc<crate::index::RecordIds>,
    /// Logs put aside, for `read`s that name one.
    pub archived: crate::ops::read_records::Archived,
    /// Connections being served, to decide who computes index facts.
    pub connections: std::sync::atomic::AtomicUsize,
    /// Counters for `metrics` (lines refused here, connections accepted
    /// by the server; the writer holds the same).
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A line's and a record's size limits (`--max-line-bytes`,
/// `--max-record-bytes`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_line: usize,
    /// The most a record (or a `log_batch`'s jobs together) may take as
    /// stored.
    pub max_record: usize,
}

/// The unflushed-bytes budget (`--max-pending-bytes`) that every
/// connection's accepted records hold permits of until they are durable;
/// see [`crate::writer`].
#[derive(Debug)]
pub(crate) struct Budget {
    pub permits: Arc<Semaphore>,
    pub total: usize,
}

impl Budget {
    pub(crate) fn new(total: usize) -> Budget {
        Budget {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }
}

/// What `ping` shows of the daemon itself, beside the writer's counters.
#[derive(Debug)]
pub(crate) struct About {
    pub version: &'static str,
    pub started: Instant,
    /// Which socket file is ours, for `socket_at_path`.
    pub socket_file: crate::server::socket::SocketFile,
}

/// Counts a connection while it is served.
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Counted<'a> {
    fn new(n: &'a std::sync::atomic::AtomicUsize) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

enum Reply {
    Now(Vec<u8>),
    Query {
        flush: Option<oneshot::Receiver<Durable>>,
        query: Query,
        line: u64,
    },
    Cleared {
        rx: oneshot::Receiver<Result<std::path::PathBuf, String>>,
        line: u64,
    },
    /// A reply object the writer makes (`consumer`).
    Writer {
        rx: oneshot::Receiver<Result<serde_json::Value, ProtocolError>>,
        line: u64,
    },
    /// The connection follows new records from here on.
    /// With `from`, from that position of the log: its durable records
    /// first, then new ones.
    Subscribed {
        events: tokio::sync::broadcast::Receiver<Arc<[u8]>>,
        from: Option<Cursor>,
    },
    /// `ping`: the writer's status, asked for when the earlier replies are
    /// out.
    Ping {
        line: u64,
    },
    /// `metrics`: gathered, like `ping`, when the earlier replies are out.
    Metrics {
        line: u64,
    },
    /// `logs`: the archives beside the live log and the live one.
    Logs {
        line: u64,
    },
    /// Sent once the records are durable.
    WhenDurable {
        rx: oneshot::Receiver<Durable>,
        ok: Vec<u8>,
        line: u64,
    },
}

/// Serves one connection until the client closes it (or shutdown drains it).
pub(crate) async fn handle(
    stream: UnixStream,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    peer: Option<crate::access::Peer>,
    may_clear: bool,
) {
    let shared_count = Arc::clone(&shared);
    let _counted = Counted::new(&shared_count.connections);
    let (rd, wr) = stream.into_split();
    let (reply_tx, reply_rx) = mpsc::channel(MAX_QUEUED_REPLIES);
    let mut fmt = Formatter::new();
    fmt.output_limit = Some(print_guard(shared.limits.max_record));
    if shared.access.stamp_peer
        && let Some(p) = &peer
    {
        fmt.extra = crate::access::Access::stamp(p);
    }
    let session = Session {
        shared,
        may_clear,
        fmt,
        chunk: Vec::new(),
        chunk_records: Vec::new(),
        chunk_timings: Vec::new(),
        scratch: Formatter::new(),
        chunk_coerced: 0,
        logged_at: String::new(),
        replies: reply_tx,
        writer_gone: false,
        sent: 0,
        indexed: Arc::default(),
        permit: None,
        shutdown: shutdown.clone(),
        replies_abandoned: false,
        in_hand: InHand {
            ids: Arc::clone(&shared_count.ids),
            keys: Vec::new(),
        },
        originals: Vec::new(),
    };
    let shared = Arc::clone(&session.shared);
    let stopping = shutdown.clone();
    // Every line logged for this connection names its peer, as a source's
    // events do in Vector: `conn{pid=… uid=…}`.
    let span = tracing::info_span!(
        "conn",
        pid = peer.and_then(|p| p.pid),
        uid = peer.map(|p| p.uid)
    );
    tracing::Instrument::instrument(
        async {
            tokio::join!(
                read_side(rd, session, shutdown),
                write_side(wr, reply_rx, shared, stopping)
            )
        },
        span,
    )
    .await;
}

struct Session {
    shared: Arc<Shared>,
    /// Decided at connect ([`crate::access::Access::may_clear`]).
    may_clear: bool,
    fmt: Formatter,
    /// Formatted records not yet handed to the writer.
    chunk: Vec<u8>,
    /// Where each record of `chunk` is, with its indexed facts.
    chunk_records: Vec<RecordMeta>,
    /// The timings of `chunk_records`.
    chunk_timings: Vec<TimingFact>,
    /// Parses a record's `timings` for the index.
    scratch: Formatter,
    chunk_coerced: u64,
    /// `logged_at` for records of the current read, quoted.
    logged_at: String,
    replies: mpsc::Sender<Reply>,
    /// The writer is gone (daemon stopping): records can no longer be taken.
    writer_gone: bool,
    /// Chunks handed to the writer, and (bumped by the writer) how many of
    /// them it has indexed: equal when all of ours are in the index.
    sent: u64,
    indexed: Arc<std::sync::atomic::AtomicU64>,
    /// Budget permits held for the bytes of `chunk` (and a little ahead,
    /// see [`cover`]): taken as records are accepted, so what a connection
    /// holds while it waits for the budget is never more than one record
    /// besides the budget itself.
    permit: Option<OwnedSemaphorePermit>,
    /// Shutdown began (read side's copy of the signal).
    /// The daemon's stop: when it began, and the last call.
    shutdown: Shutdown,
    /// The client left its replies unread past the shutdown's grace: later
    /// replies are dropped, so the rest of what it sent is still handled.
    replies_abandoned: bool,
    /// The record ids admitted into `chunk` (see [`InHand`]).
    in_hand: InHand,
    /// Ids of records this connection dropped as copies while their
    /// originals were in another connection's hands: its next
    /// acknowledgement waits until those are with the writer.
    originals: Vec<u128>,
}

/// The keys of the record ids admitted into a connection's chunk: in hand
/// (`index::Admit::InHand`) until the chunk reaches the writer, and let go
/// when the connection ends too, so that no copy's acknowledgement waits
/// for them forever.
struct InHand {
    ids: Arc<crate::index::RecordIds>,
    keys: Vec<u128>,
}

impl InHand {
    /// The chunk went to the writer (or never will).
    fn handed(&mut self) {
        self.ids.handed(&self.keys);
        self.keys.clear();
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.handed();
    }
}

/// Refuses line `no` with `e`, counted under its code for `metrics`.
async fn refuse(s: &mut Session, no: u64, e: ProtocolError) {
    s.shared.metrics.rejected(e.code);
    queue(s, Reply::Now(e.reply(no))).await;
}

fn stopping_error() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::ShuttingDown,
        "the daemon is shutting down; nothing from this request was logged",
    )
}

/// Queues a reply for the write side. The queue is bounded: a client that
/// does not read its replies stops this side here, so first the records
/// read so far are handed over (they are written in time, and hold no
/// permits while we wait). At shutdown, a client that still does not read
/// for half the grace period loses its later replies, so the rest of what
/// it sent is still handled before the grace period ends.
async fn queue(s: &mut Session, r: Reply) {
    if s.replies_abandoned {
        return;
    }
    if s.replies.capacity() == 0 {
        send_chunk(s, None).await;
    }
    let half_grace = s.shutdown.grace() / 2;
    // Counted from when the stop began, not from this reply: a client
    // reading a reply now and then must not postpone it reply by reply.
    let mut shutdown = s.shutdown.clone();
    let mut last_call = s.shutdown.clone();
    let give_up = async move {
        let half = async {
            shutdown.wait_begun().await;
            let since = shutdown.begun().unwrap_or_else(Instant::now);
            tokio::time::sleep_until((since + half_grace).into()).await;
        };
        tokio::select! {
            () = half => {}
            () = last_call.wait_last_call() => {}
        }
    };
    tokio::select! {
        // A reply that can be queued is never dropped: the send goes first.
        biased;
        // The write half only ends after this half drops its sender, so a
        // send error cannot happen; ignore it rather than panic.
        _ = s.replies.send(r) => {}
        () = give_up => {
            tracing::warn!("A client left its replies unread at shutdown; dropping its later replies.");
            s.replies_abandoned = true;
        }
    }
}
