//! Logs put aside: the archives `clear` makes and the files a rotation
//! renamed, each found by its `log_id` through the sidecar that went
//! with it, so that a reader by position (`read`, the forwarder) can
//! finish one after the live log moved on.
//!
//! An archive is immutable, so it is read without the writer: found by
//! listing the log's directory for sidecars (`*.meta`) whose header names
//! the `log_id` and belongs to the file beside it, then scanned once for
//! where its records are. Nothing is kept about archives between reads
//! but the positions of the last one read (see [`Archives`]).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::commits::{self, FileId};
use super::{RawMeta, ScannedRecord, scan};

/// An archived log, scanned: where its records are.
#[derive(Debug)]
pub(crate) struct Archive {
    pub log_id: String,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Offset and length of each record, by position.
    pub records: Vec<(u64, u32)>,
    /// The `log_id` of the log that took its place, when its sidecar
    /// names one (archives made before this was recorded do not).
    pub successor: Option<String>,
}

/// The archive read last, kept so that a reader going through one in
/// pages scans it once: 16 bytes per record of that archive, for as long
/// as it is the one being read. One archive is scanned at a time, so
/// readers asking for many at once cost one scan's memory, not one each.
#[derive(Debug, Default)]
pub(crate) struct Archives {
    last: Mutex<Option<Arc<Archive>>>,
    scanning: Mutex<()>,
}

impl Archives {
    /// The archive of the log `log_id` beside the live log at `live`, if
    /// there is one. Blocking: lists the directory and, the first time,
    /// reads the archive through.
    ///
    /// # Errors
    /// The directory could not be listed, or the archive could not be
    /// read.
    pub(crate) fn find(&self, live: &Path, log_id: &str) -> io::Result<Option<Arc<Archive>>> {
        if let Some(a) = self.cached(log_id) {
            return Ok(Some(a));
        }
        let _one_at_a_time = self.scanning.lock();
        // Scanned by the reader this one waited for?
        if let Some(a) = self.cached(log_id) {
            return Ok(Some(a));
        }
        let Some(found) = locate(live, log_id)? else {
            return Ok(None);
        };
        let archive = Arc::new(found);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(Arc::clone(&archive));
        }
        Ok(Some(archive))
    }
}

impl Archives {
    fn cached(&self, log_id: &str) -> Option<Arc<Archive>> {
        let last = self.last.lock().ok()?;
        let a = last.as_ref()?;
        (a.log_id == log_id && a.path.exists()).then(|| Arc::clone(a))
    }
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A log put aside, as its sidecar describes it (not scanned).
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub log_id: String,
    pub path: PathBuf,
    /// Records in it, as its newest commit counts them.
    pub records: u64,
    pub successor: Option<String>,
}

/// Every log beside the live log at `live` whose sidecar belongs to the
/// file next to it, in no particular order.
///
/// # Errors
/// The directory could not be listed.
pub(crate) fn list(live: &Path) -> io::Result<Vec<Listed>> {
    let mut out = Vec::new();
    for (log, found) in sidecars(live)? {
        let Some(newest) = found.commits.first() else {
            continue;
        };
        out.push(Listed {
            log_id: hex(&found.log_id),
            path: log,
            records: newest.records,
            successor: newest.successor.as_ref().map(hex),
        });
    }
    Ok(out)
}

/// Is `name` one of this log's archives or rotations: `clear`'s
/// `<stem>.<YYYYmmddTHHMMSS>[-N].json`, or a rotation's `<file>.<…>` /
/// `<file>-<…>` (`processing_log.json.1`, `processing_log.json-20261207`)?
/// A second daemon's log in the same directory (`processing_log.b.json`)
/// is none, even when stopped.
fn named_as_ours(name: &str, live: &Path) -> bool {
    let file = live
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = live
        .file_stem()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(rest) = name.strip_prefix(file.as_str())
        && (rest.starts_with('.') || rest.starts_with('-'))
    {
        return true;
    }
    let Some(rest) = name
        .strip_prefix(stem.as_str())
        .and_then(|r| r.strip_prefix('.'))
        .and_then(|r| r.strip_suffix(".json"))
    else {
        return false;
    };
    let b = rest.as_bytes();
    let stamp = b.len() >= 15
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit);
    let tail = &rest[15.min(rest.len())..];
    stamp
        && (tail.is_empty()
            || tail
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit())))
}

/// The logs beside `live` with a sidecar of their own (header intact and
/// naming the file next to it), not the live log's: those named as this
/// log's archives and rotations are ([`named_as_ours`]), and not locked by
/// a daemon writing them.
fn sidecars(live: &Path) -> io::Result<Vec<(PathBuf, commits::Found)>> {
    let dir = match live.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let own = commits::path_for(live);
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let meta_path = entry?.path();
        let Some(log) = meta_path
            .to_str()
            .and_then(|p| p.strip_suffix(".meta"))
            .map(PathBuf::from)
        else {
            continue;
        };
        let ours = log
            .file_name()
            .is_some_and(|n| named_as_ours(&n.to_string_lossy(), live));
        if meta_path == own || log == live || !ours || written_by_a_daemon(&log) {
            continue;
        }
        let Ok(m) = fs::metadata(&log) else {
            continue;
        };
        // Only a sidecar whose header belongs to this very file: one left
        // behind by a file deleted since names records no longer there.
        if let Some(found) = commits::read(&log, FileId::of(&m)).filter(|f| f.header_ok) {
            out.push((log, found));
        }
    }
    Ok(out)
}

/// Is `log` locked (a daemon's live log)? A daemon holds an exclusive
/// lock on the log it writes for as long as it runs.
fn written_by_a_daemon(log: &Path) -> bool {
    File::open(log).is_ok_and(|f| matches!(f.try_lock_shared(), Err(fs::TryLockError::WouldBlock)))
}

/// Finds the sidecar of `log_id` beside `live` and scans its file.
fn locate(live: &Path, log_id: &str) -> io::Result<Option<Archive>> {
    let Some((log, found)) = sidecars(live)?
        .into_iter()
        .find(|(_, f)| hex(&f.log_id) == log_id)
    else {
        return Ok(None);
    };
    let Some(newest) = found.commits.first().copied() else {
        return Ok(None);
    };
    let file = File::open(&log)?;
    let mut records = Vec::new();
    // Up to what the newest commit vouches for, as a start-up keeps.
    scan::scan(
        &file,
        Some(newest.end),
        &mut |r: ScannedRecord, _: &[u8], _: &RawMeta| {
            records.push((r.offset, r.len as u32));
        },
    )?;
    Ok(Some(Archive {
        log_id: log_id.to_string(),
        path: log,
        file: Arc::new(file),
        records,
        successor: newest.successor.as_ref().map(hex),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_logs_archives_and_rotations_are_ours() {
        let live = Path::new("/var/lib/joblogd/processing_log.json");
        for ours in [
            "processing_log.20261207T190512.json",
            "processing_log.20261207T190512-2.json",
            "processing_log.json.1",
            "processing_log.json-20261207",
        ] {
            assert!(named_as_ours(ours, live), "{ours}");
        }
        for theirs in [
            "processing_log.b.json",
            "processing_log2.json",
            "processing_log.2026120T190512.json",
            "processing_log.20261207T190512-.json",
            "other.20261207T190512.json",
        ] {
            assert!(!named_as_ours(theirs, live), "{theirs}");
        }
    }
}
