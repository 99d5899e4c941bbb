//! How far a log is trusted at start-up, from what its sidecar says
//! (see the parent module for the format).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::{Commit, Found, crc32c};

/// How much of the log the sidecar vouches for at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Trust {
    /// Records ending past this offset are not kept (they were never
    /// committed); `None`: every complete record is kept.
    pub limit: Option<u64>,
    /// What the operator should hear, if anything.
    pub note: Option<String>,
}

/// Decides, from what the sidecar found, how far the log `file` (whose
/// length and mtime are `now`) is trusted:
/// - no sidecar (a file from the Python logger, or one the sidecar does
///   not belong to): every complete record, as before there were commits;
/// - the daemon stopped cleanly and nobody changed the file since: up to
///   its last commit;
/// - the daemon stopped cleanly and the file changed since (the Python
///   logger ran meanwhile, an operator restored or edited it): every
///   complete record, the file taken over as it is;
/// - otherwise (a crash, a kill, a power cut): up to the end of the newest
///   commit whose bytes still match its checksum. If none matches, the file
///   lost bytes that were durable, or was changed while no daemon ran:
///   only the records before the oldest commit's batch are kept by their
///   syntax, and everything from there on is set aside.
pub(crate) fn trust(found: Option<&Found>, file: &File, now: crate::store::Stamp) -> Trust {
    let Some(found) = found.filter(|f| !f.commits.is_empty()) else {
        return Trust::default();
    };
    let newest = found.commits[0];
    if let Some(clean) = newest.clean
        && clean != now
    {
        return Trust {
            limit: None,
            note: Some(
                "the log file changed while no daemon was running (the Python logger, or an \
                 edit); taken over as it is"
                    .to_string(),
            ),
        };
    }
    if let Some(c) = found.commits.iter().find(|c| matches(file, c, now.len)) {
        let note = (c.number != newest.number).then(|| {
            format!(
                "the last committed batch (bytes {}..{}) does not match its checksum: the disk \
                 lost bytes that were synced, or the file was changed while no daemon ran; \
                 only the records up to byte {} (the commit before it) are kept",
                newest.start, newest.end, c.end
            )
        });
        return Trust {
            limit: Some(c.end),
            note,
        };
    }
    let oldest = found.commits.iter().map(|c| c.start).min().unwrap_or(0);
    Trust {
        limit: Some(oldest),
        note: Some(format!(
            "the last committed batches (bytes {}..{}) do not match their checksums: the disk \
             lost bytes that were synced, or the file was changed while no daemon ran; only the \
             records before byte {oldest} are kept",
            oldest, newest.end
        )),
    }
}

/// Do the file's bytes `c.start..c.end` still have the checksum committed?
fn matches(file: &File, c: &Commit, len: u64) -> bool {
    const PIECE: u64 = 1 << 20;
    if c.end < c.start || c.end > len {
        return false;
    }
    let mut crc = crc32c::Crc32c::default();
    let mut buf = vec![0u8; (c.end - c.start).min(PIECE) as usize];
    let mut at = c.start;
    while at < c.end {
        let n = (c.end - at).min(PIECE) as usize;
        if file.read_exact_at(&mut buf[..n], at).is_err() {
            return false;
        }
        crc.update(&buf[..n]);
        at += n as u64;
    }
    crc.finish() == c.crc
}
