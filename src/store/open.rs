//! Opening the log file and taking it over as it is: the lock, the
//! start-up scan and repair (bytes that cannot be kept are copied aside
//! first), what the commit sidecar vouches for, and taking the file over
//! again after another process changed it (`rescan`).

use super::*;

pub(super) use crate::config::tuning::{
    SETTLE_MAX, SETTLE_POLL, SETTLE_QUIET, SETTLE_QUIET_DAMAGED,
};

/// The sidecar of the log at `path` (open as `file`): the one found, or a
/// new one (a log the Python logger wrote, or one whose sidecar belonged
/// to another file) made under a temporary name and renamed into place,
/// its directory synced.
pub(super) fn open_commits(
    path: &Path,
    file: &File,
    found: Option<&commits::Found>,
    mode: u32,
    fsync: FsyncPolicy,
) -> Result<Commits, StoreError> {
    let sync = fsync == FsyncPolicy::Always;
    let at = commits::path_for(path);
    if let Some(found) = found.filter(|f| f.header_ok) {
        match Commits::resume(path, found, mode, sync) {
            Ok(c) => return Ok(c),
            // Readable but not writable (left by root, say): a new one
            // replaces it; how far the log is kept was decided already.
            Err(e) => tracing::warn!(
                sidecar = %at.display(),
                error = %e,
                "Cannot write the commit sidecar; replacing it with a new one."
            ),
        }
    }
    let partial = PathBuf::from(format!("{}{PARTIAL}", at.display()));
    let mut commits = Commits::create(&partial, file, mode, sync).map_err(|e| {
        let _ = fs::remove_file(&partial);
        io_err(&partial, "create")(e)
    })?;
    fs::rename(&partial, &at).map_err(io_err(&at, "move the new sidecar to"))?;
    commits.moved_to(at.clone());
    sync_dir(&at).map_err(io_err(&at, "sync the directory of"))?;
    Ok(commits)
}

impl Store {
    /// Opens (creating parents and an empty `[]` if missing), locks, scans
    /// and if needed repairs the file. `on_record` sees every kept record in
    /// order, with its bytes, so the caller can index it; `on_copy` sees the
    /// progress (bytes copied, of how many) of setting a damaged file's
    /// original bytes aside, which for a large file takes a while too.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process holds the file,
    /// [`StoreError::Io`] when it cannot be read, repaired or created.
    pub fn open(
        path: &Path,
        fsync: FsyncPolicy,
        options: FileOptions,
        mut on_record: impl FnMut(ScannedRecord, &[u8], &RawMeta),
        mut on_copy: impl FnMut(u64, u64),
    ) -> Result<(Store, Recovery), StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err(parent, "create directory"))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path, "open"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(path.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(io_err(path, "lock")(e)),
        }
        if !options.allow_unlocked_fs {
            lock_is_enforced(path, &file)?;
        }
        let mode = options.mode;
        // An existing file too: readers in the daemon's group (jq,
        // `json.load`) depend on it, whatever mode an earlier setup left.
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(mode)) {
            tracing::warn!(
                log_file = %path.display(),
                mode = format!("{mode:04o}"),
                error = %e,
                "Cannot set the log file's mode (is it owned by another user?); left as it is."
            );
        }
        let meta = file.metadata().map_err(io_err(path, "stat"))?;
        let len = meta.len();
        // Under the lock: no other daemon can be writing one of these.
        let removed_partials = remove_partial_copies(path);
        let found = commits::read(path, commits::FileId::of(&meta));
        let trust = commits::trust(found.as_ref(), &file, Stamp::of(&meta));
        let commits = open_commits(path, &file, found.as_ref(), options.mode, fsync)?;
        let mut store = Store {
            path: path.to_owned(),
            file,
            options,
            content_end: 0,
            file_len: len,
            records: 0,
            stamp: Stamp::default(),
            fsync,
            page_cache: PageCache::Keep,
            dropped_to: 0,
            prev_batch_start: 0,
            commits,
        };
        let mut recovery = store.adopt(len, trust.limit, &mut on_record, &mut on_copy)?;
        // From here on the file is the daemon's: a crash before the next
        // commit keeps no more than this.
        store.commit_taken_over()?;
        recovery.removed_partials = removed_partials;
        recovery.note = trust.note;
        Ok((store, recovery))
    }

    /// Gives the log a new identity: a new sidecar with a fresh `log_id`,
    /// recording the file as it is now. For a file whose records no longer
    /// continue the old positions (cut underneath, or rewritten with
    /// records lost): a reader by position (`read`) must start again, and
    /// learns so from the new `log_id`.
    ///
    /// # Errors
    /// The new sidecar could not be created or put in place.
    pub fn renew_identity(&mut self) -> Result<(), StoreError> {
        let mode = self.options.mode;
        self.commits = open_commits(&self.path, &self.file, None, mode, self.fsync)?;
        self.commit_taken_over()
    }

    /// Records in the sidecar that the file, as it is now, is the daemon's
    /// (a commit that vouches for no bytes of its own; see [`commits`]).
    pub(super) fn commit_taken_over(&mut self) -> Result<(), StoreError> {
        let end = self.content_end;
        self.commits
            .commit(end, end, self.records, 0, None)
            .map_err(io_err(self.commits.path(), "write"))
    }

    /// Makes what was written so far durable and records in the sidecar
    /// that the daemon stopped cleanly, with the file's length and mtime:
    /// if the file is found so at the next start, nobody changed it
    /// meanwhile and it is trusted up to its last commit; if not, it is
    /// taken over as it is (see [`commits::trust`]).
    ///
    /// # Errors
    /// A sync or the sidecar's write failed.
    pub fn close(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        // The file as the daemon's own last write left it, not as it is
        // now: a change by another process that no look caught before the
        // stop must show at the next start as one.
        let end = self.content_end;
        self.commits
            .commit(end, end, self.records, 0, Some(self.stamp))
            .map_err(io_err(self.commits.path(), "write"))
    }

    /// Takes over the file's `len` bytes as they are: scans them, and if
    /// they are not a valid array copies the original aside and keeps the
    /// complete records (see [`Store::open`]). Shared by the start-up and
    /// [`Store::rescan`]; the store's counts change only once it worked.
    pub(super) fn adopt(
        &mut self,
        len: u64,
        limit: Option<u64>,
        on_record: &mut impl FnMut(ScannedRecord, &[u8], &RawMeta),
        on_copy: &mut impl FnMut(u64, u64),
    ) -> Result<Recovery, StoreError> {
        let path = self.path.clone();
        let mut recovery = Recovery::default();
        if len == 0 {
            // New file, or one we created and crashed before writing `[]`:
            // nothing to keep, nothing to set aside. Its name made durable
            // before anything is acknowledged into it.
            self.rewrite_tail(0, b"[]")?;
            sync_dir(&path).map_err(io_err(&path, "sync the directory of"))?;
            self.content_end = 1;
            self.records = 0;
            recovery.created = true;
            return Ok(recovery);
        }
        // The scan reads from the file's position, which `left_by_cut`'s
        // `SEEK_HOLE` may have moved (every other access is positional).
        io::Seek::seek(&mut &self.file, io::SeekFrom::Start(0)).map_err(io_err(&path, "seek"))?;
        let scan = scan(&self.file, limit, on_record).map_err(io_err(&path, "read"))?;
        recovery.records = scan.records;
        recovery.scanned_bytes = scan.scanned;
        // The scan reads to the end as it finds it: another writer still
        // appending may have made the file longer than `len` meanwhile.
        let len = self
            .file
            .metadata()
            .map_err(io_err(&path, "stat"))?
            .len()
            .max(len)
            .max(scan.content_end);
        if let Some(problem) = scan.problem {
            // Keep the bytes to be cut before changing anything (a file
            // that only lacks its closing `]` has none).
            if len > scan.content_end {
                let copy = self.set_aside(scan.content_end, len, on_copy)?;
                recovery.corrupt_copy = Some(copy);
            }
            recovery.cut_bytes = len - scan.content_end;
            recovery.problem = Some(problem);
            if scan.content_end == 0 {
                self.rewrite_tail(0, b"[]")?;
                self.content_end = 1;
                self.records = 0;
                return Ok(recovery);
            }
            let tail: &[u8] = if scan.records == 0 { b"]" } else { b"\n]" };
            self.rewrite_tail(scan.content_end, tail)?;
        } else {
            self.file_len = len;
            self.restamp();
        }
        self.records = scan.records;
        self.content_end = scan.content_end;
        Ok(recovery)
    }

    /// After [`StoreError::Changed`]: waits until the other writer is done
    /// (see [`Store::settle`]), then takes the file over again as it is
    /// now, as at start-up: every complete record in it is kept in its
    /// place and seen by `on_record` in file order (the caller indexes
    /// them again), and bytes that are not complete records are copied
    /// aside and cut off. The daemon cannot tell which of its own records
    /// the other writer destroyed; the caller compares the old index with
    /// the new one.
    ///
    /// # Errors
    /// The file could not be read, copied aside or re-closed.
    pub fn rescan(
        &mut self,
        mut on_record: impl FnMut(ScannedRecord, &[u8], &RawMeta),
    ) -> Result<Recovery, StoreError> {
        self.settle();
        let mut len = self
            .file
            .metadata()
            .map_err(io_err(&self.path, "stat"))?
            .len();
        if len > self.file_len && self.closing_intact() {
            // Only bytes added past the array, which is as it was: those
            // are set aside and cut, and the records need no new look.
            let end = self.file_len;
            let copy = self.keep_appended(len)?;
            self.file
                .set_len(end)
                .map_err(io_err(&self.path, "truncate"))?;
            self.file_len = end;
            self.restamp();
            return Ok(Recovery {
                records: self.records,
                appended_copy: Some(copy),
                ..Recovery::default()
            });
        }
        // Cut below where our records ended (`copytruncate`, or a logger
        // that truncates and rewrites), perhaps with a write of ours landed
        // past what was written since: only our batch, still pending, lies
        // past the gap, which can be as long as the whole log was, so it is
        // cut off rather than copied aside.
        let mut gap_copy = None;
        if self.cut_while_writing() {
            let kept = self.left_by_cut(self.content_end);
            if kept < len {
                // What lies past the gap is copied first: our unwritten
                // batch, but perhaps also another writer's bytes written
                // at an offset it kept from before the cut. Only the data
                // is copied, from where it starts, not the gap.
                let data = self.data_after(kept).unwrap_or(kept);
                if data < len {
                    gap_copy = Some(self.set_aside(data, len, &mut |_, _| {})?);
                }
                self.file
                    .set_len(kept)
                    .map_err(io_err(&self.path, "truncate"))?;
                len = kept;
            }
        }
        let mut recovery = self.adopt(len, None, &mut on_record, &mut |_, _| {})?;
        self.commit_taken_over()?;
        if let Some(copy) = gap_copy {
            tracing::warn!(
                copy = %copy.display(),
                "Bytes past a gap the cut left were copied aside before the gap was cut off."
            );
            recovery.corrupt_copy.get_or_insert(copy);
        }
        self.dropped_to = self.content_end - self.content_end % PAGE;
        self.prev_batch_start = self.dropped_to;
        Ok(recovery)
    }

    /// Waits for another process that is writing the file to finish: a
    /// logger that rewrites the whole file truncates it first and writes it
    /// in pieces, and one taken over in the middle would be cut into and
    /// then overwritten. Done when the file has not changed for
    /// [`SETTLE_QUIET`] and ends like an array, or has not changed for
    /// [`SETTLE_QUIET_DAMAGED`] (a file that stays torn); at most
    /// [`SETTLE_MAX`] in all, since a process that never stops writing
    /// must not stop the daemon.
    pub(super) fn settle(&self) {
        let start = std::time::Instant::now();
        let look = || self.file.metadata().map(|m| Stamp::of(&m)).ok();
        let mut last = look();
        let mut quiet_since = start;
        loop {
            std::thread::sleep(SETTLE_POLL);
            let now = look();
            if now != last {
                last = now;
                quiet_since = std::time::Instant::now();
                if start.elapsed() < SETTLE_MAX {
                    continue;
                }
            }
            let quiet = quiet_since.elapsed();
            if start.elapsed() >= SETTLE_MAX
                || quiet >= SETTLE_QUIET_DAMAGED
                || (quiet >= SETTLE_QUIET && self.ends_like_an_array())
            {
                return;
            }
        }
    }

    /// Does the file end as a whole array written with `indent=2` does:
    /// `[]`, or a `]` at the start of its line (a nested list's `]` is
    /// indented, so a writer paused after one is not taken for done)?
    pub(super) fn ends_like_an_array(&self) -> bool {
        let Ok(len) = self.file.metadata().map(|m| m.len()) else {
            return false;
        };
        let from = len.saturating_sub(64);
        let mut tail = vec![0u8; (len - from) as usize];
        if self.file.read_exact_at(&mut tail, from).is_err() {
            return false;
        }
        let end = tail
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let tail = &tail[..end];
        tail.ends_with(b"\n]") || (len <= 64 && tail.trim_ascii() == b"[]")
    }

    /// Are the bytes past the last record still the ones the daemon wrote
    /// there: the closing `]` (and whitespace)? Then a file that grew was
    /// only appended to, and only the bytes past the old end need setting
    /// aside.
    pub(super) fn closing_intact(&self) -> bool {
        let n = self.file_len.saturating_sub(self.content_end);
        if n == 0 || n > 4096 {
            return false;
        }
        let mut tail = vec![0u8; n as usize];
        if self
            .file
            .read_exact_at(&mut tail, self.content_end)
            .is_err()
        {
            return false;
        }
        let trimmed: Vec<u8> = tail
            .into_iter()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        trimmed == b"]"
    }

    /// Copies the bytes a repair cuts, `from` up to `len`, to a new, synced
    /// `<file>.corrupt-<time>.from-<from>` (see [`copy_aside`]: the name
    /// tells where they were in the original) and returns its path. Only
    /// what is cut: the records kept stay in the file, and a large log
    /// whose tail was torn (zeros after a power cut, a batch cut short)
    /// needs room for the tail alone, not a second copy of the log.
    pub(super) fn set_aside(
        &self,
        from: u64,
        len: u64,
        on_copy: &mut impl FnMut(u64, u64),
    ) -> Result<PathBuf, StoreError> {
        let ts = file_timestamp();
        let copy = unique_by(|n| {
            let n = if n == 0 {
                String::new()
            } else {
                format!("-{n}")
            };
            PathBuf::from(format!(
                "{}.corrupt-{ts}{n}.from-{from}",
                self.path.display()
            ))
        });
        let needed = len.saturating_sub(from);
        copy_aside(&self.file, from, needed, &copy, self.options.mode, on_copy).map_err(|e| {
            let room = io::Error::new(
                e.kind(),
                format!(
                    "{e} (the {needed} bytes past the last whole record must be copied aside \
                     before they are cut: that much room is needed on its file system)"
                ),
            );
            io_err(&copy, "copy the damaged tail of the log file to")(room)
        })?;
        // The original is cut only once its copy's name is durable too;
        // a copy whose name is not is no use, and the next try makes
        // another.
        if let Err(e) = sync_dir(&copy) {
            let _ = fs::remove_file(&copy);
            return Err(io_err(&copy, "sync the directory of")(e));
        }
        Ok(copy)
    }

    /// Bytes someone else appended past the array's end (`>>` into the
    /// log, `truncate -s`): copied to a new, synced `<file>.appended-<time>`
    /// and then cut off by this append, so the file is an array again once
    /// it is acknowledged and those bytes are not lost.
    pub(super) fn keep_appended(&mut self, len: u64) -> Result<PathBuf, StoreError> {
        let extra = len - self.file_len;
        let copy = unique_path(PathBuf::from(format!(
            "{}.appended-{}",
            self.path.display(),
            file_timestamp()
        )));
        copy_aside(
            &self.file,
            self.file_len,
            extra,
            &copy,
            self.options.mode,
            &mut |_, _| {},
        )
        .map_err(io_err(&copy, "copy bytes appended to the log file to"))?;
        if let Err(e) = sync_dir(&copy) {
            let _ = fs::remove_file(&copy);
            return Err(io_err(&copy, "sync the directory of")(e));
        }
        tracing::warn!(
            bytes = extra,
            copy = %copy.display(),
            "Bytes were appended to the log file by another process after the array's end; copied aside and cut off."
        );
        self.file_len = len;
        Ok(copy)
    }

    /// Where the first data at or after `at` starts (`SEEK_DATA`), if the
    /// file system tells.
    pub(super) fn data_after(&self, at: u64) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let at = libc::off_t::try_from(at).ok()?;
        // SAFETY: `lseek` on a descriptor we own; every access is
        // positional, and `adopt` seeks back to the start.
        let data = unsafe { libc::lseek(self.file.as_raw_fd(), at, libc::SEEK_DATA) };
        u64::try_from(data).ok()
    }

    /// How much of the first `limit` bytes a cut left: up to the first
    /// hole in the file (where nothing was written since the cut), without
    /// the zero bytes that end its last block. A file system that cannot
    /// tell holes leaves only the trimming of the last block.
    pub(super) fn left_by_cut(&self, limit: u64) -> u64 {
        use std::os::fd::AsRawFd;
        let len = self.file.metadata().map_or(limit, |m| m.len());
        let mut end = limit.min(len);
        // SAFETY: `lseek` on a descriptor we own; every read and write of
        // the store is positional, so moving the file offset affects none.
        let hole = unsafe { libc::lseek(self.file.as_raw_fd(), 0, libc::SEEK_HOLE) };
        if let Ok(hole) = u64::try_from(hole) {
            end = end.min(hole);
        }
        let from = end.saturating_sub(PAGE);
        let mut tail = vec![0u8; (end - from) as usize];
        if self.file.read_exact_at(&mut tail, from).is_err() {
            return end;
        }
        let nonzero = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        from + nonzero as u64
    }
}
