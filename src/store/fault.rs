//! The test seam for disk faults (hidden `--fault-file`).

use super::*;

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
pub(crate) static FAULT_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
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

pub(super) fn injected_fault() -> Option<Fault> {
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
