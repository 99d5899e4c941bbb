//! `joblogctl jobs` and its shortcuts: records as a table, JSON lines or
//! CSV.

use super::*;

pub(super) fn jobs(out: &mut impl Write, socket: &Socket, a: JobsArgs) -> Result<(), Fail> {
    let mut q = jobs_request(&a);
    let format = a
        .format
        .unwrap_or(if tty() { Format::Table } else { Format::Ndjson });
    let mut c = Conn::open(socket)?;
    if format == Format::Csv {
        return print_csv(out, &mut c, q, a.fields.as_deref());
    }
    if let Some(f) = &a.fields {
        q["fields"] = json!(f);
    }
    c.send(&q)?;
    let head = c.answer_head("jobs")?;
    match format {
        Format::Json => print_json(out, &mut c)?,
        Format::Ndjson => print_ndjson(out, &mut c)?,
        _ => print_table(out, &mut c, &head, a.fields)?,
    }
    Ok(())
}

/// The `jobs` request for the filters, order and page asked for (not
/// `--fields`, which is added when the format is known).
fn jobs_request(a: &JobsArgs) -> Value {
    let mut q = json!({"op":"jobs"});
    if a.failed {
        q["success"] = json!(false);
    }
    if a.successful {
        q["success"] = json!(true);
    }
    for (k, v) in [
        ("stage", &a.stage),
        ("subject", &a.subject),
        ("video_id", &a.video),
        ("error_type", &a.error_type),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            q[k] = json!(v);
        }
    }
    // Always a string: the daemon keys a number by its JSON text, so "7"
    // finds worker 7, and "007" stays "007".
    if let Some(w) = &a.worker {
        q["worker_id"] = json!(w);
    }
    if a.latest_per_video {
        q["latest_per_video"] = json!(true);
    }
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

/// `--format csv`: the same request as an `export_csv`, whose body is
/// copied out as the daemon wrote it, or with `--fields` only those
/// columns, in that order.
fn print_csv(
    out: &mut impl Write,
    c: &mut Conn,
    mut q: Value,
    fields: Option<&[String]>,
) -> Result<(), Fail> {
    q["op"] = json!("export_csv");
    let v = c.ask(q)?;
    let n = v["bytes"].as_u64().unwrap_or(0) as usize;
    let mut body = vec![0u8; n];
    c.r.read_exact(&mut body)?;
    match fields {
        None => out.write_all(&body)?,
        Some(f) => project_csv(out, &body, f)?,
    }
    Ok(())
}

/// The CSV `body` with only the columns `fields`, in their order; a field
/// that is no CSV column is a usage error, named.
fn project_csv(out: &mut impl Write, body: &[u8], fields: &[String]) -> Result<(), Fail> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body);
    let bad = |e: csv::Error| Fail(1, format!("joblogctl: bad CSV from the daemon: {e}"));
    let headers = rd.headers().map_err(bad)?.clone();
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
    let mut wr = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(out);
    let write = |e: csv::Error| Fail(1, format!("joblogctl: {e}"));
    wr.write_record(picks.iter().map(|&i| &headers[i]))
        .map_err(write)?;
    for row in rd.records() {
        let row = row.map_err(bad)?;
        wr.write_record(picks.iter().map(|&i| row.get(i).unwrap_or("")))
            .map_err(write)?;
    }
    wr.flush()?;
    Ok(())
}

/// `--format json`: one JSON array, each record as the log file prints
/// them (Python's indent=2).
fn print_json(out: &mut impl Write, c: &mut Conn) -> Result<(), Fail> {
    let bad = |e: joblogd::JsonError| Fail(1, format!("joblogctl: bad record in reply: {e}"));
    let mut fmt = joblogd::Formatter::new();
    let mut text = Vec::new();
    let mut first = true;
    c.each_element(|j| {
        text.clear();
        text.extend_from_slice(if first { b"[\n  " } else { b",\n  " });
        first = false;
        fmt.pretty(j, &mut text).map_err(bad)?;
        out.write_all(&text)?;
        Ok(())
    })?;
    out.write_all(if first { b"[]\n" } else { b"\n]\n" })?;
    Ok(())
}

/// `--format ndjson`: the records as the daemon sent them (compact, as in
/// the file): a `Value` would sort their keys and rewrite their numbers
/// (`1e2` as `100.0`, a 30-digit integer rounded).
fn print_ndjson(out: &mut impl Write, c: &mut Conn) -> Result<(), Fail> {
    c.each_element(|j| {
        out.write_all(j)?;
        out.write_all(b"\n")?;
        Ok(())
    })
}

/// `--format table`: the `--fields` asked for (else the usual seven), and
/// on a terminal how many of how many matching.
fn print_table(
    out: &mut impl Write,
    c: &mut Conn,
    head: &Value,
    fields: Option<Vec<String>>,
) -> Result<(), Fail> {
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
    // A table needs every row for its widths; only the cells are kept,
    // not the records.
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut failed = Vec::new();
    c.each_element(|j| {
        let v: Value = serde_json::from_slice(j)
            .map_err(|e| Fail(1, format!("joblogctl: bad record in reply: {e}")))?;
        rows.push(headers.iter().map(|h| text(&v[h])).collect());
        // As Python reads `success` (a missing or empty one is a failure);
        // only a record that has it is marked, `--fields` or not.
        failed.push(match &v["success"] {
            Value::Bool(b) => !b,
            Value::Null => v.get("success").is_some(),
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        });
        Ok(())
    })?;
    write!(out, "{}", table_marked(&headers, &rows, &failed))?;
    if tty() {
        writeln!(out, "{} of {} matching", head["count"], head["total"])?;
    }
    Ok(())
}
