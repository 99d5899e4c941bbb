//! Queries answered from the index on the writer, and the cached line of
//! an unfiltered `stats` that connections answer from themselves.

use super::*;
use crate::config::tuning::QUERY_SLICE;
use crate::ops;

/// The unfiltered `stats` reply, shared with the connections so that they
/// answer it themselves while the index has not changed. Going through the
/// writer thread costs two wake-ups of another thread; on this VM that took
/// up to a millisecond in noisy moments (a halted vCPU waits for the
/// hypervisor), against tens of microseconds for the answer itself.
///
/// **Invariant:** a connection answers from the cache only when every chunk
/// it sent has been indexed (its `indexed` count equals what it sent) and
/// the cached line's generation is the current one. The writer bumps the
/// generation after indexing a chunk and before bumping the sender's count,
/// so the line then describes an index holding all of that connection's
/// records.
#[derive(Debug, Default)]
pub(crate) struct StatsCache {
    /// Bumped by the writer after every change to the index.
    generation: AtomicU64,
    /// The reply line, with the generation it describes.
    line: Mutex<Option<(u64, Arc<[u8]>)>>,
}

impl StatsCache {
    /// The reply line, if it describes the index as it is now.
    pub(crate) fn current(&self) -> Option<Arc<[u8]>> {
        let g = self.generation.load(Ordering::Acquire);
        let line = self.line.lock().ok()?;
        match line.as_ref() {
            Some((at, line)) if *at == g => Some(Arc::clone(line)),
            _ => None,
        }
    }

    /// The index changed (writer only).
    pub(super) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current line, computed by `make` if it is out of date (writer
    /// only: the generation cannot move meanwhile).
    pub(super) fn get_or_make(&self, make: impl FnOnce() -> Arc<[u8]>) -> Arc<[u8]> {
        if let Some(line) = self.current() {
            return line;
        }
        let g = self.generation.load(Ordering::Acquire);
        let line = make();
        if let Ok(mut slot) = self.line.lock() {
            *slot = Some((g, Arc::clone(&line)));
        }
        line
    }
}

impl Writer {
    /// The unfiltered `stats` reply line over every record in the index.
    pub(super) fn stats_line(&self) -> Arc<[u8]> {
        query::stats_json(&self.index, &self.index.all, self.index.retry_candidates)
            .reply_line()
            .into()
    }

    /// Answers a query from the index: each operation's part is in its
    /// file under `ops/`; the unfiltered `stats` is the writer's own
    /// running aggregate.
    pub(super) fn query(&self, q: Query) -> Answer {
        let view = crate::ops::View {
            index: &self.index,
            reader: &self.reader,
            // Records beyond this are accepted but not yet in the file.
            durable: self.status.records as usize,
            durable_end: self.durable_end,
            log_id: &self.status.log_id,
        };
        match q {
            // Durable-only (the default): asked after `flush_now`, so the
            // index holds no pending record, and the line can be cached.
            Query::Stats {
                filter,
                include_pending: false,
            } if query::is_unfiltered(&filter) => {
                Answer::StatsLine(self.cfg.stats.get_or_make(|| self.stats_line()))
            }
            // Every accepted record: the running aggregate, not cached
            // (the cache holds the durable-only line).
            Query::Stats {
                filter,
                include_pending: true,
            } if query::is_unfiltered(&filter) => Answer::StatsLine(self.stats_line()),
            q => ops::run(&view, q),
        }
    }

    /// Answers `q` at once if it is cheap, else starts a scan that
    /// [`Writer::scan_slice`] advances between the writer's other work.
    pub(super) fn ask(&mut self, q: Query, reply: oneshot::Sender<Answer>) {
        let unfiltered = matches!(&q, Query::Stats { filter, .. } if query::is_unfiltered(filter));
        let durable = self.status.records as usize;
        // A `stats` covers every accepted record (it is asked after
        // `flush_now`, unless it includes pending ones); the others the
        // durable ones.
        let upto = match &q {
            Query::Stats { .. } => self.index.len(),
            _ => durable,
        };
        if !unfiltered && ops::Scan::wanted(&q) {
            self.scans.push_back(Scanning {
                scan: ops::Scan::new(q, &self.index, upto),
                epoch: self.index_epoch,
                durable,
                durable_end: self.durable_end,
                reader: Arc::clone(&self.reader),
                reply,
                restarted: false,
            });
            return;
        }
        let _ = reply.send(self.query(q));
    }

    /// One slice of the oldest scan; a scan not yet done goes to the back,
    /// so several take turns. A scan whose client has gone is dropped.
    pub(super) fn scan_slice(&mut self) {
        let Some(mut s) = self.scans.pop_front() else {
            return;
        };
        if s.reply.is_closed() {
            return;
        }
        let mut slice = QUERY_SLICE;
        if s.epoch != self.index_epoch {
            // The index was replaced: start again over the new one, with
            // the file as it is now. A second restart runs to the end at
            // once, so replacements coming faster than a scan (an old
            // logger rewriting the file after every job) cannot starve it.
            s.epoch = self.index_epoch;
            s.durable = self.status.records as usize;
            s.durable_end = self.durable_end;
            s.reader = Arc::clone(&self.reader);
            let upto = match s.scan.covers_pending() {
                true => self.index.len(),
                false => s.durable,
            };
            s.scan = s.scan.restart(&self.index, upto);
            if s.restarted {
                slice = usize::MAX;
            }
            s.restarted = true;
        }
        if !s.scan.step(&self.index, slice) {
            self.scans.push_back(s);
            return;
        }
        let view = crate::ops::View {
            index: &self.index,
            reader: &s.reader,
            durable: s.durable,
            durable_end: s.durable_end,
            log_id: &self.status.log_id,
        };
        let _ = s.reply.send(s.scan.finish(&view));
    }

    /// Every scan to its end (the writer is stopping).
    pub(super) fn finish_scans(&mut self) {
        while !self.scans.is_empty() {
            self.scan_slice();
        }
    }
}

/// A scan under way, with what the query saw of the file when it came.
pub(super) struct Scanning {
    scan: ops::Scan,
    /// [`Writer::index_epoch`] it runs over.
    epoch: u64,
    durable: usize,
    durable_end: u64,
    reader: Arc<File>,
    reply: oneshot::Sender<Answer>,
    /// It started again once already (see [`Writer::scan_slice`]).
    restarted: bool,
}
