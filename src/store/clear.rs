//! `clear`: archiving the log and starting a new, empty one, all or
//! nothing.

use super::*;

/// Renames each `(from, to)` in turn, then syncs their directory (all are
/// in one). If a step fails, those done are renamed back, newest first,
/// so that the files are as they were, but never over a file another
/// process put at a name meanwhile (the Python logger creating the log
/// anew, say): that one stays, and ours stays where the step put it. If
/// an undo fails, nothing is deleted: every record is still under one of
/// the names.
pub(super) fn rename_all(steps: &[(PathBuf, PathBuf)]) -> Result<(), StoreError> {
    let mut done = 0;
    let mut res = Ok(());
    for (from, to) in steps {
        if let Err(e) = fs::rename(from, to) {
            res = Err(io_err(to, "rename to")(e));
            break;
        }
        done += 1;
    }
    let Some((first, _)) = steps.first() else {
        return res;
    };
    if res.is_ok() {
        res = sync_dir(first).map_err(io_err(first, "sync the directory of"));
    }
    if res.is_err() {
        for (from, to) in steps[..done].iter().rev() {
            let _ = rename_noreplace(to, from);
        }
        let _ = sync_dir(first);
    }
    res
}

/// `rename(2)` that fails rather than replace a file at `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("NUL in path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // A file system without the flag: the same, not atomically.
    if e.raw_os_error() == Some(libc::EINVAL) {
        let to = Path::new(std::ffi::OsStr::from_bytes(to.as_bytes()));
        if to.exists() {
            return Err(io::Error::from(io::ErrorKind::AlreadyExists));
        }
        return fs::rename(Path::new(std::ffi::OsStr::from_bytes(from.as_bytes())), to);
    }
    Err(e)
}

impl Store {
    /// Archives the file as `<stem>.<timestamp>.json` beside it (kept,
    /// never deleted) and starts a fresh, locked `[]` at the path. Returns
    /// the archive's path.
    ///
    /// All or nothing: the new file is created, written, synced and locked
    /// under a temporary name first (`<file>.clearing-<ts>.partial`), and
    /// only then swapped in by two renames whose directory is synced; a
    /// failure at any step undoes what was done, and the store goes on
    /// with the file it had, untouched.
    ///
    /// # Errors
    /// The file at the path is not this one, or a step failed; nothing
    /// changed either way.
    pub fn clear(&mut self) -> Result<PathBuf, StoreError> {
        // Archiving renames whatever is at the path: after an external
        // rename (logrotate before its reload) that is not this file, and
        // someone else's file must never be moved or restarted.
        if !self.is_at_path() {
            return Err(io_err(&self.path, "clear")(io::Error::other(
                "the file at this path is no longer the one being written (renamed or \
                 deleted underneath the daemon); send SIGHUP to reopen the path, then clear",
            )));
        }
        self.sync()?;
        let stem = self.path.with_extension("");
        let ts = file_timestamp();
        // Two clears within a second: `<ts>-1.json`, so every archive still
        // ends in `.json` (a `*.json` glob finds them all).
        let archive = (0..)
            .map(|n| match n {
                0 => PathBuf::from(format!("{}.{ts}.json", stem.display())),
                n => PathBuf::from(format!("{}.{ts}-{n}.json", stem.display())),
            })
            .find(|p| !p.exists())
            .unwrap_or_else(|| PathBuf::from(format!("{}.{ts}.json", stem.display())));
        let fresh = unique_by(|n| {
            let n = if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            };
            PathBuf::from(format!("{}.clearing-{ts}{n}{PARTIAL}", self.path.display()))
        });
        let file = match self.new_empty_log(&fresh) {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&fresh);
                return Err(e);
            }
        };
        // The new file's sidecar, with a commit that vouches for `[]`;
        // the old one goes with the archive, which keeps its `log_id`.
        let fresh_meta = PathBuf::from(format!(
            "{}.meta{PARTIAL}",
            fresh.display().to_string().trim_end_matches(PARTIAL)
        ));
        let sync = self.fsync == FsyncPolicy::Always;
        let made =
            Commits::create(&fresh_meta, &file, self.options.mode, sync).and_then(|mut c| {
                c.commit(1, 1, 0, 0, None)?;
                Ok(c)
            });
        let mut commits = match made {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_file(&fresh);
                let _ = fs::remove_file(&fresh_meta);
                return Err(io_err(&fresh_meta, "create")(e));
            }
        };
        // The archive names the log that follows it, for a reader by
        // position that drains it later (`read`, the forwarder).
        if let Err(e) = self.commits.seal(commits.log_id()) {
            let _ = fs::remove_file(&fresh);
            let _ = fs::remove_file(&fresh_meta);
            return Err(io_err(self.commits.path(), "write")(e));
        }
        let live_meta = commits::path_for(&self.path);
        let mut steps = vec![(self.path.clone(), archive.clone())];
        if live_meta.exists() {
            steps.push((live_meta.clone(), commits::path_for(&archive)));
        }
        steps.push((fresh.clone(), self.path.clone()));
        steps.push((fresh_meta.clone(), live_meta.clone()));
        if let Err(e) = rename_all(&steps) {
            let _ = fs::remove_file(&fresh);
            let _ = fs::remove_file(&fresh_meta);
            return Err(e);
        }
        commits.moved_to(live_meta);
        self.commits = commits;
        // The archive is complete and synced. Its lock is released now:
        // answers still being streamed hold copies of its descriptor, which
        // would keep the lock (it belongs to the open file, not the copy)
        // and make the archive look like a daemon's live log to `logs` and
        // `read` (see `archives::written_by_a_daemon`).
        let _ = self.file.unlock();
        self.file = file;
        self.records = 0;
        self.file_len = 2;
        self.content_end = 1;
        self.dropped_to = 0;
        self.prev_batch_start = 0;
        self.restamp();
        Ok(archive)
    }

    /// A new file at `at` holding `[]`, with the log's mode, locked and
    /// synced.
    pub(super) fn new_empty_log(&self, at: &Path) -> Result<File, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(at)
            .map_err(io_err(at, "create"))?;
        file.set_permissions(fs::Permissions::from_mode(self.options.mode))
            .map_err(io_err(at, "set the mode of"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(at.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(at, "lock")(e)),
        }
        if injected_fault() == Some(Fault::ClearNoSpace) {
            return Err(io_err(at, "write")(io::Error::from_raw_os_error(
                libc::ENOSPC,
            )));
        }
        file.write_all_at(b"[]", 0).map_err(io_err(at, "write"))?;
        file.sync_all().map_err(io_err(at, "sync"))?;
        Ok(file)
    }
}

impl Store {
    /// The log file was renamed away underneath the daemon (a rotation,
    /// then SIGHUP): moves its sidecar beside it, `<its new name>.meta`,
    /// so the rotated file keeps its `log_id` and the file that takes the
    /// path gets a sidecar of its own. The new name is the one the open
    /// file has now (`/proc/self/fd`). Best effort: a deleted file, or a
    /// sidecar that cannot follow, stays as it is (the new file's sidecar
    /// then replaces it). Returns where it went.
    /// Names `successor` (the new log at the path) in this rotated log's
    /// sidecar, so that a reader by position goes on from it to the new
    /// log (see [`commits::Commits::seal`]).
    ///
    /// # Errors
    /// The sidecar could not be written or synced.
    pub fn seal(&mut self, successor: &Store) -> Result<(), StoreError> {
        self.commits
            .seal(successor.commits.log_id())
            .map_err(io_err(self.commits.path(), "write"))?;
        // Rotated away for good: its lock goes now, not when the last
        // answer reading it is done (see `clear`).
        let _ = self.file.unlock();
        Ok(())
    }

    pub fn sidecar_follows_the_file(&mut self) -> Option<PathBuf> {
        use std::os::fd::AsRawFd;
        let now = fs::read_link(format!("/proc/self/fd/{}", self.file.as_raw_fd())).ok()?;
        if now == self.path || now.to_string_lossy().ends_with(" (deleted)") {
            return None;
        }
        let from = self.commits.path().to_owned();
        let to = commits::path_for(&now);
        match rename_noreplace(&from, &to).and_then(|()| sync_dir(&to)) {
            Ok(()) => {
                let _ = sync_dir(&from);
                self.commits.moved_to(to.clone());
                Some(to)
            }
            Err(e) => {
                tracing::warn!(
                    sidecar = %from.display(),
                    to = %to.display(),
                    error = %e,
                    "Cannot move the rotated log's sidecar beside it; the rotated file keeps no log_id."
                );
                None
            }
        }
    }
}
