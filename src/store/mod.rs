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
//!
//! Where things are: this file holds the types and the small accessors;
//! `open` opening and taking a file over (start-up, repair, `rescan`
//! after another writer), with `scan` (the streaming scan) and `lock`
//! (is the `flock` enforced?); `append` the write path; `clear`; `aside`
//! the copies beside the log and directory syncs; `commits` the commit
//! sidecar and `crc32c` its checksum; `fault` the test seam.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::index::RawMeta;
use crate::json::{Formatter, JsonError};

mod append;
mod archives;
mod aside;
mod clear;
pub(crate) mod commits;
mod crc32c;
mod fault;
mod lock;
mod open;
mod scan;

pub(crate) use append::WRITE_LOCK;
pub(crate) use archives::{Archives, Listed, list as list_archives};
pub(crate) use aside::sync_dir;
pub(crate) use commits::path_for as sidecar_path;
pub(crate) use fault::FAULT_FILE;

// Shared by the submodules (each takes `super::*`).
use append::start_writeback;
use aside::{PARTIAL, copy_aside, remove_partial_copies, unique_by, unique_path};
use fault::{Fault, injected_fault};
use lock::lock_is_enforced;
use scan::scan;

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
    /// docs/performance.md). With `--fsync never`, each batch's write-back
    /// is started at once (not waited for) and the pages of the batches
    /// before it are dropped once written back (the kernel keeps dirty
    /// ones).
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

impl StoreError {
    /// Did the batch's sync fail (the log's `fdatasync`, or the commit
    /// written and synced with it), after its bytes were written? The
    /// metrics count these apart: a disk that takes writes and loses them.
    pub(crate) fn in_sync(&self) -> bool {
        matches!(self, StoreError::Io { action: "sync", .. })
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
pub(crate) struct Stamp {
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
    /// With `--fsync never`, where the last batch began: its pages are
    /// dropped after the next batch, once their write-back (started when
    /// it was written) has had a batch's time to finish (the kernel keeps
    /// pages still dirty or under write-back, and `dropped_to` moves past
    /// them all the same).
    prev_batch_start: u64,
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

/// Page size assumed for rounding; the kernel rounds again to its own.
const PAGE: u64 = 4096;

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// `YYYYmmddTHHMMSS` in local time, for names of files set aside.
pub(crate) fn file_timestamp() -> String {
    let t = crate::time::LocalTime::now();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

impl Store {
    /// Has another process changed the file since the daemon's last write
    /// (see [`Stamp`])? One `fstat`; an error counts as no change (the
    /// next flush reports it).
    pub fn changed_underneath(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| Stamp::of(&m) != self.stamp)
    }

    /// Notes the file as the daemon's own write just left it.
    fn restamp(&mut self) {
        if let Ok(m) = self.file.metadata() {
            self.stamp = Stamp::of(&m);
        }
    }

    /// Sets what happens to written pages (see [`PageCache`]); pages of the
    /// file as it is now are left alone.
    pub fn set_page_cache(&mut self, page_cache: PageCache) {
        self.page_cache = page_cache;
        self.dropped_to = self.content_end - self.content_end % PAGE;
        self.prev_batch_start = self.dropped_to;
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

#[cfg(test)]
mod tests {
    use super::scan::SCAN_CHUNK;
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
