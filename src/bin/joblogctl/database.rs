//! `joblogctl --database URL stats | report | jobs | retry-candidates |
//! export-csv`: the same questions answered over every host's records in
//! the central PostgreSQL (see `forward`).
//!
//! The records are fetched once, each with its `host_id` added, in the
//! order they were logged (`logged_at_utc`, then host and position), and
//! served on one end of a socket pair by a thread that answers each
//! request as the daemon would (`joblogd::dev::answer_offline`, the
//! daemon's own query code): the subcommands talk to it through the same
//! `Conn` as to the daemon, so their output is the same too.

use std::os::unix::net::UnixStream;

use super::*;

/// Connects to the central database, fetches every record and returns a
/// connection that answers queries over them.
pub(super) fn open(url: &str) -> Result<Conn, Fail> {
    let mut target = pg::target(url)?;
    target.bound(std::time::Duration::from_secs(30));
    let records = fetch(&target).map_err(|e| {
        Fail(
            3,
            format!("joblogctl: cannot read the central database: {e}"),
        )
    })?;
    offline(records)
}

/// A connection answered by the daemon's own query code over `records`
/// (compact JSON texts, in log order), on a thread of its own.
pub(super) fn offline(records: Vec<String>) -> Result<Conn, Fail> {
    let (ours, theirs) = UnixStream::pair()?;
    std::thread::spawn(move || {
        if let Err(e) = serve(theirs, &records) {
            eprintln!("joblogctl: answering over the records failed: {e}");
        }
    });
    let r = BufReader::new(ours.try_clone()?);
    Ok(Conn { w: ours, r })
}

/// Every record, with its `host_id`, oldest first.
fn fetch(target: &pg::Target) -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = target.connect().await?;
        let text = |e: tokio_postgres::Error| match e.as_db_error() {
            Some(d) => format!("{}: {}", d.code().code(), d.message()),
            None => e.to_string(),
        };
        let rows = client
            .query_raw(
                "SELECT host_id, record::text FROM joblog_records \
                 ORDER BY logged_at_utc NULLS FIRST, host_id, log_id, seq",
                std::iter::empty::<i32>(),
            )
            .await
            .map_err(text)?;
        futures_util::pin_mut!(rows);
        let mut records = Vec::new();
        while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows)
            .await
            .map_err(text)?
        {
            records.push(with_host(row.get(0), row.get(1)));
        }
        Ok(records)
    })
}

/// The record (jsonb's text: `{"key": value, …}`) with `host_id` first.
fn with_host(host: &str, record: &str) -> String {
    let host = serde_json::to_string(host).unwrap_or_default();
    match record.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => format!("{{\"host_id\": {host}}}"),
        Some(rest) => format!("{{\"host_id\": {host}, {rest}"),
        None => record.to_string(),
    }
}

/// Answers each request line on `s` until it is closed.
fn serve(s: UnixStream, records: &[String]) -> io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let reply = joblogd::dev::answer_offline(records, &line)?;
        w.write_all(&reply)?;
    }
}
