//! Each operation's part on the connection: what it hands the writer and
//! which reply it queues (parsing is the op's own, in `ops/`).

use super::*;

/// A request: each operation's part on the connection, in turn (parsing
/// is the op's own, in `ops/`; answers from the index are written by
/// `ops::write` on the write side).
pub(super) async fn request(s: &mut Session, no: u64, req: Result<Request<'_>, ProtocolError>) {
    let req = match req {
        Ok(r) => r,
        Err(e) => return refuse(s, no, e).await,
    };
    match req {
        Request::Log { jobs, ack } => log_jobs(s, no, &jobs, ack).await,
        Request::Flush => flush(s, no).await,
        Request::Ping => ping(s, no).await,
        Request::Metrics => {
            // As `ping`: gathered by the write side in its turn.
            send_chunk(s, None).await;
            queue(s, Reply::Metrics { line: no }).await;
        }
        Request::Logs => {
            send_chunk(s, None).await;
            queue(s, Reply::Logs { line: no }).await;
        }
        Request::Query(Query::Stats {
            filter,
            include_pending,
        }) => stats(s, no, filter, include_pending).await,
        // Durable records by position: nothing is flushed for a reader
        // (it polls; it must not break up the writers' batches).
        Request::Query(q @ Query::Read { .. }) => query_reply(s, no, q, false).await,
        // The writer makes every accepted record durable before it
        // answers (`Query::flushes_first`), as for `stats`.
        Request::Query(q @ Query::Report { .. }) => query_reply(s, no, q, false).await,
        // Read back from the file: this connection's records first.
        Request::Query(q) => query_reply(s, no, q, true).await,
        Request::Subscribe {
            include_pending,
            from,
        } => subscribe(s, no, include_pending, from).await,
        Request::Clear => clear(s, no).await,
        Request::Consumer(update) => consumer(s, no, update).await,
    }
}

/// `consumer`: handed to the writer, which keeps the positions; removing
/// one is an administrator's, as `clear` is (it lets archives go).
async fn consumer(s: &mut Session, no: u64, update: crate::ops::consumer::ConsumerUpdate) {
    if matches!(update, crate::ops::consumer::ConsumerUpdate::Remove { .. }) && !s.may_clear {
        let e = ProtocolError::new(
            ErrorCode::Forbidden,
            "removing a consumer is reserved to root and the users and groups in joblogd's \
             --admin-uid / --admin-gid",
        );
        refuse(s, no, e).await;
        return;
    }
    send_chunk(s, None).await;
    let (tx, rx) = oneshot::channel();
    if s.shared
        .writer
        .tx
        .send(Command::Consumer(update, tx))
        .await
        .is_ok()
    {
        queue(s, Reply::Writer { rx, line: no }).await;
    } else {
        refuse(s, no, stopping_error()).await;
    }
}

/// `log` and `log_batch`: the jobs formatted into a chunk of their own,
/// all or none, and handed to the writer after what came before.
pub(super) async fn log_jobs(s: &mut Session, no: u64, jobs: &[&[u8]], ack: bool) {
    // Records sent earlier on this connection go first.
    send_chunk(s, None).await;
    let mut data = Vec::new();
    let mut metas = Vec::with_capacity(jobs.len());
    let mut timings = Vec::new();
    let mut coerced = 0u64;
    for (i, job) in jobs.iter().enumerate() {
        let start = data.len() + RECORD_PREFIX.len();
        match s
            .fmt
            .record(job, RECORD_PREFIX, s.logged_at.as_bytes(), &mut data)
        {
            Ok(_) if data.len() > s.shared.limits.max_record => {
                let mut e = too_large(
                    format!(
                        "pretty-printed, the first {} jobs take {} bytes",
                        i + 1,
                        data.len()
                    ),
                    s.shared.limits.max_record,
                );
                e.message.push_str("; nothing from this request was logged");
                return refuse(s, no, e).await;
            }
            Ok(f) => {
                coerced += u64::from(f.coerced);
                let fields = RawMeta::from_output(&data, &s.fmt.fields, start);
                let facts = index::facts(&data[start..], &fields, &mut s.scratch, &mut timings);
                metas.push(RecordMeta {
                    start: start as u32,
                    len: (data.len() - start) as u32,
                    fields,
                    facts: Some(facts),
                });
            }
            Err(e) => {
                let mut err = ProtocolError::from_json(&e);
                err.message = format!(
                    "job {i}: {}; nothing from this request was logged",
                    err.message
                );
                return refuse(s, no, err).await;
            }
        }
    }
    let (data, metas, duplicates) = without_duplicates(s, data, metas);
    let n = metas.len() as u64;
    s.chunk = data;
    s.chunk_records = metas;
    s.chunk_timings = timings;
    // (The old, empty chunk buffer is dropped: a log request is rare
    // next to plain records.)
    s.chunk_coerced = coerced;
    let ok = if duplicates > 0 {
        reply_line(&serde_json::json!({"ok": true, "logged": n, "duplicates": duplicates}))
    } else {
        reply_line(&serde_json::json!({"ok": true, "logged": n}))
    };
    if ack {
        wait_for_originals(s).await;
        let (tx, rx) = oneshot::channel();
        if send_chunk(s, Some(tx)).await {
            queue(s, Reply::WhenDurable { rx, ok, line: no }).await;
        } else {
            refuse(s, no, stopping_error()).await;
        }
    } else if send_chunk(s, None).await {
        queue(s, Reply::Now(ok)).await;
    } else {
        refuse(s, no, stopping_error()).await;
    }
}

/// The jobs of a `log` request whose `record_id` the log does not hold
/// yet (their ids noted now), and how many it held. Only once every job
/// was formatted: a request refused as a whole notes no id, so sending
/// it again logs it.
fn without_duplicates(
    s: &mut Session,
    data: Vec<u8>,
    metas: Vec<RecordMeta>,
) -> (Vec<u8>, Vec<RecordMeta>, u64) {
    let id_of = |m: &RecordMeta| {
        let start = m.start as usize;
        m.fields.record_id(&data[start..start + m.len as usize])
    };
    if !metas.iter().any(|m| id_of(m).is_some()) {
        return (data, metas, 0);
    }
    let mut kept = Vec::with_capacity(data.len());
    let mut kept_metas = Vec::with_capacity(metas.len());
    let mut duplicates = 0;
    for m in &metas {
        if let Some(id) = id_of(m) {
            match s.shared.ids.admit(id) {
                index::Admit::New(key) => s.in_hand.keys.push(key),
                dup => {
                    note_copy(s, dup);
                    duplicates += 1;
                    continue;
                }
            }
        }
        let (start, end) = (m.start as usize, (m.start + m.len) as usize);
        let at = kept.len() + RECORD_PREFIX.len();
        kept.extend_from_slice(&data[start - RECORD_PREFIX.len()..end]);
        kept_metas.push(RecordMeta {
            start: at as u32,
            ..*m
        });
    }
    (kept, kept_metas, duplicates)
}

/// `flush`: answered once everything accepted before is durable.
pub(super) async fn flush(s: &mut Session, no: u64) {
    send_chunk(s, None).await;
    wait_for_originals(s).await;
    let (tx, rx) = oneshot::channel();
    let ok = reply_line(&serde_json::json!({"ok": true}));
    if s.shared.writer.tx.send(Command::Flush(tx)).await.is_ok() {
        queue(s, Reply::WhenDurable { rx, ok, line: no }).await;
    } else {
        refuse(s, no, stopping_error()).await;
    }
}

/// `ping`: the writer's status, asked for by the write side.
pub(super) async fn ping(s: &mut Session, no: u64) {
    // Answered by the write side when its turn comes, so the
    // counts follow every earlier request on this connection (a
    // `flush`, an ack, a `clear` sent just before without waiting
    // for its reply). This side reads on meanwhile: waiting here
    // for those replies would stop a client that sends everything
    // before it reads anything.
    send_chunk(s, None).await;
    queue(s, Reply::Ping { line: no }).await;
}

/// `stats`: answered here from the shared cache when it can be, else by
/// the writer.
pub(super) async fn stats(
    s: &mut Session,
    no: u64,
    filter: crate::query::Filter,
    include_pending: bool,
) {
    // By default over durable records only: the writer writes
    // everything accepted first (so the answer also counts every
    // record sent before it here). With `include_pending`, over
    // every accepted record, at once; filtered ones read timings
    // back from the file, so this connection's records are
    // flushed first.
    let unfiltered = query::is_unfiltered(&filter);
    if unfiltered && !include_pending {
        // Answered here, without the writer, when the shared reply
        // is current and covers all our records (see StatsCache).
        send_chunk(s, None).await;
        let ours_indexed = s.indexed.load(std::sync::atomic::Ordering::Acquire) == s.sent;
        if ours_indexed && let Some(line) = s.shared.writer.stats.current() {
            return queue(s, Reply::Now(line.to_vec())).await;
        }
    }
    let q = Query::Stats {
        filter,
        include_pending,
    };
    query_reply(s, no, q, include_pending && !unfiltered).await;
}

/// `subscribe`: the connection follows new records from here on.
/// With `from`, the durable records from that position first: the feed is
/// joined before the backlog is read, so nothing falls between the two
/// (see `write::follow_from`).
pub(super) async fn subscribe(
    s: &mut Session,
    no: u64,
    include_pending: bool,
    from: Option<(u64, Option<String>)>,
) {
    send_chunk(s, None).await;
    let rx = if include_pending {
        s.shared.writer.events.accepted.subscribe()
    } else {
        s.shared.writer.events.durable.subscribe()
    };
    let from = from.map(|(from_seq, log_id)| Cursor::new(from_seq, log_id, no));
    queue(s, Reply::Subscribed { events: rx, from }).await;
}

/// `clear`, for a client allowed to (decided at connect).
pub(super) async fn clear(s: &mut Session, no: u64) {
    if !s.may_clear {
        let e = ProtocolError::new(
            ErrorCode::Forbidden,
            "clear is reserved to root and the users and groups in joblogd's --admin-uid / \
             --admin-gid; ask its operator to add you there",
        );
        refuse(s, no, e).await;
        return;
    }
    send_chunk(s, None).await;
    let (tx, rx) = oneshot::channel();
    let clear = Command::Clear(tx, Arc::clone(&s.indexed));
    if s.shared.writer.tx.send(clear).await.is_ok() {
        // Counted like a chunk: our next `stats` waits for it.
        s.sent += 1;
        queue(s, Reply::Cleared { rx, line: no }).await;
    } else {
        refuse(s, no, stopping_error()).await;
    }
}

/// Queues a query. With `durable`, the write side first waits until every
/// record accepted before it is in the file (read-your-writes for answers
/// read back from the file), then asks the writer.
pub(super) async fn query_reply(s: &mut Session, no: u64, q: Query, durable: bool) {
    send_chunk(s, None).await;
    let flush = if durable {
        let (tx, rx) = oneshot::channel();
        if s.shared.writer.tx.send(Command::Flush(tx)).await.is_err() {
            return refuse(s, no, stopping_error()).await;
        }
        Some(rx)
    } else {
        None
    };
    queue(
        s,
        Reply::Query {
            flush,
            query: q,
            line: no,
        },
    )
    .await;
}
