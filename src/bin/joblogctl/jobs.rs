//! `joblogctl jobs` and its shortcuts: records as a table, JSON lines or
//! CSV.

use super::*;

pub(super) fn jobs(out: &mut impl Write, socket: &Socket, a: JobsArgs) -> Result<(), Fail> {
    let mut q = jobs_request(&a);
    let format = a.format.unwrap_or_else(default_format);
    let mut c = Conn::open(socket)?;
    if format == Format::Csv {
        q["op"] = json!("export_csv");
        c.send(&q)?;
        let (_, body) = csv_answer(&mut c)?;
        return write_csv(out, &body, a.fields.as_deref(), Rows::AsSent, true);
    }
    if let Some(f) = &a.fields {
        q["fields"] = json!(f);
    }
    c.send(&q)?;
    let head = c.answer_head("jobs")?;
    let mut show = Show::new(out, format, a.fields);
    c.each_element(|j| show.record(j))?;
    show.rows_done()?;
    show.end()?;
    if format == Format::Table && tty() {
        writeln!(out, "{} of {} matching", head["count"], head["total"])?;
    }
    Ok(())
}

/// Table on a terminal, NDJSON in a pipe.
pub(super) fn default_format() -> Format {
    if tty() { Format::Table } else { Format::Ndjson }
}

/// The request of `op` for the records the filters choose.
pub(super) fn filter_request(op: &str, f: &Filters) -> Value {
    let mut q = json!({ "op": op });
    if f.failed {
        q["success"] = json!(false);
    }
    if f.successful {
        q["success"] = json!(true);
    }
    for (k, v) in [
        ("stage", &f.stage),
        ("subject", &f.subject),
        ("video_id", &f.video),
        ("error_type", &f.error_type),
        ("since", &f.since),
        ("until", &f.until),
    ] {
        if let Some(v) = v {
            q[k] = json!(v);
        }
    }
    // Always a string: the daemon keys a number by its JSON text, so "7"
    // finds worker 7, and "007" stays "007".
    if let Some(w) = &f.worker {
        q["worker_id"] = json!(w);
    }
    if f.latest_per_video {
        q["latest_per_video"] = json!(true);
    }
    q
}

/// The `jobs` request for the filters, order and page asked for (not
/// `--fields`, which is added when the format is known).
fn jobs_request(a: &JobsArgs) -> Value {
    let mut q = filter_request("jobs", &a.filter);
    if let Some(l) = a.limit {
        q["limit"] = json!(l);
    }
    if let Some(o) = a.offset {
        q["offset"] = json!(o);
    }
    if a.desc {
        q["order"] = json!("desc");
    }
    if let Some(s) = a.sort {
        q["sort_by"] = json!(match s {
            Sort::Duration => "processing_duration",
            Sort::LoggedAt => "logged_at",
        });
    }
    q
}

/// The head and body of an `export_csv` answer (its request sent).
pub(super) fn csv_answer(c: &mut Conn) -> Result<(Value, Vec<u8>), Fail> {
    let head = c.reply()?;
    let n = head["bytes"].as_u64().unwrap_or(0) as usize;
    let mut body = vec![0u8; n];
    c.r.read_exact(&mut body)?;
    Ok((head, body))
}

/// Which rows of a CSV body to write, in which order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rows {
    AsSent,
    Reversed,
}

/// The CSV `body` (from `export_csv`), with its header line if `header`,
/// its rows in the order asked, and with `fields` only those columns in
/// their order (a field that is no CSV column is a usage error, named).
/// Without `fields`, header and order as sent, the bytes are copied as the
/// daemon wrote them.
pub(super) fn write_csv(
    out: &mut impl Write,
    body: &[u8],
    fields: Option<&[String]>,
    rows: Rows,
    header: bool,
) -> Result<(), Fail> {
    if fields.is_none() && rows == Rows::AsSent && header {
        out.write_all(body)?;
        return Ok(());
    }
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let bad = |e: csv::Error| Fail(1, format!("joblogctl: bad CSV from the daemon: {e}"));
    let headers = rd.headers().map_err(bad)?.clone();
    let picks: Vec<usize> = match fields {
        None => (0..headers.len()).collect(),
        Some(f) => columns(&headers, f)?,
    };
    let mut wr = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let write = |e: csv::Error| Fail(1, format!("joblogctl: {e}"));
    if header {
        wr.write_record(picks.iter().map(|&i| &headers[i]))
            .map_err(write)?;
    }
    let mut all = rd.records().collect::<Result<Vec<_>, _>>().map_err(bad)?;
    if rows == Rows::Reversed {
        all.reverse();
    }
    for row in all {
        wr.write_record(picks.iter().map(|&i| row.get(i).unwrap_or("")))
            .map_err(write)?;
    }
    wr.flush()?;
    Ok(())
}

/// The positions of `fields` among the CSV `headers`.
fn columns(headers: &csv::StringRecord, fields: &[String]) -> Result<Vec<usize>, Fail> {
    let mut picks = Vec::with_capacity(fields.len());
    for f in fields {
        match headers.iter().position(|h| h == f) {
            Some(i) => picks.push(i),
            None => {
                let known: Vec<&str> = headers.iter().collect();
                return Err(Fail(
                    2,
                    format!(
                        "joblogctl: --fields {f}: not a CSV column (the columns are {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(picks)
}

/// Records shown one at a time in a format other than CSV: `jobs` shows
/// one answer, `tail -f` one batch after another. NDJSON and JSON are
/// written as each record comes; a table keeps its rows until
/// [`Show::rows_done`] (it needs them for its widths), and its header and
/// widths carry over to the next batch, so a followed table stays one
/// table (a column only widens).
pub(super) struct Show<'o, W: Write> {
    out: &'o mut W,
    format: Format,
    headers: Vec<String>,
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
    failed: Vec<bool>,
    header_shown: bool,
    /// JSON: records written so far (the array is opened by the first).
    written: usize,
    fmt: joblogd::Formatter,
    text: Vec<u8>,
}

impl<'o, W: Write> Show<'o, W> {
    /// `fields`: the table's columns (else the usual seven).
    pub(super) fn new(out: &'o mut W, format: Format, fields: Option<Vec<String>>) -> Self {
        let headers: Vec<String> = fields.unwrap_or_else(|| {
            [
                "logged_at",
                "video_id",
                "subject",
                "stage",
                "success",
                "processing_duration",
                "error",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        });
        Show {
            out,
            format,
            widths: headers.iter().map(|h| h.chars().count()).collect(),
            headers,
            rows: Vec::new(),
            failed: Vec::new(),
            header_shown: false,
            written: 0,
            fmt: joblogd::Formatter::new(),
            text: Vec::new(),
        }
    }

    /// Where it writes (for what it does not show itself: CSV).
    pub(super) fn out(&mut self) -> &mut W {
        self.out
    }

    /// One record, compact JSON as the daemon sent it.
    pub(super) fn record(&mut self, j: &[u8]) -> Result<(), Fail> {
        match self.format {
            // The record as sent (compact, as in the file): a `Value` would
            // sort its keys and rewrite its numbers (`1e2` as `100.0`, a
            // 30-digit integer rounded).
            Format::Ndjson | Format::Csv => {
                self.out.write_all(j)?;
                self.out.write_all(b"\n")?;
            }
            // One array, each record as the log file prints them (Python's
            // indent=2).
            Format::Json => {
                self.text.clear();
                self.text.extend_from_slice(if self.written == 0 {
                    b"[\n  "
                } else {
                    b",\n  "
                });
                self.fmt
                    .pretty(j, &mut self.text)
                    .map_err(|e| Fail(1, format!("joblogctl: bad record in reply: {e}")))?;
                self.out.write_all(&self.text)?;
            }
            Format::Table => {
                let v: Value = serde_json::from_slice(j)
                    .map_err(|e| Fail(1, format!("joblogctl: bad record in reply: {e}")))?;
                self.rows
                    .push(self.headers.iter().map(|h| text(&v[h])).collect());
                self.failed.push(failed(&v));
            }
        }
        self.written += 1;
        Ok(())
    }

    /// The rows kept so far, printed (a table's), and the output flushed.
    pub(super) fn rows_done(&mut self) -> Result<(), Fail> {
        if self.format == Format::Table && (!self.header_shown || !self.rows.is_empty()) {
            let t = table_rows(
                &self.headers,
                &self.rows,
                &self.failed,
                &mut self.widths,
                !self.header_shown,
            );
            self.out.write_all(t.as_bytes())?;
            self.header_shown = true;
            self.rows.clear();
            self.failed.clear();
        }
        self.out.flush()?;
        Ok(())
    }

    /// The end of the output (JSON's closing bracket).
    pub(super) fn end(&mut self) -> Result<(), Fail> {
        if self.format == Format::Json {
            self.out
                .write_all(if self.written == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Whether a table marks the record as failed: as Python reads `success`
/// (a missing or empty one is a failure), but only a record that has it
/// is marked, `--fields` or not.
fn failed(v: &Value) -> bool {
    match &v["success"] {
        Value::Bool(b) => !b,
        Value::Null => v.get("success").is_some(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}
