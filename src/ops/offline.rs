//! Queries over records that are not the daemon's log: `joblogctl
//! --database` answers `stats`, `jobs`, `retry_candidates`, `export_csv`
//! and `report` over the central store's records with the very code the
//! daemon answers them with, so a cluster-wide answer has the daemon's
//! shape and meaning (what counts as a success, an error type, a retry
//! candidate, a percentile) by construction, not by a second
//! implementation in SQL.
//!
//! The records are laid out as a JSON array in an anonymous in-memory
//! file (`memfd_create`), indexed as the start-up scan indexes a log, and
//! the request is run and written as the daemon runs and writes it. The
//! order given is the file's order: the newest record of a video is the
//! last one given.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;

use crate::index::{Index, RawMeta};
use crate::json::{Formatter, MAX_RECORD_DEPTH};
use crate::protocol::{ErrorCode, ProtocolError};

/// The reply the daemon would give to `request` (one line: a JSON object
/// or a bare word) over a log holding `records`, in that order. A request
/// that is not a query gets `invalid_request`; a record that is not a JSON
/// object is left out.
///
/// # Errors
/// The in-memory file could not be made, written or read back.
pub fn answer<R: AsRef<[u8]>>(records: &[R], request: &[u8]) -> io::Result<Vec<u8>> {
    let query = match parse(request) {
        Ok(q) => q,
        Err(e) => return Ok(e.reply(1)),
    };
    let (file, index, end) = lay_out(records)?;
    let reader = Arc::new(file);
    let view = super::View {
        index: &index,
        reader: &reader,
        durable: index.len(),
        durable_end: end,
        log_id: "central",
    };
    let answer = super::run(&view, query);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    let mut out = Vec::new();
    match answer {
        super::Answer::Failed(msg) => {
            return Ok(ProtocolError::new(ErrorCode::WriteFailed, msg).reply(1));
        }
        super::Answer::Refused(e) => return Ok(e.reply(1)),
        a => rt.block_on(super::write(&mut out, a))?,
    }
    Ok(out)
}

/// The request's query, as the daemon parses it.
fn parse(request: &[u8]) -> Result<super::Query, ProtocolError> {
    let line = crate::conn::lines::trim_line(request).trim_ascii();
    let req = match crate::protocol::bare_word(line) {
        Some(word) => super::parse_bare(word)?,
        None => {
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)
                .map_err(|e| ProtocolError::new(ErrorCode::InvalidJson, e.to_string()))?;
            let raw: Vec<(String, Vec<u8>)> = map
                .into_iter()
                .map(|(k, v)| (k, serde_json::to_vec(&v).unwrap_or_default()))
                .collect();
            let members: Vec<crate::protocol::Member<'_>> =
                raw.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect();
            return match super::parse_request(&members)? {
                super::Request::Query(q) => Ok(q),
                _ => Err(not_a_query()),
            };
        }
    };
    match req {
        super::Request::Query(q) => Ok(q),
        _ => Err(not_a_query()),
    }
}

fn not_a_query() -> ProtocolError {
    ProtocolError::new(
        ErrorCode::InvalidRequest,
        "only queries (stats, jobs and its aliases, retry_candidates, export_csv, report) are \
         answered here",
    )
}

/// The records as a JSON array in an in-memory file, and their index.
fn lay_out<R: AsRef<[u8]>>(records: &[R]) -> io::Result<(File, Index, u64)> {
    // SAFETY: the name is a valid C string; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"joblog-offline".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let mut index = Index::default();
    let mut fmt = Formatter::new();
    let mut out = io::BufWriter::new(&file);
    out.write_all(b"[")?;
    let mut at = 1u64;
    let mut first = true;
    for rec in records {
        let rec = rec.as_ref();
        if fmt.validate(rec, 0, MAX_RECORD_DEPTH, true).is_err() {
            continue;
        }
        let meta = RawMeta::from_scanned(rec, &fmt, 0);
        let sep: &[u8] = if first { b"\n  " } else { b",\n  " };
        first = false;
        out.write_all(sep)?;
        at += sep.len() as u64;
        index.add(at, rec, &meta);
        out.write_all(rec)?;
        at += rec.len() as u64;
    }
    out.write_all(if first { b"]" } else { b"\n]" })?;
    out.flush()?;
    drop(out);
    Ok((file, index, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_jobs_over_given_records() {
        let recs = [
            r#"{"video_id":"a","success":false,"error":"Timeout: slow","logged_at":"2026-01-01T00:00:00"}"#,
            r#"{"video_id":"a","success":true,"logged_at":"2026-01-01T01:00:00"}"#,
            r#"{"video_id":"b","success":false,"error":"Quota: out","logged_at":"2026-01-01T02:00:00"}"#,
            "not a record",
        ];
        let stats: serde_json::Value =
            serde_json::from_slice(&answer(&recs, b"stats").expect("stats")).expect("json");
        assert_eq!(stats["stats"]["total_jobs"], 3, "{stats}");
        assert_eq!(stats["stats"]["retry_candidates"], 1, "{stats}");
        assert_eq!(stats["stats"]["error_types"]["Quota"], 1, "{stats}");
        let failed: serde_json::Value =
            serde_json::from_slice(&answer(&recs, br#"{"op":"failed"}"#).expect("jobs"))
                .expect("json");
        assert_eq!(failed["count"], 2, "{failed}");
        let refused = answer(&recs, b"flush").expect("flush");
        assert!(String::from_utf8_lossy(&refused).contains("invalid_request"));
    }
}
