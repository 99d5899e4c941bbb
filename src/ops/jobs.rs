//! `jobs` and its aliases (`all`, `failed`, `successful`, `by_stage`): the
//! matching records, whole or projected to `fields`.

use std::fs::File;
use std::io;

use tokio::io::AsyncWrite;

use super::Span;
use super::read::records;

/// Writes `{"ok":true,"count":…,"total":…,"log_id":…,"durable":…,"jobs":[…]}`.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    spans: &[Span],
    total: usize,
    fields: Option<&[String]>,
    at: &super::Covered,
) -> io::Result<()> {
    let head = format!(
        "{{\"ok\":true,\"count\":{},\"total\":{total},\"log_id\":{},\"durable\":{},\"jobs\":[",
        spans.len(),
        serde_json::Value::from(at.log_id.as_str()),
        at.durable,
    );
    let names: Option<Vec<&str>> = fields.map(|f| f.iter().map(String::as_str).collect());
    records(w, head, reader, spans, names.as_deref()).await
}

/// `jobs` and its aliases: `failed` and `successful` imply `success` (and
/// refuse it given), `by_stage` needs `stage`.
pub(crate) fn parse<'a>(
    f: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, crate::protocol::ProtocolError> {
    let mut filter = f.filter()?;
    let implied = match f.op() {
        "failed" => Some(("success", filter.success.replace(false).is_some())),
        "successful" => Some(("success", filter.success.replace(true).is_some())),
        "by_stage" => {
            if filter.stage.is_none() {
                return Err(f.invalid("missing field `stage`"));
            }
            None
        }
        _ => None,
    };
    if let Some((key, true)) = implied {
        return Err(f.invalid(format!("field `{key}` is implied by the op; use `jobs`")));
    }
    let fields = match f.get("fields") {
        None => None,
        Some(v) => Some(
            serde_json::from_slice::<Vec<String>>(v)
                .map_err(|_| f.invalid("field `fields` must be a list of strings"))?,
        ),
    };
    Ok(super::Request::Query(super::Query::Jobs {
        filter,
        paging: f.paging()?,
        fields,
    }))
}

/// The page of durable matching records, on the writer.
pub(crate) fn run(
    view: &super::View<'_>,
    filter: &crate::query::Filter,
    paging: &crate::query::Paging,
    fields: Option<Vec<String>>,
) -> super::Answer {
    let (page, total) = crate::query::select_page(view.index, filter, paging, view.durable);
    answer(view, &page, total, fields, view.durable)
}

/// The answer for the records `page` of `total` matches among the first
/// `covered` records of the log.
pub(crate) fn answer(
    view: &super::View<'_>,
    page: &[u32],
    total: usize,
    fields: Option<Vec<String>>,
    covered: usize,
) -> super::Answer {
    super::Answer::Jobs {
        reader: view.reader.clone(),
        spans: view.spans(page),
        total,
        fields,
        at: super::Covered::of(view, covered),
    }
}
