//! `jobs` and its aliases (`all`, `failed`, `successful`, `by_stage`): the
//! matching records, whole or projected to `fields`.

use std::fs::File;
use std::io;

use tokio::io::AsyncWrite;

use super::Span;
use super::read::records;

/// Writes `{"ok":true,"count":…,"total":…,"jobs":[…]}`.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    spans: &[Span],
    total: usize,
    fields: Option<&[String]>,
) -> io::Result<()> {
    let head = format!(
        "{{\"ok\":true,\"count\":{},\"total\":{total},\"jobs\":[",
        spans.len()
    );
    let names: Option<Vec<&str>> = fields.map(|f| f.iter().map(String::as_str).collect());
    records(w, head, reader, spans, names.as_deref()).await
}
