//! `joblogctl --file LOG stats | report | jobs | retry-candidates |
//! export-csv`: the same questions answered over a log file that no
//! daemon serves (an archive retention left, a copy from another host),
//! read-only, with the daemon's own query code (`database::offline`, as
//! for `--database`), so the answers have the daemon's shape and meaning.

use super::*;

/// Reads the JSON array at `path` (a log as the daemon or the Python
/// logger wrote it) and returns a connection that answers queries over
/// its records.
pub(super) fn open(path: &std::path::Path) -> Result<Conn, Fail> {
    let cannot = |e: String| Fail(1, format!("joblogctl: --file {}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| cannot(e.to_string()))?;
    let records: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&bytes).map_err(|e| {
            cannot(format!(
                "not a JSON array of records ({e}); a log with NaN or Infinity in it is read by \
                 a daemon pointed at a copy of it"
            ))
        })?;
    database::offline(records.into_iter().map(|r| r.get().to_owned()).collect())
}
