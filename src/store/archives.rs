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
/// pages scans it once: about 12 bytes per record of that archive, for as
/// long as it is the one being read.
#[derive(Debug, Default)]
pub(crate) struct Archives {
    last: Mutex<Option<Arc<Archive>>>,
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
        if let Ok(last) = self.last.lock()
            && let Some(a) = last.as_ref()
            && a.log_id == log_id
            && a.path.exists()
        {
            return Ok(Some(Arc::clone(a)));
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

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lists the directory of `live` for a sidecar of `log_id` that belongs
/// to the file beside it (not the live log's own), and scans that file.
fn locate(live: &Path, log_id: &str) -> io::Result<Option<Archive>> {
    let dir = match live.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let own = commits::path_for(live);
    for entry in fs::read_dir(dir)? {
        let meta_path = entry?.path();
        let Some(log) = meta_path
            .to_str()
            .and_then(|p| p.strip_suffix(".meta"))
            .map(PathBuf::from)
        else {
            continue;
        };
        if meta_path == own || log == live {
            continue;
        }
        let Ok(m) = fs::metadata(&log) else {
            continue;
        };
        // Only a sidecar whose header belongs to this very file: one left
        // behind by a file deleted since names records no longer there.
        let Some(found) = commits::read(&log, FileId::of(&m)).filter(|f| f.header_ok) else {
            continue;
        };
        if hex(&found.log_id) != log_id {
            continue;
        }
        let Some(newest) = found.commits.first().copied() else {
            continue;
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
        return Ok(Some(Archive {
            log_id: log_id.to_string(),
            path: log,
            file: Arc::new(file),
            records,
            successor: newest.successor.as_ref().map(hex),
        }));
    }
    Ok(None)
}
