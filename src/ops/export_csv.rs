//! `export_csv`: the records as CSV in the Python logger's columns, the
//! way its `csv` module writes values, streamed in two passes (the size
//! first, which the header line announces, then the bytes), so the export
//! is never held whole.

use std::fs::File;
use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Span;
use super::read::{STREAM_CHUNK, Windowed, fields};
use crate::index;
use crate::json::SkimmedField;

/// Columns of `export_csv`, in order, as the Python logger's `export_csv`.
pub(crate) const CSV_COLUMNS: [&str; 13] = [
    "video_id",
    "video_title",
    "url",
    "subject",
    "worker_id",
    "stage",
    "success",
    "error",
    "processing_duration",
    "has_notes",
    "has_assessment",
    "total_files",
    "logged_at",
];

/// One CSV cell as the old logger's `csv.writer` wrote the value
/// `json.load` gave: strings raw, empty for null or missing, and
/// anything else as Python's `str()` of it (`True`, `45.2`, `1e+16`,
/// `{'nested': [1, 2.5, True, None]}`: see [`super::pystr`]).
fn cell(v: Option<&[u8]>) -> std::borrow::Cow<'_, [u8]> {
    match v {
        None | Some(b"null") => b"".as_slice().into(),
        Some(b"true") => b"True".as_slice().into(),
        Some(b"false") => b"False".as_slice().into(),
        Some(v) => match index::string(v) {
            Some(std::borrow::Cow::Borrowed(s)) => s.as_bytes().into(),
            Some(std::borrow::Cow::Owned(s)) => s.into_bytes().into(),
            // A string `string` cannot decode holds a lone surrogate
            // (which Python's csv could not have written to a UTF-8
            // file): its JSON text.
            None if v.first() == Some(&b'"') => crate::json::minify(v).into(),
            None => {
                let mut out = Vec::with_capacity(v.len());
                super::pystr::str_of(v, &mut out);
                out.into()
            }
        },
    }
}

/// CSV of `spans`, produced in pieces of about [`STREAM_CHUNK`] bytes so
/// that the whole export is never held in memory.
struct CsvPieces<'a> {
    recs: Windowed<'a>,
    header: bool,
    skimmed: Vec<SkimmedField>,
}

impl<'a> CsvPieces<'a> {
    fn new(file: &'a File, spans: &'a [Span]) -> Self {
        Self {
            recs: Windowed::new(file, spans),
            header: true,
            skimmed: Vec::new(),
        }
    }

    fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut wtr = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::with_capacity(STREAM_CHUNK + 1024));
        let mut any = false;
        if std::mem::take(&mut self.header) {
            wtr.write_record(CSV_COLUMNS).map_err(io::Error::other)?;
            any = true;
        }
        while wtr.get_ref().len() < STREAM_CHUNK {
            let Some(rec) = self.recs.next_record()? else {
                break;
            };
            let vals = fields(&mut self.skimmed, rec, &CSV_COLUMNS);
            wtr.write_record(vals.into_iter().map(cell))
                .map_err(io::Error::other)?;
            any = true;
            wtr.flush()?;
        }
        if !any {
            return Ok(None);
        }
        wtr.into_inner()
            .map(Some)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Writes the CSV of `spans`: a JSON line announcing its size, then exactly
/// that many bytes.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    spans: &[Span],
    at: &super::Covered,
) -> io::Result<()> {
    let mut size = 0usize;
    let mut pass = CsvPieces::new(reader, spans);
    while let Some(p) = tokio::task::block_in_place(|| pass.next_piece())? {
        size += p.len();
    }
    let head = format!(
        "{{\"ok\":true,\"content_type\":\"text/csv\",\"bytes\":{size},\"log_id\":{},\"durable\":{}}}\n",
        serde_json::Value::from(at.log_id.as_str()),
        at.durable
    );
    w.write_all(head.as_bytes()).await?;
    let mut pass = CsvPieces::new(reader, spans);
    while let Some(p) = tokio::task::block_in_place(|| pass.next_piece())? {
        w.write_all(&p).await?;
    }
    Ok(())
}

/// `{"op":"export_csv", filter…, paging…}`.
pub(crate) fn parse<'a>(
    f: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, crate::protocol::ProtocolError> {
    Ok(super::Request::Query(super::Query::ExportCsv {
        filter: f.filter()?,
        paging: f.paging()?,
    }))
}

/// The page of durable matching records, on the writer.
pub(crate) fn run(
    view: &super::View<'_>,
    filter: &crate::query::Filter,
    paging: &crate::query::Paging,
) -> super::Answer {
    let (page, _) = crate::query::select_page(view.index, filter, paging, view.durable);
    answer(view, &page, view.durable)
}

/// The answer for the records `page`, chosen among the first `covered`.
pub(crate) fn answer(view: &super::View<'_>, page: &[u32], covered: usize) -> super::Answer {
    super::Answer::Csv {
        reader: view.reader.clone(),
        spans: view.spans(page),
        at: super::Covered::of(view, covered),
    }
}
