//! Appending a batch: one vectored write in pieces, the checks that
//! nobody cut or rewrote the file meanwhile, the `fdatasync` with the
//! batch's commit, and the clean-up after a failed write.

use super::*;

pub(super) use crate::config::tuning::{MAX_IOVECS, WRITE_PIECE};

/// Writes all of `bufs` at offset `at`, resuming after short writes.
pub(super) fn pwrite_all(file: &File, mut bufs: &mut [IoSlice<'_>], mut at: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bufs.is_empty() {
        let count = libc::c_int::try_from(bufs.len().min(MAX_IOVECS)).unwrap_or(1);
        let offset = libc::off_t::try_from(at).map_err(|_| io::Error::other("offset too large"))?;
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` on Unix
        // (documented by std); the memory it points to is borrowed for the
        // duration of the call, and `count` does not exceed their number.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                bufs.as_ptr().cast::<libc::iovec>(),
                count,
                offset,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        at += n as u64;
        IoSlice::advance_slices(&mut bufs, n as usize);
    }
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `at` to the disk now
/// (`SYNC_FILE_RANGE_WRITE`: asynchronous, durable only after the
/// `fdatasync` that follows). Only a hint: an error changes nothing.
pub(super) fn start_writeback(file: &File, at: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (libc::off64_t::try_from(at), libc::off64_t::try_from(len)) else {
        return;
    };
    // SAFETY: a hint about a range of a file descriptor we own; it touches
    // no memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Held while a batch is being written and synced; see [`crate::signals`].
pub(crate) static WRITE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Store {
    /// Writes `tail` at `at`, cuts the file there, syncs.
    pub(super) fn rewrite_tail(&mut self, at: u64, tail: &[u8]) -> Result<(), StoreError> {
        let path = &self.path;
        if injected_fault() == Some(Fault::TornFull) {
            return Err(io_err(path, "write")(io::Error::from_raw_os_error(
                libc::ENOSPC,
            )));
        }
        self.file
            .write_all_at(tail, at)
            .map_err(io_err(path, "write"))?;
        let end = at + tail.len() as u64;
        self.file.set_len(end).map_err(io_err(path, "truncate"))?;
        // The size is set, whether or not the sync below works.
        self.file_len = end;
        self.restamp();
        self.file.sync_all().map_err(io_err(&self.path, "sync"))?;
        Ok(())
    }

    /// Appends `count` records. `framed` holds the records, each preceded
    /// by `,\n  ` (the separator Python's indent=2 writes), in chunks as the
    /// connections formatted them: they are written as they are (a vectored
    /// write), never copied into one buffer, and the closing `\n]` goes out
    /// in the same write.
    ///
    /// # Errors
    /// The write or sync failed; the file has been cut back to its last good
    /// state (best effort) and nothing of this batch counts as written.
    pub fn append<B: AsRef<[u8]>>(&mut self, framed: &[B], count: u64) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        // Has anyone else written the file since our last write? Writing
        // at `content_end` into a file cut shorter underneath us would
        // leave a gap of zero bytes before the records (invalid JSON), and
        // into a file another logger rewrote it would cut into its records.
        // Judged on the stamp our own last write left: the daemon's own
        // clean-up after a failed write is stamped too, so a failed write
        // or sync can never pass for someone else's change.
        let meta = self.file.metadata().map_err(io_err(&self.path, "stat"))?;
        let len = meta.len();
        if Stamp::of(&meta) != self.stamp {
            if len > self.file_len && self.closing_intact() {
                // `>>` or `truncate -s` past the array: only the new bytes.
                self.keep_appended(len)?;
            } else {
                return Err(StoreError::Changed {
                    path: self.path.clone(),
                });
            }
        }
        // The first record of an empty array takes no comma.
        let mut skip = usize::from(self.records == 0);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(framed.len() + 1);
        for chunk in framed {
            let chunk = chunk.as_ref();
            if chunk.is_empty() {
                continue;
            }
            parts.push(&chunk[skip..]);
            skip = 0;
        }
        parts.push(b"\n]");
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match self.write_batch(&parts, len, count) {
            Ok(()) => {
                self.content_end += (len - 2) as u64;
                self.records += count;
                Ok(())
            }
            // Nothing of ours is left to clean up: the file is restarted.
            Err(e @ StoreError::Changed { .. }) => Err(e),
            Err(e) => {
                // Cut back first: a truncate needs no space, so even on a
                // full (or copy-on-write) disk no torn part of the batch is
                // left in the file. Then re-close the array, which may
                // fail while the disk stays full: the file then ends after
                // its last record, without `]`, until the next flush.
                let _ = self.file.set_len(self.content_end);
                let tail: &[u8] = if self.records == 0 { b"]" } else { b"\n]" };
                let _ = self.rewrite_tail(self.content_end, tail);
                // What the file holds now, whatever worked; and it is our
                // own doing, not another process's change.
                if let Ok(m) = self.file.metadata() {
                    self.file_len = m.len();
                }
                self.restamp();
                Err(e)
            }
        }
    }

    /// Was the file cut underneath while the batch just written was on its
    /// way, after [`Store::append`]'s stamp check? The write then landed
    /// after a gap of zero bytes (or was cut away itself), so the array is
    /// broken. The byte before where the batch began ends what was there
    /// before (the last record's `}` or the `[`) and is never zero; after
    /// such a cut it lies in the gap, or past the end of the file. One
    /// `pread` of a cached page per flush; a cut after this check is
    /// caught by the next flush's stamp check.
    pub(super) fn cut_while_writing(&self) -> bool {
        let Some(before) = self.content_end.checked_sub(1) else {
            return false;
        };
        let mut b = [0u8; 1];
        match self.file.read_at(&mut b, before) {
            Ok(1) => b[0] == 0,
            Ok(_) => true,
            // Cannot tell; the write and the sync succeeded.
            Err(_) => false,
        }
    }

    /// The byte at `at`, if it can be read.
    pub(super) fn byte_at(&self, at: u64) -> Option<u8> {
        let mut b = [0u8; 1];
        match self.file.read_at(&mut b, at) {
            Ok(1) => Some(b[0]),
            _ => None,
        }
    }

    /// Are the bytes around where the batch began still the ones written
    /// there: the byte before it as it was (`before`), and the batch's
    /// first bytes as in `parts`? A logger rewriting the whole file at the
    /// same moment (it truncates, then writes from the start) replaces
    /// them with its own; `cut_while_writing` sees only zeros. Two `pread`s
    /// of one cached page.
    pub(super) fn landed_as_written(&self, before: Option<u8>, parts: &[&[u8]]) -> bool {
        const HEAD: usize = 64;
        if self.content_end > 0 && self.byte_at(self.content_end - 1) != before {
            return false;
        }
        let mut head = Vec::with_capacity(HEAD);
        for p in parts {
            let take = (HEAD - head.len()).min(p.len());
            head.extend_from_slice(&p[..take]);
            if head.len() == HEAD {
                break;
            }
        }
        let mut got = vec![0u8; head.len()];
        match self.file.read_exact_at(&mut got, self.content_end) {
            Ok(()) => got == head,
            // Cannot tell; the write succeeded.
            Err(_) => true,
        }
    }

    /// The test seam's faults that strike before or instead of a batch's
    /// write (hidden `--fault-file`, see [`FAULT_FILE`]); without a fault,
    /// nothing.
    pub(super) fn before_write(
        &mut self,
        fault: Option<Fault>,
        parts: &[&[u8]],
    ) -> Result<(), StoreError> {
        match fault {
            // Test seam only (hidden `--fault-file`): a writer bug.
            Some(Fault::Panic) => panic!("injected writer failure"),
            Some(Fault::NoSpace) => {
                return Err(io_err(&self.path, "write")(io::Error::from_raw_os_error(
                    libc::ENOSPC,
                )));
            }
            Some(Fault::Cut(to)) => {
                // Someone else's `truncate`, between the size check and
                // the write. Fires once.
                self.file
                    .set_len(to)
                    .map_err(io_err(&self.path, "truncate"))?;
                if let Some(f) = FAULT_FILE.get() {
                    let _ = fs::write(f, "");
                }
            }
            Some(Fault::TornWrite | Fault::TornFull) => {
                // Half the batch lands, then the write fails.
                let bytes = parts.concat();
                let half = &bytes[..bytes.len() / 2];
                self.file
                    .write_all_at(half, self.content_end)
                    .map_err(io_err(&self.path, "write"))?;
                self.file_len = self.file_len.max(self.content_end + half.len() as u64);
                return Err(io_err(&self.path, "write")(io::Error::from_raw_os_error(
                    libc::EIO,
                )));
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes `parts` (`len` bytes in all, ending with the closing `\n]`,
    /// `count` records) at `content_end`, syncs, and commits the batch to
    /// the sidecar.
    pub(super) fn write_batch(
        &mut self,
        parts: &[&[u8]],
        len: usize,
        count: u64,
    ) -> Result<(), StoreError> {
        // Held for the write and sync, so an emergency exit (a second
        // SIGINT) never happens in the middle of one.
        let _guard = WRITE_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fault = injected_fault();
        self.before_write(fault, parts)?;
        // What ends the records already there (`}` of the last, or `[`),
        // to tell after the write that nobody rewrote the file meanwhile.
        let before = self.byte_at(self.content_end.wrapping_sub(1));
        self.write_pieces(parts, len)?;
        // Checked before the sync: the page is still cached (the sync
        // hands written pages back to the kernel).
        if self.cut_while_writing() || !self.landed_as_written(before, parts) {
            // Cut while the batch was on its way (`copytruncate`, or
            // another logger rewriting the whole file: it truncates, then
            // writes from the start, and may still be at it). The writer
            // waits for it and takes the file over as it then is
            // ([`Store::rescan`]); nothing is cut here, under its feet.
            return Err(StoreError::Changed {
                path: self.path.clone(),
            });
        }
        let end = self.content_end + len as u64;
        if self.file_len > end {
            self.file
                .set_len(end)
                .map_err(io_err(&self.path, "truncate"))?;
        }
        self.file_len = end;
        // Stamped now, not after the sync: a change by someone else while
        // it runs must show at the next look, not be taken for ours.
        self.restamp();
        let start = self.content_end;
        self.sync_and_commit(parts, end, count, fault)?;
        match (self.fsync, self.page_cache) {
            // The batch ends with the closing `\n]`: the next append
            // starts 2 bytes before `end`.
            (FsyncPolicy::Always, PageCache::Drop) => self.drop_cached(end.saturating_sub(2)),
            // Nothing waits for the disk, but the pages are still reused:
            // this batch's write-back starts now (not waited for), and the
            // pages before the previous batch, written back meanwhile, go
            // back to the kernel (any still dirty are skipped by it).
            // Writing into never-used pages instead cost about 1.5 us more
            // system time per small record.
            (FsyncPolicy::Never, PageCache::Drop) => {
                start_writeback(&self.file, start, (end - start) as usize);
                self.drop_cached(self.prev_batch_start);
                self.prev_batch_start = start;
            }
            (_, PageCache::Keep) => {}
        }
        Ok(())
    }

    /// Writes `parts` at `content_end` in pieces of about [`WRITE_PIECE`]
    /// bytes, each handed to the disk as soon as it is copied
    /// (`sync_file_range` only starts write-back; it waits for nothing), so
    /// the device writes one piece while the next is copied into the page
    /// cache, and the `fdatasync` finds most of the batch already on its
    /// way. The array is torn only while this flush runs, as with one large
    /// write.
    fn write_pieces(&self, parts: &[&[u8]], len: usize) -> Result<(), StoreError> {
        let early = self.fsync == FsyncPolicy::Always && len > WRITE_PIECE;
        let mut at = self.content_end;
        let mut rest = parts;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            // (`pwrite_all` splits a piece of more than MAX_IOVECS chunks.)
            while n < rest.len() && (n == 0 || bytes < WRITE_PIECE) {
                bytes += rest[n].len();
                n += 1;
            }
            let mut slices: Vec<IoSlice<'_>> = rest[..n].iter().map(|p| IoSlice::new(p)).collect();
            pwrite_all(&self.file, &mut slices, at).map_err(io_err(&self.path, "write"))?;
            if early {
                start_writeback(&self.file, at, bytes);
            }
            at += bytes as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Syncs the batch just written (`parts`, ending at `end`, `count`
    /// records) with its commit: the slot is written now, and the sidecar
    /// synced while the log is (see `Commits::commit_batch`). The checksum
    /// covers the records, not the `\n]` the next batch overwrites.
    fn sync_and_commit(
        &mut self,
        parts: &[&[u8]],
        end: u64,
        count: u64,
        fault: Option<Fault>,
    ) -> Result<(), StoreError> {
        let mut crc = crc32c::Crc32c::default();
        for p in &parts[..parts.len() - 1] {
            crc.update(p);
        }
        let records = self.records + count;
        let (file, fsync) = (&self.file, self.fsync);
        let sync_log = || {
            if fault == Some(Fault::SyncFails) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            if fsync == FsyncPolicy::Always {
                file.sync_data()?;
            }
            Ok(())
        };
        self.commits
            .commit_batch(self.content_end, end - 2, records, crc.finish(), sync_log)
            .map_err(io_err(&self.path, "sync"))
    }

    /// Hands the durable whole pages before `next` (where the next append
    /// will write) back to the kernel. The page holding `next` is kept: a
    /// dropped page that is then partly rewritten would have to be read
    /// back from disk first. Only a hint: an error leaves pages cached.
    pub(super) fn drop_cached(&mut self, next: u64) {
        use std::os::fd::AsRawFd;
        let to = next - next % PAGE;
        if to <= self.dropped_to {
            return;
        }
        let (Ok(from), Ok(len)) = (
            libc::off_t::try_from(self.dropped_to),
            libc::off_t::try_from(to - self.dropped_to),
        ) else {
            return;
        };
        // SAFETY: a hint about a range of a file descriptor we own; it
        // touches no memory of ours.
        let rc = unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), from, len, libc::POSIX_FADV_DONTNEED)
        };
        if rc == 0 {
            self.dropped_to = to;
        }
    }
}
