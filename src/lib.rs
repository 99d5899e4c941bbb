//! joblogd: a sidecar daemon that takes newline-delimited JSON job records
//! from many local writers over a Unix socket and appends them, in batches,
//! to one crash-safe JSON array file.
//!
//! Layout (see ARCHITECTURE.md for the invariants):
//! - [`config`]: command line and validated settings; `config::tuning`, the
//!   compile-time tuning constants.
//! - [`server`]: socket lock, bind, accept loop, shutdown fan-out.
//! - [`conn`]: one connection: lines in (framed by [`conn::lines`]), records
//!   to the writer, replies out.
//! - [`protocol`]: the wire types, error codes and the one rule that tells
//!   a request from a record; [`ops`]: the registry of operations and each
//!   operation's parsing, query and answer.
//! - [`json`]: one-pass validation and Python-compatible pretty-printing.
//! - [`writer`]: the single writer task: batching, the flush policy
//!   (`writer::policy`), acks.
//! - [`store`]: the data file: open, lock, scan, recover, append.
//! - [`time`]: `logged_at` timestamps as Python prints them.
//! - [`signals`]: SIGTERM/SIGINT into a future, SIGHUP into a channel;
//!   [`shutdown`]: the stop as connections see it (begun, grace, last call).
//! - [`systemd`]: sd_notify and socket activation, without libsystemd.
//! - [`access`]: peer credentials, allowed users and groups, admins.
//! - [`index`], [`query`]: the in-memory index, statistics and queries.
//! - [`metrics`]: the counters behind the `metrics` operation, and the
//!   `--metrics-textfile` writer.

// The library's surface is what the two binaries use (`run`, `config`,
// `signals`, `systemd`, and for joblogctl the record printer and the
// request rule re-exported below), plus `dev` for the fuzz target and the
// development examples. Everything else is the daemon's own: the modules
// are `pub(crate)`, and `unreachable_pub` keeps an item from claiming more.
#![warn(unreachable_pub)]

pub(crate) mod access;
pub mod config;
pub(crate) mod conn;
pub(crate) mod index;
pub(crate) mod json;
pub(crate) mod metrics;
pub(crate) mod ops;
pub(crate) mod protocol;
pub(crate) mod query;
pub(crate) mod server;
pub(crate) mod shutdown;
pub mod signals;
pub(crate) mod store;
pub mod systemd;
pub(crate) mod time;
pub(crate) mod writer;

/// joblogctl prints records exactly as the file holds them, and sends as
/// records only lines the daemon takes for records.
pub use json::{Formatter, JsonError};
pub use protocol::is_request;

/// What the fuzz target (`fuzz/oracle.rs`, also built by
/// `tests/fuzz_corpus.rs`) and the development examples (the bench, the
/// crash and power-cut harnesses) reach into. Not an API for other
/// programs: it changes with the daemon.
#[doc(hidden)]
pub mod dev {
    pub use crate::conn::lines::trim_line;
    pub use crate::json::array_elements;
    pub use crate::ops::offline::answer as answer_offline;
    pub use crate::ops::{parse_bare, parse_request};
    pub use crate::protocol::bare_word;
    pub use crate::store::commits::committed_ends;
    pub use crate::store::{FileOptions, FsyncPolicy, PageCache, Store};
}

use std::future::Future;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::writer::{BatcherConfig, Status};

use crate::config::tuning::COMMAND_QUEUE;

/// Why the daemon could not start (or stopped abnormally).
#[derive(Debug)]
pub enum Error {
    Bind(server::BindError),
    Store(store::StoreError),
    /// The writer task died: a bug.
    Writer(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Bind(e) => e.fmt(f),
            Error::Store(e) => e.fmt(f),
            Error::Writer(e) => write!(f, "writer failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// What `main` hands over besides the settings: things that must be taken
/// before the runtime starts.
#[derive(Debug, Default)]
pub struct Startup {
    /// A listening socket passed by systemd socket activation.
    pub activated: Option<OwnedFd>,
    /// One message per SIGHUP: reopen the log file path.
    pub reopen: Option<mpsc::UnboundedReceiver<()>>,
}

/// Runs the daemon until `shutdown` completes and everything received is
/// flushed. Returns the final counters.
///
/// # Errors
/// Start-up failures (socket in use, log file locked or unreadable).
pub async fn run(
    config: Config,
    startup: Startup,
    shutdown: impl Future<Output = ()>,
) -> Result<Status, Error> {
    let started = Instant::now();
    // A socket passed by systemd is systemd's to manage: no lock file, no
    // stale-socket cleanup, no removal at exit.
    let lock = match startup.activated {
        Some(_) => None,
        None => Some(server::lock_socket(&config.socket).map_err(Error::Bind)?),
    };

    let ids = Arc::new(index::RecordIds::default());
    let (store, index) = open_log(&config, Arc::clone(&ids)).await?;

    let bound = match (startup.activated, lock) {
        (Some(fd), _) => server::adopt(fd, &config.socket).map_err(Error::Bind)?,
        (None, Some(lock)) => server::bind(lock, config.socket_mode).map_err(Error::Bind)?,
        (None, None) => unreachable_lock()?,
    };
    tracing::info!(socket = %bound.path().display(), activated = bound.is_activated(), "Listening.");

    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let events = writer::Events::new();
    let records = store.records();
    let pool = Arc::new(writer::BufferPool::new(config.max_pending_bytes));
    let stats = Arc::new(writer::StatsCache::default());
    let metrics = Arc::new(metrics::Metrics::new());
    let batcher = batcher_config(&config, &pool, &stats, &ids, &metrics);
    let (writer_gone, writer_done_rx) = start_writer(store, index, rx, batcher, events.clone())?;
    // The socket accepts and the log is indexed: ready.
    systemd::notify(&format!("READY=1\nSTATUS=Ready: {records} records"));
    let (rebind_tx, rebind_rx) = mpsc::unbounded_channel();
    let housekeeping = tokio::spawn(housekeeping(
        tx.downgrade(),
        startup.reopen,
        rebind_tx,
        bound.file(),
    ));
    let link = writer::Link {
        tx,
        pool,
        stats,
        events,
    };
    let shared = Arc::new(shared_by_connections(
        &config, &bound, link, ids, metrics, started,
    ));
    let textfile = config.metrics_textfile.clone().map(|path| {
        let file = metrics::textfile::Textfile::new(path);
        let (stop, stopped) = oneshot::channel();
        let every = config.metrics_interval;
        let task = tokio::spawn(metrics_textfile(Arc::clone(&shared), file, every, stopped));
        (stop, task)
    });
    let shutdown = stop_when(shutdown, writer_gone);
    let bound = server::serve(
        bound,
        shared,
        config.max_connections,
        config.shutdown_timeout,
        shutdown,
        rebind_rx,
    )
    .await;
    housekeeping.abort();
    if let Some((stop, task)) = textfile {
        // Its `Shared` holds a sender to the writer: it must be gone
        // before the writer can see the channel close and finish.
        let _ = stop.send(());
        let _ = task.await;
    }
    finish(writer_done_rx, bound).await
}

/// The writer's settings, and what it shares with the connections.
fn batcher_config(
    config: &Config,
    pool: &Arc<writer::BufferPool>,
    stats: &Arc<writer::StatsCache>,
    ids: &Arc<index::RecordIds>,
    metrics: &Arc<metrics::Metrics>,
) -> BatcherConfig {
    BatcherConfig {
        policy: writer::Policy {
            flush_interval: config.flush_interval,
            max_records: config.batch_max_records,
            max_bytes: config.batch_max_bytes,
        },
        shutdown_retry: config.shutdown_timeout,
        pool: Arc::clone(pool),
        stats: Arc::clone(stats),
        ids: Arc::clone(ids),
        metrics: Arc::clone(metrics),
        retention: config.retention.clone(),
    }
}

/// Opens (creates, repairs) the log file and indexes it, on the blocking
/// pool.
/// What every connection shares (see [`conn::Shared`]).
fn shared_by_connections(
    config: &Config,
    bound: &server::Bound,
    writer: writer::Link,
    ids: Arc<index::RecordIds>,
    metrics: Arc<metrics::Metrics>,
    started: Instant,
) -> conn::Shared {
    conn::Shared {
        writer,
        budget: conn::Budget::new(config.max_pending_bytes),
        limits: conn::Limits {
            max_line: config.max_line_bytes,
            max_record: config.max_record_bytes,
        },
        about: conn::About {
            version: env!("CARGO_PKG_VERSION"),
            started,
            socket_file: bound.file(),
        },
        access: access_policy(config, bound),
        ids,
        archived: ops::read_records::Archived {
            live: config.log_file.clone(),
            found: Default::default(),
        },
        connections: Default::default(),
        metrics,
    }
}

async fn open_log(
    config: &Config,
    ids: Arc<index::RecordIds>,
) -> Result<(store::Store, index::Index), Error> {
    if let Some(f) = &config.fault_file {
        tracing::warn!(fault_file = %f.display(), "Fault injection enabled (test seam).");
        let _ = store::FAULT_FILE.set(f.clone());
    }
    let path = config.log_file.clone();
    let fsync = config.fsync;
    let page_cache = config.page_cache;
    let options = store::FileOptions {
        mode: config.file_mode,
        allow_unlocked_fs: config.allow_unlocked_fs,
    };
    tokio::task::spawn_blocking(move || writer::open_log(&path, fsync, page_cache, options, &ids))
        .await
        .map_err(|e| Error::Writer(e.to_string()))?
        .map_err(Error::Store)
}

/// Resolves when the daemon is asked to stop, or when the writer stops on
/// its own (a bug: nothing could be logged any more), and tells systemd.
async fn stop_when(shutdown: impl Future<Output = ()>, writer_gone: Arc<tokio::sync::Notify>) {
    tokio::select! {
        () = shutdown => {}
        () = writer_gone.notified() => {
            tracing::error!("The writer stopped unexpectedly; shutting down.");
        }
    }
    systemd::notify("STOPPING=1\nSTATUS=Stopping: draining connections and flushing");
}

/// The writer's result: the store it hands back (none if it failed) and
/// its last status, or why it could not be waited for.
type WriterDone = oneshot::Receiver<Result<(Option<store::Store>, Status), String>>;

/// Who may connect and who may `clear`, from the options (by default the
/// daemon's own user and the socket directory's group), logged once.
fn access_policy(config: &Config, bound: &server::Bound) -> access::Access {
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    let access = access::Access {
        uids: if config.allow_uid.is_empty() {
            [me].into()
        } else {
            config.allow_uid.iter().copied().collect()
        },
        gids: if config.allow_gid.is_empty() {
            bound.group().into_iter().collect()
        } else {
            config.allow_gid.iter().copied().collect()
        },
        admins: (!config.admin_uid.is_empty() || !config.admin_gid.is_empty()).then(|| {
            access::Admins {
                uids: config.admin_uid.iter().copied().collect(),
                gids: config.admin_gid.iter().copied().collect(),
            }
        }),
        stamp_peer: config.stamp_peer,
    };
    tracing::info!(
        uids = ?access.uids,
        gids = ?access.gids,
        clear = %access.describe_admins(),
        "Access policy: these users and groups may connect, and root always."
    );
    access
}

/// The writer whose result ends up in the returned receiver, and a notice
/// when it ends. If it ever ends on its own (a bug: its task panicked, or
/// its blocking write did), nothing can be logged any more: the daemon
/// shuts down and exits 1, so a supervisor restarts a daemon that works,
/// rather than keep one that refuses every record.
fn start_writer(
    store: store::Store,
    index: index::Index,
    rx: mpsc::Receiver<writer::Command>,
    batcher: BatcherConfig,
    events: writer::Events,
) -> Result<(Arc<tokio::sync::Notify>, WriterDone), Error> {
    let writer = spawn_writer(writer::run(store, index, rx, batcher, events))
        .map_err(|e| Error::Writer(format!("cannot start the writer thread: {e}")))?;
    let writer_gone = Arc::new(tokio::sync::Notify::new());
    let (writer_done_tx, writer_done_rx) = oneshot::channel();
    let gone = Arc::clone(&writer_gone);
    tokio::spawn(async move {
        let res = writer.await;
        gone.notify_one();
        let _ = writer_done_tx.send(res);
    });
    Ok((writer_gone, writer_done_rx))
}

/// The writer's result, once every connection is gone (so every sender is
/// dropped: the writer sees the channel close, flushes, syncs and
/// returns); then the file lock and, last, the socket file go.
async fn finish(writer_done_rx: WriterDone, bound: server::Bound) -> Result<Status, Error> {
    let (store, status) = match writer_done_rx.await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(Error::Writer(e.to_string())),
        Err(_) => return Err(Error::Writer("lost track of the writer".into())),
    };
    let Some(store) = store else {
        // The writer ended without handing the store back: it failed.
        return Err(Error::Writer(
            status
                .last_error
                .unwrap_or_else(|| "the writer stopped unexpectedly".into()),
        ));
    };
    drop(store); // releases the file lock
    drop(bound); // removes the socket file (unless systemd owns it), last
    tracing::info!(
        records = status.records,
        flushes = status.flushes,
        "Stopped."
    );
    if store_failed(&status) {
        return Err(Error::Writer(status.last_error.unwrap_or_default()));
    }
    Ok(status)
}

/// Runs the writer on a thread of its own, with a single-threaded runtime.
///
/// On the shared multi-threaded runtime, a connection that hands over a
/// chunk wakes the writer into its worker's LIFO slot, which other workers
/// cannot steal: formatting and indexing then take turns on one core while
/// the other idles. A thread of its own lets the kernel run the writer
/// beside the connections. The returned handle resolves when the writer
/// returns; a panic on the thread drops the sender and reads as an error.
fn spawn_writer<F>(
    writer: F,
) -> std::io::Result<impl Future<Output = Result<F::Output, String>> + Send + 'static>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // Timers only: the writer does no socket I/O, so it needs no I/O
    // driver (its blocking pool still runs the store's writes).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (done_tx, done_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("joblogd-writer".into())
        .spawn(move || {
            let out = runtime.block_on(writer);
            let _ = done_tx.send(out);
        })?;
    Ok(async move {
        done_rx
            .await
            .map_err(|_| "the writer thread panicked".to_owned())
    })
}

/// Without socket activation the lock is always taken above; this keeps the
/// match total without a panic.
fn unreachable_lock() -> Result<server::Bound, Error> {
    Err(Error::Writer("socket lock missing".into()))
}

/// Periodic `STATUS=` (and `WATCHDOG=1` when systemd asked for it) after
/// the writer answered, so a stuck writer stops the pings; and SIGHUP →
/// reopen. Holds only a weak sender, so it never keeps the writer alive.
async fn housekeeping(
    tx: mpsc::WeakSender<writer::Command>,
    mut reopen: Option<mpsc::UnboundedReceiver<()>>,
    rebind: mpsc::UnboundedSender<()>,
    socket: server::SocketFile,
) {
    let watchdog = systemd::watchdog_interval();
    let every = watchdog.map_or(Duration::from_secs(5), |w| {
        (w / 2).min(Duration::from_secs(5))
    });
    let mut tick = tokio::time::interval(every);
    loop {
        let hup = async {
            match reopen.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {
                let Some(tx) = tx.upgrade() else { return };
                let (stx, srx) = oneshot::channel();
                if tx.send(writer::Command::Status(stx)).await.is_err() {
                    return;
                }
                drop(tx);
                let Ok(st) = srx.await else { return };
                let mut msg = format!("STATUS=Serving: {} records, {} pending", st.records, st.pending);
                if let Some(e) = &st.last_error {
                    msg.push_str(&format!("; write error: {e}"));
                }
                if !st.log_file_at_path {
                    tracing::error!(log_file = %st.log_file.display(), "The log file was renamed or deleted; records go to the old file. Send SIGHUP to reopen the path.");
                    msg.push_str("; log file moved or deleted: send SIGHUP");
                }
                if !socket.is_at_path() {
                    tracing::error!(socket = %socket.path().display(), "The socket file was deleted or replaced; new clients cannot connect. Send SIGHUP to bind it again.");
                    msg.push_str("; socket file deleted: send SIGHUP");
                }
                if watchdog.is_some() {
                    msg.push_str("\nWATCHDOG=1");
                }
                systemd::notify(&msg);
            }
            got = hup => {
                if got.is_none() {
                    reopen = None;
                    continue;
                }
                // `systemctl reload` (SIGHUP) is over only at READY=1: a
                // log rotation's next step (compressing the renamed file)
                // must not start before the records pending for it are in.
                systemd::notify(&systemd::reloading_message("Reloading: checking the log file path"));
                let _ = rebind.send(());
                let Some(tx) = tx.upgrade() else { return };
                let (rtx, rrx) = oneshot::channel();
                if tx.send(writer::Command::Reopen(rtx)).await.is_err() {
                    return;
                }
                drop(tx);
                match rrx.await {
                    Ok(Ok(msg)) => {
                        tracing::info!(result = %msg, "SIGHUP: log file checked.");
                        systemd::notify(&format!("READY=1\nSTATUS=Serving: {msg}"));
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "SIGHUP: reopening the log file failed; still writing the old one.");
                        systemd::notify(&format!("READY=1\nSTATUS=Serving; reopening the log file failed: {e}"));
                    }
                    Err(_) => return,
                }
            }
        }
    }
}
/// `--metrics-textfile`: the metrics written at once, then every `every`,
/// until `stop` (the daemon stops accepting) or the writer is gone; then
/// the file is removed, so a stopped daemon's numbers never pass for
/// current ones (see `metrics::textfile`).
async fn metrics_textfile(
    shared: Arc<conn::Shared>,
    mut file: metrics::textfile::Textfile,
    every: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => match conn::metrics_text(&shared).await {
                // A small file, written beside the target and renamed.
                Some(text) => tokio::task::block_in_place(|| file.write(text.as_bytes())),
                None => break,
            },
        }
    }
    drop(shared);
    tokio::task::block_in_place(|| file.remove());
}

/// The writer gave up records at shutdown (the disk kept failing past
/// `--shutdown-timeout-ms`): the exit status must not say "clean".
fn store_failed(status: &Status) -> bool {
    status.last_error.is_some() && status.pending > 0
}
