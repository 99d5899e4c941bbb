//! `retry_candidates`: the videos whose newest attempt failed, each with
//! the fields a retry needs.

use std::fs::File;
use std::io;

use tokio::io::AsyncWrite;

use super::Span;
use super::read::records;

/// Fields of each `retry_candidates` entry.
const CANDIDATE_FIELDS: [&str; 6] = [
    "video_id",
    "url",
    "error",
    "stage",
    "retry_count",
    "next_retry_time",
];

/// Writes `{"ok":true,"count":…,"total":…,"candidates":[…]}`.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    spans: &[Span],
    total: usize,
) -> io::Result<()> {
    let head = format!(
        "{{\"ok\":true,\"count\":{},\"total\":{total},\"candidates\":[",
        spans.len()
    );
    records(w, head, reader, spans, Some(&CANDIDATE_FIELDS)).await
}

/// `{"op":"retry_candidates","limit":…}`.
pub(crate) fn parse<'a>(
    f: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, crate::protocol::ProtocolError> {
    Ok(super::Request::Query(super::Query::RetryCandidates {
        limit: f.typed::<usize>("limit", "a non-negative integer")?,
    }))
}

/// The durable candidates, at most `limit` of them, on the writer.
pub(crate) fn run(view: &super::View<'_>, limit: Option<usize>) -> super::Answer {
    let all = crate::query::retry_candidates(view.index, view.durable);
    let total = all.len();
    let page = &all[..limit.unwrap_or(total).min(total)];
    super::Answer::Candidates {
        reader: view.reader.clone(),
        spans: view.spans(page),
        total,
    }
}
