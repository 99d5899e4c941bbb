//! The commit sidecar, `<file>.meta`: which batches of the log are durable.
//!
//! The array file must stay byte for byte what Python writes, so it cannot
//! say which of its bytes were made durable whole. After a power cut a file
//! system may show the first sectors of a batch that was being written and,
//! after them, zeros or the stale bytes of an earlier batch that was cut
//! at the same offsets; such a mix can parse as JSON, and a record that
//! was never written whole would be kept. So each batch, once its
//! `fdatasync` returned, is recorded here (its offsets, record count and
//! CRC-32C) and this file is synced too, before any record of the batch is
//! acknowledged. At start-up only what a commit vouches for is kept: bytes
//! past the last commit that matches the file are set aside, however well
//! they parse ([`trust`]).
//!
//! Format (little-endian, 1,536 bytes: three 512-byte sectors, so a write
//! touches one sector and a torn one damages nothing else):
//!
//! ```text
//! sector 0, the header, written once when the sidecar is made:
//!    0  magic "JLDMETA1"
//!    8  version (u32, 1), 12 reserved (u32)
//!   16  log_id: 16 random bytes naming this log
//!   32  device, 40 inode (u64), 48 birth time seconds (i64), 56 birth
//!       time nanoseconds (u32): the log file this sidecar belongs to (an
//!       inode number is soon reused by a new file; its birth time is not)
//!   60  CRC-32C of bytes 0..60
//! sectors 1 and 2, commit slots, written in turn (commit n goes to slot n % 2):
//!    0  n, the commit's number (u64, from 0 when the sidecar was made)
//!    8  start, 16 end (u64): the bytes of the file the batch wrote,
//!       from the first record's separator to the end of its last record
//!   24  records (u64): records in the log after this batch
//!   32  CRC-32C of the file's bytes start..end (u32)
//!   36  flags (u32): 1 = written as the daemon stopped cleanly,
//!       2 = the log was archived and the log at bytes 64..80 follows it
//!   40  length (u64), 48 mtime seconds (i64), 56 mtime nanoseconds (i64)
//!       of the file when it stopped cleanly
//!   64  successor: the `log_id` of the log that took this one's place
//!       (flag 2), so a reader by position goes from an archive to the
//!       next log without skipping one
//!   80..124 reserved (zero)
//!  124  CRC-32C of bytes 0..124
//! ```
//!
//! Two slots, so that the newest complete commit survives a torn write of
//! the next one. A commit with `start == end` vouches for no bytes of its
//! own: it marks where the daemon took the file over (at start-up, after
//! a repair, after another process's change) and trusts the records
//! before `end` by their syntax alone, as a file taken over from the
//! Python logger is trusted. The reserved bytes leave room for a record
//! sequence base; `records` is already the sequence number of the next
//! record.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::crc32c;

mod trust;

pub(crate) use trust::trust;

const MAGIC: &[u8; 8] = b"JLDMETA1";
const VERSION: u32 = 1;
const SECTOR: usize = 512;
const SIZE: usize = 3 * SECTOR;
const HEADER_CRC_AT: usize = 60;
const SLOT_CRC_AT: usize = 124;
const CLEAN: u32 = 1;
const SUCCEEDED: u32 = 2;

/// The sidecar of the log at `log`: `<log>.meta`.
pub(crate) fn path_for(log: &Path) -> PathBuf {
    PathBuf::from(format!("{}.meta", log.display()))
}

/// One commit slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Commit {
    pub number: u64,
    pub start: u64,
    pub end: u64,
    pub records: u64,
    pub crc: u32,
    /// Set when written as the daemon stopped: the file's length and
    /// mtime then, to tell at the next start whether anyone changed it
    /// while no daemon was watching.
    pub clean: Option<super::Stamp>,
    /// The `log_id` of the log that took this one's place, once it was
    /// archived (`clear`) or rotated (see [`Commits::seal`]).
    pub successor: Option<[u8; 16]>,
}

impl Commit {
    fn encode(&self) -> [u8; SECTOR] {
        let mut s = [0u8; SECTOR];
        s[0..8].copy_from_slice(&self.number.to_le_bytes());
        s[8..16].copy_from_slice(&self.start.to_le_bytes());
        s[16..24].copy_from_slice(&self.end.to_le_bytes());
        s[24..32].copy_from_slice(&self.records.to_le_bytes());
        s[32..36].copy_from_slice(&self.crc.to_le_bytes());
        let mut flags = 0;
        if let Some(st) = self.clean {
            flags |= CLEAN;
            s[40..48].copy_from_slice(&st.len.to_le_bytes());
            s[48..56].copy_from_slice(&st.mtime.0.to_le_bytes());
            s[56..64].copy_from_slice(&st.mtime.1.to_le_bytes());
        }
        if let Some(next) = self.successor {
            flags |= SUCCEEDED;
            s[64..80].copy_from_slice(&next);
        }
        s[36..40].copy_from_slice(&flags.to_le_bytes());
        let crc = crc32c::of(&s[..SLOT_CRC_AT]);
        s[SLOT_CRC_AT..SLOT_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        s
    }

    /// A slot whose checksum holds (a torn or never-written one does not).
    fn decode(s: &[u8]) -> Option<Commit> {
        if s.len() < SLOT_CRC_AT + 4 || s.iter().all(|&b| b == 0) {
            return None;
        }
        if crc32c::of(&s[..SLOT_CRC_AT]) != le32(s, SLOT_CRC_AT) {
            return None;
        }
        let clean = (le32(s, 36) & CLEAN != 0).then(|| super::Stamp {
            len: le64(s, 40),
            mtime: (le64(s, 48) as i64, le64(s, 56) as i64),
        });
        let successor = (le32(s, 36) & SUCCEEDED != 0).then(|| {
            let mut id = [0u8; 16];
            id.copy_from_slice(&s[64..80]);
            id
        });
        Some(Commit {
            number: le64(s, 0),
            start: le64(s, 8),
            end: le64(s, 16),
            records: le64(s, 24),
            crc: le32(s, 32),
            clean,
            successor,
        })
    }
}

fn le64(s: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(b)
}

fn le32(s: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&s[at..at + 4]);
    u32::from_le_bytes(b)
}

/// What a sidecar said at start-up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    pub log_id: [u8; 16],
    /// Slots whose checksum holds, newest first.
    pub commits: Vec<Commit>,
    /// False when the header's checksum failed (its identity and `log_id`
    /// cannot be trusted): its commits still decide how far the log is
    /// kept, since a sidecar damaged with its file is when they matter
    /// most, and a new sidecar replaces it.
    pub header_ok: bool,
}

/// Which file a sidecar belongs to: inode and birth time, and the device
/// where the file system keeps no birth time (zero then). The device
/// number alone can change across a reboot (LVM, btrfs, NVMe numbering),
/// and a sidecar that stopped matching its own file would switch its
/// protection off just after a power cut; an inode number is reused at
/// once by a new file, its birth time is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    born: (i64, u32),
}

impl FileId {
    pub(crate) fn of(m: &fs::Metadata) -> FileId {
        let born = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or((0, 0), |d| {
                (i64::try_from(d.as_secs()).unwrap_or(0), d.subsec_nanos())
            });
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            born,
        }
    }

    fn encode(&self, h: &mut [u8]) {
        h[32..40].copy_from_slice(&self.dev.to_le_bytes());
        h[40..48].copy_from_slice(&self.ino.to_le_bytes());
        h[48..56].copy_from_slice(&self.born.0.to_le_bytes());
        h[56..60].copy_from_slice(&self.born.1.to_le_bytes());
    }

    fn is(&self, other: &FileId) -> bool {
        self.ino == other.ino
            && self.born == other.born
            && (self.born != (0, 0) || self.dev == other.dev)
    }

    fn decode(h: &[u8]) -> FileId {
        FileId {
            dev: le64(h, 32),
            ino: le64(h, 40),
            born: (le64(h, 48) as i64, le32(h, 56)),
        }
    }
}

/// Reads the sidecar of the log at `log`, whose file is `id`. `None` when
/// there is none, when it is damaged, or when it belongs to another file
/// (the log was rotated, deleted or replaced while it stayed behind): the
/// log is then trusted as a file from the Python logger is.
pub(crate) fn read(log: &Path, id: FileId) -> Option<Found> {
    let mut buf = vec![0u8; SIZE];
    let f = File::open(path_for(log)).ok()?;
    f.read_exact_at(&mut buf, 0).ok()?;
    let h = &buf[..SECTOR];
    if &h[..8] != MAGIC || le32(h, 8) != VERSION {
        return None;
    }
    let header_ok = crc32c::of(&h[..HEADER_CRC_AT]) == le32(h, HEADER_CRC_AT);
    if header_ok && !FileId::decode(h).is(&id) {
        return None;
    }
    let mut log_id = [0u8; 16];
    log_id.copy_from_slice(&h[16..32]);
    let mut commits: Vec<Commit> = buf[SECTOR..]
        .chunks_exact(SECTOR)
        .filter_map(Commit::decode)
        .collect();
    commits.sort_by_key(|c| std::cmp::Reverse(c.number));
    Some(Found {
        log_id,
        commits,
        header_ok,
    })
}

/// Where the commits of the log at `log` end, newest first, if it has a
/// sidecar of its own. The newest one's slot is written while its batch is
/// synced, so only the one before it is surely durable with its bytes. For
/// tools and tests that damage a log as a power cut would (a power cut
/// only tears what was written after the last durable commit).
pub fn committed_ends(log: &Path) -> Vec<u64> {
    let Ok(m) = fs::metadata(log) else {
        return Vec::new();
    };
    read(log, FileId::of(&m)).map_or_else(Vec::new, |f| f.commits.iter().map(|c| c.end).collect())
}

/// The open sidecar of the live log, which the store commits each durable
/// batch to.
#[derive(Debug)]
pub(crate) struct Commits {
    path: PathBuf,
    file: File,
    log_id: [u8; 16],
    next: u64,
    /// `--fsync always`: each commit is synced.
    sync: bool,
    /// Syncs the sidecar while the caller syncs the log (`--fsync
    /// always`; without the thread, the sidecar is synced after the log).
    syncer: Option<Syncer>,
}

/// A thread that `fdatasync`s the sidecar on request, so that a batch's
/// two syncs (the log's and its commit's) run at the same time: the
/// device can serve both flushes together, and an ack waits for one sync's
/// time instead of two (docs/performance.md). Ends when the sidecar is
/// dropped (its channel closes).
#[derive(Debug)]
struct Syncer {
    ask: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Receiver<io::Result<()>>,
    /// A sync was asked for whose result was not waited for (the log's
    /// sync had failed: the batch is lost either way, and its bytes are
    /// cut back at once rather than after the sidecar's sync); taken
    /// before the next request.
    unanswered: std::cell::Cell<bool>,
}

impl Syncer {
    fn start(file: &File) -> io::Result<Syncer> {
        let file = file.try_clone()?;
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (tell, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("joblogd-commit-sync".into())
            .spawn(move || {
                for () in asked {
                    if tell.send(file.sync_data()).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Syncer {
            ask,
            done,
            unanswered: std::cell::Cell::new(false),
        })
    }

    /// Syncs the sidecar on the thread while `alongside` runs here;
    /// returns both results (`alongside`'s, the sidecar's: `None` when the
    /// thread is gone).
    ///
    /// When `alongside` fails, returns at once without the sidecar's
    /// result (which then does not matter: the batch is not committed);
    /// that result is taken before the next request.
    fn sync_with(
        &self,
        alongside: impl FnOnce() -> io::Result<()>,
    ) -> (io::Result<()>, Option<io::Result<()>>) {
        if self.unanswered.replace(false) && self.done.recv().is_err() {
            return (alongside(), None);
        }
        if self.ask.send(()).is_err() {
            return (alongside(), None);
        }
        let here = alongside();
        if here.is_err() {
            self.unanswered.set(true);
            return (here, Some(Ok(())));
        }
        (here, self.done.recv().ok())
    }
}

impl Commits {
    /// Makes a new sidecar at `at` for the log file `log` (its device and
    /// inode tell later starts that it belongs to that file), with a fresh
    /// random `log_id`, synced. The caller renames it into place.
    ///
    /// # Errors
    /// It could not be created, written or synced.
    pub(crate) fn create(at: &Path, log: &File, mode: u32, sync: bool) -> io::Result<Commits> {
        let m = log.metadata()?;
        let mut log_id = [0u8; 16];
        random(&mut log_id)?;
        let mut h = vec![0u8; SIZE];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..32].copy_from_slice(&log_id);
        FileId::of(&m).encode(&mut h);
        let crc = crc32c::of(&h[..HEADER_CRC_AT]);
        h[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        let _ = fs::remove_file(at);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(at)?;
        // As the log's own: a mode that cannot be set is not worth a failed
        // start (the file is new, and ours).
        let _ = file.set_permissions(fs::Permissions::from_mode(mode));
        file.write_all_at(&h, 0)?;
        file.sync_all()?;
        let syncer = sync.then(|| Syncer::start(&file)).transpose()?;
        Ok(Commits {
            path: at.to_owned(),
            file,
            log_id,
            next: 0,
            sync,
            syncer,
        })
    }

    /// Opens the sidecar that [`read`] found, to go on committing to it.
    ///
    /// # Errors
    /// It could not be opened for writing.
    pub(crate) fn resume(log: &Path, found: &Found, mode: u32, sync: bool) -> io::Result<Commits> {
        let path = path_for(log);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        // As the log's: `--file-mode` may have changed since.
        let _ = file.set_permissions(fs::Permissions::from_mode(mode));
        let syncer = sync.then(|| Syncer::start(&file)).transpose()?;
        Ok(Commits {
            path,
            file,
            log_id: found.log_id,
            next: found.commits.first().map_or(0, |c| c.number + 1),
            sync,
            syncer,
        })
    }

    /// Commits a batch whose bytes were just written to the log, syncing
    /// the sidecar while `sync_log` syncs the log: both syncs must succeed
    /// before the batch is acknowledged. The two may reach the disk in
    /// either order; a commit durable before its batch does not match the
    /// file's bytes after a power cut, and the start-up then keeps the
    /// commit before it ([`trust`]), as it would without it.
    ///
    /// # Errors
    /// A write or either sync failed: the batch must not count as durable,
    /// and its number is used again by the next commit.
    pub(crate) fn commit_batch(
        &mut self,
        start: u64,
        end: u64,
        records: u64,
        crc: u32,
        sync_log: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        // Errors of the sidecar name it; the log's come as they are.
        let ours = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("{e} (the commit sidecar {})", self.path.display()),
            )
        };
        self.write_slot(start, end, records, crc, None)
            .map_err(ours)?;
        match &self.syncer {
            Some(s) => {
                let (log, sidecar) = s.sync_with(sync_log);
                let sidecar = sidecar.unwrap_or_else(|| {
                    // Never expected (the thread only syncs); a new one
                    // for the retry rather than failing every batch.
                    self.syncer = Syncer::start(&self.file).ok();
                    Err(io::Error::other("its sync thread was gone"))
                });
                log?;
                sidecar.map_err(ours)?;
            }
            None => {
                sync_log()?;
                if self.sync {
                    self.file.sync_data().map_err(ours)?;
                }
            }
        }
        self.next += 1;
        Ok(())
    }

    /// Records where the file was taken over (`start == end`: a commit
    /// that vouches for no bytes of its own), or, with `clean`, that the
    /// daemon stopped cleanly; synced unless the fsync policy is `never`
    /// (a clean stop always is).
    ///
    /// # Errors
    /// The write or sync failed.
    pub(crate) fn commit(
        &mut self,
        start: u64,
        end: u64,
        records: u64,
        crc: u32,
        clean: Option<super::Stamp>,
    ) -> io::Result<()> {
        self.write_slot(start, end, records, crc, clean)?;
        if self.sync || clean.is_some() {
            self.file.sync_data()?;
        }
        self.next += 1;
        Ok(())
    }

    /// Writes commit number `next` into its slot (`next % 2`), overwriting
    /// the commit before the previous one.
    fn write_slot(
        &self,
        start: u64,
        end: u64,
        records: u64,
        crc: u32,
        clean: Option<super::Stamp>,
    ) -> io::Result<()> {
        let c = Commit {
            number: self.next,
            start,
            end,
            records,
            crc,
            clean,
            successor: None,
        };
        self.write_commit(&c)
    }

    fn write_commit(&self, c: &Commit) -> io::Result<()> {
        let slot = SECTOR as u64 * (1 + c.number % 2);
        self.file.write_all_at(&c.encode(), slot)
    }

    /// Names the log that took this one's place (`clear`, or a rotation
    /// then SIGHUP): the newest commit again, with `successor`, synced.
    /// A reader that drained this log as an archive goes on with that one
    /// from position 0, and skips no log between.
    ///
    /// # Errors
    /// The sidecar could not be read, written or synced.
    pub(crate) fn seal(&mut self, successor: [u8; 16]) -> io::Result<()> {
        let mut slots = vec![0u8; 2 * SECTOR];
        self.file.read_exact_at(&mut slots, SECTOR as u64)?;
        let newest = slots
            .chunks_exact(SECTOR)
            .filter_map(Commit::decode)
            .max_by_key(|c| c.number)
            .unwrap_or_default();
        let c = Commit {
            number: self.next,
            successor: Some(successor),
            ..newest
        };
        self.write_commit(&c)?;
        self.file.sync_data()?;
        self.next += 1;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Follows a rename of the sidecar (the caller's).
    pub(crate) fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// The random id of this log, kept for as long as the file lives.
    pub(crate) fn log_id(&self) -> [u8; 16] {
        self.log_id
    }
}

/// Fills `buf` from the kernel's random source.
fn random(buf: &mut [u8]) -> io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: writes at most `buf.len() - at` bytes into `buf` from `at`.
        let n = unsafe { libc::getrandom(buf[at..].as_mut_ptr().cast(), buf.len() - at, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        at += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_and_a_torn_one_is_refused() {
        let c = Commit {
            number: 7,
            start: 100,
            end: 5000,
            records: 42,
            crc: 0xDEAD_BEEF,
            clean: Some(super::super::Stamp {
                len: 5002,
                mtime: (1_700_000_000, 123),
            }),
            successor: Some([0xA5; 16]),
        };
        let s = c.encode();
        assert_eq!(Commit::decode(&s), Some(c));
        let plain = Commit {
            successor: None,
            clean: None,
            ..c
        };
        assert_eq!(Commit::decode(&plain.encode()), Some(plain));
        for at in [0, 17, 40, 70, 123, 124] {
            let mut torn = s;
            torn[at] ^= 0x10;
            assert_eq!(Commit::decode(&torn), None, "byte {at} flipped");
        }
        assert_eq!(Commit::decode(&[0u8; SECTOR]), None);
    }
}
