//! Another process's change to the file: noticing it, waiting for the
//! other writer, taking the file over, and counting and naming the
//! daemon's records it destroyed.

use super::*;

pub(super) use crate::config::tuning::{FOREIGN_CHECK, LOST_NAMED};

/// Local time as `logged_at` is written, for `ping`'s events.
pub(super) fn local_now() -> String {
    crate::time::LocalTime::now()
        .iso_quoted()
        .trim_matches('"')
        .to_string()
}

/// Names record `i` of `index` for a log line: its place, time and the
/// fields the index keeps (the `video_id` itself is kept only as a hash).
pub(super) fn describe(index: &Index, i: usize) -> String {
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

/// The identity of a record for telling the daemon's own records from
/// another writer's after it rewrote the file: the indexed facts that do
/// not depend on how it was spelled (a rewrite by Python may escape or
/// space it differently). Two records alike in all of them (the same
/// video at the same microsecond, the same outcome and figures) are the
/// same record for this purpose.
pub(super) fn identity(e: &crate::index::Entry) -> (u64, i64, u64, u32, u8) {
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
pub(super) fn compare(
    ours: &[crate::index::Entry],
    found: &[crate::index::Entry],
) -> (Vec<usize>, usize) {
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

impl Writer {
    /// Between flushes: has another process changed the file? One `fstat`.
    pub(super) fn look_for_changes(&mut self) {
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
    pub(super) async fn reconcile(&mut self) {
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
        // Positions no longer continue the old ones: a new identity, so a
        // reader by position starts again rather than skip records.
        let renumbered = (recovery.created && durable > 0) || !lost.is_empty();
        if let Some(store) = self.idle.as_mut() {
            if renumbered {
                match store.renew_identity() {
                    Ok(()) => tracing::warn!(
                        log_id = %store.log_id(),
                        "The log's records no longer continue their old positions; it has a new log_id."
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        "Cannot give the renumbered log a new log_id; readers by position keep the old one."
                    ),
                }
                self.status.log_id = store.log_id();
            }
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
    pub(super) async fn rescan(&mut self) -> Option<(Index, crate::store::Recovery)> {
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
    pub(super) fn report_foreign_write(
        &mut self,
        lost: &[usize],
        taken_in: usize,
        copy: Option<PathBuf>,
    ) {
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

    /// Waits for the in-flight flush, if any.
    pub(super) async fn settle(&mut self) -> Result<(), String> {
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

    /// Looks for another process's change to the file, and takes it over
    /// (see [`Writer::reconcile`]) unless a failed take-over is backing off.
    pub(super) async fn take_over_changes(&mut self) {
        self.look_for_changes();
        if self.changed && self.idle.is_some() && self.retry_at.is_none_or(|t| Instant::now() >= t)
        {
            self.reconcile().await;
        }
    }
}
