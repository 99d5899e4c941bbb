//! Queries over the [`Index`]: filters, paging, statistics, retry
//! candidates. Pure functions of the index; reading records back from the
//! file and serializing them is the connection's job (`ops/read.rs`), so the
//! writer task only ever spends index time on a query.

use serde_json::{Map, Value, json};

use crate::index::{Aggregate, Entry, Hist, Index, Sym, is_candidate};

/// Which records a query is about. All set conditions must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub success: Option<bool>,
    pub stage: Option<String>,
    pub subject: Option<String>,
    /// As a group key: a string's content or a number's JSON text.
    pub worker_id: Option<String>,
    pub video_id: Option<String>,
    pub error_type: Option<String>,
    /// Inclusive lower bound on `logged_at` (naive microseconds).
    pub since: Option<i64>,
    /// Exclusive upper bound on `logged_at`.
    pub until: Option<i64>,
    /// Only the newest record of each `video_id` (applied first).
    pub latest_per_video: bool,
    /// Only records at this position (`seq`) or later: what a follower
    /// (`joblogctl tail -f` with filters) has not seen yet.
    pub from_seq: Option<u64>,
}

/// Sort key for `jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Duration,
    LoggedAt,
}

/// Paging and order for `jobs` and `export_csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Paging {
    pub limit: Option<usize>,
    pub offset: usize,
    pub desc: bool,
    pub sort_by: Option<SortBy>,
}

/// A filter resolved against the interner: `None` for a string that no
/// record has (so nothing can match).
struct Resolved {
    stage: Option<Option<Sym>>,
    subject: Option<Option<Sym>>,
    worker: Option<Option<Sym>>,
    error_type: Option<Option<Sym>>,
    video: Option<u64>,
}

fn resolve(ix: &Index, f: &Filter) -> Resolved {
    let sym = |s: &Option<String>| s.as_ref().map(|s| ix.syms.get(s));
    Resolved {
        stage: sym(&f.stage),
        subject: sym(&f.subject),
        worker: sym(&f.worker_id),
        error_type: sym(&f.error_type),
        video: f.video_id.as_deref().map(Index::video_hash),
    }
}

fn sym_matches(want: Option<Option<Sym>>, have: Sym) -> bool {
    match want {
        None => true,
        Some(None) => false,
        Some(Some(w)) => w == have,
    }
}

fn matches(ix: &Index, r: &Resolved, f: &Filter, idx: usize, e: &Entry) -> bool {
    if f.latest_per_video && !ix.is_latest(idx) {
        return false;
    }
    if f.from_seq.is_some_and(|s| (idx as u64) < s) {
        return false;
    }
    if let Some(s) = f.success
        && e.success() != s
    {
        return false;
    }
    if !sym_matches(r.stage, e.stage)
        || !sym_matches(r.subject, e.subject)
        || !sym_matches(r.worker, e.worker)
    {
        return false;
    }
    if r.error_type.is_some() && (e.success() || !sym_matches(r.error_type, e.error_type)) {
        return false;
    }
    if let Some(v) = r.video
        && (e.flags & crate::index::F_HAS_VIDEO == 0 || e.video != v)
    {
        return false;
    }
    if let Some(since) = f.since
        && (e.logged_at == i64::MIN || e.logged_at < since)
    {
        return false;
    }
    if let Some(until) = f.until
        && (e.logged_at == i64::MIN || e.logged_at >= until)
    {
        return false;
    }
    true
}

/// A filter ready to test entries: its names resolved once. Valid while
/// the index only grows (names are never forgotten); a scan over a
/// replaced index starts again (`ops::Scan`).
pub(crate) struct Matcher {
    r: Resolved,
    f: Filter,
}

impl Matcher {
    pub(crate) fn new(ix: &Index, f: &Filter) -> Matcher {
        Matcher {
            r: resolve(ix, f),
            f: f.clone(),
        }
    }

    pub(crate) fn matches(&self, ix: &Index, idx: usize) -> bool {
        matches(ix, &self.r, &self.f, idx, &ix.entries[idx])
    }
}

/// A filtered `stats` gathered entry by entry: the aggregate of the
/// matches, the successful ones (whose timings are read back), and each
/// video's newest match (for the retry candidates among them).
#[derive(Default)]
pub(crate) struct StatsFold {
    agg: Aggregate,
    successful: Vec<u32>,
    latest: std::collections::HashMap<u64, bool>,
}

impl StatsFold {
    pub(crate) fn add(&mut self, ix: &Index, i: usize) {
        let e = &ix.entries[i];
        self.agg.add(e, &[]);
        if e.success() {
            self.successful.push(i as u32);
        }
        if e.flags & crate::index::F_HAS_VIDEO != 0 {
            self.latest.insert(e.video, is_candidate(e));
        }
    }

    /// The aggregate, the successful matches and the retry candidates.
    pub(crate) fn finish(self) -> (Aggregate, Vec<u32>, u64) {
        let candidates = self.latest.values().filter(|c| **c).count() as u64;
        (self.agg, self.successful, candidates)
    }
}

/// Entry numbers of the records among the first `upto` that match, in log
/// order.
pub(crate) fn select(ix: &Index, f: &Filter, upto: usize) -> Vec<u32> {
    let r = resolve(ix, f);
    let upto = upto.min(ix.len());
    let first = first_entry(f, upto);
    ix.entries[first..upto]
        .iter()
        .enumerate()
        .map(|(i, e)| (first + i, e))
        .filter(|(i, e)| matches(ix, &r, f, *i, e))
        .map(|(i, _)| i as u32)
        .collect()
}

/// The page of matches among the first `upto` records, and how many match
/// in all. Without `sort_by` the scan walks in the requested order and
/// stops collecting at `offset + limit`; the total then comes from the
/// incremental counters when the filter is only `success` over the whole
/// log, else from a count-only pass. With `sort_by` every match is
/// collected, and [`page`] orders only the ones the page needs.
pub(crate) fn select_page(ix: &Index, f: &Filter, p: &Paging, upto: usize) -> (Vec<u32>, usize) {
    if p.sort_by.is_some() {
        return page(ix, select(ix, f, upto), p);
    }
    let upto = upto.min(ix.len());
    let r = resolve(ix, f);
    let want = p.limit.map(|l| p.offset.saturating_add(l));
    let only_success = Filter {
        success: f.success,
        ..Filter::default()
    } == *f;
    let known_total = (only_success && upto == ix.len()).then(|| match f.success {
        Some(true) => ix.all.successful as usize,
        Some(false) => (ix.all.total - ix.all.successful) as usize,
        None => upto,
    });
    let mut hits = Vec::new();
    let mut total = 0usize;
    let mut visit = |i: usize| -> bool {
        let e = &ix.entries[i];
        if matches(ix, &r, f, i, e) {
            if want.is_none_or(|w| hits.len() < w) {
                hits.push(i as u32);
            }
            total += 1;
        }
        // Keep going only while something is still unknown.
        known_total.is_none() || want.is_none_or(|w| hits.len() < w)
    };
    // Entries before `from_seq` cannot match: not visited.
    let first = first_entry(f, upto);
    if p.desc {
        for i in (first..upto).rev() {
            if !visit(i) {
                break;
            }
        }
    } else {
        for i in first..upto {
            if !visit(i) {
                break;
            }
        }
    }
    let total = known_total.unwrap_or(total);
    let start = p.offset.min(hits.len());
    (hits.split_off(start), total)
}

/// The first of the first `upto` entries that `f` can match: none before
/// its `from_seq`.
pub(crate) fn first_entry(f: &Filter, upto: usize) -> usize {
    f.from_seq
        .map_or(0, |s| usize::try_from(s).unwrap_or(usize::MAX))
        .min(upto)
}

/// Applies order, sort, offset and limit. Returns the page and the number
/// of matches before paging.
///
/// With `sort_by`, records without the key sort first ascending (last
/// descending), as missing values do in jq's `sort_by` (null < numbers),
/// and ties keep log order (reversed when descending): the order of a
/// stable sort followed by a reverse. The entry number breaks ties, so the
/// order is total and a page needs only its first `offset + limit` records
/// in order: they are selected in linear time and only they are sorted.
/// (A full sort of a million matches stalled ingest for 200-300 ms, since
/// queries run on the writer.)
pub(crate) fn page(ix: &Index, mut sel: Vec<u32>, p: &Paging) -> (Vec<u32>, usize) {
    let total = sel.len();
    if let Some(by) = p.sort_by {
        let order = sort_order(ix, by, p.desc);
        let keep = p.limit.map_or(total, |l| p.offset.saturating_add(l));
        if keep < total {
            if keep > 0 {
                sel.select_nth_unstable_by(keep - 1, &order);
            }
            sel.truncate(keep);
        }
        sel.sort_unstable_by(&order);
    } else if p.desc {
        sel.reverse();
    }
    let end = p
        .limit
        .map_or(sel.len(), |l| p.offset.saturating_add(l).min(sel.len()));
    let start = p.offset.min(end);
    (sel[start..end].to_vec(), total)
}

/// Keeps of `sel` only the entries a page of `p` can show, as [`page`]
/// would choose them: the first `offset + limit` in the sort order, or in
/// log order (the last ones for `desc`). Lets a scan hold `O(offset +
/// limit)` entries rather than every match, pruning when `sel` has grown
/// to twice that (so the whole scan is `O(n)`).
pub(crate) fn prune_to_page(ix: &Index, sel: &mut Vec<u32>, p: &Paging) {
    let Some(limit) = p.limit else {
        return;
    };
    let keep = p.offset.saturating_add(limit);
    if sel.len() < keep.saturating_mul(2).max(1024) {
        return;
    }
    match p.sort_by {
        Some(by) if keep > 0 => {
            sel.select_nth_unstable_by(keep - 1, sort_order(ix, by, p.desc));
            sel.truncate(keep);
        }
        Some(_) => sel.clear(),
        None if p.desc => {
            sel.drain(..sel.len() - keep);
        }
        None => sel.truncate(keep),
    }
}

/// The total order of a sorted page (see [`page`]).
fn sort_order(
    ix: &Index,
    by: SortBy,
    desc: bool,
) -> impl Fn(&u32, &u32) -> std::cmp::Ordering + '_ {
    move |a: &u32, b: &u32| {
        let key = |i: u32| {
            let e = &ix.entries[i as usize];
            match by {
                SortBy::Duration => e.duration,
                SortBy::LoggedAt => e.logged_at as f64,
            }
        };
        let (ka, kb) = (key(*a), key(*b));
        let by_key = match (ka.is_nan(), kb.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => ka.total_cmp(&kb),
        };
        let o = by_key.then(a.cmp(b));
        if desc { o.reverse() } else { o }
    }
}

/// Newest-first list of videos whose newest record failed and is not
/// `is_retryable: false`, among the first `upto` records.
pub(crate) fn retry_candidates(ix: &Index, upto: usize) -> Vec<u32> {
    (0..upto.min(ix.len()))
        .rev()
        .filter(|&i| {
            let e = &ix.entries[i];
            e.flags & crate::index::F_HAS_VIDEO != 0 && is_candidate(e) && ix.is_latest(i)
        })
        .map(|i| i as u32)
        .collect()
}

/// Is `f` empty for `stats` (so the incremental aggregate answers)?
pub(crate) fn is_unfiltered(f: &Filter) -> bool {
    *f == Filter::default()
}

/// Aggregate over the matching records (timings not included: they are not
/// in the index, see `conn/requests.rs`), the matching successful records, and the
/// retry candidates *within* the matching records (the newest matching
/// record of each video decides), as if the log held only those records.
pub(crate) fn aggregate(ix: &Index, f: &Filter) -> (Aggregate, Vec<u32>, u64) {
    let m = Matcher::new(ix, f);
    let mut fold = StatsFold::default();
    for i in 0..ix.len() {
        if m.matches(ix, i) {
            fold.add(ix, i);
        }
    }
    fold.finish()
}

fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// `{count, mean, p50, p95, max}` of a histogram.
pub(crate) fn hist_json(h: &Hist) -> Value {
    json!({
        "count": h.count,
        "mean": h.mean().map_or(Value::Null, num),
        "p50": h.percentile(50.0).map_or(Value::Null, num),
        "p95": h.percentile(95.0).map_or(Value::Null, num),
        "max": if h.count > 0 { num(h.max) } else { Value::Null },
    })
}

/// Timing histograms as `{"<stage>": {count, mean, p50, p95, max}}`.
pub(crate) fn timings_json<'a>(
    ix: &Index,
    timings: impl Iterator<Item = (&'a Sym, &'a Hist)>,
) -> Value {
    let mut v: Vec<(&str, Value)> = timings
        .map(|(s, h)| (ix.syms.name(*s), hist_json(h)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    Value::Object(v.into_iter().map(|(k, h)| (k.to_string(), h)).collect())
}

/// A `stats` object as written: `value` (every key, its objects' members
/// in sorted order as serde_json's map keeps them), except `error_types`
/// and `stages`, which `value` holds as `null` and which are written from
/// here in first-seen order, as the Python logger's dicts gave them.
/// (serde_json's `preserve_order` feature would order every object of
/// every reply by insertion, the documented sorted ones included, and
/// slow every map; only these two need another order.)
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StatsValue {
    pub value: Value,
    pub error_types: Ordered,
    pub stages: Ordered,
}

/// Counts by name, written as a JSON object in this order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Ordered(pub Vec<(String, u64)>);

impl serde::Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, n) in &self.0 {
            m.serialize_entry(k, n)?;
        }
        m.end()
    }
}

impl serde::Serialize for StatsValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(o) = &self.value else {
            return self.value.serialize(s);
        };
        let mut m = s.serialize_map(Some(o.len()))?;
        for (k, v) in o {
            match k.as_str() {
                "error_types" => m.serialize_entry(k, &self.error_types)?,
                "stages" => m.serialize_entry(k, &self.stages)?,
                _ => m.serialize_entry(k, v)?,
            }
        }
        m.end()
    }
}

impl StatsValue {
    /// The whole reply line, `{"ok":true,"stats":{…}}` and its newline.
    pub(crate) fn reply_line(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Reply<'a> {
            ok: bool,
            stats: &'a StatsValue,
        }
        let mut line = serde_json::to_vec(&Reply {
            ok: true,
            stats: self,
        })
        .unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The `stats` object. Keys and semantics of the Python logger's
/// `get_statistics()` first, then the extras.
pub(crate) fn stats_json(ix: &Index, a: &Aggregate, retry_candidates: u64) -> StatsValue {
    // Objects in `value` come out with their keys sorted (serde_json's map
    // is ordered by key), whatever order they are built in; `error_types`
    // and `stages` keep the order names were first counted in.
    let counts = |m: &crate::index::Counts| -> Ordered {
        Ordered(
            m.iter()
                .map(|(s, n)| (ix.syms.name(s).to_string(), n))
                .collect(),
        )
    };
    let tallies = |m: &crate::index::SymMap<crate::index::Tally>| -> Value {
        let mut v: Vec<(&str, &crate::index::Tally)> =
            m.iter().map(|(s, t)| (ix.syms.name(*s), t)).collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        let mut o = Map::new();
        for (k, t) in v {
            o.insert(
                k.to_string(),
                json!({"total": t.total, "successful": t.successful, "failed": t.total - t.successful}),
            );
        }
        Value::Object(o)
    };
    let files = if a.files.fract() == 0.0 && a.files.abs() < 9.0e15 {
        json!(a.files as i64)
    } else {
        num(a.files)
    };
    let value = json!({
        "total_jobs": a.total,
        "successful": a.successful,
        "failed": a.total - a.successful,
        "success_rate": if a.total > 0 { num(a.successful as f64 / a.total as f64) } else { json!(0) },
        "average_duration": if a.duration_count > 0 { num(a.duration_sum / a.duration_count as f64) } else { Value::Null },
        "total_files_created": files,
        // Written from `StatsValue::error_types` and `stages`.
        "error_types": null,
        "stages": null,
        "by_subject": tallies(&a.by_subject),
        "by_worker": tallies(&a.by_worker),
        "timings": timings_json(ix, a.timings.iter()),
        "timings_untracked": a.timings_untracked,
        "duration": {
            "p50": a.duration.percentile(50.0).map_or(Value::Null, num),
            "p95": a.duration.percentile(95.0).map_or(Value::Null, num),
            "max": if a.duration.count > 0 { num(a.duration.max) } else { Value::Null },
        },
        "first_logged_at": a.first_logged_at.map(crate::time::format_time),
        "last_logged_at": a.last_logged_at.map(crate::time::format_time),
        "retry_candidates": retry_candidates,
    });
    StatsValue {
        value,
        error_types: counts(&a.error_types),
        stages: counts(&a.stages),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::RawMeta;
    use crate::json::Formatter;

    fn index(n: usize) -> Index {
        let mut ix = Index::default();
        let mut f = Formatter::new();
        for i in 0..n {
            let rec = format!(
                r#"{{"video_id":"v{}","success":{},"stage":"s{}","processing_duration":{}}}"#,
                i % 7,
                i % 3 != 0,
                i % 4,
                (i * 37) % 101
            );
            f.validate(rec.as_bytes(), 0, 100, true).unwrap();
            let m = RawMeta::from_input(rec.as_bytes(), &f.fields, 0);
            ix.add(i as u64 * 100, rec.as_bytes(), &m);
        }
        ix
    }

    /// The page as the first version computed it: a stable sort of every
    /// match, then a reverse for `desc`, then the slice.
    fn page_by_full_sort(ix: &Index, mut sel: Vec<u32>, p: &Paging) -> (Vec<u32>, usize) {
        let total = sel.len();
        if let Some(by) = p.sort_by {
            let key = |i: &u32| {
                let e = &ix.entries[*i as usize];
                match by {
                    SortBy::Duration => e.duration,
                    SortBy::LoggedAt => e.logged_at as f64,
                }
            };
            sel.sort_by(|a, b| {
                let (ka, kb) = (key(a), key(b));
                match (ka.is_nan(), kb.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Less,
                    (false, true) => std::cmp::Ordering::Greater,
                    _ => ka.total_cmp(&kb),
                }
            });
        }
        if p.desc {
            sel.reverse();
        }
        let end = p
            .limit
            .map_or(sel.len(), |l| p.offset.saturating_add(l).min(sel.len()));
        let start = p.offset.min(end);
        (sel[start..end].to_vec(), total)
    }

    /// Selecting the first `offset + limit` and sorting only those gives the
    /// page a full stable sort gives, ties (many here) and missing keys
    /// included, both ways.
    #[test]
    fn a_sorted_page_equals_the_full_sort() {
        let mut ix = Index::default();
        let mut f = Formatter::new();
        for i in 0..300u64 {
            // Every 5th record has no duration, every 7th no logged_at;
            // durations take 11 values, so most keys tie.
            let duration = if i % 5 == 0 {
                String::new()
            } else {
                format!(r#","processing_duration":{}"#, (i * 7) % 11)
            };
            let logged_at = if i % 7 == 0 {
                String::new()
            } else {
                format!(r#","logged_at":"2025-01-0{}T00:00:00""#, 1 + (i * 3) % 9)
            };
            let rec = format!(r#"{{"video_id":"v{i}","success":true{duration}{logged_at}}}"#);
            f.validate(rec.as_bytes(), 0, 100, true).unwrap();
            let m = RawMeta::from_input(rec.as_bytes(), &f.fields, 0);
            ix.add(i * 100, rec.as_bytes(), &m);
        }
        for by in [SortBy::Duration, SortBy::LoggedAt] {
            for desc in [false, true] {
                for (offset, limit) in [
                    (0, None),
                    (0, Some(0)),
                    (0, Some(1)),
                    (0, Some(5)),
                    (3, Some(40)),
                    (250, Some(49)),
                    (250, Some(50)),
                    (299, Some(5)),
                    (300, Some(5)),
                    (1000, Some(5)),
                    (10, None),
                ] {
                    let p = Paging {
                        limit,
                        offset,
                        desc,
                        sort_by: Some(by),
                    };
                    let all = select(&ix, &Filter::default(), 300);
                    assert_eq!(
                        page(&ix, all.clone(), &p),
                        page_by_full_sort(&ix, all, &p),
                        "{p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_early_exit_page_equals_the_full_scan() {
        let ix = index(200);
        let filters = [
            Filter::default(),
            Filter {
                success: Some(false),
                ..Filter::default()
            },
            Filter {
                success: Some(true),
                ..Filter::default()
            },
            Filter {
                stage: Some("s2".into()),
                ..Filter::default()
            },
            Filter {
                latest_per_video: true,
                success: Some(false),
                ..Filter::default()
            },
        ];
        for f in &filters {
            for desc in [false, true] {
                for (offset, limit) in [
                    (0, None),
                    (0, Some(0)),
                    (0, Some(5)),
                    (7, Some(10)),
                    (190, Some(50)),
                    (500, Some(1)),
                ] {
                    for upto in [200, 150] {
                        let p = Paging {
                            limit,
                            offset,
                            desc,
                            sort_by: None,
                        };
                        let want = page(&ix, select(&ix, f, upto), &p);
                        assert_eq!(
                            select_page(&ix, f, &p, upto),
                            want,
                            "{f:?} {p:?} upto {upto}"
                        );
                    }
                }
            }
        }
    }
}
