//! Retention, on the writer (which owns the log and every file beside it):
//! the live log rotated once it passes `--rotate-at-bytes` or
//! `--rotate-at-records` (an automatic `clear`), and archives past
//! `--keep-archives*` removed oldest first, each removal logged, never one
//! that a registered consumer (`joblogctl forward`) has not drained.
//!
//! Consumers report where they are (`consumer` requests: a `log_id` and
//! the next `seq` they will read); the positions are kept in
//! `<log>.consumers` beside the log, written durably (temporary file,
//! fsync, rename, directory fsync) whenever a consumer is new, moves to
//! another log or is removed, so that a restart never forgets one. Only
//! which log a consumer is in matters for removal, so the file is not
//! rewritten as a consumer moves within a log. A consumer whose log is
//! unknown (an archive moved away by hand) keeps every archive: nothing
//! is removed while the daemon cannot tell what was drained, and an
//! unreadable consumers file stops all removals (logged).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::Writer;
use crate::config::tuning::{MAX_CONSUMERS, PRUNE_CHECK, ROTATE_RETRY};
use crate::config::{Keep, Retention};
use crate::protocol::{ErrorCode, ProtocolError};
use crate::store::Listed;

use crate::ops::consumer::{ConsumerUpdate, Position};

/// The writer's retention state.
pub(super) struct State {
    cfg: Retention,
    consumers: BTreeMap<String, Position>,
    /// Why the consumers file could not be read: no archive is removed.
    broken: Option<String>,
    /// A change not yet in the file (its write failed): written with the
    /// next report.
    unsaved: bool,
    path: PathBuf,
    mode: u32,
    /// No automatic rotation before this (one failed).
    rotate_after: Option<Instant>,
    /// When archives are looked at again for their age.
    next_prune: Instant,
}

/// The consumers file of the log at `live`.
fn consumers_path(live: &Path) -> PathBuf {
    let mut p = live.as_os_str().to_owned();
    p.push(".consumers");
    PathBuf::from(p)
}

impl State {
    pub(super) fn new(cfg: Retention, live: &Path, mode: u32) -> State {
        let path = consumers_path(live);
        let (consumers, broken) = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(c) => (c, None),
                Err(e) => (BTreeMap::new(), Some(format!("{}: {e}", path.display()))),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (BTreeMap::new(), None),
            Err(e) => (BTreeMap::new(), Some(format!("{}: {e}", path.display()))),
        };
        if let Some(why) = &broken {
            tracing::error!(error = %why, "Cannot read the consumers file: no archive will be removed until it is fixed or removed.");
        }
        State {
            cfg,
            consumers,
            broken,
            unsaved: false,
            path,
            mode,
            rotate_after: None,
            next_prune: Instant::now(),
        }
    }

    /// Writes the consumers file durably.
    fn save(&self) -> io::Result<()> {
        let tmp = self.path.with_extension("consumers.tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.mode)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self.consumers).map_err(io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        crate::store::sync_dir(&self.path)
    }
}

impl Writer {
    /// Is the live log past a `--rotate-at-*` limit (checked after each
    /// flush, so it is rotated after the batch that passed it)?
    pub(super) fn rotation_due(&self) -> bool {
        let r = &self.retain.cfg;
        let past = r
            .rotate_at_bytes
            .is_some_and(|b| self.status.file_bytes >= b)
            || r.rotate_at_records
                .is_some_and(|n| self.status.records >= n);
        past && self.retain.rotate_after.is_none_or(|t| Instant::now() >= t)
    }

    /// Rotates the live log (a `clear`), then removes what retention says.
    pub(super) async fn rotate(&mut self) {
        let (bytes, records) = (self.status.file_bytes, self.status.records);
        match self.clear().await {
            Ok(archive) => {
                self.retain.rotate_after = None;
                self.cfg.metrics.rotated();
                tracing::info!(archive = %archive.display(), bytes, records, "Log rotated (--rotate-at-*).");
                self.prune();
            }
            Err(e) => {
                self.retain.rotate_after = Some(Instant::now() + ROTATE_RETRY);
                tracing::error!(error = %e, "Automatic rotation failed; trying again later.");
            }
        }
    }

    /// At the periodic look: archives removed for their age.
    pub(super) fn prune_if_due(&mut self) {
        if self.retain.cfg.keep.age.is_some() && Instant::now() >= self.retain.next_prune {
            self.retain.next_prune = Instant::now() + PRUNE_CHECK;
            self.prune();
        }
    }

    /// Removes the archives past the `--keep-archives*` limits, oldest
    /// first, that every consumer has drained.
    pub(super) fn prune(&mut self) {
        if !self.retain.cfg.keep.limits() {
            return;
        }
        if let Some(why) = &self.retain.broken {
            tracing::warn!(error = %why, "Archives past the retention limits kept: the consumers file cannot be read.");
            return;
        }
        let listed = match crate::store::list_archives(&self.status.log_file) {
            Ok(l) => chain_to(l, &self.status.log_id),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot list the archives; none removed.");
                return;
            }
        };
        let found: Vec<Found> = listed.into_iter().filter_map(Found::stat).collect();
        let doomed = past_limits(&found, &self.retain.cfg.keep, SystemTime::now());
        let (mut removed, mut held) = (0, 0);
        for (n, &i) in doomed.iter().enumerate() {
            let a = &found[i];
            if let Some(name) = self.undrained_by(&found, i) {
                tracing::warn!(archive = %a.listed.path.display(), consumer = %name, "Archive past the retention limits kept: a consumer has not read it all yet.");
                // The newer ones are not drained either.
                held = (doomed.len() - n) as u64;
                break;
            }
            match remove_archive(&a.listed.path) {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(archive = %a.listed.path.display(), bytes = a.bytes, records = a.listed.records, "Archive removed (--keep-archives*).");
                }
                Err(e) => {
                    tracing::warn!(archive = %a.listed.path.display(), error = %e, "Cannot remove an archive.");
                }
            }
        }
        self.cfg.metrics.pruned(removed, held);
    }

    /// A consumer that has not read all of archive `i` of `found`
    /// (oldest first), if any.
    fn undrained_by(&self, found: &[Found], i: usize) -> Option<String> {
        let place = |log_id: &str| -> Option<usize> {
            if log_id == self.status.log_id {
                return Some(found.len());
            }
            found.iter().position(|f| f.listed.log_id == log_id)
        };
        // A consumer still in archive `i` has not drained it, even at its
        // end: it reads it once more to learn which log comes next.
        self.retain.consumers.iter().find_map(|(name, at)| {
            let drained = place(&at.log_id).is_some_and(|p| p > i);
            (!drained).then(|| name.clone())
        })
    }

    /// A `consumer` request: its reply object, or why it failed.
    pub(super) fn consumer(
        &mut self,
        u: ConsumerUpdate,
    ) -> Result<serde_json::Value, ProtocolError> {
        let changed = match u {
            ConsumerUpdate::List => false,
            ConsumerUpdate::Remove { name } => self.retain.consumers.remove(&name).is_some(),
            ConsumerUpdate::Report { name, at } => {
                let known = self.retain.consumers.get(&name);
                let moved = known.is_none_or(|p| p.log_id != at.log_id);
                if known.is_none() && self.retain.consumers.len() >= MAX_CONSUMERS {
                    return Err(invalid(format!(
                        "{MAX_CONSUMERS} consumers are registered already; remove one that is gone (`remove`: true)"
                    )));
                }
                // A log the daemon cannot place would keep every archive.
                if moved && !self.is_log(&at.log_id) {
                    return Err(invalid(format!(
                        "log {} is neither the live log nor an archive beside it",
                        at.log_id
                    )));
                }
                self.retain.consumers.insert(name, at);
                moved
            }
        };
        let st = &mut self.retain;
        st.unsaved |= changed;
        if st.unsaved && st.broken.is_none() {
            st.save().map_err(|e| {
                ProtocolError::new(
                    ErrorCode::WriteFailed,
                    format!(
                        "the consumers file {} could not be written: {e}",
                        st.path.display()
                    ),
                )
            })?;
            st.unsaved = false;
        }
        Ok(serde_json::json!({"ok": true, "consumers": st.consumers}))
    }

    /// Is `log_id` the live log's, or an archive's beside it?
    fn is_log(&self, log_id: &str) -> bool {
        log_id == self.status.log_id
            || crate::store::list_archives(&self.status.log_file)
                .is_ok_and(|l| l.iter().any(|a| a.log_id == log_id))
    }
}

fn invalid(msg: String) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidRequest, msg)
}

/// The archives that lead to the live log `live`, oldest first: the one
/// whose sidecar names `live` as its successor, the one naming that one,
/// and so on. Archives off that chain (made before successors were
/// recorded, or whose link was not written) are never removed: their
/// order, and so whether a consumer has read them, is unknown.
fn chain_to(listed: Vec<Listed>, live: &str) -> Vec<Listed> {
    let mut by_successor: std::collections::HashMap<String, Listed> = listed
        .into_iter()
        .filter_map(|l| Some((l.successor.clone()?, l)))
        .collect();
    let mut chain = Vec::new();
    let mut next = live.to_owned();
    while let Some(l) = by_successor.remove(&next) {
        next.clone_from(&l.log_id);
        chain.push(l);
    }
    chain.reverse();
    chain
}

/// An archive with its size and the time it was last written.
struct Found {
    listed: Listed,
    bytes: u64,
    modified: SystemTime,
}

impl Found {
    /// Its size, and when it stopped being live: the later of its last
    /// write and its sidecar's (which names its successor from the moment
    /// it is archived).
    fn stat(listed: Listed) -> Option<Found> {
        let m = std::fs::metadata(&listed.path).ok()?;
        let sealed = std::fs::metadata(crate::store::sidecar_path(&listed.path))
            .and_then(|s| s.modified())
            .ok();
        let modified = m
            .modified()
            .ok()?
            .max(sealed.unwrap_or(SystemTime::UNIX_EPOCH));
        Some(Found {
            bytes: m.len(),
            modified,
            listed,
        })
    }
}

/// The archives of `found` (oldest first) that `keep` says to remove, in
/// order: the oldest beyond the count, the oldest while the total is over
/// the bytes, and those older than the age.
fn past_limits(found: &[Found], keep: &Keep, now: SystemTime) -> Vec<usize> {
    let n = found.len();
    let mut doomed = vec![false; n];
    if let Some(k) = keep.count {
        for d in doomed.iter_mut().take(n.saturating_sub(k)) {
            *d = true;
        }
    }
    if let Some(limit) = keep.bytes {
        let mut total: u64 = found.iter().map(|f| f.bytes).sum();
        for (i, f) in found.iter().enumerate() {
            if total <= limit {
                break;
            }
            doomed[i] = true;
            total -= f.bytes;
        }
    }
    if let Some(age) = keep.age {
        for (i, f) in found.iter().enumerate() {
            if now.duration_since(f.modified).unwrap_or(Duration::ZERO) > age {
                doomed[i] = true;
            }
        }
    }
    (0..n).filter(|&i| doomed[i]).collect()
}

/// Removes an archive: the file first, then its sidecar (a sidecar left
/// alone names a file that is gone and is not listed), then makes the
/// removal durable.
fn remove_archive(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)?;
    match std::fs::remove_file(crate::store::sidecar_path(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    crate::store::sync_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(bytes: u64, days_old: u64) -> Found {
        Found {
            listed: Listed {
                log_id: String::new(),
                path: PathBuf::new(),
                records: 0,
                successor: None,
            },
            bytes,
            modified: SystemTime::UNIX_EPOCH
                + Duration::from_secs(100 * 86_400 - days_old * 86_400),
        }
    }

    #[test]
    fn limits_pick_the_oldest() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100 * 86_400);
        let f = [found(10, 9), found(20, 5), found(30, 2), found(40, 0)];
        let keep = |count, bytes, days: Option<u64>| Keep {
            count,
            bytes,
            age: days.map(|d| Duration::from_secs(d * 86_400)),
        };
        assert_eq!(past_limits(&f, &keep(Some(2), None, None), now), [0, 1]);
        assert_eq!(
            past_limits(&f, &keep(Some(0), None, None), now),
            [0, 1, 2, 3]
        );
        assert_eq!(
            past_limits(&f, &keep(Some(9), None, None), now),
            Vec::<usize>::new()
        );
        assert_eq!(past_limits(&f, &keep(None, Some(70), None), now), [0, 1]);
        assert_eq!(
            past_limits(&f, &keep(None, Some(100), None), now),
            Vec::<usize>::new()
        );
        assert_eq!(past_limits(&f, &keep(None, None, Some(4)), now), [0, 1]);
        assert_eq!(past_limits(&f, &keep(Some(3), None, Some(6)), now), [0]);
    }
}
