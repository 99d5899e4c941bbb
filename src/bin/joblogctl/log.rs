//! `joblogctl log`: records from files or standard input, sent as plain
//! lines, never as lines the daemon would take for requests.

use super::*;

/// Sends NDJSON records as they are, then (with `--ack`) a `flush`, then a
/// `ping`, whose reply proves every line before it was taken (and, after
/// the flush, durable). Error replies are read on a second thread as they
/// come, so a long file with bad lines cannot deadlock. A line the daemon
/// would take for a request (an object with a top-level `op`, or a bare
/// word) is not sent: a data file must not run `clear`. An empty line goes
/// in its place, so the daemon's line numbers stay the file's.
pub(super) fn log(socket: &Socket, file: &str, ack: bool) -> Result<(), Fail> {
    let (input, size) = open_input(file)?;
    let Conn { mut w, r } = Conn::open(socket)?;
    let errors = read_errors(r);
    let tally = send_lines(&mut w, input, size)?;
    if ack {
        w.write_all(b"{\"op\":\"flush\"}\n")?;
    }
    w.write_all(b"{\"op\":\"ping\"}\n")?;
    w.shutdown(std::net::Shutdown::Write)?;
    let (rejected, closing) = errors
        .join()
        .map_err(|_| Fail(1, "joblogctl: reader failed".into()))?;
    if closing.is_none() {
        return Err(Fail(
            1,
            "joblogctl: the daemon closed the connection before confirming".into(),
        ));
    }
    report(&tally, rejected, ack)
}

/// The file, or standard input for `-`; a file's size is known, for the
/// progress shown on a terminal.
fn open_input(file: &str) -> Result<(Box<dyn Read>, Option<u64>), Fail> {
    Ok(if file == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(file).map_err(|e| Fail(1, format!("joblogctl: {file}: {e}")))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    })
}

/// Reads the replies on a thread of its own, printing each error reply
/// (a rejected line) as it comes, until the closing ping's reply: how many
/// lines were rejected, and that reply (`None` if the daemon closed the
/// connection first).
fn read_errors(mut reader: BufReader<UnixStream>) -> std::thread::JoinHandle<(u64, Option<Value>)> {
    std::thread::spawn(move || -> (u64, Option<Value>) {
        let mut rejected = 0;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return (rejected, None),
                Ok(_) => {}
            }
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["ok"] == false {
                rejected += 1;
                eprintln!(
                    "line {}: {}: {}",
                    v["line"],
                    v["error"]["code"].as_str().unwrap_or("?"),
                    v["error"]["message"].as_str().unwrap_or("")
                );
            } else if v.get("version").is_some() {
                // The closing ping: every line before it was taken.
                return (rejected, Some(v));
            }
        }
    })
}

/// What [`send_lines`] sent: `lines` records (blank lines not counted),
/// and `skipped` requests not sent.
struct Tally {
    lines: u64,
    skipped: u64,
}

/// Sends the input line by line (a request replaced by an empty line),
/// with the progress on a terminal when the file is over 1 MiB.
fn send_lines(w: &mut UnixStream, input: Box<dyn Read>, size: Option<u64>) -> Result<Tally, Fail> {
    let progress = io::stderr().is_terminal() && size.is_some_and(|s| s > 1 << 20);
    let mut input = BufReader::with_capacity(1 << 16, input);
    let (mut lines, mut sent, mut last_pct) = (0u64, 0u64, 101u64);
    let (mut skipped, mut blank) = (0u64, 0u64);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if !buf.ends_with(b"\n") {
            buf.push(b'\n');
        }
        if joblogd::is_request(&buf) {
            skipped += 1;
            eprintln!(
                "line {}: a request (a top-level \"op\" or a bare word), not a record: not sent",
                lines + skipped + blank
            );
            w.write_all(b"\n").map_err(|e| gone(lines, e))?;
            sent += n as u64;
            continue;
        }
        if buf.trim_ascii().is_empty() {
            blank += 1;
        } else {
            lines += 1;
        }
        w.write_all(&buf).map_err(|e| gone(lines, e))?;
        sent += n as u64;
        if progress && let Some(total) = size {
            let pct = sent * 100 / total.max(1);
            if pct != last_pct {
                eprint!("\r{pct:3}% {lines} records");
                last_pct = pct;
            }
        }
    }
    if progress {
        eprintln!();
    }
    Ok(Tally { lines, skipped })
}

/// The daemon went away mid-file (stopped, restarted): say how far the
/// file got, not just "Broken pipe".
fn gone(lines: u64, e: io::Error) -> Fail {
    Fail(
        1,
        format!(
            "joblogctl: the daemon closed the connection after {lines} records were sent ({e}); \
             those not confirmed may not be logged: check with `joblogctl jobs`, or send the rest again"
        ),
    )
}

/// `1 record`, `2 records`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The summary on standard error; exit status 1 if any line was not
/// logged.
fn report(tally: &Tally, rejected: u64, ack: bool) -> Result<(), Fail> {
    let logged = tally.lines.saturating_sub(rejected);
    let how = if ack { "logged (on disk)" } else { "logged" };
    let records = counted(logged, "record", "records");
    match (rejected, tally.skipped) {
        (0, 0) => eprintln!("{how} {records}"),
        (r, 0) => eprintln!("{how} {records}, {r} rejected"),
        (r, s) => eprintln!(
            "{how} {records}, {r} rejected, {}",
            counted(s, "request not sent", "requests not sent")
        ),
    }
    if rejected + tally.skipped > 0 {
        return Err(Fail(
            1,
            format!("joblogctl: {} lines not logged", rejected + tally.skipped),
        ));
    }
    Ok(())
}
