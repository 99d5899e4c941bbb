//! The data file: sole owner of `processing_log.json`.
//!
//! Layout on disk is exactly what Python's `json.dump(list, f, indent=2,
//! ensure_ascii=False)` writes: `[`, then `\n  <record>` separated by `,`,
//! then `\n]`, no trailing newline; an empty log is `[]`.
//!
//! **Invariant:** after every successful [`Store::append`] the file is a
//! valid JSON array holding every record appended so far, and
//! `content_end` is the offset just past the last record (or past `[`).
//! An append writes only the new bytes, starting at `content_end`
//! (overwriting the old `\n]`), in one `pwrite`, then `fdatasync`; its cost
//! does not depend on the size of the file.
//!
//! A failed write or sync is never assumed to have worked: the file is cut
//! back to `content_end`, re-closed, and the caller keeps the batch to write
//! again in full (Linux may drop dirty pages after a failed fsync and report
//! success on the next one).

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::index::RawMeta;
use crate::json::{Formatter, JsonError};

pub mod commits;
mod crc32c;

use commits::Commits;

/// How durable a flush is before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// `fdatasync` after every batch: acknowledged records survive power loss.
    Always,
    /// Leave write-back to the kernel: acknowledged records survive a daemon
    /// crash but not a power cut.
    Never,
}

/// What happens to the log's pages in the kernel's page cache once they are
/// durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PageCache {
    /// After each `fdatasync`, tell the kernel the pages just written are
    /// not needed (`posix_fadvise(DONTNEED)`): the log is written once and
    /// rarely read, so it should not push the workers' files out of the
    /// cache, and the freed pages are reused, still warm, by the next
    /// flush (3x cheaper writes than into never-used pages; see
    /// docs/performance.md). Only with `--fsync always`: dirty pages are not
    /// dropped.
    Drop,
    /// Leave them cached (reading records back never touches the disk).
    Keep,
}

/// Errors of the data file. Fatal only while opening; during appends they
/// are logged, counted, and the batch is kept for another try.
#[derive(Debug)]
pub enum StoreError {
    /// Another process holds the lock on the file.
    Locked(PathBuf),
    /// An I/O error, with what was being done.
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    /// Another process changed the file (an in-process logger not yet
    /// migrated rewrote it whole, `copytruncate` or `: > log.json` cut it,
    /// an editor saved it), before or while a batch was written: nothing
    /// of the batch counts as written; the writer takes the file over again
    /// with [`Store::rescan`].
    Changed { path: PathBuf },
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Locked(p) => write!(
                f,
                "{} is locked by another process (is another joblogd writing it?)",
                p.display()
            ),
            StoreError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            StoreError::Changed { path } => write!(
                f,
                "{} was changed by another process (an old in-process logger still writing it?)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Locked(_) | StoreError::Changed { .. } => None,
        }
    }
}

/// What the start-up scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Complete records kept.
    pub records: u64,
    /// Bytes of the file scanned.
    pub scanned_bytes: u64,
    /// Set when the file was not a valid array: where the bytes past the
    /// kept prefix were copied before they were cut, and how many.
    pub corrupt_copy: Option<PathBuf>,
    pub cut_bytes: u64,
    /// Why the file was not valid, for the warning.
    pub problem: Option<String>,
    /// The file did not exist (or was empty) and was created as `[]`.
    pub created: bool,
    /// Unfinished files a daemon stopped in the middle of making, removed
    /// at start-up: copies of a damaged file (`<file>.corrupt-*.partial`)
    /// or of bytes appended past the array (`<file>.appended-*.partial`),
    /// and the new file of a `clear` not yet swapped in
    /// (`<file>.clearing-*.partial`).
    pub removed_partials: Vec<PathBuf>,
    /// [`Store::rescan`] only: bytes were added past the array, which was
    /// left as it was (`>>`, `truncate -s`); they were copied here and cut
    /// off, and no record was scanned (the caller's index still holds).
    pub appended_copy: Option<PathBuf>,
    /// What the commit sidecar said about the file, when the operator
    /// should hear it (see [`commits::trust`]).
    pub note: Option<String>,
}

/// A record found by the start-up scan: where it is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRecord {
    pub offset: u64,
    pub len: u64,
}

/// What the daemon last left the file as: its size and modification time
/// (nanoseconds). Another process's write changes one or the other; the
/// daemon's own writes are followed by a new stamp. One `fstat` compares
/// them, so checking costs nothing measurable per flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        }
    }
}

/// The open, locked data file.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// `--file-mode`, `--allow-unlocked-fs`.
    options: FileOptions,
    /// Offset just past the last complete record, or just past `[`.
    content_end: u64,
    /// Length of the file on disk; larger than `content_end + 2` only for a
    /// file we took over with extra whitespace after `]`.
    file_len: u64,
    records: u64,
    /// The file as the daemon's last write left it (see [`Stamp`]).
    stamp: Stamp,
    fsync: FsyncPolicy,
    page_cache: PageCache,
    /// Bytes before this offset were handed back to the kernel
    /// ([`PageCache::Drop`]); starts at the end of what we took over, so
    /// history read at start-up is left alone.
    dropped_to: u64,
    /// The commit sidecar `<file>.meta`: each durable batch is recorded
    /// there before it is acknowledged (see [`commits`]).
    commits: Commits,
}

/// Settings of the data file that are the operator's, carried across a
/// reopen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Mode of the log and of every file written beside it
    /// (`--file-mode`).
    pub mode: u32,
    /// Start even where the file's `flock` is not known to keep a second
    /// daemon out (`--allow-unlocked-fs`).
    pub allow_unlocked_fs: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            mode: 0o640,
            allow_unlocked_fs: false,
        }
    }
}

/// File systems whose `flock` does not keep a daemon on another host (or,
/// for some FUSE ones, another process) out: NFS (with `local_lock=flock`
/// or `nolock`), SMB/CIFS, FUSE, 9p, Ceph. `statfs` magic numbers.
const UNLOCKED_FS: [(i64, &str); 7] = [
    (0x6969, "NFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "Ceph"),
];

/// Checks that the `flock` just taken on `file` really keeps a second
/// daemon out: the file system is not one whose locks are local to a host
/// or not kept at all, and a second open file description of the same file
/// in this process is refused the lock, as any other would be. Two daemons
/// on one file both acknowledge records and each overwrites the other's.
fn lock_is_enforced(path: &Path, file: &File) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let refuse = |why: String| {
        Err(io_err(path, "lock")(io::Error::other(format!(
            "{why}: a second joblogd (on this or another host) could write the same file, \
             and each would overwrite the other's records. Keep the log on a local file \
             system, or pass --allow-unlocked-fs if you make sure only one daemon ever \
             writes it"
        ))))
    };
    // SAFETY: `statfs` fills the zeroed struct for a descriptor we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } == 0 {
        #[allow(clippy::unnecessary_cast)]
        let kind = st.f_type as i64;
        if let Some((_, name)) = UNLOCKED_FS.iter().find(|(m, _)| *m == kind) {
            return refuse(format!(
                "the log file is on {name}, where flock is not enforced"
            ));
        }
    }
    let probe = File::open(path).map_err(io_err(path, "open"))?;
    let enforced = match probe.try_lock() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(e)) => return Err(io_err(path, "lock")(e)),
    };
    if !enforced || injected_fault() == Some(Fault::LockUnenforced) {
        return refuse("a second lock on the log file was granted beside ours".to_string());
    }
    Ok(())
}

/// Page size assumed for rounding; the kernel rounds again to its own.
const PAGE: u64 = 4096;

/// [`Store::settle`]: how often it looks, how long the file must stay
/// unchanged (ending like an array, or not), and how long it waits at most.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(20);
const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_millis(100);
const SETTLE_QUIET_DAMAGED: std::time::Duration = std::time::Duration::from_secs(1);
const SETTLE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// A large batch is written in pieces of this size (see
/// [`Store::append`]).
const WRITE_PIECE: usize = 4 << 20;

/// At most this many buffers per `pwritev` (the kernel's `IOV_MAX`).
const MAX_IOVECS: usize = 1024;

/// Writes all of `bufs` at offset `at`, resuming after short writes.
fn pwrite_all(file: &File, mut bufs: &mut [IoSlice<'_>], mut at: u64) -> io::Result<()> {
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
fn start_writeback(file: &File, at: u64, len: usize) {
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

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// `YYYYmmddTHHMMSS` in local time, for names of files set aside.
pub fn file_timestamp() -> String {
    let t = crate::time::LocalTime::now();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
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

    /// Records in the sidecar that the file, as it is now, is the daemon's
    /// (a commit that vouches for no bytes of its own; see [`commits`]).
    fn commit_taken_over(&mut self) -> Result<(), StoreError> {
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
        let meta = self.file.metadata().map_err(io_err(&self.path, "stat"))?;
        let end = self.content_end;
        self.commits
            .commit(end, end, self.records, 0, Some(Stamp::of(&meta)))
            .map_err(io_err(self.commits.path(), "write"))
    }

    /// Takes over the file's `len` bytes as they are: scans them, and if
    /// they are not a valid array copies the original aside and keeps the
    /// complete records (see [`Store::open`]). Shared by the start-up and
    /// [`Store::rescan`]; the store's counts change only once it worked.
    fn adopt(
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

    /// Has another process changed the file since the daemon's last write
    /// (see [`Stamp`])? One `fstat`; an error counts as no change (the
    /// next flush reports it).
    pub fn changed_underneath(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| Stamp::of(&m) != self.stamp)
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
    fn settle(&self) {
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
    fn ends_like_an_array(&self) -> bool {
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

    /// Notes the file as the daemon's own write just left it.
    fn restamp(&mut self) {
        if let Ok(m) = self.file.metadata() {
            self.stamp = Stamp::of(&m);
        }
    }

    /// Are the bytes past the last record still the ones the daemon wrote
    /// there: the closing `]` (and whitespace)? Then a file that grew was
    /// only appended to, and only the bytes past the old end need setting
    /// aside.
    fn closing_intact(&self) -> bool {
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
    fn set_aside(
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
    fn keep_appended(&mut self, len: u64) -> Result<PathBuf, StoreError> {
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

    /// Writes `tail` at `at`, cuts the file there, syncs.
    fn rewrite_tail(&mut self, at: u64, tail: &[u8]) -> Result<(), StoreError> {
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
    fn cut_while_writing(&self) -> bool {
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

    /// Where the first data at or after `at` starts (`SEEK_DATA`), if the
    /// file system tells.
    fn data_after(&self, at: u64) -> Option<u64> {
        use std::os::fd::AsRawFd;
        let at = libc::off_t::try_from(at).ok()?;
        // SAFETY: `lseek` on a descriptor we own; every access is
        // positional, and `adopt` seeks back to the start.
        let data = unsafe { libc::lseek(self.file.as_raw_fd(), at, libc::SEEK_DATA) };
        u64::try_from(data).ok()
    }

    /// The byte at `at`, if it can be read.
    fn byte_at(&self, at: u64) -> Option<u8> {
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
    fn landed_as_written(&self, before: Option<u8>, parts: &[&[u8]]) -> bool {
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

    /// How much of the first `limit` bytes a cut left: up to the first
    /// hole in the file (where nothing was written since the cut), without
    /// the zero bytes that end its last block. A file system that cannot
    /// tell holes leaves only the trimming of the last block.
    fn left_by_cut(&self, limit: u64) -> u64 {
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

    /// The test seam's faults that strike before or instead of a batch's
    /// write (hidden `--fault-file`, see [`FAULT_FILE`]); without a fault,
    /// nothing.
    fn before_write(&mut self, fault: Option<Fault>, parts: &[&[u8]]) -> Result<(), StoreError> {
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
    fn write_batch(&mut self, parts: &[&[u8]], len: usize, count: u64) -> Result<(), StoreError> {
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
        // In pieces of about WRITE_PIECE bytes, each handed to the disk as
        // soon as it is copied (`sync_file_range` only starts write-back; it
        // waits for nothing), so the device writes one piece while the next
        // is copied into the page cache, and the `fdatasync` below finds
        // most of the batch already on its way. The array is torn only
        // while this flush runs, as with one large write.
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
        // The commit goes with the batch: its slot written now, and the
        // sidecar synced while the log is (see `Commits::commit_batch`).
        // Its checksum covers the records, not the `\n]` the next batch
        // overwrites.
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
            .map_err(io_err(&self.path, "sync"))?;
        if self.fsync == FsyncPolicy::Always && self.page_cache == PageCache::Drop {
            // The batch ends with the closing `\n]`: the next append
            // starts 2 bytes before `end`.
            self.drop_cached(end.saturating_sub(2));
        }
        Ok(())
    }

    /// Hands the durable whole pages before `next` (where the next append
    /// will write) back to the kernel. The page holding `next` is kept: a
    /// dropped page that is then partly rewritten would have to be read
    /// back from disk first. Only a hint: an error leaves pages cached.
    fn drop_cached(&mut self, next: u64) {
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

    /// Sets what happens to written pages (see [`PageCache`]); pages of the
    /// file as it is now are left alone.
    pub fn set_page_cache(&mut self, page_cache: PageCache) {
        self.page_cache = page_cache;
        self.dropped_to = self.content_end - self.content_end % PAGE;
    }

    pub fn page_cache(&self) -> PageCache {
        self.page_cache
    }

    /// Makes everything written so far durable, whatever the fsync policy
    /// (used at shutdown).
    ///
    /// # Errors
    /// The sync failed.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file.sync_all().map_err(io_err(&self.path, "sync"))
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn fsync(&self) -> FsyncPolicy {
        self.fsync
    }

    /// `--file-mode` and `--allow-unlocked-fs`, kept for a reopen.
    pub fn options(&self) -> FileOptions {
        self.options
    }

    /// Is the file at our path still the one we have open? False after an
    /// external rotation renamed or deleted it.
    pub fn is_at_path(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Offset just past the last record (or past `[`): where the next
    /// record's separator goes.
    pub fn content_end(&self) -> u64 {
        self.content_end
    }

    /// A handle for reading records back (`pread`), valid for the file as it
    /// is now even after a `clear` renames it.
    ///
    /// # Errors
    /// The descriptor could not be duplicated.
    pub fn reader(&self) -> io::Result<File> {
        self.file.try_clone()
    }

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
        // The old descriptor (and its lock) closes here; the archive is
        // complete and synced.
        self.file = file;
        self.records = 0;
        self.file_len = 2;
        self.content_end = 1;
        self.dropped_to = 0;
        self.restamp();
        Ok(archive)
    }

    /// A new file at `at` holding `[]`, with the log's mode, locked and
    /// synced.
    fn new_empty_log(&self, at: &Path) -> Result<File, StoreError> {
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's random id from its sidecar, as 32 hex digits.
    pub fn log_id(&self) -> String {
        self.commits
            .log_id()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Bytes of the file, as a JSON array.
    pub fn len(&self) -> u64 {
        self.file_len
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

/// The test seam for disk faults (`--fault-file`, hidden): when set, the
/// file it names is read before each batch and its first word decides the
/// outcome: `enospc` (the write fails, nothing written), `torn` (half the
/// batch is written, then EIO), `fsync` (the write succeeds, the sync fails
/// with EIO), `panic` (the writer fails), `cut [N]` (the file is cut to N
/// bytes just before one write, as by someone else's truncate; the seam
/// then empties the file), `clear-enospc` (writing the new, empty file of
/// a `clear` fails), `dirsync` (syncing a directory fails), `torn-full`
/// (as `torn`, and re-closing the array fails too), `lock-unenforced`
/// (at start, the lock probe is granted). Anything else, or no file,
/// means no fault.
/// Tests flip it to prove that failed writes are never acknowledged and
/// are rewritten whole.
pub static FAULT_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    NoSpace,
    TornWrite,
    SyncFails,
    /// The writer itself fails (a bug): what the daemon does then.
    Panic,
    /// Writing the new, empty file of a `clear` fails with ENOSPC.
    ClearNoSpace,
    /// Syncing a directory (after a file in it was created or renamed)
    /// fails with EIO.
    DirSyncFails,
    /// A full copy-on-write disk: half the batch lands, then the write
    /// fails, and re-closing the array fails too (ENOSPC).
    TornFull,
    /// The file system grants a second `flock` beside ours (read at
    /// start).
    LockUnenforced,
    /// The file is cut to this many bytes just before the batch is written
    /// (`cut [N]`, once), as a `copytruncate` could.
    Cut(u64),
}

fn injected_fault() -> Option<Fault> {
    let path = FAULT_FILE.get()?;
    let text = fs::read_to_string(path).ok()?;
    let mut words = text.split_whitespace();
    match words.next()? {
        "cut" => Some(Fault::Cut(
            words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
        )),
        "enospc" => Some(Fault::NoSpace),
        "torn" => Some(Fault::TornWrite),
        "fsync" => Some(Fault::SyncFails),
        "panic" => Some(Fault::Panic),
        "clear-enospc" => Some(Fault::ClearNoSpace),
        "dirsync" => Some(Fault::DirSyncFails),
        "torn-full" => Some(Fault::TornFull),
        "lock-unenforced" => Some(Fault::LockUnenforced),
        _ => None,
    }
}

/// Held while a batch is being written and synced; see [`crate::signals`].
pub static WRITE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Suffix of a copy of a damaged file while it is being written.
const PARTIAL: &str = ".partial";

/// Copies the first `len` bytes of `src` to a new file `dst` and syncs
/// it, in pieces, reporting progress: a damaged log of tens of GB takes
/// minutes to copy, and the service manager must hear that the daemon is
/// still busy. Write-back of each piece starts as soon as it is written, so
/// the final sync does not wait for the whole file at once.
///
/// The bytes go to `<dst>.partial`, renamed to `dst` only once complete and
/// synced: a daemon killed mid-copy (by a start timeout, say) must not
/// leave a file named like a whole copy of the original for someone to
/// restore from. A failed copy removes its partial file; a killed one is
/// removed by the next start ([`remove_partial_copies`]).
fn copy_aside(
    src: &File,
    from: u64,
    len: u64,
    dst: &Path,
    mode: u32,
    on_copy: &mut impl FnMut(u64, u64),
) -> io::Result<()> {
    const PIECE: usize = 8 << 20;
    if dst.exists() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    let partial = PathBuf::from(format!("{}{PARTIAL}", dst.display()));
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)?;
    let copied = (|| {
        out.set_permissions(fs::Permissions::from_mode(mode))?;
        let mut buf = vec![0u8; PIECE.min(usize::try_from(len).unwrap_or(PIECE)).max(1)];
        let mut at = 0u64;
        on_copy(0, len);
        while at < len {
            let n = buf
                .len()
                .min(usize::try_from(len - at).unwrap_or(usize::MAX));
            src.read_exact_at(&mut buf[..n], from + at)?;
            out.write_all_at(&buf[..n], at)?;
            start_writeback(&out, at, n);
            at += n as u64;
            on_copy(at, len);
        }
        out.sync_all()?;
        fs::rename(&partial, dst)
    })();
    if copied.is_err() {
        let _ = fs::remove_file(&partial);
    }
    copied
}

/// Removes `<path>.corrupt-*.partial` and `<path>.appended-*.partial`
/// files beside the log: copies that a daemon stopped before finishing.
/// The log they came from was left as it was (it is cut only after a
/// complete copy), so the next start or flush copies again in full. Only
/// names of that exact shape are touched.
fn remove_partial_copies(path: &Path) -> Vec<PathBuf> {
    let (Some(name), dir) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return Vec::new();
    };
    let dir = dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefixes = [
        format!("{name}.corrupt-"),
        format!("{name}.appended-"),
        format!("{name}.clearing-"),
        format!("{name}.meta"),
    ];
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && prefixes.iter().any(|p| n.starts_with(p)) && n.ends_with(PARTIAL) {
            let p = entry.path();
            if fs::remove_file(&p).is_ok() {
                removed.push(p);
            }
        }
    }
    removed.sort();
    removed
}

/// `path`, or `path.1`, `path.2`… if it exists already: a set-aside copy
/// never replaces an earlier one.
/// The first of `make(0)`, `make(1)`, … that does not exist: for names
/// whose ending must stay as it is (`.from-<offset>`, `.partial`).
fn unique_by(make: impl Fn(u32) -> PathBuf) -> PathBuf {
    (0..)
        .map(&make)
        .find(|p| !p.exists())
        .unwrap_or_else(|| make(0))
}

fn unique_path(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    (1..)
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .find(|p| !p.exists())
        .unwrap_or(path)
}

/// The sidecar of the log at `path` (open as `file`): the one found, or a
/// new one (a log the Python logger wrote, or one whose sidecar belonged
/// to another file) made under a temporary name and renamed into place,
/// its directory synced.
fn open_commits(
    path: &Path,
    file: &File,
    found: Option<&commits::Found>,
    mode: u32,
    fsync: FsyncPolicy,
) -> Result<Commits, StoreError> {
    let sync = fsync == FsyncPolicy::Always;
    let at = commits::path_for(path);
    if let Some(found) = found {
        return Commits::resume(path, found, mode, sync).map_err(io_err(&at, "open"));
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

/// Renames each `(from, to)` in turn, then syncs their directory (all are
/// in one). If a step fails, those done are renamed back, newest first,
/// so that the files are as they were (if even that fails, nothing is
/// deleted: every record is still under one of the names).
fn rename_all(steps: &[(PathBuf, PathBuf)]) -> Result<(), StoreError> {
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
            let _ = fs::rename(to, from);
        }
        let _ = sync_dir(first);
    }
    res
}

/// Makes the directory entries of `path`'s directory durable (a new or
/// renamed file's name). On file systems that do not journal names with
/// the data (ext2, ext4 without a journal, some FUSE and NFS setups) a
/// file's synced bytes can otherwise lose their name in a power cut, so a
/// failure is an error like a failed `fdatasync`.
fn sync_dir(path: &Path) -> io::Result<()> {
    if injected_fault() == Some(Fault::DirSyncFails) {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

struct Scan {
    records: u64,
    content_end: u64,
    scanned: u64,
    /// `None` when the file is a valid array (whitespace may follow `]`).
    problem: Option<String>,
}

/// Bytes read per step of the start-up scan; a record larger than this
/// grows the window to hold it whole.
const SCAN_CHUNK: usize = 1 << 20;

/// Streams through the file once, never holding more than one chunk plus
/// the record that spans it, and finds the longest prefix of complete
/// records. Accepts what Python's `json.load` accepts in a file written by
/// the Python logger (including `NaN`), at any nesting depth up to a
/// generous limit.
fn scan(
    file: &File,
    limit: Option<u64>,
    on_record: &mut impl FnMut(ScannedRecord, &[u8], &RawMeta),
) -> io::Result<Scan> {
    /// Python's decoder recurses; this is far beyond what it reads.
    const FILE_DEPTH: usize = 10_000;
    enum State {
        Open,
        FirstOrClose,
        CommaOrClose,
        Value,
        Done,
    }
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK);
    let mut base: u64 = 0; // file offset of buf[0]
    let mut pos = 0usize; // consumed up to here in buf
    let mut eof = false;
    let mut state = State::Open;
    let mut fmt = Formatter::new();
    let mut out = Scan {
        records: 0,
        content_end: 0,
        scanned: 0,
        problem: None,
    };
    let limit = limit.unwrap_or(u64::MAX);
    let uncommitted = |at: u64| {
        format!(
            "the bytes from byte {} on were never committed, or no longer match their commit \
             (a batch the daemon was writing when it was killed or the power failed)",
            at + 1
        )
    };
    // Refills when `pos` reaches the end of what is buffered (or when a
    // value needs more bytes). Returns false at end of file.
    let fill =
        |buf: &mut Vec<u8>, base: &mut u64, pos: &mut usize, want_more: bool| -> io::Result<bool> {
            if *pos > 0 && (*pos >= buf.len() / 2 || want_more) {
                buf.drain(..*pos);
                *base += *pos as u64;
                *pos = 0;
            }
            let target = if want_more {
                buf.len().max(SCAN_CHUNK) * 2
            } else {
                SCAN_CHUNK
            };
            if buf.len() >= target {
                return Ok(true);
            }
            let old = buf.len();
            // Into spare capacity, which a File reads into without it being
            // zeroed first (zeroing cost 3% of a scan); `read_to_end` stops
            // at the limit or at the end of the file and retries EINTR.
            buf.reserve(target - old);
            file.take((target - old) as u64).read_to_end(buf)?;
            Ok(buf.len() > old)
        };
    loop {
        // Skip whitespace, refilling as needed.
        while pos < buf.len() && matches!(buf[pos], b' ' | b'\t' | b'\n' | b'\r') {
            pos += 1;
        }
        if pos == buf.len() {
            if eof || !fill(&mut buf, &mut base, &mut pos, false)? {
                eof = true;
            }
            if pos == buf.len() {
                if !eof {
                    continue;
                }
                out.scanned = base + pos as u64;
                if !matches!(state, State::Done) {
                    out.problem = Some(format!(
                        "the file ends before the array is closed (after {} complete records)",
                        out.records
                    ));
                }
                return Ok(out);
            }
            continue;
        }
        let b = buf[pos];
        let here = base + pos as u64;
        match state {
            // A UTF-8 byte order mark (an editor's, or Python's `utf-8-sig`)
            // is kept and skipped, as jq and `json.loads(bytes)` skip it:
            // treating it as damage would take the whole history out of
            // the live file.
            State::Open if here == 0 && buf[pos..].starts_with(b"\xEF\xBB\xBF") => pos += 3,
            State::Open => {
                if b != b'[' {
                    out.problem = Some(format!(
                        "byte {} is not the '[' that opens an array",
                        here + 1
                    ));
                    out.scanned = here;
                    return Ok(out);
                }
                pos += 1;
                out.content_end = here + 1;
                state = State::FirstOrClose;
            }
            State::FirstOrClose | State::CommaOrClose if b == b']' => {
                pos += 1;
                state = State::Done;
            }
            State::FirstOrClose | State::CommaOrClose if here >= limit => {
                out.problem = Some(uncommitted(here));
                out.scanned = here;
                return Ok(out);
            }
            State::FirstOrClose => state = State::Value,
            State::CommaOrClose => {
                if b != b',' {
                    out.problem = Some(format!("expected ',' or ']' at byte {}", here + 1));
                    out.scanned = here;
                    return Ok(out);
                }
                pos += 1;
                state = State::Value;
            }
            State::Value => match fmt.validate(&buf, pos, FILE_DEPTH, false) {
                Ok(f) if here + (f.end - pos) as u64 > limit => {
                    out.problem = Some(uncommitted(out.content_end));
                    out.scanned = here;
                    return Ok(out);
                }
                Ok(f) => {
                    let rec = ScannedRecord {
                        offset: here,
                        len: (f.end - pos) as u64,
                    };
                    let meta = RawMeta::from_scanned(&buf, &fmt, pos);
                    on_record(rec, &buf[pos..f.end], &meta);
                    out.records += 1;
                    out.content_end = here + rec.len;
                    pos = f.end;
                    state = State::CommaOrClose;
                }
                Err(JsonError::Incomplete) if !eof => {
                    if !fill(&mut buf, &mut base, &mut pos, true)? {
                        eof = true;
                    }
                }
                Err(e) => {
                    let n = out.records + 1;
                    out.problem = Some(match e {
                        JsonError::Incomplete => {
                            format!("record {n} is cut short by the end of the file")
                        }
                        JsonError::Syntax { offset, what } => {
                            format!(
                                "record {n} is damaged: {what} at byte {}",
                                base + offset as u64 + 1
                            )
                        }
                        JsonError::Utf8 { offset } => {
                            format!(
                                "record {n} is damaged: invalid UTF-8 at byte {}",
                                base + offset as u64 + 1
                            )
                        }
                        JsonError::TooDeep { offset } => {
                            format!(
                                "record {n} is nested too deeply at byte {}",
                                base + offset as u64 + 1
                            )
                        }
                        JsonError::NotObject { .. } => format!("record {n} is damaged"),
                        // The scan validates without output, so no output
                        // limit applies; kept for a total match.
                        JsonError::TooLarge { limit } => {
                            format!("record {n} is larger than {limit} bytes")
                        }
                    });
                    out.scanned = here;
                    return Ok(out);
                }
            },
            State::Done => {
                out.problem = Some(format!(
                    "unexpected bytes after the closing ']' at byte {}",
                    here + 1
                ));
                out.scanned = here;
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("joblogd-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("log.json")
    }

    fn open(path: &Path) -> (Store, Recovery, Vec<String>) {
        let mut seen = Vec::new();
        let (s, r) = Store::open(
            path,
            FsyncPolicy::Always,
            FileOptions::default(),
            |_, b, _| seen.push(String::from_utf8(b.to_vec()).unwrap()),
            |_, _| {},
        )
        .unwrap();
        (s, r, seen)
    }

    /// A damaged file is set aside in pieces (with progress reports): the
    /// copy holds exactly the original bytes, across piece boundaries.
    #[test]
    fn copy_aside_copies_every_byte_in_pieces() {
        let src_path = tmp("copy-aside");
        let len = (20 << 20) + 12_345;
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        fs::write(&src_path, &bytes).unwrap();
        let dst = src_path.with_extension("copy");
        let mut seen = Vec::new();
        copy_aside(
            &File::open(&src_path).unwrap(),
            0,
            len as u64,
            &dst,
            0o640,
            &mut |done, total| {
                // Until it is whole, the copy does not carry its name.
                assert!(
                    !dst.exists(),
                    "{} exists at {done} of {total}",
                    dst.display()
                );
                seen.push((done, total));
            },
        )
        .unwrap();
        assert_eq!(fs::read(&dst).unwrap(), bytes);
        assert_eq!(seen.first(), Some(&(0, len as u64)));
        assert_eq!(seen.last(), Some(&(len as u64, len as u64)));
        assert!(seen.len() >= 4, "in pieces: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
        // Never over an existing file.
        assert!(
            copy_aside(
                &File::open(&src_path).unwrap(),
                0,
                1,
                &dst,
                0o640,
                &mut |_, _| {}
            )
            .is_err()
        );
        let _ = fs::remove_dir_all(src_path.parent().unwrap());
    }

    #[test]
    fn creates_appends_and_reopens() {
        let p = tmp("basic");
        let (mut s, r, _) = open(&p);
        assert!(r.created);
        assert_eq!(fs::read(&p).unwrap(), b"[]");
        s.append(&[b",\n  {\n    \"a\": 1\n  }".to_vec()], 1)
            .unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "[\n  {\n    \"a\": 1\n  }\n]"
        );
        s.append(&[b",\n  {}".to_vec()], 1).unwrap();
        assert_eq!(
            fs::read_to_string(&p).unwrap(),
            "[\n  {\n    \"a\": 1\n  },\n  {}\n]"
        );
        drop(s);
        let (_, r, seen) = open(&p);
        assert_eq!(r.records, 2);
        assert!(r.problem.is_none());
        assert_eq!(seen, vec!["{\n    \"a\": 1\n  }", "{}"]);
    }

    #[test]
    fn second_open_is_locked_out() {
        let p = tmp("lock");
        let (_s, _, _) = open(&p);
        let err = Store::open(
            &p,
            FsyncPolicy::Always,
            FileOptions::default(),
            |_, _, _| {},
            |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::Locked(_)));
    }

    #[test]
    fn torn_tail_keeps_prefix_and_copies_original() {
        for (content, kept, expect) in [
            (
                &b"[\n  {\"a\": 1},\n  {\"b\": [1, 2"[..],
                1,
                "[\n  {\"a\": 1}\n]",
            ),
            (b"[\n  {\"a\": 1}\n]\0\0\0\0", 1, "[\n  {\"a\": 1}\n]"),
            (b"[\n  {\"a\": 1}\n]garbage", 1, "[\n  {\"a\": 1}\n]"),
            (b"[\n  {\"a\": 1},", 1, "[\n  {\"a\": 1}\n]"),
            (b"[\n  {\"a\"", 0, "[]"),
            (b"garbage", 0, "[]"),
            (b"   ", 0, "[]"),
        ] {
            let p = tmp("torn");
            fs::write(&p, content).unwrap();
            let (s, r, seen) = open(&p);
            assert_eq!(r.records, kept, "{content:?}");
            assert_eq!(seen.len() as u64, kept);
            assert_eq!(fs::read_to_string(&p).unwrap(), expect);
            // Only the bytes cut are copied, named by where they were.
            let copy = r.corrupt_copy.expect("corrupt copy made");
            let from: usize = copy
                .to_string_lossy()
                .rsplit(".from-")
                .next()
                .and_then(|n| n.parse().ok())
                .expect("the copy's name tells its offset");
            assert_eq!(fs::read(&copy).unwrap(), &content[from..]);
            assert_eq!(r.cut_bytes, (content.len() - from) as u64);
            assert!(expect.len() <= 2 || expect.as_bytes()[..from] == content[..from]);
            assert_eq!(s.records(), kept);
        }
    }

    /// A copy cut short (daemon killed mid-copy) never carries the name of a
    /// whole copy, and the next start removes it and copies again in full;
    /// files of other shapes or other logs are left alone.
    #[test]
    fn an_unfinished_copy_is_never_named_as_whole_and_is_removed_at_start() {
        let p = tmp("partial");
        let dir = p.parent().unwrap().to_path_buf();
        let content = b"[\n  {\"a\": 1},\n  {\"b\"";
        fs::write(&p, content).unwrap();
        let stale = dir.join("log.json.corrupt-20260101T000000.partial");
        fs::write(&stale, &content[..5]).unwrap();
        let appended = dir.join("log.json.appended-20260101T000000.partial");
        fs::write(&appended, b"junk").unwrap();
        // A `clear` stopped before its new file was swapped in.
        let clearing = dir.join("log.json.clearing-20260101T000000.partial");
        fs::write(&clearing, b"[]").unwrap();
        let keep = [
            dir.join("log.json.corrupt-20260101T000000"),
            dir.join("other.json.corrupt-20260101T000000.partial"),
            dir.join("log.json.partial"),
        ];
        for k in &keep {
            fs::write(k, b"x").unwrap();
        }
        let (_s, r, _) = open(&p);
        let mut removed = r.removed_partials.clone();
        removed.sort();
        assert_eq!(
            removed,
            vec![appended.clone(), clearing.clone(), stale.clone()]
        );
        assert!(!stale.exists() && !appended.exists() && !clearing.exists());
        for k in &keep {
            assert!(k.exists(), "{} was removed", k.display());
        }
        let copy = r.corrupt_copy.expect("corrupt copy made");
        assert_eq!(
            fs::read(&copy).unwrap(),
            &content[content.len() - r.cut_bytes as usize..]
        );
        let partials: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("log.json.corrupt-") && n.ends_with(".partial"))
            .collect();
        assert!(partials.is_empty(), "left behind: {partials:?}");

        // A copy that fails part way (the source is shorter than asked)
        // leaves neither a whole-looking copy nor a partial one.
        let dst = dir.join("log.json.corrupt-failed");
        let short = File::open(&p).unwrap();
        assert!(copy_aside(&short, 0, 1 << 30, &dst, 0o640, &mut |_, _| {}).is_err());
        assert!(!dst.exists());
        assert!(!dir.join("log.json.corrupt-failed.partial").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    /// Only another process's change counts as one: a size the store got
    /// wrong after a failed write or sync (the file cut back to its last
    /// good state, but `file_len` still larger), or its own clean-up that
    /// failed half way, must never be taken for it, or a good log would be
    /// taken over again (or restarted as `[]`).
    #[test]
    fn only_another_process_changing_the_file_counts_as_a_change() {
        let p = tmp("truncated");
        let (mut s, _, _) = open(&p);
        s.append(
            &[b",\n  {\"a\": 1}".to_vec(), b",\n  {\"b\": 2}".to_vec()],
            2,
        )
        .unwrap();
        let good = fs::read_to_string(&p).unwrap();
        // Stale, larger idea of the size; the file itself intact.
        s.file_len += 100;
        s.append(&[b",\n  {\"c\": 3}".to_vec()], 1).unwrap();
        assert_eq!(read_log_str(&p).len(), 3);
        assert!(
            fs::read_to_string(&p)
                .unwrap()
                .starts_with(&good[..good.len() - 2])
        );
        // The closing bracket gone by our own clean-up that failed half
        // way (stamped as ours, as `append` does after a failed write):
        // not a change; the append writes a new one.
        let end = s.content_end();
        let cut = |to: u64| {
            fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(to)
                .unwrap();
        };
        cut(end);
        s.restamp();
        s.append(&[b",\n  {\"d\": 4}".to_vec()], 1).unwrap();
        assert_eq!(read_log_str(&p).len(), 4);
        assert!(!s.changed_underneath());
        // Cut into the records by someone else: a change, nothing written.
        let end = s.content_end();
        cut(end - 3);
        assert!(s.changed_underneath());
        let e = s.append(&[b",\n  {\"e\": 5}".to_vec()], 1).unwrap_err();
        assert!(matches!(e, StoreError::Changed { .. }), "{e}");
        // Cut to nothing (copytruncate): taken over as a new array.
        cut(0);
        let e = s.append(&[b",\n  {\"e\": 5}".to_vec()], 1).unwrap_err();
        assert!(matches!(e, StoreError::Changed { .. }), "{e}");
        let mut seen = 0;
        s.rescan(|_, _, _| seen += 1).unwrap();
        assert_eq!((seen, s.records()), (0, 0));
        s.append(&[b",\n  {\"e\": 5}".to_vec()], 1).unwrap();
        assert_eq!(read_log_str(&p).len(), 1);
        let _ = fs::remove_dir_all(p.parent().unwrap());
    }

    /// Another logger rewrote the file whole (Python's load, append,
    /// `json.dump`), with one record of ours gone and one of its own: the
    /// rescan keeps every complete record where it is, and appends go on
    /// after them.
    #[test]
    fn a_rewritten_file_is_taken_over_as_it_is() {
        let p = tmp("rewritten");
        let (mut s, _, _) = open(&p);
        s.append(
            &[b",\n  {\"a\": 1}".to_vec(), b",\n  {\"b\": 2}".to_vec()],
            2,
        )
        .unwrap();
        fs::write(
            &p,
            b"[\n  {\n    \"a\": 1\n  },\n  {\n    \"old\": true\n  }\n]",
        )
        .unwrap();
        let e = s.append(&[b",\n  {\"c\": 3}".to_vec()], 1).unwrap_err();
        assert!(matches!(e, StoreError::Changed { .. }), "{e}");
        let mut seen = Vec::new();
        let r = s
            .rescan(|_, b, _| seen.push(String::from_utf8(b.to_vec()).unwrap()))
            .unwrap();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].contains("old"));
        assert!(r.corrupt_copy.is_none());
        assert_eq!(s.records(), 2);
        s.append(&[b",\n  {\"c\": 3}".to_vec()], 1).unwrap();
        let all = read_log_str(&p);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1]["old"], true);
        assert_eq!(all[2]["c"], 3);
        let _ = fs::remove_dir_all(p.parent().unwrap());
    }

    fn read_log_str(p: &Path) -> Vec<serde_json::Value> {
        serde_json::from_slice(&fs::read(p).unwrap()).expect("a valid JSON array")
    }

    #[test]
    fn valid_file_with_trailing_whitespace_and_nan_is_kept() {
        let p = tmp("ws");
        fs::write(&p, b"[{\"a\": NaN}]\n\n").unwrap();
        let (mut s, r, _) = open(&p);
        assert!(r.problem.is_none(), "{:?}", r.problem);
        assert_eq!(r.records, 1);
        s.append(&[b",\n  {}".to_vec()], 1).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "[{\"a\": NaN},\n  {}\n]");
    }

    #[test]
    fn scan_handles_records_larger_than_a_chunk() {
        let p = tmp("big");
        let big = format!("{{\"t\": \"{}\"}}", "x".repeat(3 * SCAN_CHUNK + 17));
        let content = format!("[\n  {big},\n  {{\"b\": 1}},\n  {big}\n]");
        fs::write(&p, &content).unwrap();
        let (_, r, seen) = open(&p);
        assert!(r.problem.is_none());
        assert_eq!(seen, vec![big.clone(), "{\"b\": 1}".to_string(), big]);
    }
}
