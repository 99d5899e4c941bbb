//! `joblogctl retry-candidates`: a table on a terminal, NDJSON in a pipe
//! (or `--format`), or one URL per line for a retry loop.

use super::*;

pub(super) fn retry_candidates(
    out: &mut impl Write,
    socket: &Socket,
    urls: bool,
    limit: Option<usize>,
    format: Option<Format>,
) -> Result<(), Fail> {
    let mut q = json!({"op":"retry_candidates"});
    if let Some(l) = limit {
        q["limit"] = json!(l);
    }
    let v = Conn::open(socket)?.ask(q)?;
    let empty = vec![];
    let cands = v["candidates"].as_array().unwrap_or(&empty);
    if urls {
        for c in cands {
            if let Some(u) = c["url"].as_str() {
                writeln!(out, "{u}")?;
            }
        }
        return Ok(());
    }
    let headers: Vec<String> = ["video_id", "url", "stage", "retry_count", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match format.unwrap_or(if tty() { Format::Table } else { Format::Ndjson }) {
        Format::Table => {
            let rows: Vec<Vec<String>> = cands
                .iter()
                .map(|c| headers.iter().map(|h| text(&c[h])).collect())
                .collect();
            write!(out, "{}", table(&headers, &rows))?;
        }
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(cands).unwrap_or_default()
        )?,
        Format::Ndjson => {
            for c in cands {
                writeln!(out, "{c}")?;
            }
        }
        Format::Csv => {
            let mut wr = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(out);
            let fail = |e: csv::Error| Fail(1, format!("joblogctl: {e}"));
            wr.write_record(&headers).map_err(fail)?;
            for c in cands {
                let cell = |h: &String| match &c[h] {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    v => v.to_string(),
                };
                wr.write_record(headers.iter().map(cell)).map_err(fail)?;
            }
            wr.flush()?;
        }
    }
    Ok(())
}
