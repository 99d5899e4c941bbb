//! The read half: lines framed, records formatted into the chunk (within
//! the byte budget) and handed to the writer, requests passed on.

use super::*;

pub(super) async fn read_side(mut rd: OwnedReadHalf, mut s: Session, mut shutdown: Shutdown) {
    let mut lines = Lines::new(s.shared.limits.max_line);
    let mut eof = false;
    while !eof {
        let stopping = tokio::select! {
            r = rd.read_buf(lines.space()) => {
                match r {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "Read failed; closing connection.");
                        eof = true;
                    }
                }
                false
            }
            () = shutdown.wait_begun() => true,
        };
        s.logged_at = LocalTime::now().iso_quoted();
        process(&mut lines, &mut s).await;
        // Under load more bytes are already waiting: take them before the
        // chunk is handed over, so the writer (another thread) is woken
        // once per HANDOFF_BYTES rather than once per read.
        while !eof && !stopping && s.chunk.len() < HANDOFF_BYTES {
            match rd.try_read_buf(lines.space()) {
                Ok(0) => eof = true,
                Ok(_) => {
                    s.logged_at = LocalTime::now().iso_quoted();
                    process(&mut lines, &mut s).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "Read failed; closing connection.");
                    eof = true;
                }
            }
        }
        if stopping {
            // Take exactly what the client had already sent when shutdown
            // began (the bytes queued in the socket), then finish as at end
            // of input. A client that keeps writing cannot hold us here.
            let mut left = queued_bytes(&rd).min(DRAIN_LIMIT);
            while left > 0 {
                match rd.try_read_buf(lines.space()) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        left = left.saturating_sub(n);
                        process(&mut lines, &mut s).await;
                    }
                }
            }
            eof = true;
        }
        if eof && let Some(Frame::Line { no, bytes }) = lines.finish() {
            line(&mut s, no, bytes).await;
        }
        send_chunk(&mut s, None).await;
    }
}

/// Bytes received on the socket and not yet read (`FIONREAD`).
pub(super) fn queued_bytes(rd: &OwnedReadHalf) -> usize {
    let fd = rd.as_ref().as_raw_fd();
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer; `fd` is a live
    // socket owned by `rd` for the duration of the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc < 0 { 0 } else { n.max(0) as usize }
}

/// Handles every complete line in the buffer.
pub(super) async fn process(lines: &mut Lines, s: &mut Session) {
    while let Some(frame) = lines.next() {
        match frame {
            Frame::Line { no, bytes } => line(s, no, bytes).await,
            Frame::TooLong { no } => {
                let e = ProtocolError::new(
                    ErrorCode::LineTooLong,
                    format!(
                        "line longer than {} bytes; the rest of it is discarded",
                        s.shared.limits.max_line
                    ),
                );
                refuse(s, no, e).await;
            }
        }
        if s.chunk.len() >= CHUNK_SEND_BYTES {
            send_chunk(s, None).await;
        }
    }
}

/// A record line, formatted into the chunk at `mark` and within limits:
/// covered by the byte budget, its index facts computed here when other
/// clients are connected, and noted for the writer.
pub(super) async fn take_record(
    s: &mut Session,
    mark: usize,
    fields: RawMeta,
    printed: usize,
    coerced: bool,
) {
    let Some(start) = cover_record(s, mark).await else {
        return;
    };
    // A record the log already holds (sent again after a lost ack) is
    // dropped here; with no reply to give, it is only counted (`ping`).
    if let Some(id) = fields.record_id(&s.chunk[start..]) {
        match s.shared.ids.admit(id) {
            index::Admit::New(key) => s.in_hand.keys.push(key),
            dup => {
                note_copy(s, dup);
                s.chunk.truncate(start - RECORD_PREFIX.len());
                return;
            }
        }
    }
    // With other clients connected too, the single writer is the
    // one to spare: index facts are computed here, in parallel.
    // A lone connection leaves them to the otherwise idle writer,
    // so the two halves of the pipeline stay balanced.
    let facts = (s
        .shared
        .connections
        .load(std::sync::atomic::Ordering::Relaxed)
        > 1)
    .then(|| {
        index::facts(
            &s.chunk[start..],
            &fields,
            &mut s.scratch,
            &mut s.chunk_timings,
        )
    });
    // In range: the chunk is handed over past 1 MiB and a
    // record is at most --max-record-bytes (<= 3 GiB).
    s.chunk_records.push(RecordMeta {
        start: start as u32,
        len: printed as u32,
        fields,
        facts,
    });
    s.chunk_coerced += u64::from(coerced);
}

/// The members of a request line the formatter just located (keys as
/// decoded, values as raw slices of `bytes`), without the `logged_at` it
/// added.
pub(super) fn request_members<'a>(s: &Session, bytes: &'a [u8]) -> Vec<protocol::Member<'a>> {
    s.fmt
        .fields
        .iter()
        .filter(|t| !t.key_in.is_empty())
        .map(|t| {
            let key = String::from_utf8_lossy(&s.chunk[t.key_out.clone()]).into_owned();
            (key, &bytes[t.value_in.clone()])
        })
        .collect()
}

/// One line: a record (formatted into the chunk), a request, or an error.
pub(super) async fn line(s: &mut Session, no: u64, raw: &[u8]) {
    let bytes = trim_line(raw);
    if bytes.trim_ascii().is_empty() {
        return;
    }
    if let Some(word) = protocol::bare_word(bytes) {
        let req = crate::ops::parse_bare(word);
        return request(s, no, req).await;
    }
    // UTF-8 is checked by the formatter, inside strings, where it matters;
    // a non-UTF-8 byte elsewhere is reported as invalid_utf8 too.
    let mark = s.chunk.len();
    let formatted = s.fmt.record_within(
        bytes,
        RECORD_PREFIX,
        s.logged_at.as_bytes(),
        &mut s.chunk,
        MAX_RECORD_DEPTH + 2,
    );
    match formatted {
        Ok(f) => {
            let start = mark + RECORD_PREFIX.len();
            let fields = RawMeta::from_output(&s.chunk, &s.fmt.fields, start);
            let is_request = fields.has_op();
            let printed = s.chunk.len() - start;
            if !is_request && f.depth > MAX_RECORD_DEPTH {
                s.chunk.truncate(mark);
                let e = ProtocolError::new(
                    ErrorCode::TooDeep,
                    format!("nesting deeper than {MAX_RECORD_DEPTH} levels"),
                );
                refuse(s, no, e).await;
            } else if !is_request && printed > s.shared.limits.max_record {
                s.chunk.truncate(mark);
                let e = too_large(
                    format!("pretty-printed, the record takes {printed} bytes"),
                    s.shared.limits.max_record,
                );
                refuse(s, no, e).await;
            } else if !is_request {
                take_record(s, mark, fields, printed, f.coerced).await;
            } else {
                let members = request_members(s, bytes);
                s.chunk.truncate(mark);
                let req = crate::ops::parse_request(&members);
                request(s, no, req).await;
            }
        }
        Err(e) => {
            let mut err = ProtocolError::from_json(&e);
            // A request refused as a whole for one job nested too deeply
            // names that job, as the per-job checks do.
            if let crate::json::JsonError::TooDeep { offset } = e
                && let Some(i) = job_at(bytes, offset)
            {
                err.message = format!(
                    "job {i}: {}; nothing from this request was logged",
                    err.message
                );
            }
            refuse(s, no, err).await
        }
    }
}

/// The job (`log`'s, or `log_batch`'s by index) that byte `offset` of a
/// request line lies in, found by skimming (the line did not validate).
pub(super) fn job_at(line: &[u8], offset: usize) -> Option<usize> {
    let mut fields = Vec::new();
    if !crate::json::skim_object(line, &mut fields) {
        return None;
    }
    let named = |name: &[u8]| {
        fields
            .iter()
            .find(|(k, _)| index::string_bytes(&line[k.clone()]).is_some_and(|s| *s == *name))
            .map(|(_, v)| v.clone())
    };
    named(b"op")?;
    if let Some(job) = named(b"job") {
        return job.contains(&offset).then_some(0);
    }
    let jobs = named(b"jobs")?;
    let mut elements = Vec::new();
    if !crate::json::skim_array(&line[jobs.clone()], &mut elements) {
        return None;
    }
    elements
        .iter()
        .position(|r| (jobs.start + r.start..jobs.start + r.end).contains(&offset))
}

/// `record_too_large`, naming the limit and the flag that sets it.
pub(super) fn too_large(what: String, max_record: usize) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::RecordTooLarge,
        format!("{what}, more than --max-record-bytes ({max_record})"),
    )
}

pub(super) use crate::config::tuning::PERMIT_PIECE;

/// Makes the permits held cover the first `bytes` of the chunk (at most
/// the whole budget: a chunk larger than that takes all of it), taking
/// more without waiting. False if the budget has not that much left.
pub(super) fn cover(s: &mut Session, bytes: usize) -> bool {
    let total = s.shared.budget.total;
    let need = bytes.min(total);
    let held = s
        .permit
        .as_ref()
        .map_or(0, OwnedSemaphorePermit::num_permits);
    if held >= need {
        return true;
    }
    let deficit = need - held;
    let ahead = deficit.max(PERMIT_PIECE.min(total / 16)).min(total - held);
    let budget = &s.shared.budget.permits;
    let got = [ahead, deficit].into_iter().find_map(|n| {
        let n = u32::try_from(n).ok()?;
        Arc::clone(budget).try_acquire_many_owned(n).ok()
    });
    match (got, s.permit.as_mut()) {
        (None, _) => false,
        (Some(p), Some(held)) => {
            held.merge(p);
            true
        }
        (Some(p), None) => {
            s.permit = Some(p);
            true
        }
    }
}

/// Takes budget permits for the record just formatted at `mark..` of the
/// chunk; returns where it now starts (after its separator). When the
/// budget is used up, the records before it are handed over first (they
/// hold permits, and only the writer can give permits back) and then this
/// one waits, alone, so a connection held back by a slow disk holds at most
/// one record outside the budget. None if the daemon is stopping.
pub(super) async fn cover_record(s: &mut Session, mark: usize) -> Option<usize> {
    // Past the whole budget a chunk is handed over before it grows: only a
    // record alone may be larger than the budget (it then takes all of it).
    let fits = s.chunk.len() <= s.shared.budget.total || mark == 0;
    if (fits && cover(s, s.chunk.len())) || s.shutdown.is_last_call() {
        return Some(mark + RECORD_PREFIX.len());
    }
    let record = s.chunk.split_off(mark);
    if !s.chunk_records.is_empty() && !send_chunk(s, None).await {
        return None;
    }
    // Nothing held while waiting: permits kept back by waiting connections
    // could otherwise add up to the whole budget, with nothing to flush.
    s.permit = None;
    s.permit = wait_for_budget(s, record.len()).await;
    let mark = s.chunk.len();
    s.chunk.extend_from_slice(&record);
    Some(mark + RECORD_PREFIX.len())
}

/// Waits for permits for `bytes` (at most the whole budget), holding none
/// meanwhile. None once the shutdown's grace period has run out: the
/// records go to the writer without permits then (see [`crate::shutdown`]);
/// what a connection holds is bounded by its buffers.
pub(super) async fn wait_for_budget(s: &Session, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let want = u32::try_from(bytes.clamp(1, s.shared.budget.total)).unwrap_or(u32::MAX);
    let mut last_call = s.shutdown.clone();
    tokio::select! {
        // The semaphore is never closed, so acquiring cannot fail.
        p = Arc::clone(&s.shared.budget.permits).acquire_many_owned(want) => p.ok(),
        () = last_call.wait_last_call() => None,
    }
}

/// Hands the chunk (and `done`, answered when it is durable) to the writer,
/// after taking its bytes from the unflushed budget; waits while the budget
/// is spent (backpressure). Returns false if the writer is gone.
pub(super) async fn send_chunk(s: &mut Session, done: Option<oneshot::Sender<Durable>>) -> bool {
    if s.writer_gone {
        if !s.chunk_records.is_empty() {
            tracing::warn!(
                records = s.chunk_records.len(),
                "Records received after the writer stopped were not logged."
            );
        }
        s.chunk.clear();
        s.chunk_records.clear();
        s.chunk_timings.clear();
        s.permit = None;
        return false;
    }
    if s.chunk_records.is_empty() && done.is_none() {
        s.permit = None;
        return true;
    }
    // Records take their permits as they are accepted (`cover_record`); a
    // `log_batch`'s jobs arrive here whole and take theirs now, waiting
    // with nothing else held.
    if !cover(s, s.chunk.len()) && !s.shutdown.is_last_call() {
        s.permit = None;
        s.permit = wait_for_budget(s, s.chunk.len()).await;
    }
    // The chunk's share goes with it; what was taken ahead goes back, so
    // an idle connection holds no permits.
    let used = s.chunk.len().min(s.shared.budget.total);
    let permit = s
        .permit
        .take()
        .and_then(|mut p| match p.num_permits() > used {
            true => p.split(used),
            false => Some(p),
        });
    // The next chunk starts with room for as much as this one held, so a
    // busy connection does not regrow its buffer from nothing every read.
    let next = s
        .shared
        .writer
        .pool
        .take(s.chunk.len().clamp(4096, CHUNK_SEND_BYTES + READ_CHUNK));
    let ing = Ingest {
        data: std::mem::replace(&mut s.chunk, next),
        records: std::mem::take(&mut s.chunk_records),
        timings: std::mem::take(&mut s.chunk_timings),
        coerced: std::mem::take(&mut s.chunk_coerced),
        permit,
        done,
        indexed: Arc::clone(&s.indexed),
    };
    let sent = s.shared.writer.tx.send(Command::Ingest(ing)).await.is_ok();
    // With the writer now (in order before anything sent later), or
    // never: copies of these records need not wait for them any more.
    s.in_hand.handed();
    if !sent {
        s.writer_gone = true;
        return false;
    }
    s.sent += 1;
    true
}

/// A copy of a record held already was dropped: if the original is still
/// in another connection's hands, this connection's next acknowledgement
/// waits for it (see [`wait_for_originals`]).
pub(super) fn note_copy(s: &mut Session, found: index::Admit) {
    if let index::Admit::InHand(key) = found
        && !s.in_hand.keys.contains(&key)
    {
        s.originals.push(key);
    }
}

/// Before an acknowledgement (`ack`, `flush`): this connection's own
/// records go to the writer, then, if it dropped copies whose originals
/// another connection still held, it waits until those are with the
/// writer too, so that the acknowledgement (a flush after them) never
/// comes before the originals are on disk.
pub(super) async fn wait_for_originals(s: &mut Session) {
    if s.originals.is_empty() {
        return;
    }
    send_chunk(s, None).await;
    let originals = std::mem::take(&mut s.originals);
    s.shared.ids.wait_handed(&originals).await;
}
