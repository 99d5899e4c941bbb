//! The write half: replies in the order of their requests, each waiting
//! for what it depends on (durability, the writer's answer), answers
//! streamed, subscribers followed.

use super::*;
use crate::config::tuning::{READ_DEFAULT_LIMIT, SUBSCRIBE_FLUSH_WAIT};

/// Says `{"ok":true,"subscribed":true}`, then streams new records
/// (`{"seq":N,"record":…}` lines) until the subscriber goes
/// away or the daemon stops. A subscriber that fell behind the ring gets
/// `{"missed":N}` and carries on from the oldest record still there. When
/// shutdown begins the stream ends after the records already queued for
/// it: a subscriber (`joblogctl tail -f`) sends nothing and waits for
/// nothing, so it must not hold the daemon up for the whole grace period.
pub(super) async fn follow(
    w: &mut BufWriter<OwnedWriteHalf>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<[u8]>>,
    shutdown: &mut Shutdown,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    w.write_all(&reply_line(
        &serde_json::json!({"ok": true, "subscribed": true}),
    ))
    .await?;
    w.flush().await?;
    loop {
        let next = tokio::select! {
            next = events.recv() => next,
            // (The guard `wait_for` returns must not live across an await.)
            () = shutdown.wait_begun() => {
                while let Ok(line) = events.try_recv() {
                    w.write_all(&line).await?;
                }
                return w.flush().await;
            }
        };
        let line = match next {
            Ok(line) => line,
            Err(RecvError::Lagged(n)) => {
                w.write_all(format!("{{\"missed\":{n}}}\n").as_bytes())
                    .await?;
                continue;
            }
            Err(RecvError::Closed) => return w.flush().await,
        };
        w.write_all(&line).await?;
        // Write whatever else is already queued, then flush once.
        loop {
            match events.try_recv() {
                Ok(line) => w.write_all(&line).await?,
                Err(TryRecvError::Lagged(n)) => {
                    w.write_all(format!("{{\"missed\":{n}}}\n").as_bytes())
                        .await?
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        w.flush().await?;
    }
}

/// The `ping` reply for the writer's status `st`.
pub(super) fn ping_line(
    about: &About,
    st: &crate::writer::Status,
    ids: &crate::index::RecordIds,
) -> Vec<u8> {
    let (record_ids, record_ids_bytes) = ids.size();
    let v = serde_json::json!({
        "ok": true,
        "version": about.version,
        "records": st.records,
        "pending": st.pending,
        "log_file": st.log_file.display().to_string(),
        "log_id": st.log_id,
        "file_bytes": st.file_bytes,
        "uptime_s": (about.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "coerced": st.coerced,
        "flushes": st.flushes,
        "failed_flushes": st.failed_flushes,
        "truncations": st.truncations,
        "records_truncated": st.records_truncated,
        "foreign_writes": st.foreign_writes,
        "records_taken_in": st.records_taken_in,
        "records_lost": st.records_lost,
        "last_foreign_write": st.last_foreign_write.as_ref().map(|f| serde_json::json!({
            "at": f.at,
            "records_taken_in": f.records_taken_in,
            "records_lost": f.records_lost,
            "copy": f.copy.as_ref().map(|p| p.display().to_string()),
        })),
        "last_error": st.last_error,
        "index_bytes": st.index_bytes,
        "record_ids": record_ids,
        "record_ids_bytes": record_ids_bytes,
        "duplicates": ids.duplicates(),
        "log_file_at_path": st.log_file_at_path,
        "socket_at_path": about.socket_file.is_at_path(),
    });
    reply_line(&v)
}

/// `ping`'s reply: the writer's status, asked for now.
pub(super) async fn ping_reply(shared: &Shared, line: u64) -> Vec<u8> {
    let writer = &shared.writer;
    let (stx, srx) = oneshot::channel();
    let status = match writer.tx.send(Command::Status(stx)).await {
        Ok(()) => srx.await.ok(),
        Err(_) => None,
    };
    match status {
        Some(st) => ping_line(&shared.about, &st, &shared.ids),
        None => stopping_error().reply(line),
    }
}

/// `metrics`'s reply (a JSON line, then the text), or an error when the
/// writer is gone.
pub(super) async fn metrics_reply(shared: &Shared, line: u64) -> Vec<u8> {
    match metrics_sample(shared).await {
        Some(sample) => crate::ops::metrics::reply(&sample),
        None => stopping_error().reply(line),
    }
}

/// The exposition text now (for `--metrics-textfile`); `None` once the
/// writer is gone.
pub(crate) async fn metrics_text(shared: &Shared) -> Option<String> {
    let sample = metrics_sample(shared).await?;
    Some(crate::ops::metrics::render(&sample))
}

/// Everything `metrics` shows: the counters, the writer's status and
/// stage totals (one round trip), the archives on disk (a directory
/// listing, off the runtime's other tasks).
async fn metrics_sample(shared: &Shared) -> Option<crate::metrics::Sample> {
    use std::sync::atomic::Ordering::Relaxed;
    let (tx, rx) = oneshot::channel();
    shared.writer.tx.send(Command::Metrics(tx)).await.ok()?;
    let (st, stages) = rx.await.ok()?;
    let archives = tokio::task::block_in_place(|| {
        let listed = crate::store::list_archives(&shared.archived.live).ok()?;
        let bytes = listed
            .iter()
            .filter_map(|a| std::fs::metadata(&a.path).ok())
            .map(|m| m.len())
            .sum();
        Some((listed.len() as u64, bytes))
    });
    Some(crate::metrics::Sample {
        version: shared.about.version,
        uptime: shared.about.started.elapsed().as_secs_f64(),
        counters: shared.metrics.counters(),
        duplicates: shared.ids.duplicates(),
        stages,
        connections_open: shared.connections.load(Relaxed) as u64,
        records: st.records,
        pending_records: st.pending,
        pending_bytes: st.pending_bytes,
        pending_bytes_limit: shared.budget.total as u64,
        file_bytes: st.file_bytes,
        index_bytes: st.index_bytes,
        record_ids_bytes: shared.ids.size().1 as u64,
        archives,
    })
}

/// `logs`'s reply: the live log from the writer's status, the archives
/// from the directory (listed here, off the writer).
pub(super) async fn logs_reply(shared: &Shared, line: u64) -> Vec<u8> {
    let (stx, srx) = oneshot::channel();
    let status = match shared.writer.tx.send(Command::Status(stx)).await {
        Ok(()) => srx.await.ok(),
        Err(_) => None,
    };
    match status {
        Some(st) => tokio::task::block_in_place(|| {
            crate::ops::logs::reply(&shared.archived.live, &st.log_id, st.records, line)
        }),
        None => stopping_error().reply(line),
    }
}

/// Asks the writer a query, once `flush` (if any) says every record
/// accepted before it is durable.
pub(super) async fn ask(
    tx: &mpsc::Sender<Command>,
    flush: Option<oneshot::Receiver<Durable>>,
    query: Query,
) -> Result<crate::ops::Answer, ProtocolError> {
    let flushed = match flush {
        Some(f) => f.await.unwrap_or_else(|_| Err("the daemon stopped".into())),
        None => Ok(()),
    };
    if let Err(msg) = flushed {
        return Err(ProtocolError::new(ErrorCode::WriteFailed, msg));
    }
    let (atx, arx) = oneshot::channel();
    match tx.send(Command::Query(query, atx)).await {
        Ok(()) => arx.await.map_err(|_| stopping_error()),
        Err(_) => Err(stopping_error()),
    }
}

/// A query's answer: the writer's, or for a `read` of a log that is no
/// longer live, its archive's (read here, off the writer).
async fn answer(
    shared: &Shared,
    flush: Option<oneshot::Receiver<Durable>>,
    query: Query,
) -> Result<crate::ops::Answer, ProtocolError> {
    let archived = match &query {
        Query::Read {
            log_id: Some(id),
            from_seq,
            limit,
        } => Some((id.clone(), *from_seq, *limit)),
        _ => None,
    };
    let answer = ask(&shared.writer.tx, flush, query).await?;
    match (answer, archived) {
        (crate::ops::Answer::Refused(e), Some((id, from, limit)))
            if e.code == ErrorCode::LogChanged =>
        {
            let served = tokio::task::block_in_place(|| {
                crate::ops::read_records::from_archive(&shared.archived, &id, from, limit)
            });
            served.unwrap_or(Ok(crate::ops::Answer::Refused(e)))
        }
        (answer, _) => Ok(answer),
    }
}

/// Writes an answer (flushing the socket's buffer when nothing else is
/// queued); false when the connection is broken from then on.
pub(super) async fn send_answer(
    w: &mut BufWriter<OwnedWriteHalf>,
    answer: crate::ops::Answer,
    nothing_queued: bool,
) -> bool {
    let res = match crate::ops::write(w, answer).await {
        Ok(()) if nothing_queued => w.flush().await,
        r => r,
    };
    let Err(e) = res else {
        return true;
    };
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, WriteZero};
    if matches!(e.kind(), BrokenPipe | ConnectionReset | WriteZero) {
        tracing::debug!(error = %e, "Client stopped reading an answer.");
    } else {
        // Reading records back failed (the file cut short underneath the
        // daemon, a disk error) with part of the answer perhaps written:
        // end the connection, so the client sees end of file rather than
        // waiting forever.
        tracing::warn!(error = %e, "Reading records back from the log file failed; closing this connection.");
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
    false
}

/// The reply line for what the writer answered on `rx` (`clear`'s
/// archive): `ok` makes the object of a success; a failure is
/// `write_failed` with the writer's message.
async fn writer_reply<T>(
    rx: tokio::sync::oneshot::Receiver<Result<T, String>>,
    line: u64,
    ok: impl FnOnce(T) -> serde_json::Value,
) -> Vec<u8> {
    match rx.await {
        Ok(Ok(v)) => reply_line(&ok(v)),
        Ok(Err(msg)) => ProtocolError::new(ErrorCode::WriteFailed, msg).reply(line),
        Err(_) => stopping_error().reply(line),
    }
}

pub(super) async fn write_side(
    wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Reply>,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) {
    let tx = &shared.writer.tx;
    let mut w = BufWriter::new(wr);
    let mut broken = false;
    while let Some(r) = rx.recv().await {
        let bytes = match r {
            Reply::Now(b) => b,
            Reply::Ping { line } => ping_reply(&shared, line).await,
            Reply::Metrics { line } => metrics_reply(&shared, line).await,
            Reply::Logs { line } => logs_reply(&shared, line).await,
            Reply::Query { flush, query, line } => match answer(&shared, flush, query).await {
                Err(e) => e.reply(line),
                Ok(crate::ops::Answer::Refused(e)) => e.reply(line),
                Ok(crate::ops::Answer::Failed(msg)) => {
                    ProtocolError::new(ErrorCode::WriteFailed, msg).reply(line)
                }
                Ok(_) if broken => continue,
                Ok(answer) => {
                    broken = !send_answer(&mut w, answer, rx.is_empty()).await;
                    continue;
                }
            },
            Reply::Subscribed { mut events, from } => {
                if !broken {
                    let res = match from {
                        None => follow(&mut w, &mut events, &mut shutdown).await,
                        Some(c) => follow_from(&mut w, &mut events, tx, c, &mut shutdown).await,
                    };
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "Subscriber gone.");
                    }
                }
                // The connection takes no further requests.
                broken = true;
                continue;
            }
            Reply::Cleared { rx, line } => {
                // Retention may have removed the archive before the reply
                // (`--keep-archives 0`): said, rather than naming a file
                // that is gone.
                let archive = |a: std::path::PathBuf| match a.exists() {
                    true => serde_json::json!({"ok": true, "archive": a.display().to_string()}),
                    false => {
                        serde_json::json!({"ok": true, "archive": a.display().to_string(), "removed": true})
                    }
                };
                writer_reply(rx, line, archive).await
            }
            Reply::Writer { rx, line } => match rx.await {
                Ok(Ok(v)) => reply_line(&v),
                Ok(Err(e)) => e.reply(line),
                Err(_) => stopping_error().reply(line),
            },
            Reply::WhenDurable { rx, ok, line } => match rx.await {
                Ok(Ok(())) => ok,
                Ok(Err(msg)) => ProtocolError::new(ErrorCode::WriteFailed, msg).reply(line),
                Err(_) => ProtocolError::new(
                    ErrorCode::WriteFailed,
                    "the daemon stopped before these records were durable",
                )
                .reply(line),
            },
        };
        if broken {
            // The client stopped reading; keep consuming so the read half
            // is never blocked by replies nobody will read.
            continue;
        }
        let mut res = w.write_all(&bytes).await;
        if res.is_ok() && rx.is_empty() {
            res = w.flush().await;
        }
        if let Err(e) = res {
            tracing::debug!(error = %e, "Client stopped reading replies.");
            broken = true;
        }
    }
    if !broken {
        let _ = w.flush().await;
        let _ = w.shutdown().await;
    }
}

/// Where a subscriber from a position is: the next position it gets, the
/// log it follows (the live one's id, once the first page named it), and
/// its request's line, for an error.
pub(super) struct Cursor {
    next: u64,
    log_id: Option<String>,
    line: u64,
}

impl Cursor {
    pub(super) fn new(next: u64, log_id: Option<String>, line: u64) -> Cursor {
        Cursor { next, log_id, line }
    }
}

/// What a page of the backlog did.
enum Paged {
    /// Records were written; more may follow.
    More,
    /// Nothing left: the backlog is caught up.
    Done,
    /// The subscription ended (an error line was written).
    End,
}

/// The position of an event line (`{"seq":N,…`).
fn seq_of(line: &[u8]) -> Option<u64> {
    let digits = line.strip_prefix(b"{\"seq\":")?;
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
}

/// One page of the backlog, as `read` gives it, written as subscriber
/// lines; with `limit` 0, only whether the log is still the one followed.
async fn page(
    w: &mut BufWriter<OwnedWriteHalf>,
    tx: &mpsc::Sender<Command>,
    c: &mut Cursor,
    limit: usize,
) -> std::io::Result<Paged> {
    let q = Query::Read {
        log_id: c.log_id.clone(),
        from_seq: c.next,
        limit,
    };
    match ask(tx, None, q).await {
        Ok(crate::ops::Answer::Read {
            reader,
            spans,
            log_id,
            ..
        }) => {
            c.log_id.get_or_insert(log_id);
            if spans.is_empty() {
                return Ok(Paged::Done);
            }
            crate::ops::read_records::write_lines(w, &reader, &spans, c.next).await?;
            c.next += spans.len() as u64;
            Ok(Paged::More)
        }
        Ok(crate::ops::Answer::Refused(e)) | Err(e) => {
            w.write_all(&e.reply(c.line)).await?;
            Ok(Paged::End)
        }
        Ok(_) => Ok(Paged::End),
    }
}

/// `subscribe` with `from_seq`: the log's durable records from there, a
/// page at a time (as `read` reads them), then the feed of new durable
/// records: each record once, in order, as `{"seq":N,"record":{…}}`. The
/// feed was joined before the first page was read, and what the writer
/// had taken before that is made durable first, so every record is in one
/// or the other, and one in both is skipped by its position. A gap in the feed (this subscriber fell behind the
/// ring) goes back to reading pages. A position going back once caught
/// up means the log may have been replaced (cleared, renumbered): a `read`
/// of the log followed tells, and `log_changed` ends the subscription.
pub(super) async fn follow_from(
    w: &mut BufWriter<OwnedWriteHalf>,
    events: &mut tokio::sync::broadcast::Receiver<Arc<[u8]>>,
    tx: &mpsc::Sender<Command>,
    mut c: Cursor,
    shutdown: &mut Shutdown,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    // A record the writer took before this subscriber joined the feed has
    // no line in it (the writer makes lines only while someone listens),
    // and one not yet durable is in no page either: wait until everything
    // taken so far is durable, so that the pages below hold it. Not for
    // long, and not past the stop: with a failing disk the wait would have
    // no end (such a record is then found by paging again once a later one
    // arrives).
    let (done, durable) = tokio::sync::oneshot::channel();
    if tx.send(Command::Flush(done)).await.is_ok() {
        tokio::select! {
            _ = tokio::time::timeout(SUBSCRIBE_FLUSH_WAIT, durable) => {}
            () = shutdown.wait_begun() => return w.flush().await,
        }
    }
    // A log no longer live, or a position past its end, is the only
    // reply.
    if matches!(page(w, tx, &mut c, 0).await?, Paged::End) {
        return w.flush().await;
    }
    let ok = reply_line(&serde_json::json!({"ok": true, "subscribed": true, "from_seq": c.next}));
    w.write_all(&ok).await?;
    'pages: loop {
        loop {
            match page(w, tx, &mut c, READ_DEFAULT_LIMIT).await? {
                Paged::More => {}
                Paged::Done => break,
                Paged::End => return w.flush().await,
            }
        }
        w.flush().await?;
        let mut caught_up = false;
        loop {
            let next = tokio::select! {
                next = events.recv() => next,
                // The stream ends when the stop begins: a subscriber from a
                // position resumes from the last `seq` it got, so nothing
                // queued need be sent first (as `follow` does).
                () = shutdown.wait_begun() => return w.flush().await,
            };
            let line = match next {
                Ok(line) => line,
                Err(RecvError::Lagged(_)) => continue 'pages,
                Err(RecvError::Closed) => return w.flush().await,
            };
            let Some(seq) = seq_of(&line) else {
                continue;
            };
            if seq > c.next {
                continue 'pages;
            }
            if seq < c.next {
                if caught_up && matches!(page(w, tx, &mut c, 0).await?, Paged::End) {
                    return w.flush().await;
                }
                continue;
            }
            w.write_all(&line).await?;
            c.next += 1;
            caught_up = true;
            if events.is_empty() {
                w.flush().await?;
            }
        }
    }
}
