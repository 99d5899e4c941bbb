//! `joblogctl tail -f`: new records as they arrive, until the daemon
//! closes the connection.

use super::*;

pub(super) fn tail(out: &mut impl Write, socket: &Socket, pending: bool) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    c.ask(json!({"op":"subscribe","include_pending":pending}))?;
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
        if let Some(record) = v.get("record") {
            writeln!(out, "{}", record.get())?;
            out.flush()?;
        }
    }
}
