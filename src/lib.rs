//! joblogd: a sidecar daemon that takes newline-delimited JSON job records
//! from many local writers over a Unix socket and appends them, in batches,
//! to one crash-safe JSON array file.
//!
//! Layout (see ARCHITECTURE.md for the invariants):
//! - [`config`]: command line and validated settings.
//! - [`server`]: socket lock, bind, accept loop, shutdown fan-out.
//! - [`handler`]: one connection: lines in, records to the writer, replies out.
//! - [`connection`]: newline framing with a maximum line length.
//! - [`protocol`]: request parsing, replies, error codes.
//! - [`json`]: one-pass validation and Python-compatible pretty-printing.
//! - [`batcher`]: the single writer task: batching, flush policy, acks.
//! - [`store`]: the data file: open, lock, scan, recover, append.
//! - [`time`]: `logged_at` timestamps as Python prints them.
//! - [`signals`]: SIGTERM/SIGINT into a future.

pub mod batcher;
pub mod config;
pub mod connection;
pub mod handler;
pub mod index;
pub mod json;
pub mod protocol;
pub mod query;
pub mod server;
pub mod signals;
pub mod store;
pub mod time;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};

use crate::batcher::{BatcherConfig, Status};
use crate::config::Config;
use crate::index::Index;
use crate::store::Store;

/// Depth of the connection → writer channel, in messages (each message is a
/// read's worth of records). Bytes are bounded separately by the budget.
const COMMAND_QUEUE: usize = 1024;

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

/// Runs the daemon until `shutdown` completes and everything received is
/// flushed. Returns the final counters.
///
/// # Errors
/// Start-up failures (socket in use, log file locked or unreadable).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<Status, Error> {
    let started = Instant::now();
    let lock = server::lock_socket(&config.socket).map_err(Error::Bind)?;

    let path = config.log_file.clone();
    let fsync = config.fsync;
    let opened = tokio::task::spawn_blocking(move || {
        let mut index = Index::default();
        let r = Store::open(&path, fsync, |rec, bytes, meta| {
            index.add(rec.offset, bytes, meta)
        });
        r.map(|(store, recovery)| (store, recovery, index))
    })
    .await
    .map_err(|e| Error::Writer(e.to_string()))?;
    let (store, recovery, index) = opened.map_err(Error::Store)?;
    if let Some(problem) = &recovery.problem {
        tracing::warn!(
            log_file = %config.log_file.display(),
            problem = %problem,
            kept_records = recovery.records,
            cut_bytes = recovery.cut_bytes,
            original_copy = %recovery.corrupt_copy.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Log file was not a valid JSON array; kept the complete records and re-closed it."
        );
    }
    tracing::info!(
        log_file = %config.log_file.display(),
        records = recovery.records,
        bytes = recovery.scanned_bytes,
        took_ms = started.elapsed().as_millis() as u64,
        created = recovery.created,
        "Log file ready."
    );

    let bound = server::bind(lock, config.socket_mode).map_err(Error::Bind)?;
    tracing::info!(socket = %bound.path().display(), "Listening.");

    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let writer = tokio::spawn(batcher::run(
        store,
        index,
        rx,
        BatcherConfig {
            flush_interval: config.flush_interval,
            max_records: config.batch_max_records,
            max_bytes: config.batch_max_bytes,
            shutdown_retry: config.shutdown_timeout,
        },
    ));
    let shared = Arc::new(handler::Shared {
        tx,
        budget: Arc::new(Semaphore::new(config.max_pending_bytes)),
        budget_total: config.max_pending_bytes,
        max_line: config.max_line_bytes,
        started,
        version: env!("CARGO_PKG_VERSION"),
    });
    let bound = server::serve(
        bound,
        shared,
        config.max_connections,
        config.shutdown_timeout,
        shutdown,
    )
    .await;
    // Every connection is gone, so every sender is dropped: the writer sees
    // the channel close, flushes, syncs and returns.
    let (store, status) = writer.await.map_err(|e| Error::Writer(e.to_string()))?;
    drop(store); // releases the file lock
    drop(bound); // removes the socket file, last
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

fn store_failed(status: &Status) -> bool {
    status.last_error.is_some() && status.pending > 0
}
