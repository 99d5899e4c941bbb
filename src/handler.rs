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
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::connection::{Frame, Lines, READ_CHUNK, trim_line};
use crate::index::{self, RawMeta, TimingFact};
use crate::json::{Formatter, MAX_RECORD_DEPTH};
use crate::protocol::{self, ErrorCode, ProtocolError, Request, reply_line};
use crate::query;
use crate::time::LocalTime;
use crate::writer::{Command, Durable, Ingest, Query, RecordMeta};

/// Replies a connection may have queued before its reading pauses.
const MAX_QUEUED_REPLIES: usize = 256;
/// A chunk of formatted records is sent to the writer at this size even in
/// the middle of a read, to keep per-connection memory small.
const CHUNK_SEND_BYTES: usize = 1 << 20;
/// Formatted bytes a connection gathers from reads that are already
/// possible before it hands its chunk to the writer.
const HANDOFF_BYTES: usize = 256 << 10;
/// At shutdown, read at most this much more of what a client already sent
/// (more than a socket buffer can hold; a safety net only).
const DRAIN_LIMIT: usize = 64 << 20;

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
pub const RECORD_PREFIX: &[u8] = b",\n  ";

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub tx: mpsc::Sender<Command>,
    /// Unflushed-bytes budget; see [`crate::writer`].
    pub budget: Arc<Semaphore>,
    pub budget_total: usize,
    pub max_line: usize,
    /// `--max-record-bytes`: the most a record (or a `log_batch`'s jobs
    /// together) may take as stored.
    pub max_record: usize,
    /// The unfiltered `stats` reply while the index is unchanged.
    pub stats: Arc<crate::writer::StatsCache>,
    pub started: Instant,
    pub version: &'static str,
    /// New records, for `subscribe`.
    pub events: crate::writer::Events,
    /// Who may connect, who may `clear`, and whether to stamp records.
    pub access: crate::access::Access,
    /// The socket file we bound (None with socket activation), for `ping`.
    pub socket: Option<std::path::PathBuf>,
    /// Which socket file is ours, for `ping`'s `socket_at_path`.
    pub socket_file: crate::server::SocketFile,
    /// Chunk buffers to reuse (the writer hands them back).
    pub pool: Arc<crate::writer::BufferPool>,
    /// Connections being served, to decide who computes index facts.
    pub connections: std::sync::atomic::AtomicUsize,
    /// `--shutdown-timeout-ms`: how long connections get at shutdown.
    pub grace: std::time::Duration,
    /// Set when the shutdown's grace period has run out: a connection then
    /// stops waiting for the byte budget and hands over the records it has
    /// read, which are then written (or reported given up) like the rest,
    /// instead of being lost with its task.
    pub expired: watch::Sender<bool>,
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
    /// The connection follows new records from here on.
    Subscribed(tokio::sync::broadcast::Receiver<Arc<[u8]>>),
    /// `ping`: the writer's status, asked for when the earlier replies are
    /// out.
    Ping {
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
pub async fn handle(
    stream: UnixStream,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    peer: Option<crate::access::Peer>,
    may_clear: bool,
) {
    let shared_count = Arc::clone(&shared);
    let _counted = Counted::new(&shared_count.connections);
    let (rd, wr) = stream.into_split();
    let (reply_tx, reply_rx) = mpsc::channel(MAX_QUEUED_REPLIES);
    let mut fmt = Formatter::new();
    fmt.output_limit = Some(print_guard(shared.max_record));
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
        stopping_since: None,
    };
    let shared = Arc::clone(&session.shared);
    let stopping = shutdown.clone();
    tokio::join!(
        read_side(rd, session, shutdown),
        write_side(wr, reply_rx, shared, stopping)
    );
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
    shutdown: watch::Receiver<bool>,
    /// The client left its replies unread past the shutdown's grace: later
    /// replies are dropped, so the rest of what it sent is still handled.
    replies_abandoned: bool,
    /// When this connection saw the shutdown begin.
    stopping_since: Option<Instant>,
}

async fn read_side(mut rd: OwnedReadHalf, mut s: Session, mut shutdown: watch::Receiver<bool>) {
    let mut lines = Lines::new(s.shared.max_line);
    let mut eof = false;
    while !eof {
        let stopping = tokio::select! {
            r = rd.read_buf(lines.space()) => {
                match r {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "Read failed; closing connection.");
                        eof = true;
                    }
                }
                false
            }
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        s.logged_at = LocalTime::now().iso_quoted();
        process(&mut lines, &mut s).await;
        // Under load more bytes are already waiting: take them before the
        // chunk is handed over, so the writer (another thread) is woken
        // once per HANDOFF_BYTES rather than once per read.
        while !eof && !stopping && s.chunk.len() < HANDOFF_BYTES {
            match rd.try_read_buf(lines.space()) {
                Ok(0) => eof = true,
                Ok(_) => {
                    s.logged_at = LocalTime::now().iso_quoted();
                    process(&mut lines, &mut s).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "Read failed; closing connection.");
                    eof = true;
                }
            }
        }
        if stopping {
            s.stopping_since.get_or_insert_with(Instant::now);
            // Take exactly what the client had already sent when shutdown
            // began (the bytes queued in the socket), then finish as at end
            // of input. A client that keeps writing cannot hold us here.
            let mut left = queued_bytes(&rd).min(DRAIN_LIMIT);
            while left > 0 {
                match rd.try_read_buf(lines.space()) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        left = left.saturating_sub(n);
                        process(&mut lines, &mut s).await;
                    }
                }
            }
            eof = true;
        }
        if eof && let Some(Frame::Line { no, bytes }) = lines.finish() {
            line(&mut s, no, bytes).await;
        }
        send_chunk(&mut s, None).await;
    }
}

/// Bytes received on the socket and not yet read (`FIONREAD`).
fn queued_bytes(rd: &OwnedReadHalf) -> usize {
    let fd = rd.as_ref().as_raw_fd();
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; `fd` is a live
    // socket owned by `rd` for the duration of the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc < 0 { 0 } else { n.max(0) as usize }
}

/// Handles every complete line in the buffer.
async fn process(lines: &mut Lines, s: &mut Session) {
    while let Some(frame) = lines.next() {
        match frame {
            Frame::Line { no, bytes } => line(s, no, bytes).await,
            Frame::TooLong { no } => {
                let e = ProtocolError::new(
                    ErrorCode::LineTooLong,
                    format!(
                        "line longer than {} bytes; the rest of it is discarded",
                        s.shared.max_line
                    ),
                );
                queue(s, Reply::Now(e.reply(no))).await;
            }
        }
        if s.chunk.len() >= CHUNK_SEND_BYTES {
            send_chunk(s, None).await;
        }
    }
}

/// A record line, formatted into the chunk at `mark` and within limits:
/// covered by the byte budget, its index facts computed here when other
/// clients are connected, and noted for the writer.
async fn take_record(s: &mut Session, mark: usize, fields: RawMeta, printed: usize, coerced: bool) {
    let Some(start) = cover_record(s, mark).await else {
        return;
    };
    // With other clients connected too, the single writer is the
    // one to spare: index facts are computed here, in parallel.
    // A lone connection leaves them to the otherwise idle writer,
    // so the two halves of the pipeline stay balanced.
    let facts = (s
        .shared
        .connections
        .load(std::sync::atomic::Ordering::Relaxed)
        > 1)
    .then(|| {
        index::facts(
            &s.chunk[start..],
            &fields,
            &mut s.scratch,
            &mut s.chunk_timings,
        )
    });
    // In range: the chunk is handed over past 1 MiB and a
    // record is at most --max-record-bytes (<= 3 GiB).
    s.chunk_records.push(RecordMeta {
        start: start as u32,
        len: printed as u32,
        fields,
        facts,
    });
    s.chunk_coerced += u64::from(coerced);
}

/// The members of a request line the formatter just located (keys as
/// decoded, values as raw slices of `bytes`), without the `logged_at` it
/// added.
fn request_members<'a>(s: &Session, bytes: &'a [u8]) -> Vec<protocol::Member<'a>> {
    s.fmt
        .fields
        .iter()
        .filter(|t| !t.key_in.is_empty())
        .map(|t| {
            let key = String::from_utf8_lossy(&s.chunk[t.key_out.clone()]).into_owned();
            (key, &bytes[t.value_in.clone()])
        })
        .collect()
}

/// One line: a record (formatted into the chunk), a request, or an error.
async fn line(s: &mut Session, no: u64, raw: &[u8]) {
    let bytes = trim_line(raw);
    if bytes.trim_ascii().is_empty() {
        return;
    }
    if let Some(word) = protocol::bare_word(bytes) {
        let req = protocol::parse_bare(word);
        return request(s, no, req).await;
    }
    // UTF-8 is checked by the formatter, inside strings, where it matters;
    // a non-UTF-8 byte elsewhere is reported as invalid_utf8 too.
    let mark = s.chunk.len();
    let formatted = s.fmt.record_within(
        bytes,
        RECORD_PREFIX,
        s.logged_at.as_bytes(),
        &mut s.chunk,
        MAX_RECORD_DEPTH + 2,
    );
    match formatted {
        Ok(f) => {
            let start = mark + RECORD_PREFIX.len();
            let fields = RawMeta::from_output(&s.chunk, &s.fmt.fields, start);
            let is_request = fields.has_op();
            let printed = s.chunk.len() - start;
            if !is_request && f.depth > MAX_RECORD_DEPTH {
                s.chunk.truncate(mark);
                let e = ProtocolError::new(
                    ErrorCode::TooDeep,
                    format!("nesting deeper than {MAX_RECORD_DEPTH} levels"),
                );
                queue(s, Reply::Now(e.reply(no))).await;
            } else if !is_request && printed > s.shared.max_record {
                s.chunk.truncate(mark);
                let e = too_large(
                    format!("pretty-printed, the record takes {printed} bytes"),
                    s.shared.max_record,
                );
                queue(s, Reply::Now(e.reply(no))).await;
            } else if !is_request {
                take_record(s, mark, fields, printed, f.coerced).await;
            } else {
                let members = request_members(s, bytes);
                s.chunk.truncate(mark);
                let req = protocol::parse_request(&members);
                request(s, no, req).await;
            }
        }
        Err(e) => {
            let mut err = ProtocolError::from_json(&e);
            // A request refused as a whole for one job nested too deeply
            // names that job, as the per-job checks do.
            if let crate::json::JsonError::TooDeep { offset } = e
                && let Some(i) = job_at(bytes, offset)
            {
                err.message = format!(
                    "job {i}: {}; nothing from this request was logged",
                    err.message
                );
            }
            queue(s, Reply::Now(err.reply(no))).await
        }
    }
}

/// A request: each operation's part on the connection, in turn (parsing
/// is the op's own, in `ops/`; answers from the index are written by
/// `ops::write` on the write side).
async fn request(s: &mut Session, no: u64, req: Result<Request<'_>, ProtocolError>) {
    let req = match req {
        Ok(r) => r,
        Err(e) => return queue(s, Reply::Now(e.reply(no))).await,
    };
    match req {
        Request::Log { jobs, ack } => log_jobs(s, no, &jobs, ack).await,
        Request::Flush => flush(s, no).await,
        Request::Ping => ping(s, no).await,
        Request::Stats {
            filter,
            include_pending,
        } => stats(s, no, filter, include_pending).await,
        Request::Jobs {
            filter,
            paging,
            fields,
        } => {
            let q = Query::Jobs {
                filter,
                paging,
                fields,
            };
            query_reply(s, no, q, true).await;
        }
        Request::ExportCsv { filter, paging } => {
            query_reply(s, no, Query::ExportCsv { filter, paging }, true).await;
        }
        Request::RetryCandidates { limit } => {
            query_reply(s, no, Query::RetryCandidates { limit }, true).await;
        }
        Request::Snapshot => query_reply(s, no, Query::Snapshot, true).await,
        Request::Subscribe { include_pending } => subscribe(s, include_pending).await,
        Request::Clear => clear(s, no).await,
    }
}

/// `log` and `log_batch`: the jobs formatted into a chunk of their own,
/// all or none, and handed to the writer after what came before.
async fn log_jobs(s: &mut Session, no: u64, jobs: &[&[u8]], ack: bool) {
    // Records sent earlier on this connection go first.
    send_chunk(s, None).await;
    let mut data = Vec::new();
    let mut metas = Vec::with_capacity(jobs.len());
    let mut timings = Vec::new();
    let mut coerced = 0u64;
    for (i, job) in jobs.iter().enumerate() {
        let start = data.len() + RECORD_PREFIX.len();
        match s
            .fmt
            .record(job, RECORD_PREFIX, s.logged_at.as_bytes(), &mut data)
        {
            Ok(_) if data.len() > s.shared.max_record => {
                let mut e = too_large(
                    format!(
                        "pretty-printed, the first {} jobs take {} bytes",
                        i + 1,
                        data.len()
                    ),
                    s.shared.max_record,
                );
                e.message.push_str("; nothing from this request was logged");
                return queue(s, Reply::Now(e.reply(no))).await;
            }
            Ok(f) => {
                coerced += u64::from(f.coerced);
                let fields = RawMeta::from_output(&data, &s.fmt.fields, start);
                let facts = index::facts(&data[start..], &fields, &mut s.scratch, &mut timings);
                metas.push(RecordMeta {
                    start: start as u32,
                    len: (data.len() - start) as u32,
                    fields,
                    facts: Some(facts),
                });
            }
            Err(e) => {
                let mut err = ProtocolError::from_json(&e);
                err.message = format!(
                    "job {i}: {}; nothing from this request was logged",
                    err.message
                );
                return queue(s, Reply::Now(err.reply(no))).await;
            }
        }
    }
    let n = jobs.len() as u64;
    s.chunk = data;
    s.chunk_records = metas;
    s.chunk_timings = timings;
    // (The old, empty chunk buffer is dropped: a log request is rare
    // next to plain records.)
    s.chunk_coerced = coerced;
    let ok = reply_line(&serde_json::json!({"ok": true, "logged": n}));
    if ack {
        let (tx, rx) = oneshot::channel();
        if send_chunk(s, Some(tx)).await {
            queue(s, Reply::WhenDurable { rx, ok, line: no }).await;
        } else {
            queue(s, Reply::Now(stopping_error().reply(no))).await;
        }
    } else if send_chunk(s, None).await {
        queue(s, Reply::Now(ok)).await;
    } else {
        queue(s, Reply::Now(stopping_error().reply(no))).await;
    }
}

/// `flush`: answered once everything accepted before is durable.
async fn flush(s: &mut Session, no: u64) {
    send_chunk(s, None).await;
    let (tx, rx) = oneshot::channel();
    let ok = reply_line(&serde_json::json!({"ok": true}));
    if s.shared.tx.send(Command::Flush(tx)).await.is_ok() {
        queue(s, Reply::WhenDurable { rx, ok, line: no }).await;
    } else {
        queue(s, Reply::Now(stopping_error().reply(no))).await;
    }
}

/// `ping`: the writer's status, asked for by the write side.
async fn ping(s: &mut Session, no: u64) {
    // Answered by the write side when its turn comes, so the
    // counts follow every earlier request on this connection (a
    // `flush`, an ack, a `clear` sent just before without waiting
    // for its reply). This side reads on meanwhile: waiting here
    // for those replies would stop a client that sends everything
    // before it reads anything.
    send_chunk(s, None).await;
    queue(s, Reply::Ping { line: no }).await;
}

/// `stats`: answered here from the shared cache when it can be, else by
/// the writer.
async fn stats(s: &mut Session, no: u64, filter: crate::query::Filter, include_pending: bool) {
    // By default over durable records only: the writer writes
    // everything accepted first (so the answer also counts every
    // record sent before it here). With `include_pending`, over
    // every accepted record, at once; filtered ones read timings
    // back from the file, so this connection's records are
    // flushed first.
    let unfiltered = query::is_unfiltered(&filter);
    if unfiltered && !include_pending {
        // Answered here, without the writer, when the shared reply
        // is current and covers all our records (see StatsCache).
        send_chunk(s, None).await;
        let ours_indexed = s.indexed.load(std::sync::atomic::Ordering::Acquire) == s.sent;
        if ours_indexed && let Some(line) = s.shared.stats.current() {
            return queue(s, Reply::Now(line.to_vec())).await;
        }
    }
    let q = Query::Stats {
        filter,
        include_pending,
    };
    query_reply(s, no, q, include_pending && !unfiltered).await;
}

/// `subscribe`: the connection follows new records from here on.
async fn subscribe(s: &mut Session, include_pending: bool) {
    send_chunk(s, None).await;
    let rx = if include_pending {
        s.shared.events.accepted.subscribe()
    } else {
        s.shared.events.durable.subscribe()
    };
    queue(s, Reply::Subscribed(rx)).await;
}

/// `clear`, for a client allowed to (decided at connect).
async fn clear(s: &mut Session, no: u64) {
    if !s.may_clear {
        let e = ProtocolError::new(
            ErrorCode::Forbidden,
            "clear is reserved to root and the users and groups in joblogd's --admin-uid / \
             --admin-gid; ask its operator to add you there",
        );
        queue(s, Reply::Now(e.reply(no))).await;
        return;
    }
    send_chunk(s, None).await;
    let (tx, rx) = oneshot::channel();
    let clear = Command::Clear(tx, Arc::clone(&s.indexed));
    if s.shared.tx.send(clear).await.is_ok() {
        // Counted like a chunk: our next `stats` waits for it.
        s.sent += 1;
        queue(s, Reply::Cleared { rx, line: no }).await;
    } else {
        queue(s, Reply::Now(stopping_error().reply(no))).await;
    }
}

/// Queues a query. With `durable`, the write side first waits until every
/// record accepted before it is in the file (read-your-writes for answers
/// read back from the file), then asks the writer.
async fn query_reply(s: &mut Session, no: u64, q: Query, durable: bool) {
    send_chunk(s, None).await;
    let flush = if durable {
        let (tx, rx) = oneshot::channel();
        if s.shared.tx.send(Command::Flush(tx)).await.is_err() {
            return queue(s, Reply::Now(stopping_error().reply(no))).await;
        }
        Some(rx)
    } else {
        None
    };
    queue(
        s,
        Reply::Query {
            flush,
            query: q,
            line: no,
        },
    )
    .await;
}

/// Streams new records (`{"record":…}` lines) until the subscriber goes
/// away or the daemon stops. A subscriber that fell behind the ring gets
/// `{"missed":N}` and carries on from the oldest record still there. When
/// shutdown begins the stream ends after the records already queued for
/// it: a subscriber (`joblogctl tail -f`) sends nothing and waits for
/// nothing, so it must not hold the daemon up for the whole grace period.
async fn follow(
    w: &mut BufWriter<OwnedWriteHalf>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<[u8]>>,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    loop {
        let next = tokio::select! {
            next = events.recv() => next,
            // (The guard `wait_for` returns must not live across an await.)
            _ = async { shutdown.wait_for(|stop| *stop).await.is_ok() } => {
                while let Ok(line) = events.try_recv() {
                    w.write_all(&line).await?;
                }
                return w.flush().await;
            }
        };
        let line = match next {
            Ok(line) => line,
            Err(RecvError::Lagged(n)) => {
                w.write_all(format!("{{\"missed\":{n}}}\n").as_bytes())
                    .await?;
                continue;
            }
            Err(RecvError::Closed) => return w.flush().await,
        };
        w.write_all(&line).await?;
        // Write whatever else is already queued, then flush once.
        loop {
            match events.try_recv() {
                Ok(line) => w.write_all(&line).await?,
                Err(TryRecvError::Lagged(n)) => {
                    w.write_all(format!("{{\"missed\":{n}}}\n").as_bytes())
                        .await?
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        w.flush().await?;
    }
}

/// The job (`log`'s, or `log_batch`'s by index) that byte `offset` of a
/// request line lies in, found by skimming (the line did not validate).
fn job_at(line: &[u8], offset: usize) -> Option<usize> {
    let mut fields = Vec::new();
    if !crate::json::skim_object(line, &mut fields) {
        return None;
    }
    let named = |name: &[u8]| {
        fields
            .iter()
            .find(|(k, _)| index::string_bytes(&line[k.clone()]).is_some_and(|s| *s == *name))
            .map(|(_, v)| v.clone())
    };
    named(b"op")?;
    if let Some(job) = named(b"job") {
        return job.contains(&offset).then_some(0);
    }
    let jobs = named(b"jobs")?;
    let mut elements = Vec::new();
    if !crate::json::skim_array(&line[jobs.clone()], &mut elements) {
        return None;
    }
    elements
        .iter()
        .position(|r| (jobs.start + r.start..jobs.start + r.end).contains(&offset))
}

/// The `ping` reply for the writer's status `st`.
fn ping_line(shared: &Shared, st: &crate::writer::Status) -> Vec<u8> {
    let v = serde_json::json!({
        "ok": true,
        "version": shared.version,
        "records": st.records,
        "pending": st.pending,
        "log_file": st.log_file.display().to_string(),
        "log_id": st.log_id,
        "file_bytes": st.file_bytes,
        "uptime_s": (shared.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "coerced": st.coerced,
        "flushes": st.flushes,
        "failed_flushes": st.failed_flushes,
        "truncations": st.truncations,
        "records_truncated": st.records_truncated,
        "foreign_writes": st.foreign_writes,
        "records_taken_in": st.records_taken_in,
        "records_lost": st.records_lost,
        "last_foreign_write": st.last_foreign_write.as_ref().map(|f| serde_json::json!({
            "at": f.at,
            "records_taken_in": f.records_taken_in,
            "records_lost": f.records_lost,
            "copy": f.copy.as_ref().map(|p| p.display().to_string()),
        })),
        "last_error": st.last_error,
        "index_bytes": st.index_bytes,
        "log_file_at_path": st.log_file_at_path,
        "socket_at_path": shared.socket_file.is_at_path(),
    });
    reply_line(&v)
}

fn stopping_error() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::ShuttingDown,
        "the daemon is shutting down; nothing from this request was logged",
    )
}

/// `record_too_large`, naming the limit and the flag that sets it.
fn too_large(what: String, max_record: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::RecordTooLarge,
        format!("{what}, more than --max-record-bytes ({max_record})"),
    )
}

/// Hands the chunk (and `done`, answered when it is durable) to the writer,
/// after taking its bytes from the unflushed budget; waits while the budget
/// is spent (backpressure). Returns false if the writer is gone.
/// Permits are taken ahead in pieces of this size (or the budget's
/// sixteenth, if smaller): one semaphore operation per piece, not per
/// record.
const PERMIT_PIECE: usize = 64 << 10;

/// Makes the permits held cover the first `bytes` of the chunk (at most
/// the whole budget: a chunk larger than that takes all of it), taking
/// more without waiting. False if the budget has not that much left.
fn cover(s: &mut Session, bytes: usize) -> bool {
    let total = s.shared.budget_total;
    let need = bytes.min(total);
    let held = s
        .permit
        .as_ref()
        .map_or(0, OwnedSemaphorePermit::num_permits);
    if held >= need {
        return true;
    }
    let deficit = need - held;
    let ahead = deficit.max(PERMIT_PIECE.min(total / 16)).min(total - held);
    let budget = &s.shared.budget;
    let got = [ahead, deficit].into_iter().find_map(|n| {
        let n = u32::try_from(n).ok()?;
        Arc::clone(budget).try_acquire_many_owned(n).ok()
    });
    match (got, s.permit.as_mut()) {
        (None, _) => false,
        (Some(p), Some(held)) => {
            held.merge(p);
            true
        }
        (Some(p), None) => {
            s.permit = Some(p);
            true
        }
    }
}

/// Takes budget permits for the record just formatted at `mark..` of the
/// chunk; returns where it now starts (after its separator). When the
/// budget is used up, the records before it are handed over first (they
/// hold permits, and only the writer can give permits back) and then this
/// one waits, alone, so a connection held back by a slow disk holds at most
/// one record outside the budget. None if the daemon is stopping.
async fn cover_record(s: &mut Session, mark: usize) -> Option<usize> {
    // Past the whole budget a chunk is handed over before it grows: only a
    // record alone may be larger than the budget (it then takes all of it).
    let fits = s.chunk.len() <= s.shared.budget_total || mark == 0;
    if (fits && cover(s, s.chunk.len())) || *s.shared.expired.borrow() {
        return Some(mark + RECORD_PREFIX.len());
    }
    let record = s.chunk.split_off(mark);
    if !s.chunk_records.is_empty() && !send_chunk(s, None).await {
        return None;
    }
    // Nothing held while waiting: permits kept back by waiting connections
    // could otherwise add up to the whole budget, with nothing to flush.
    s.permit = None;
    s.permit = wait_for_budget(s, record.len()).await;
    let mark = s.chunk.len();
    s.chunk.extend_from_slice(&record);
    Some(mark + RECORD_PREFIX.len())
}

/// Waits for permits for `bytes` (at most the whole budget), holding none
/// meanwhile. None once the shutdown's grace period has run out: the
/// records go to the writer without permits then (see [`Shared::expired`]);
/// what a connection holds is bounded by its buffers.
async fn wait_for_budget(s: &Session, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let want = u32::try_from(bytes.clamp(1, s.shared.budget_total)).unwrap_or(u32::MAX);
    let mut expired = s.shared.expired.subscribe();
    tokio::select! {
        // The semaphore is never closed, so acquiring cannot fail.
        p = Arc::clone(&s.shared.budget).acquire_many_owned(want) => p.ok(),
        _ = expired.wait_for(|e| *e) => None,
    }
}

async fn send_chunk(s: &mut Session, done: Option<oneshot::Sender<Durable>>) -> bool {
    if s.writer_gone {
        if !s.chunk_records.is_empty() {
            tracing::warn!(
                records = s.chunk_records.len(),
                "Records received after the writer stopped were not logged."
            );
        }
        s.chunk.clear();
        s.chunk_records.clear();
        s.chunk_timings.clear();
        s.permit = None;
        return false;
    }
    if s.chunk_records.is_empty() && done.is_none() {
        s.permit = None;
        return true;
    }
    // Records take their permits as they are accepted (`cover_record`); a
    // `log_batch`'s jobs arrive here whole and take theirs now, waiting
    // with nothing else held.
    if !cover(s, s.chunk.len()) && !*s.shared.expired.borrow() {
        s.permit = None;
        s.permit = wait_for_budget(s, s.chunk.len()).await;
    }
    // The chunk's share goes with it; what was taken ahead goes back, so
    // an idle connection holds no permits.
    let used = s.chunk.len().min(s.shared.budget_total);
    let permit = s
        .permit
        .take()
        .and_then(|mut p| match p.num_permits() > used {
            true => p.split(used),
            false => Some(p),
        });
    // The next chunk starts with room for as much as this one held, so a
    // busy connection does not regrow its buffer from nothing every read.
    let next = s
        .shared
        .pool
        .take(s.chunk.len().clamp(4096, CHUNK_SEND_BYTES + READ_CHUNK));
    let ing = Ingest {
        data: std::mem::replace(&mut s.chunk, next),
        records: std::mem::take(&mut s.chunk_records),
        timings: std::mem::take(&mut s.chunk_timings),
        coerced: std::mem::take(&mut s.chunk_coerced),
        permit,
        done,
        indexed: Arc::clone(&s.indexed),
    };
    if s.shared.tx.send(Command::Ingest(ing)).await.is_err() {
        s.writer_gone = true;
        return false;
    }
    s.sent += 1;
    true
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
    let half_grace = s.shared.grace / 2;
    let mut shutdown = s.shutdown.clone();
    let mut expired = s.shared.expired.subscribe();
    // Counted from when shutdown began (as this connection saw it), not
    // from this reply: a client reading a reply now and then must not
    // postpone it reply by reply.
    if *s.shutdown.borrow() {
        s.stopping_since.get_or_insert_with(Instant::now);
    }
    let since = s.stopping_since;
    let give_up = async move {
        let half = async {
            let since = match since {
                Some(t) => t,
                None => {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                    Instant::now()
                }
            };
            tokio::time::sleep_until((since + half_grace).into()).await;
        };
        tokio::select! {
            () = half => {}
            _ = expired.wait_for(|e| *e) => {}
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

/// `ping`'s reply: the writer's status, asked for now.
async fn ping_reply(shared: &Shared, line: u64) -> Vec<u8> {
    let (stx, srx) = oneshot::channel();
    let status = match shared.tx.send(Command::Status(stx)).await {
        Ok(()) => srx.await.ok(),
        Err(_) => None,
    };
    match status {
        Some(st) => ping_line(shared, &st),
        None => stopping_error().reply(line),
    }
}

/// Asks the writer a query, once `flush` (if any) says every record
/// accepted before it is durable.
async fn ask(
    tx: &mpsc::Sender<Command>,
    flush: Option<oneshot::Receiver<Durable>>,
    query: Query,
) -> Result<crate::ops::Answer, ProtocolError> {
    let flushed = match flush {
        Some(f) => f.await.unwrap_or_else(|_| Err("the daemon stopped".into())),
        None => Ok(()),
    };
    if let Err(msg) = flushed {
        return Err(ProtocolError::new(ErrorCode::WriteFailed, msg));
    }
    let (atx, arx) = oneshot::channel();
    match tx.send(Command::Query(query, atx)).await {
        Ok(()) => arx.await.map_err(|_| stopping_error()),
        Err(_) => Err(stopping_error()),
    }
}

/// Writes an answer (flushing the socket's buffer when nothing else is
/// queued); false when the connection is broken from then on.
async fn send_answer(
    w: &mut BufWriter<OwnedWriteHalf>,
    answer: crate::ops::Answer,
    nothing_queued: bool,
) -> bool {
    let res = match crate::ops::write(w, answer).await {
        Ok(()) if nothing_queued => w.flush().await,
        r => r,
    };
    let Err(e) = res else {
        return true;
    };
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, WriteZero};
    if matches!(e.kind(), BrokenPipe | ConnectionReset | WriteZero) {
        tracing::debug!(error = %e, "Client stopped reading an answer.");
    } else {
        // Reading records back failed (the file cut short underneath the
        // daemon, a disk error) with part of the answer perhaps written:
        // end the connection, so the client sees end of file rather than
        // waiting forever.
        tracing::warn!(error = %e, "Reading records back from the log file failed; closing this connection.");
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
    false
}

async fn write_side(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Reply>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tx = &shared.tx;
    let mut w = BufWriter::new(wr);
    let mut broken = false;
    while let Some(r) = rx.recv().await {
        let bytes = match r {
            Reply::Now(b) => b,
            Reply::Ping { line } => ping_reply(&shared, line).await,
            Reply::Query { flush, query, line } => match ask(tx, flush, query).await {
                Err(e) => e.reply(line),
                Ok(crate::ops::Answer::Failed(msg)) => {
                    ProtocolError::new(ErrorCode::WriteFailed, msg).reply(line)
                }
                Ok(_) if broken => continue,
                Ok(answer) => {
                    broken = !send_answer(&mut w, answer, rx.is_empty()).await;
                    continue;
                }
            },
            Reply::Subscribed(mut events) => {
                let ok = reply_line(&serde_json::json!({"ok": true, "subscribed": true}));
                if broken || w.write_all(&ok).await.is_err() || w.flush().await.is_err() {
                    broken = true;
                    continue;
                }
                if let Err(e) = follow(&mut w, &mut events, &mut shutdown).await {
                    tracing::debug!(error = %e, "Subscriber gone.");
                }
                broken = true;
                continue;
            }
            Reply::Cleared { rx, line } => match rx.await {
                Ok(Ok(archive)) => reply_line(
                    &serde_json::json!({"ok": true, "archive": archive.display().to_string()}),
                ),
                Ok(Err(msg)) => ProtocolError::new(ErrorCode::WriteFailed, msg).reply(line),
                Err(_) => stopping_error().reply(line),
            },
            Reply::WhenDurable { rx, ok, line } => match rx.await {
                Ok(Ok(())) => ok,
                Ok(Err(msg)) => ProtocolError::new(ErrorCode::WriteFailed, msg).reply(line),
                Err(_) => ProtocolError::new(
                    ErrorCode::WriteFailed,
                    "the daemon stopped before these records were durable",
                )
                .reply(line),
            },
        };
        if broken {
            // The client stopped reading; keep consuming so the read half
            // is never blocked by replies nobody will read.
            continue;
        }
        let mut res = w.write_all(&bytes).await;
        if res.is_ok() && rx.is_empty() {
            res = w.flush().await;
        }
        if let Err(e) = res {
            tracing::debug!(error = %e, "Client stopped reading replies.");
            broken = true;
        }
    }
    if !broken {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}
