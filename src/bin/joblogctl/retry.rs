//! `joblogctl retry-candidates`: a table, or one URL per line for a retry
//! loop.

use super::*;

pub(super) fn retry_candidates(
    out: &mut impl Write,
    socket: &Socket,
    urls: bool,
    limit: Option<usize>,
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
    } else {
        let headers: Vec<String> = ["video_id", "url", "stage", "retry_count", "error"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows: Vec<Vec<String>> = cands
            .iter()
            .map(|c| headers.iter().map(|h| text(&c[h])).collect())
            .collect();
        write!(out, "{}", table(&headers, &rows))?;
    }
    Ok(())
}
