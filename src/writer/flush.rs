//! The flush policy and the batches: when the gathered batch is written,
//! what a finished write answers (waiters, the index's durable end), the
//! backoff after a failed one, and the pool of chunk buffers.

use super::*;

/// Chunk buffers whose records are durable, handed back for the
/// connections' next chunks. Without it every read would format into a
/// freshly allocated buffer, and the allocator returns freed memory to the
/// kernel often enough that the next one is new pages: zero-filled on first
/// touch, which on a VM costs more than the formatting itself. Bounded in
/// total bytes by the unflushed-bytes budget: it holds at most what the
/// batches in flight held.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    /// The buffers and the sum of their capacities.
    inner: std::sync::Mutex<(Vec<Vec<u8>>, usize)>,
    /// Capacity kept at most, in all.
    max_bytes: usize,
}

impl BufferPool {
    /// Buffers larger than this (a huge line's) are not kept.
    const MAX_ONE: usize = 2 << 20;

    pub(crate) fn new(max_bytes: usize) -> Self {
        BufferPool {
            inner: Default::default(),
            max_bytes,
        }
    }

    /// An empty buffer: a pooled one if any, else a new one of `capacity`.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        if let Ok(mut g) = self.inner.lock()
            && let Some(v) = g.0.pop()
        {
            g.1 -= v.capacity();
            return v;
        }
        Vec::with_capacity(capacity)
    }

    /// Keeps `v` for reuse if there is room.
    pub(crate) fn give(&self, mut v: Vec<u8>) {
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

#[derive(Default)]
pub(super) struct Batch {
    /// The connections' chunks, written as they are (no copy).
    pub(super) chunks: Vec<Vec<u8>>,
    /// Their bytes in all.
    pub(super) bytes: usize,
    pub(super) records: u64,
    pub(super) permits: Vec<OwnedSemaphorePermit>,
    pub(super) waiters: Vec<oneshot::Sender<Durable>>,
    /// When its first record arrived: the flush timer starts here.
    pub(super) since: Option<Instant>,
    /// Its records for durable subscribers, published once it is written
    /// (kept only while someone subscribes).
    pub(super) events: Vec<Arc<[u8]>>,
}

impl Batch {
    pub(super) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Puts `front` (a batch that failed to write) before `self`.
    pub(super) fn prepend(&mut self, mut front: Batch) {
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

pub(super) type FlushOutcome = (Store, Batch, Result<(), StoreError>, Duration);

impl Writer {
    /// Starts writing the current batch if it is due and nothing is in
    /// flight.
    pub(super) fn maybe_start_flush(&mut self, now: Instant, closing: bool) {
        if self.decide(now, closing) != Decision::Write {
            return;
        }
        if let Some(mut store) = self.idle.take() {
            let batch = std::mem::take(&mut self.current);
            self.inflight_records = batch.records;
            self.inflight_bytes = batch.bytes;
            self.inflight = Some(tokio::task::spawn_blocking(move || {
                let t0 = Instant::now();
                let res = store.append(&batch.chunks, batch.records);
                (store, batch, res, t0.elapsed())
            }));
        }
    }

    /// Takes back the store after a flush attempt and answers its waiters.
    pub(super) fn complete(&mut self, (store, mut batch, res, took): FlushOutcome) {
        self.status.file_bytes = store.len();
        let store_end = store.content_end();
        self.idle = Some(store);
        self.inflight_records = 0;
        self.inflight_bytes = 0;
        match res {
            Ok(()) => {
                self.cfg
                    .metrics
                    .flushed(batch.records, batch.bytes as u64, took);
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
                self.cfg.metrics.flush_failed(e.in_sync());
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
    pub(super) fn reindex_pending_onto(&mut self, mut index: Index) {
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
        self.replace_index(index);
        self.logical_end = end;
        self.cfg.stats.changed();
    }

    /// A failed write or take-over: try again after a backoff of 50 ms,
    /// doubling to 5 s.
    pub(super) fn back_off(&mut self) {
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
        self.retry_at = Some(Instant::now() + self.backoff);
    }

    /// The file is in a known state again: no backoff, no error.
    pub(super) fn recovered(&mut self) {
        self.backoff = Duration::ZERO;
        self.retry_at = None;
        self.status.last_error = None;
    }

    /// Shutdown with a disk that kept failing: tell the waiters.
    pub(super) fn give_up(&mut self) {
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

    /// Writes everything accepted so far, now, waiting for it.
    pub(super) async fn flush_now(&mut self) -> Result<(), String> {
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

    /// The flush policy's decision about the batch being gathered.
    fn decide(&self, now: Instant, closing: bool) -> Decision {
        let c = &self.current;
        let batch = Gathered {
            records: c.records,
            bytes: c.bytes,
            waited_for: !c.waiters.is_empty(),
            since: c.since,
        };
        let writing = Writing {
            in_flight: self.idle.is_none(),
            retry_at: self.retry_at,
            closing,
        };
        self.cfg.policy.decide(&batch, &writing, now)
    }

    /// When the writer must wake next for the batch it gathers (asked
    /// after [`Writer::maybe_start_flush`]): its flush interval after its
    /// first record, or the end of a backoff after a failed write; `None`
    /// while a write is in flight or nothing waits.
    pub(super) fn next_deadline(&self, now: Instant) -> Option<Instant> {
        match self.decide(now, false) {
            Decision::WakeAt(t) => Some(t),
            Decision::Wait | Decision::Write => None,
        }
    }
}
