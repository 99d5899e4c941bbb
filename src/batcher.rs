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
//! **Invariant:** a waiter is answered `Ok` only after every record accepted
//! before it is durable. A failed flush answers no one: the batch goes back
//! in front of the next one and is written again, whole, after a backoff.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::sleep_until;

use crate::store::Store;

/// Answer to a waiter: `Err` holds a short reason when the records could not
/// be made durable before the daemon gave up (only at shutdown).
pub type Durable = Result<(), String>;

/// Records from one connection, already pretty-printed and framed (each
/// preceded by `,\n  `).
#[derive(Debug)]
pub struct Ingest {
    pub data: Vec<u8>,
    pub records: u64,
    /// Records in `data` whose `NaN`/`Infinity` were written as null.
    pub coerced: u64,
    /// Byte budget held by these records until they are durable.
    pub permit: Option<OwnedSemaphorePermit>,
    /// Answered once these records are durable (`ack: true`).
    pub done: Option<oneshot::Sender<Durable>>,
}

/// What connections ask of the writer.
#[derive(Debug)]
pub enum Command {
    Ingest(Ingest),
    /// Answer once everything accepted before is durable.
    Flush(oneshot::Sender<Durable>),
    /// A snapshot of the counters, including records not yet durable.
    Status(oneshot::Sender<Status>),
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
    /// The last write error, cleared by the next successful flush.
    pub last_error: Option<String>,
    pub log_file: PathBuf,
    pub file_bytes: u64,
}

/// Flush policy.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub flush_interval: Duration,
    pub max_records: u64,
    pub max_bytes: usize,
    /// At shutdown, how long to keep retrying a failing disk before giving up.
    pub shutdown_retry: Duration,
}

#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    records: u64,
    permits: Vec<OwnedSemaphorePermit>,
    waiters: Vec<oneshot::Sender<Durable>>,
    /// When its first record arrived: the flush timer starts here.
    since: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Puts `front` (a batch that failed to write) before `self`.
    fn prepend(&mut self, mut front: Batch) {
        front.buf.extend_from_slice(&self.buf);
        self.buf = front.buf;
        self.records += front.records;
        self.permits.append(&mut front.permits);
        front.waiters.append(&mut self.waiters);
        self.waiters = front.waiters;
        self.since = front.since.or(self.since);
    }
}

type FlushOutcome = (Store, Batch, Result<(), crate::store::StoreError>, Duration);

/// Runs until the channel closes and everything received is flushed (or,
/// with a failing disk, until `shutdown_retry` has passed). Returns the
/// store and the final counters.
pub async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Command>,
    cfg: BatcherConfig,
) -> (Option<Store>, Status) {
    let mut status = Status {
        records: store.records(),
        log_file: store.path().to_owned(),
        file_bytes: store.len(),
        ..Status::default()
    };
    let mut idle: Option<Store> = Some(store);
    let mut current = Batch::default();
    let mut inflight: Option<tokio::task::JoinHandle<FlushOutcome>> = None;
    let mut inflight_records = 0u64;
    // Waiters for a flush that found only an in-flight batch to wait for.
    let mut inflight_waiters: Vec<oneshot::Sender<Durable>> = Vec::new();
    let mut closed = false;
    let mut backoff = Duration::ZERO;
    let mut retry_at: Option<Instant> = None;
    let mut closed_at: Option<Instant> = None;

    loop {
        let now = Instant::now();
        let in_backoff = retry_at.is_some_and(|t| now < t);
        if idle.is_some() && !current.is_empty() && !in_backoff {
            let due = closed
                || !current.waiters.is_empty()
                || current.records >= cfg.max_records
                || current.buf.len() >= cfg.max_bytes
                || current.since.is_some_and(|s| now >= s + cfg.flush_interval);
            if due {
                let batch = std::mem::take(&mut current);
                inflight_records = batch.records;
                let Some(mut store) = idle.take() else {
                    continue; // unreachable: checked is_some above
                };
                inflight = Some(tokio::task::spawn_blocking(move || {
                    let mut batch = batch;
                    let t0 = Instant::now();
                    let res = store.append(&mut batch.buf, batch.records);
                    (store, batch, res, t0.elapsed())
                }));
            }
        }
        if closed && inflight.is_none() {
            if current.is_empty() {
                break;
            }
            if closed_at.is_some_and(|t| now >= t + cfg.shutdown_retry) {
                let msg = format!(
                    "gave up writing {} records at shutdown: {}",
                    current.records,
                    status.last_error.as_deref().unwrap_or("unknown error")
                );
                tracing::error!(
                    records = current.records,
                    "Gave up flushing at shutdown; records not written."
                );
                for w in current.waiters.drain(..) {
                    let _ = w.send(Err(msg.clone()));
                }
                break;
            }
        }
        // Next timer: the batch's interval, or the end of a backoff.
        let deadline = if idle.is_some() && !current.is_empty() {
            match retry_at {
                Some(t) if now < t => Some(t),
                _ => current.since.map(|s| s + cfg.flush_interval),
            }
        } else {
            None
        };
        tokio::select! {
            biased;
            joined = async { match inflight.as_mut() { Some(h) => h.await, None => std::future::pending().await } }, if inflight.is_some() => {
                inflight = None;
                let (store, mut batch, res, took) = match joined {
                    Ok(v) => v,
                    Err(e) => {
                        // The blocking task panicked: a broken invariant in
                        // the store. Nothing sane is left to write with.
                        tracing::error!(error = %e, "Writer task failed; stopping.");
                        return (None, status);
                    }
                };
                status.file_bytes = store.len();
                idle = Some(store);
                match res {
                    Ok(()) => {
                        status.records += batch.records;
                        status.flushes += 1;
                        status.last_error = None;
                        backoff = Duration::ZERO;
                        retry_at = None;
                        tracing::debug!(records = batch.records, bytes = batch.buf.len(), took_us = took.as_micros() as u64, "Flushed batch.");
                        for w in batch.waiters.drain(..).chain(inflight_waiters.drain(..)) {
                            let _ = w.send(Ok(()));
                        }
                        // Permits drop with `batch`: the byte budget is free.
                    }
                    Err(e) => {
                        status.failed_flushes += 1;
                        status.last_error = Some(e.to_string());
                        backoff = (backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
                        retry_at = Some(Instant::now() + backoff);
                        tracing::error!(error = %e, records = batch.records, retry_in_ms = backoff.as_millis() as u64, "Flush failed; keeping the batch to write again.");
                        batch.waiters.append(&mut inflight_waiters);
                        current.prepend(batch);
                    }
                }
                inflight_records = 0;
            }
            cmd = rx.recv(), if !closed => match cmd {
                None => {
                    closed = true;
                    closed_at = Some(Instant::now());
                }
                Some(Command::Ingest(ing)) => {
                    if current.since.is_none() && ing.records > 0 {
                        current.since = Some(Instant::now());
                    }
                    current.buf.extend_from_slice(&ing.data);
                    current.records += ing.records;
                    status.coerced += ing.coerced;
                    current.permits.extend(ing.permit);
                    if let Some(done) = ing.done {
                        if current.is_empty() {
                            // Nothing of its own to write (empty log_batch):
                            // durable once everything before it is.
                            if inflight.is_some() {
                                inflight_waiters.push(done);
                            } else {
                                let _ = done.send(Ok(()));
                            }
                        } else {
                            current.waiters.push(done);
                        }
                    }
                }
                Some(Command::Flush(done)) => {
                    if !current.is_empty() {
                        current.waiters.push(done);
                    } else if inflight.is_some() {
                        inflight_waiters.push(done);
                    } else {
                        let _ = done.send(Ok(()));
                    }
                }
                Some(Command::Status(reply)) => {
                    let mut s = status.clone();
                    s.pending = current.records + inflight_records;
                    let _ = reply.send(s);
                }
            },
            _ = async { match deadline { Some(d) => sleep_until(d.into()).await, None => std::future::pending().await } }, if deadline.is_some() => {}
        }
    }
    if let Some(Err(e)) = idle.as_ref().map(Store::sync) {
        tracing::error!(error = %e, "Final sync failed.");
    }
    (idle, status)
}
