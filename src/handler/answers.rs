//! Writing query answers: records are read back from the file one at a
//! time (`pread` on a handle the writer gave us, valid even if the file is
//! archived meanwhile) and serialized as they are read, so the daemon's
//! memory does not grow with the size of an answer.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Output;
use crate::batcher::{Answer, Span};
use crate::index::{self, Hist, minify_into};
use crate::json::Formatter;

/// Columns of `export_csv`, in order, as the Python logger's `export_csv`.
pub const CSV_COLUMNS: [&str; 13] = [
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

/// Fields of each `retry_candidates` entry.
const CANDIDATE_FIELDS: [&str; 6] = [
    "video_id",
    "url",
    "error",
    "stage",
    "retry_count",
    "next_retry_time",
];

/// Flush the socket buffer at about this size while streaming.
const STREAM_CHUNK: usize = 64 * 1024;

/// Reads one record; the file only grows, so a span once durable stays valid.
fn read(file: &File, span: Span, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.resize(span.len as usize, 0);
    file.read_exact_at(buf, span.offset)
}

/// The raw value of each of `names` in the record (last duplicate wins).
fn fields<'a>(fmt: &mut Formatter, rec: &'a [u8], names: &[&str]) -> Vec<Option<&'a [u8]>> {
    let mut out = vec![None; names.len()];
    if fmt.validate(rec, 0, 10_000, true).is_err() {
        return out;
    }
    for f in &fmt.fields {
        let key = index::string(&rec[f.key_in.clone()]);
        if let Some(k) = key
            && let Some(i) = names.iter().position(|n| *n == k)
        {
            out[i] = Some(&rec[f.value_in.clone()]);
        }
    }
    out
}

/// `{"a":…,"b":…}` with the named fields, `null` where missing (as jq's
/// `{a, b}` does).
fn project(fmt: &mut Formatter, rec: &[u8], names: &[&str], out: &mut Vec<u8>) {
    let vals = fields(fmt, rec, names);
    out.push(b'{');
    for (i, (name, v)) in names.iter().zip(vals).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&serde_json::to_vec(name).unwrap_or_default());
        out.push(b':');
        match v {
            Some(v) => minify_into(v, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

async fn records<W: AsyncWrite + Unpin>(
    w: &mut W,
    head: String,
    file: &File,
    spans: &[Span],
    names: Option<&[&str]>,
) -> io::Result<()> {
    let mut out = head.into_bytes();
    let mut rec = Vec::new();
    let mut fmt = Formatter::new();
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        read(file, *span, &mut rec)?;
        match names {
            None => minify_into(&rec, &mut out),
            Some(names) => project(&mut fmt, &rec, names, &mut out),
        }
        if out.len() >= STREAM_CHUNK {
            w.write_all(&out).await?;
            out.clear();
        }
    }
    out.extend_from_slice(b"]}\n");
    w.write_all(&out).await
}

/// One CSV cell as Python's csv module writes the value: `True`/`False`,
/// empty for null or missing, numbers as their JSON text, strings raw, and
/// anything else as compact JSON.
fn cell(v: Option<&[u8]>) -> std::borrow::Cow<'_, [u8]> {
    match v {
        None | Some(b"null") => b"".as_slice().into(),
        Some(b"true") => b"True".as_slice().into(),
        Some(b"false") => b"False".as_slice().into(),
        Some(v) => match index::string(v) {
            Some(std::borrow::Cow::Borrowed(s)) => s.as_bytes().into(),
            Some(std::borrow::Cow::Owned(s)) => s.into_bytes().into(),
            None => index::minify(v).into(),
        },
    }
}

/// CSV of `spans`, produced in pieces of about [`STREAM_CHUNK`] bytes so
/// that the whole export is never held in memory.
struct CsvPieces<'a> {
    file: &'a File,
    spans: std::slice::Iter<'a, Span>,
    header: bool,
    fmt: Formatter,
    rec: Vec<u8>,
}

impl<'a> CsvPieces<'a> {
    fn new(file: &'a File, spans: &'a [Span]) -> Self {
        Self {
            file,
            spans: spans.iter(),
            header: true,
            fmt: Formatter::new(),
            rec: Vec::new(),
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
            let Some(span) = self.spans.next() else {
                break;
            };
            read(self.file, *span, &mut self.rec)?;
            let vals = fields(&mut self.fmt, &self.rec, &CSV_COLUMNS);
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

/// Completes filtered stats with the timings of the given records.
fn timings(file: &File, spans: &[Span]) -> io::Result<Value> {
    let mut hists: HashMap<String, Hist> = HashMap::new();
    let mut fmt = Formatter::new();
    let mut inner = Formatter::new();
    let mut rec = Vec::new();
    for span in spans {
        read(file, *span, &mut rec)?;
        let Some(t) = fields(&mut fmt, &rec, &["timings"])[0] else {
            continue;
        };
        if t.first() != Some(&b'{') || inner.validate(t, 0, 64, true).is_err() {
            continue;
        }
        for f in &inner.fields {
            if let (Some(name), Some(v)) = (
                index::string(&t[f.key_in.clone()]),
                index::number(&t[f.value_in.clone()]),
            ) {
                hists.entry(name.into_owned()).or_default().add(v);
            }
        }
    }
    let mut v: Vec<(String, Hist)> = hists.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Object(
        v.into_iter()
            .map(|(k, h)| (k, crate::query::hist_json(&h)))
            .collect(),
    ))
}

/// Writes a whole answer: one JSON line, or for CSV a JSON line followed by
/// exactly the announced number of bytes.
///
/// # Errors
/// Reading the file or writing to the client failed; the connection cannot
/// carry on in a known state.
pub async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    answer: Answer,
    out: Output,
) -> io::Result<()> {
    match (answer, out) {
        (Answer::StatsLine(line), _) => w.write_all(&line).await,
        (
            Answer::Snapshot {
                reader,
                end,
                records,
            },
            _,
        ) => {
            // The durable prefix never changes, so this copy is consistent
            // whatever is appended meanwhile.
            let tail: &[u8] = if records == 0 { b"]" } else { b"\n]" };
            let size = end + tail.len() as u64;
            let head = format!(
                "{{\"ok\":true,\"content_type\":\"application/json\",\"records\":{records},\"bytes\":{size}}}\n"
            );
            w.write_all(head.as_bytes()).await?;
            let mut buf = vec![0u8; STREAM_CHUNK];
            let mut at = 0u64;
            while at < end {
                let n = (end - at).min(STREAM_CHUNK as u64) as usize;
                tokio::task::block_in_place(|| reader.read_exact_at(&mut buf[..n], at))?;
                w.write_all(&buf[..n]).await?;
                at += n as u64;
            }
            w.write_all(tail).await
        }
        (
            Answer::Stats {
                mut value,
                timings_from,
            },
            _,
        ) => {
            if let Some((file, spans)) = timings_from {
                let t = tokio::task::block_in_place(|| timings(&file, &spans))?;
                value["timings"] = t;
            }
            let mut line = serde_json::to_vec(&serde_json::json!({"ok": true, "stats": value}))
                .map_err(io::Error::other)?;
            line.push(b'\n');
            w.write_all(&line).await
        }
        (
            Answer::Records {
                reader,
                spans,
                total,
            },
            Output::Jobs { fields },
        ) => {
            let head = format!(
                "{{\"ok\":true,\"count\":{},\"total\":{total},\"jobs\":[",
                spans.len()
            );
            let names: Option<Vec<&str>> = fields
                .as_ref()
                .map(|f| f.iter().map(String::as_str).collect());
            records(w, head, &reader, &spans, names.as_deref()).await
        }
        (
            Answer::Records {
                reader,
                spans,
                total,
            },
            Output::Candidates,
        ) => {
            let head = format!(
                "{{\"ok\":true,\"count\":{},\"total\":{total},\"candidates\":[",
                spans.len()
            );
            records(w, head, &reader, &spans, Some(&CANDIDATE_FIELDS)).await
        }
        (Answer::Records { reader, spans, .. }, _) => {
            // Two passes: the size first (the header announces it), then
            // the bytes, so the CSV is never held whole.
            let mut size = 0usize;
            let mut pass = CsvPieces::new(&reader, &spans);
            while let Some(p) = tokio::task::block_in_place(|| pass.next_piece())? {
                size += p.len();
            }
            let head = format!("{{\"ok\":true,\"content_type\":\"text/csv\",\"bytes\":{size}}}\n");
            w.write_all(head.as_bytes()).await?;
            let mut pass = CsvPieces::new(&reader, &spans);
            while let Some(p) = tokio::task::block_in_place(|| pass.next_piece())? {
                w.write_all(&p).await?;
            }
            Ok(())
        }
    }
}
