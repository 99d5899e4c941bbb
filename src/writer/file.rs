//! The log file's life: opening it (scan on one thread, index on another),
//! reopening it after a rotation (SIGHUP), and `clear`.

use super::*;

pub(super) use crate::config::tuning::{DETACH_AT, INDEX_BATCH_BYTES, INDEX_BATCH_RECORDS};

/// Scanned records on their way to the indexing thread, in file order.
#[derive(Default)]
pub(super) struct ScanBatch {
    /// Small records back to back, then long name spellings of detached
    /// ones.
    bytes: Vec<u8>,
    records: Vec<Scanned>,
    /// The timings of detached records.
    timings: Vec<TimingFact>,
}

pub(super) enum Scanned {
    /// File offset, range in `bytes`, where its indexed fields are.
    Bytes(u64, std::ops::Range<usize>, RawMeta),
    /// File offset, length, facts (names located in `bytes`).
    Facts(u64, u32, Facts),
}

/// Adds one scanned record to `batch`: its bytes, or for a large record its
/// facts (see [`DETACH_AT`]).
pub(super) fn hand_over(
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
pub(crate) fn open_log(
    path: &std::path::Path,
    fsync: crate::store::FsyncPolicy,
    page_cache: crate::store::PageCache,
    options: crate::store::FileOptions,
    ids: &crate::index::RecordIds,
) -> Result<(Store, Index), StoreError> {
    let t0 = Instant::now();
    // Shared by the two callbacks below (only one runs at a time).
    let progress = std::cell::RefCell::new(Progress::start(path, t0));
    let report = |step, done| progress.borrow_mut().report(step, done);
    let mut scanned = 0u64;
    // Where the clock is next read: every 16 MiB, and every 4,096 records
    // (cheap next to them either way; a record may be megabytes long).
    let mut next_check = 0u64;
    let (opened, index) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ScanBatch>(2);
        // Emptied batches come back, so the buffers are reused.
        let (back_tx, back_rx) = std::sync::mpsc::channel::<ScanBatch>();
        let indexer = scope.spawn(move || index_batches(rx, back_tx));
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
                if let Some(id) = meta.record_id(bytes) {
                    ids.note(id);
                }
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
    report_recovery(path, &recovery, t0);
    Ok((store, index))
}

/// What opening a long log file tells the service manager and the log
/// while it reads (or copies aside) the file.
struct Progress<'p> {
    path: &'p std::path::Path,
    total: u64,
    pace: crate::systemd::ScanProgress,
}

impl<'p> Progress<'p> {
    fn start(path: &'p std::path::Path, t0: Instant) -> Self {
        let total = std::fs::metadata(path).map_or(0, |m| m.len());
        let (pace, first) = crate::systemd::ScanProgress::start(total, t0);
        if total > 0 {
            crate::systemd::notify(&first);
        }
        Progress { path, total, pace }
    }

    fn report(&mut self, step: crate::systemd::Step, done: u64) {
        if let Some(msg) = self.pace.due(step, done, Instant::now()) {
            crate::systemd::notify(&msg);
            tracing::info!(
                log_file = %self.path.display(),
                mb = done / 1_000_000,
                of_mb = self.total / 1_000_000,
                step = ?step,
                "Opening the log file."
            );
        }
    }
}

/// The indexing half of [`open_log`]: indexes the batches the scan hands
/// over, in file order, and hands each emptied batch back for reuse.
fn index_batches(
    rx: std::sync::mpsc::Receiver<ScanBatch>,
    back: std::sync::mpsc::Sender<ScanBatch>,
) -> Index {
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
        let _ = back.send(batch);
    }
    index
}

/// Tells the operator what opening the log found and did.
fn report_recovery(path: &std::path::Path, recovery: &crate::store::Recovery, t0: Instant) {
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
}

impl Writer {
    /// See [`Command::Reopen`].
    pub(super) async fn reopen(&mut self) -> Result<String, String> {
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
        let ids = Arc::clone(&self.cfg.ids);
        // The new file's ids (read as it is opened) start a generation.
        ids.new_log();
        // The rotated file takes its sidecar (and so its `log_id`) along.
        let followed = self.idle.as_mut().and_then(Store::sidecar_follows_the_file);
        if let Some(to) = &followed {
            tracing::info!(sidecar = %to.display(), "The rotated log's sidecar moved beside it.");
        }
        let opened =
            tokio::task::spawn_blocking(move || open_log(&path, fsync, page_cache, options, &ids))
                .await
                .map_err(|e| format!("writer task failed: {e}"))?
                .map_err(|e| e.to_string())?;
        let (store, index) = opened;
        let reader = store.reader().map_err(|e| e.to_string())?;
        // The rotated log names the new one, for a reader draining it.
        if followed.is_some()
            && let Some(Err(e)) = self.idle.as_mut().map(|old| old.seal(&store))
        {
            tracing::warn!(error = %e, "Cannot name the new log in the rotated log's sidecar; a reader of the rotated log goes on with the live log when it is done.");
        }
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
        self.replace_index(index);
        // A change to the old file no longer matters: it was taken over
        // (or reported) before the reopen, and the new file is new.
        self.changed = false;
        self.cfg.stats.changed();
        self.reader = Arc::new(reader);
        Ok(msg)
    }

    /// Flushes, then archives the file and starts an empty one.
    pub(super) async fn clear(&mut self) -> Result<PathBuf, String> {
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
                self.cfg.ids.new_log();
                self.replace_index(Index::default());
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
            &crate::index::RecordIds::default(),
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
