//! `read`: the durable records of the live log by position, for a
//! forwarder that ships every record exactly once. Each record comes with
//! its `seq`, its 0-based position in the log; a client keeps `next_seq`
//! and asks again from there. The cost is that of the records sent,
//! wherever `from_seq` is (the index finds a record by its position), and
//! nothing is flushed for it: a reader sees what is durable, never a
//! record a crash could still take back.
//!
//! `log_id` names the log the client is reading (`ping` shows the live
//! one). A log that `clear` archived or a rotation renamed keeps its
//! `log_id` in the sidecar that went with it, and is served from that file
//! ([`from_archive`], off the writer: an archive never changes), with
//! `archive` (its path) and `next_log_id` (the log that took its place,
//! to go on with from seq 0) in the reply. Any other `log_id` (the
//! archive was removed, or the file was cut underneath the daemon and
//! renumbered) gets `log_changed` with the live `log_id`.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Span;
use super::read::Windowed;
use crate::config::tuning::{READ_DEFAULT_LIMIT, READ_MAX_LIMIT};
use crate::protocol::{ErrorCode, ProtocolError};

/// `{"op":"read","log_id":…,"from_seq":N,"limit":L}`: `from_seq` defaults
/// to 0, `limit` to [`READ_DEFAULT_LIMIT`] and is at most
/// [`READ_MAX_LIMIT`].
pub(crate) fn parse<'a>(
    f: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, ProtocolError> {
    let limit = f
        .typed::<usize>("limit", "a non-negative integer")?
        .unwrap_or(READ_DEFAULT_LIMIT);
    if limit > READ_MAX_LIMIT {
        return Err(f.invalid(format!(
            "field `limit` must be at most {READ_MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(super::Request::Query(super::Query::Read {
        log_id: f.typed::<String>("log_id", "a string")?,
        from_seq: f
            .typed::<u64>("from_seq", "a non-negative integer")?
            .unwrap_or(0),
        limit,
    }))
}

/// The durable records `from_seq..from_seq + limit`, on the writer.
pub(crate) fn run(
    view: &super::View<'_>,
    log_id: Option<&str>,
    from_seq: u64,
    limit: usize,
) -> super::Answer {
    if let Some(id) = log_id
        && id != view.log_id
    {
        let mut e = ProtocolError::new(
            ErrorCode::LogChanged,
            format!(
                "log {id} is not the live log (it was cleared, rotated or renumbered, or never was one); the live log is {}: read it from seq 0",
                view.log_id
            ),
        );
        e.log_id = Some(view.log_id.to_string());
        return super::Answer::Refused(e);
    }
    let durable = view.durable as u64;
    if from_seq > durable {
        // Never a position a reply gave: a checkpoint from elsewhere, or
        // a mistake; serving from there would skip the records before it.
        return super::Answer::Refused(ProtocolError::new(
            ErrorCode::InvalidRequest,
            format!(
                "read: from_seq {from_seq} is past the end of the log ({durable} durable records); next_seq never is"
            ),
        ));
    }
    let from = from_seq.min(durable);
    let to = from.saturating_add(limit as u64).min(durable);
    let idxs: Vec<u32> = (from..to).map(|i| i as u32).collect();
    super::Answer::Read {
        reader: view.reader.clone(),
        spans: view.spans(&idxs),
        from_seq,
        log_id: view.log_id.to_string(),
        durable,
        archive: None,
    }
}

/// The archived logs beside the live one, for `read`s that name one.
#[derive(Debug)]
pub(crate) struct Archived {
    /// The live log's path: archives are looked for beside it.
    pub live: PathBuf,
    pub found: crate::store::Archives,
}

/// An archive's part of a `read` reply.
#[derive(Debug)]
pub(crate) struct ArchiveNote {
    pub path: String,
    /// The log that took its place, when its sidecar names one.
    pub next_log_id: Option<String>,
}

/// A `read` of `log_id`, which the writer found is not the live log:
/// served from its archive if there is one (`None` if not). Blocking:
/// lists the directory and, the first time, reads the archive through.
///
/// # Errors
/// `from_seq` is past the archive's end (`invalid_request`), or the
/// archive could not be read (`read_failed`).
pub(crate) fn from_archive(
    archived: &Archived,
    log_id: &str,
    from_seq: u64,
    limit: usize,
) -> Option<Result<super::Answer, ProtocolError>> {
    let archive = match archived.found.find(&archived.live, log_id) {
        Ok(a) => a?,
        Err(e) => {
            return Some(Err(ProtocolError::new(
                ErrorCode::ReadFailed,
                format!("read: the archive of log {log_id} could not be read: {e}"),
            )));
        }
    };
    let durable = archive.records.len() as u64;
    if from_seq > durable {
        return Some(Err(ProtocolError::new(
            ErrorCode::InvalidRequest,
            format!(
                "read: from_seq {from_seq} is past the end of archived log {log_id} ({durable} records); next_seq never is"
            ),
        )));
    }
    let to = from_seq.saturating_add(limit as u64).min(durable);
    let spans = archive.records[from_seq as usize..to as usize]
        .iter()
        .map(|&(offset, len)| super::Span { offset, len })
        .collect();
    Some(Ok(super::Answer::Read {
        reader: Arc::clone(&archive.file),
        spans,
        from_seq,
        log_id: archive.log_id.clone(),
        durable,
        archive: Some(ArchiveNote {
            path: archive.path.display().to_string(),
            next_log_id: archive.successor.clone(),
        }),
    }))
}

/// Writes `{"ok":true,"log_id":…,"from_seq":N,"next_seq":M,"durable":D,
/// "records":[{"seq":N,"record":{…}},…]}`, each record minified; for an
/// archive `"archive":PATH,"next_log_id":ID|null` after `log_id`.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    spans: &[Span],
    (from_seq, log_id, durable): (u64, &str, u64),
    archive: Option<&ArchiveNote>,
) -> io::Result<()> {
    // Where to ask from next: past what this reply holds.
    let next = from_seq + spans.len() as u64;
    let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let archived = archive.map_or_else(String::new, |a| {
        format!(
            ",\"archive\":{},\"next_log_id\":{}",
            text(&a.path),
            a.next_log_id.as_deref().map_or_else(|| "null".into(), text)
        )
    });
    let head = format!(
        "{{\"ok\":true,\"log_id\":{}{archived},\"from_seq\":{from_seq},\"next_seq\":{next},\"durable\":{durable},\"records\":[",
        text(log_id)
    )
    .into_bytes();
    let mut out = positioned(w, head, reader, spans, from_seq, b",", b"").await?;
    out.extend_from_slice(b"]}\n");
    w.write_all(&out).await
}

/// Writes the records of `spans`, positions from `from_seq` on, one line
/// each as a subscriber gets them: `{"seq":N,"record":{…}}` (what
/// `subscribe` with `from_seq` sends before the new records).
pub(crate) async fn write_lines<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    spans: &[Span],
    from_seq: u64,
) -> io::Result<()> {
    let out = positioned(w, Vec::new(), reader, spans, from_seq, b"", b"\n").await?;
    w.write_all(&out).await
}

/// Appends to `out` each record of `spans` as `{"seq":N,"record":{…}}`
/// (minified), `between` two of them and `after` each, writing `out` to
/// `w` in pieces of about `STREAM_CHUNK`; returns what is left of it.
async fn positioned<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut out: Vec<u8>,
    reader: &File,
    spans: &[Span],
    from_seq: u64,
    between: &[u8],
    after: &[u8],
) -> io::Result<Vec<u8>> {
    let mut recs = Windowed::new(reader, spans);
    let mut seq = from_seq;
    // A read of up to READ_WINDOW bytes may go to the disk.
    while let Some(rec) = tokio::task::block_in_place(|| recs.next_record())? {
        if seq > from_seq {
            out.extend_from_slice(between);
        }
        out.extend_from_slice(format!("{{\"seq\":{seq},\"record\":").as_bytes());
        crate::json::minify_into(rec, &mut out);
        out.push(b'}');
        out.extend_from_slice(after);
        seq += 1;
        if out.len() >= crate::config::tuning::STREAM_CHUNK {
            w.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(out)
}
