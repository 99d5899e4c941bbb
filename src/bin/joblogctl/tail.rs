//! `joblogctl tail`: the last `-n` matching records, and with `-f` the new
//! ones as they arrive, until the daemon closes the connection.
//!
//! The filters are the daemon's (`jobs`, or `export_csv` for CSV): the
//! last records are a `jobs` page newest first, turned back to log order;
//! its answer says which records it was chosen from (`log_id`, `durable`),
//! and following asks again from there (`from_seq`) each time a positioned
//! `subscribe` says new records are durable. So no record is shown twice
//! or skipped between the two, and a record is matched by the same code
//! that answers `jobs`. A log replaced meanwhile (`clear`, a rotation) is
//! followed from its start. `--pending` follows accepted records instead
//! (they have no position yet), unfiltered, as NDJSON.

use super::*;

pub(super) fn tail(out: &mut impl Write, socket: &Socket, a: TailArgs) -> Result<(), Fail> {
    if a.pending {
        if a.fields.is_some() || a.format.is_some_and(|f| f != Format::Ndjson) || filtered(&a) {
            return Err(Fail(
                2,
                "joblogctl: tail --pending shows records before they are in the file, unfiltered, \
                 as NDJSON: drop the filters, --fields and --format"
                    .into(),
            ));
        }
        return follow_pending(out, socket);
    }
    let format = a.format.unwrap_or_else(default_format);
    let mut c = Conn::open(socket)?;
    let mut show = Show::new(out, format, a.fields.clone());
    let mut last = json!({"order":"desc","limit":a.lines});
    let mut at = ask(&mut c, &a, format, &mut show, &mut last, true)?;
    show.rows_done()?;
    if !a.follow {
        return show.end();
    }
    loop {
        // Woken when records after `at` are durable; then one query takes
        // whatever is new by then.
        let mut feed = Conn::open(socket)?;
        match feed.ask(json!({"op":"subscribe","from_seq":at.1,"log_id":at.0})) {
            Ok(_) => {}
            // Replaced between the last answer and this subscription.
            Err(Fail(_, m)) if m.contains("log_changed") => {
                catch_up(&mut c, &a, format, &mut show, &mut at)?;
                continue;
            }
            Err(e) => return Err(e),
        }
        let mut line = String::new();
        loop {
            line.clear();
            if feed.r.read_line(&mut line)? == 0 {
                return show.end();
            }
            // Everything the feed has sent so far is covered by one query;
            // records an earlier query showed need none.
            let mut newest = seq_of(&line);
            let mut changed = line.contains("\"log_changed\"");
            while !feed.r.buffer().is_empty() {
                line.clear();
                feed.r.read_line(&mut line)?;
                newest = newest.max(seq_of(&line));
                changed |= line.contains("\"log_changed\"");
            }
            if !changed && newest.is_some_and(|s| s < at.1) {
                continue;
            }
            if catch_up(&mut c, &a, format, &mut show, &mut at)? || changed {
                break; // a new subscription, on the log followed now
            }
        }
    }
}

/// Shows the matches after `at` and moves `at` past them. If the log was
/// replaced (cleared, rotated) meanwhile, the old log's records after
/// `at` come first, read back from its archive, then the new log's from
/// its start; true then.
fn catch_up<W: Write>(
    c: &mut Conn,
    a: &TailArgs,
    format: Format,
    show: &mut Show<'_, W>,
    at: &mut (String, u64),
) -> Result<bool, Fail> {
    let mut next = json!({"from_seq":at.1,"log_id":at.0});
    let now = ask(c, a, format, show, &mut next, false)?;
    show.rows_done()?;
    if now.0 == at.0 {
        *at = now;
        return Ok(false);
    }
    finish_archived(c, a, format, show, at)?;
    eprintln!("joblogctl: the log was replaced (cleared or rotated); following the new one");
    let mut from_start = json!({"from_seq":0});
    *at = ask(c, a, format, show, &mut from_start, false)?;
    show.rows_done()?;
    Ok(true)
}

/// The matches among the records of the replaced log `at.0` from `at.1`
/// to its end: read back by position (`read` serves the archive), and
/// matched by the daemon's own query code run here over them
/// (`answer_offline`, as for `--database`), so the filters mean what they
/// mean for `jobs`.
fn finish_archived<W: Write>(
    c: &mut Conn,
    a: &TailArgs,
    format: Format,
    show: &mut Show<'_, W>,
    at: &(String, u64),
) -> Result<(), Fail> {
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        next_seq: u64,
        durable: u64,
        #[serde(borrow)]
        records: Vec<Positioned<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Positioned<'a> {
        #[serde(borrow)]
        record: &'a serde_json::value::RawValue,
    }
    let mut records = Vec::new();
    let mut from = at.1;
    loop {
        c.send(&json!({"op":"read","log_id":at.0,"from_seq":from,"limit":1000}))?;
        let line = match c.reply_raw() {
            Ok((_, line)) => line,
            Err(Fail(_, m)) => {
                eprintln!("joblogctl: the replaced log's last records cannot be read ({m})");
                return Ok(());
            }
        };
        let page: Page<'_> = serde_json::from_str(&line)
            .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
        records.extend(page.records.iter().map(|p| p.record.get().to_owned()));
        if page.records.is_empty() || page.next_seq >= page.durable {
            break;
        }
        from = page.next_seq;
    }
    if records.is_empty() {
        return Ok(());
    }
    let mut offline = database::offline(records)?;
    ask(&mut offline, a, format, show, &mut json!({}), false)?;
    show.rows_done()
}

/// The position of a record line of a positioned subscription
/// (`{"seq":N,"record":…}`).
fn seq_of(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"seq\":")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Whether any filter was given.
fn filtered(a: &TailArgs) -> bool {
    let f = &a.filter;
    f.failed
        || f.successful
        || f.latest_per_video
        || [
            &f.stage,
            &f.subject,
            &f.worker,
            &f.video,
            &f.error_type,
            &f.since,
            &f.until,
        ]
        .iter()
        .any(|v| v.is_some())
}

/// Asks for the matching records with the extra members `more` (the last
/// page newest first, or those from a position), shows them in log order,
/// and returns the log and the number of its records they were chosen
/// from. Records of another log than `more`'s `log_id` are not shown: the
/// caller asks again from that log's start.
fn ask<W: Write>(
    c: &mut Conn,
    a: &TailArgs,
    format: Format,
    show: &mut Show<'_, W>,
    more: &mut Value,
    first: bool,
) -> Result<(String, u64), Fail> {
    let op = if format == Format::Csv {
        "export_csv"
    } else {
        "jobs"
    };
    let mut q = filter_request(op, &a.filter);
    let newest_first = more.get("order").is_some();
    let want_log = more
        .get("log_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(m) = more.as_object_mut() {
        for (k, v) in std::mem::take(m) {
            // The daemon's log_id is not a jobs filter: compared here.
            if k != "log_id" {
                q[k] = v;
            }
        }
    }
    if format != Format::Csv
        && let Some(f) = &a.fields
    {
        q["fields"] = json!(f);
    }
    c.send(&q)?;
    let at = |head: &Value| {
        let log_id = head["log_id"].as_str().unwrap_or_default().to_owned();
        let durable = head["durable"].as_u64().unwrap_or(0);
        let shown = want_log.as_ref().is_none_or(|w| *w == log_id);
        (shown, (log_id, durable))
    };
    if format == Format::Csv {
        let (head, body) = csv_answer(c)?;
        let (shown, at) = at(&head);
        if shown {
            let order = if newest_first {
                Rows::Reversed
            } else {
                Rows::AsSent
            };
            write_csv(show.out(), &body, a.fields.as_deref(), order, first)?;
        }
        return Ok(at);
    }
    let head = c.answer_head("jobs")?;
    let (shown, at) = at(&head);
    if newest_first {
        // The last page only (-n): kept to be shown oldest first.
        let mut last = Vec::new();
        c.each_element(|j| {
            last.push(j.to_vec());
            Ok(())
        })?;
        for j in last.iter().rev().filter(|_| shown) {
            show.record(j)?;
        }
    } else {
        // However many arrived meanwhile: shown as they are read.
        c.each_element(|j| if shown { show.record(j) } else { Ok(()) })?;
    }
    Ok(at)
}

/// `--pending`: accepted records as they come, as NDJSON.
fn follow_pending(out: &mut impl Write, socket: &Socket) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    c.ask(json!({"op":"subscribe","include_pending":true}))?;
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
