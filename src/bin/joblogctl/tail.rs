//! `joblogctl tail`: the last `-n` records, and with `-f` the new ones as
//! they arrive, until the daemon closes the connection. The last records
//! and the new ones come from one position-based `subscribe`, so none is
//! missed or shown twice between the two (`--pending` follows accepted
//! records instead, which have no position yet).

use super::*;

pub(super) fn tail(
    out: &mut impl Write,
    socket: &Socket,
    n: u64,
    follow: bool,
    pending: bool,
) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    let ping = c.ask(json!({"op":"ping"}))?;
    let from = ping["records"].as_u64().unwrap_or(0).saturating_sub(n);
    let log_id = ping["log_id"].clone();
    if !follow {
        c.send(&json!({"op":"read","log_id":log_id,"from_seq":from,"limit":n.max(1)}))?;
        // Each record as the daemon sent it (key order, number text).
        #[derive(serde::Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            records: Vec<Positioned<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Positioned<'a> {
            #[serde(borrow)]
            record: &'a serde_json::value::RawValue,
        }
        let (_, line) = c.reply_raw()?;
        let page: Page<'_> = serde_json::from_str(&line)
            .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
        for p in page.records.iter().take(n as usize) {
            writeln!(out, "{}", p.record.get())?;
        }
        return Ok(());
    }
    let q = if pending {
        json!({"op":"subscribe","include_pending":true})
    } else {
        json!({"op":"subscribe","from_seq":from,"log_id":log_id})
    };
    c.ask(q)?;
    let mut line = String::new();
    loop {
        line.clear();
        if c.r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        // The record as sent (see `jobs`): not through a `Value`.
        let v: std::collections::HashMap<&str, &serde_json::value::RawValue> =
            serde_json::from_str(&line).unwrap_or_default();
        if let Some(n) = v.get("missed") {
            eprintln!(
                "joblogctl: missed {} records (too slow to keep up)",
                n.get()
            );
            continue;
        }
        if let Some(e) = v.get("error") {
            return Err(Fail(1, format!("joblogd: {}", e.get())));
        }
        if let Some(record) = v.get("record") {
            writeln!(out, "{}", record.get())?;
            out.flush()?;
        }
    }
}
