//! Queries that read every entry, done a slice at a time: the writer runs
//! one slice of a scan between its other work (a chunk to index, a batch
//! to start, a reply to send), so a filtered `stats` or a sorted `jobs`
//! over millions of entries never holds ingest up for more than a slice
//! (`config::tuning::QUERY_SLICE` entries). The answer is the one the scan
//! would give in one go over the same entries: it covers the entries there
//! when it started, and entries only ever grow; when the index is replaced
//! meanwhile (a `clear`, a take-over, a reopen) the scan starts again.
//!
//! Answered at once instead, being cheap or needing one moment: the
//! unfiltered `stats` (a running aggregate), `jobs` and `export_csv` by
//! `success` alone without `sort_by` (they stop early), retry candidates,
//! snapshots, and anything filtered by `latest_per_video`, which depends on
//! the newest record of each video as it is when asked.

use super::report::ReportFold;
use super::{Answer, Query, View};
use crate::index::Index;
use crate::query::{Filter, Matcher, Paging, StatsFold};

/// A query being answered a slice at a time.
pub(crate) struct Scan {
    query: Query,
    matcher: Matcher,
    /// The entries it covers: `0..upto`.
    upto: usize,
    next: usize,
    fold: Fold,
}

/// What a scan gathers.
enum Fold {
    Stats(Box<StatsFold>),
    Report(Box<ReportFold>),
    /// The matching entries a page can show (in log order until the end,
    /// pruned to `offset + limit` as it goes: `O(n)` time, `O(offset +
    /// limit)` memory), and how many matched.
    Select {
        hits: Vec<u32>,
        total: usize,
    },
}

/// Whether `jobs` or `export_csv` with this filter and paging reads every
/// entry (and so goes in slices).
fn reads_every_entry(filter: &Filter, paging: &Paging) -> bool {
    let only_success = Filter {
        success: filter.success,
        ..Filter::default()
    } == *filter;
    paging.sort_by.is_some() || !only_success
}

impl Scan {
    /// Whether `q` is answered by a scan (see the module's doc).
    pub(crate) fn wanted(q: &Query) -> bool {
        match q {
            Query::Stats { filter, .. } => !filter.latest_per_video,
            Query::Report { .. } => true,
            Query::Jobs { filter, paging, .. } | Query::ExportCsv { filter, paging } => {
                !filter.latest_per_video && reads_every_entry(filter, paging)
            }
            Query::RetryCandidates { .. } | Query::Snapshot | Query::Read { .. } => false,
        }
    }

    /// A scan of `q` (one [`Scan::wanted`]) over the first `upto` entries.
    pub(crate) fn new(q: Query, ix: &Index, upto: usize) -> Scan {
        let upto = if Scan::wanted(&q) {
            upto.min(ix.len())
        } else {
            0
        };
        let (filter, fold) = match &q {
            Query::Stats { filter, .. } => (filter, Fold::Stats(Box::default())),
            Query::Report {
                filter,
                recent_failures,
            } => {
                let fold = ReportFold::new(ix, filter, *recent_failures, upto);
                (filter, Fold::Report(Box::new(fold)))
            }
            Query::Jobs { filter, .. } | Query::ExportCsv { filter, .. } => (
                filter,
                Fold::Select {
                    hits: Vec::new(),
                    total: 0,
                },
            ),
            // Not wanted: an empty scan, answered at its end by `run`.
            Query::RetryCandidates { .. } | Query::Snapshot | Query::Read { .. } => (
                &Filter::default(),
                Fold::Select {
                    hits: Vec::new(),
                    total: 0,
                },
            ),
        };
        let matcher = Matcher::new(ix, filter);
        Scan {
            matcher,
            upto,
            // Entries before a `from_seq` cannot match: never read.
            next: crate::query::first_entry(filter, upto),
            fold,
            query: q,
        }
    }

    /// Whether it covers accepted records not yet durable (a `stats` with
    /// `include_pending`) or only the durable ones.
    pub(crate) fn covers_pending(&self) -> bool {
        matches!(
            self.query,
            Query::Stats {
                include_pending: true,
                ..
            }
        )
    }

    /// The same query from the start, over a replaced index.
    pub(crate) fn restart(self, ix: &Index, upto: usize) -> Scan {
        Scan::new(self.query, ix, upto)
    }

    /// Reads up to `n` more entries; true once every entry is read.
    pub(crate) fn step(&mut self, ix: &Index, n: usize) -> bool {
        let end = self.next.saturating_add(n).min(self.upto);
        let paging = match &self.query {
            Query::Jobs { paging, .. } | Query::ExportCsv { paging, .. } => Some(paging),
            _ => None,
        };
        for i in self.next..end {
            if self.matcher.matches(ix, i) {
                match &mut self.fold {
                    Fold::Stats(f) => f.add(ix, i),
                    Fold::Report(f) => f.add(ix, i),
                    Fold::Select { hits, total } => {
                        hits.push(i as u32);
                        *total += 1;
                    }
                }
            }
        }
        if let (Fold::Select { hits, .. }, Some(p)) = (&mut self.fold, paging) {
            crate::query::prune_to_page(ix, hits, p);
        }
        self.next = end;
        self.next >= self.upto
    }

    /// The answer, once [`Scan::step`] said it is done.
    pub(crate) fn finish(self, view: &View<'_>) -> Answer {
        match (self.fold, self.query) {
            (Fold::Stats(f), Query::Stats { .. }) => super::stats::answer(view, f.finish()),
            (Fold::Report(f), Query::Report { .. }) => super::report::answer(view, *f),
            (Fold::Select { hits, total }, Query::Jobs { paging, fields, .. }) => {
                let (page, _) = crate::query::page(view.index, hits, &paging);
                super::jobs::answer(view, &page, total, fields, self.upto)
            }
            (Fold::Select { hits, .. }, Query::ExportCsv { paging, .. }) => {
                let (page, _) = crate::query::page(view.index, hits, &paging);
                super::export_csv::answer(view, &page, self.upto)
            }
            // Only for a query that was not wanted.
            (_, q) => super::run(view, q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::RawMeta;
    use crate::json::Formatter;
    use crate::query::SortBy;

    fn index(n: usize) -> Index {
        let mut ix = Index::default();
        let mut f = Formatter::new();
        for i in 0..n {
            let rec = format!(
                r#"{{"video_id":"v{}","success":{},"stage":"s{}","subject":"S{}","processing_duration":{}}}"#,
                i % 7,
                i % 3 != 0,
                i % 4,
                i % 5,
                (i * 37) % 101
            );
            f.validate(rec.as_bytes(), 0, 100, true).unwrap();
            let m = RawMeta::from_input(rec.as_bytes(), &f.fields, 0);
            ix.add(i as u64 * 100, rec.as_bytes(), &m);
        }
        ix
    }

    fn view<'a>(ix: &'a Index, reader: &'a std::sync::Arc<std::fs::File>) -> View<'a> {
        View {
            index: ix,
            reader,
            durable: ix.len(),
            durable_end: ix.len() as u64 * 100,
            log_id: "test",
        }
    }

    fn spans(a: &Answer) -> Vec<(u64, u32)> {
        match a {
            Answer::Jobs { spans, .. } | Answer::Csv { spans, .. } => {
                spans.iter().map(|s| (s.offset, s.len)).collect()
            }
            Answer::Stats {
                timings_from: Some((_, spans)),
                ..
            } => spans.iter().map(|s| (s.offset, s.len)).collect(),
            Answer::Report(r) => r.summary().1,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    fn queries() -> Vec<Query> {
        let subject = Filter {
            subject: Some("S2".into()),
            ..Filter::default()
        };
        let sorted = Paging {
            limit: Some(7),
            offset: 3,
            desc: true,
            sort_by: Some(SortBy::Duration),
        };
        vec![
            Query::Stats {
                filter: subject.clone(),
                include_pending: false,
            },
            Query::Jobs {
                filter: Filter::default(),
                paging: sorted.clone(),
                fields: None,
            },
            Query::Jobs {
                filter: subject.clone(),
                paging: Paging {
                    limit: Some(5),
                    ..Paging::default()
                },
                fields: None,
            },
            Query::Jobs {
                filter: subject.clone(),
                paging: Paging {
                    limit: Some(4),
                    offset: 2,
                    desc: true,
                    sort_by: None,
                },
                fields: None,
            },
            Query::ExportCsv {
                filter: subject.clone(),
                paging: sorted,
            },
            Query::Report {
                filter: subject,
                recent_failures: 7,
            },
            Query::Report {
                filter: Filter::default(),
                recent_failures: 1_000,
            },
        ]
    }

    /// A query answered in slices (of 1, 7, 1,000 and 5,000 entries) gives
    /// the answer it gives in one go, its selection pruned on the way
    /// (6,000 entries, 1,200 of one subject: past the 1,024 matches a prune
    /// waits for).
    #[test]
    fn a_scan_in_slices_answers_as_the_query_at_once() {
        let ix = index(6000);
        let reader = std::sync::Arc::new(std::fs::File::open("/dev/null").unwrap());
        for slice in [1, 7, 1000, 5000] {
            for (q, again) in queries().into_iter().zip(queries()) {
                let at_once = super::super::run(&view(&ix, &reader), again);
                assert!(Scan::wanted(&q));
                let mut scan = Scan::new(q, &ix, ix.len());
                let mut turns = 1;
                while !scan.step(&ix, slice) {
                    turns += 1;
                }
                assert_eq!(turns, 6000usize.div_ceil(slice).max(1));
                let sliced = scan.finish(&view(&ix, &reader));
                assert_eq!(spans(&sliced), spans(&at_once), "slice {slice}");
                match (&sliced, &at_once) {
                    (Answer::Stats { value: a, .. }, Answer::Stats { value: b, .. }) => {
                        assert_eq!(a, b)
                    }
                    (Answer::Report(a), Answer::Report(b)) => {
                        assert_eq!(a.summary(), b.summary(), "slice {slice}")
                    }
                    _ => {}
                }
            }
        }
    }

    /// Records arriving during a scan are not in its answer; a scan
    /// restarted over a replaced index answers over the new one.
    #[test]
    fn a_scan_covers_the_entries_there_when_it_started() {
        let small = index(100);
        let big = index(300);
        let reader = std::sync::Arc::new(std::fs::File::open("/dev/null").unwrap());
        let q = || Query::Jobs {
            filter: Filter {
                success: Some(true),
                ..Filter::default()
            },
            paging: Paging {
                sort_by: Some(SortBy::Duration),
                ..Paging::default()
            },
            fields: None,
        };
        // Started over the first 100 records, stepped over a longer index.
        let mut scan = Scan::new(q(), &big, 100);
        while !scan.step(&big, 16) {}
        let first_100 = scan.finish(&view(&small, &reader));
        let expected = super::super::run(&view(&small, &reader), q());
        assert_eq!(spans(&first_100), spans(&expected));
        // Restarted over a replaced (larger) index: all of it.
        let scan = Scan::new(q(), &small, 100);
        let mut scan = scan.restart(&big, big.len());
        while !scan.step(&big, 16) {}
        let all = scan.finish(&view(&big, &reader));
        assert_eq!(
            spans(&all),
            spans(&super::super::run(&view(&big, &reader), q()))
        );
        assert_eq!(spans(&all).len(), 200);
    }

    /// Cheap queries and those by `latest_per_video` are answered at once.
    #[test]
    fn cheap_queries_are_not_scanned() {
        let by_success = Query::Jobs {
            filter: Filter {
                success: Some(false),
                ..Filter::default()
            },
            paging: Paging::default(),
            fields: None,
        };
        assert!(!Scan::wanted(&by_success));
        let latest = Query::Stats {
            filter: Filter {
                latest_per_video: true,
                ..Filter::default()
            },
            include_pending: false,
        };
        assert!(!Scan::wanted(&latest));
        // Restarted over a replaced index, a durable-only `stats` still
        // covers the durable records only; one with pending ones all.
        let ix = index(10);
        let stats = |include_pending| Query::Stats {
            filter: Filter {
                subject: Some("S1".into()),
                ..Filter::default()
            },
            include_pending,
        };
        assert!(!Scan::new(stats(false), &ix, 10).covers_pending());
        assert!(Scan::new(stats(true), &ix, 10).covers_pending());
        assert!(!Scan::wanted(&Query::Snapshot));
    }
}
