//! What a `report` gathers entry by entry (at once, or a slice at a time
//! by `ops::Scan`): the `stats` part, successes and failures per hour, the
//! failures per stage and error type, and the newest failures.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Value, json};

use crate::index::{Aggregate, FxHasher, Index, Sym};
use crate::query::{Filter, StatsFold, is_unfiltered};
use crate::time::{civil_from_days, days_from_civil, format_time};

type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

/// At most this many bars over time: the finest of hour, day, week, month
/// and year that covers the span in this many buckets is chosen (a week
/// of hours; then days up to about five months; weeks up to three years;
/// months up to fourteen). Years are used beyond, however many.
pub(crate) const MAX_BUCKETS: i64 = 168;

/// The `stats` part of a report.
enum StatsPart {
    /// Unfiltered, over every entry of the index when it was asked: the
    /// running aggregate as it was then (cloned: a few maps of names and
    /// histograms, not per record), and the retry candidates then. Its
    /// timings are the index's own, so nothing is read back.
    Running(Box<Aggregate>, u64),
    /// Filtered: gathered here, its successful matches' timings read back
    /// from the file when the answer is written, as a filtered `stats`.
    Folded(Box<StatsFold>),
}

/// A report being gathered over the entries `0..upto` of an index.
pub(crate) struct ReportFold {
    stats: StatsPart,
    series: Series,
    /// Failed matches per (stage, error type).
    by_stage: FxMap<(Sym, Sym), u64>,
    /// The newest failed matches, oldest first, at most `recent_max`.
    recent: VecDeque<u32>,
    recent_max: usize,
}

/// Gathered and ready to answer.
pub(crate) struct Finished {
    /// The aggregate, the successful matches whose timings are still to
    /// be read back (`None`: the aggregate has them), the retry candidates.
    pub stats: (Aggregate, Option<Vec<u32>>, u64),
    pub series: Value,
    pub by_stage: Value,
    /// The newest failures, newest first.
    pub recent: Vec<u32>,
}

impl ReportFold {
    /// A report with `filter` over the entries `0..upto` of `ix`, keeping
    /// the newest `recent` failures.
    pub(crate) fn new(ix: &Index, filter: &Filter, recent: usize, upto: usize) -> ReportFold {
        let stats = if is_unfiltered(filter) && upto == ix.len() {
            StatsPart::Running(Box::new(ix.all.clone()), ix.retry_candidates)
        } else {
            StatsPart::Folded(Box::default())
        };
        ReportFold {
            stats,
            series: Series::default(),
            by_stage: FxMap::default(),
            recent: VecDeque::with_capacity(recent.min(1024)),
            recent_max: recent,
        }
    }

    /// Adds entry `i`, one that matches the filter.
    pub(crate) fn add(&mut self, ix: &Index, i: usize) {
        if let StatsPart::Folded(f) = &mut self.stats {
            f.add(ix, i);
        }
        let e = &ix.entries[i];
        self.series.add(e.logged_at, e.success());
        if e.success() {
            return;
        }
        *self.by_stage.entry((e.stage, e.error_type)).or_insert(0) += 1;
        if self.recent_max > 0 {
            if self.recent.len() == self.recent_max {
                self.recent.pop_front();
            }
            self.recent.push_back(i as u32);
        }
    }

    pub(crate) fn finish(self, ix: &Index) -> Finished {
        let stats = match self.stats {
            StatsPart::Running(agg, candidates) => (*agg, None, candidates),
            StatsPart::Folded(f) => {
                let (agg, successful, candidates) = f.finish();
                (agg, Some(successful), candidates)
            }
        };
        Finished {
            stats,
            series: self.series.finish(),
            by_stage: by_stage_json(ix, &self.by_stage),
            recent: self.recent.into_iter().rev().collect(),
        }
    }
}

/// `[{"stage", "failed", "error_types": [{"error_type", "count"}]}]`, the
/// stages with the most failures first, and within each its error types
/// by count (ties by name, so the answer does not depend on hashing).
fn by_stage_json(ix: &Index, counts: &FxMap<(Sym, Sym), u64>) -> Value {
    /// A stage's failures, and its error types with their counts.
    type Stage<'a> = (u64, Vec<(&'a str, u64)>);
    let mut stages: BTreeMap<&str, Stage<'_>> = BTreeMap::new();
    for (&(stage, error), &n) in counts {
        let s = stages.entry(ix.syms.name(stage)).or_default();
        s.0 += n;
        s.1.push((ix.syms.name(error), n));
    }
    let mut stages: Vec<(&str, Stage<'_>)> = stages.into_iter().collect();
    stages.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let list = stages
        .into_iter()
        .map(|(stage, (failed, mut errors))| {
            errors.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let errors: Vec<Value> = errors
                .into_iter()
                .map(|(e, n)| json!({"error_type": e, "count": n}))
                .collect();
            json!({"stage": stage, "failed": failed, "error_types": errors})
        })
        .collect();
    Value::Array(list)
}

/// Successes and failures per hour of `logged_at` (naive local time, as
/// logged), rolled up at the end into the unit the span calls for.
#[derive(Default)]
struct Series {
    /// `[successful, failed]` per hour number (`logged_at / HOUR`).
    hours: FxMap<i64, [u64; 2]>,
    /// The hour being counted, kept out of the map: records come in time
    /// order, so almost every record is counted here without a lookup.
    current: Option<(i64, [u64; 2])>,
    /// Records without a parseable `logged_at`.
    undated: u64,
}

impl Series {
    fn add(&mut self, logged_at: i64, success: bool) {
        if logged_at == i64::MIN {
            self.undated += 1;
            return;
        }
        let hour = logged_at.div_euclid(HOUR);
        let slot = usize::from(!success);
        match &mut self.current {
            Some((h, counts)) if *h == hour => counts[slot] += 1,
            current => {
                if let Some((h, counts)) = current.take() {
                    let c = self.hours.entry(h).or_insert([0, 0]);
                    c[0] += counts[0];
                    c[1] += counts[1];
                }
                let mut counts = [0, 0];
                counts[slot] = 1;
                *current = Some((hour, counts));
            }
        }
    }

    /// `{"unit", "undated", "buckets": [{"start", "successful", "failed"}]}`:
    /// every bucket from the first record's to the last one's, empty ones
    /// included, so each is one bar.
    fn finish(mut self) -> Value {
        if let Some((h, counts)) = self.current.take() {
            let c = self.hours.entry(h).or_insert([0, 0]);
            c[0] += counts[0];
            c[1] += counts[1];
        }
        let (Some(&first), Some(&last)) = (self.hours.keys().min(), self.hours.keys().max()) else {
            return json!({"unit": Unit::Hour.name(), "undated": self.undated, "buckets": []});
        };
        let (first, last) = (first * HOUR, last * HOUR);
        let unit = Unit::for_span(first, last);
        let mut rolled: BTreeMap<i64, [u64; 2]> = BTreeMap::new();
        for (h, c) in self.hours {
            let b = rolled.entry(unit.start(h * HOUR)).or_insert([0, 0]);
            b[0] += c[0];
            b[1] += c[1];
        }
        let mut buckets = Vec::new();
        let mut at = unit.start(first);
        while at <= last {
            let c = rolled.get(&at).copied().unwrap_or([0, 0]);
            buckets.push(json!({"start": format_time(at), "successful": c[0], "failed": c[1]}));
            at = unit.next(at);
        }
        json!({"unit": unit.name(), "undated": self.undated, "buckets": buckets})
    }
}

/// A bar's width over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Hour,
    Day,
    /// From Monday 00:00 (ISO weeks).
    Week,
    Month,
    Year,
}

impl Unit {
    const ALL: [Unit; 5] = [Unit::Hour, Unit::Day, Unit::Week, Unit::Month, Unit::Year];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Year => "year",
        }
    }

    /// The finest unit that covers `first..=last` in at most
    /// [`MAX_BUCKETS`] buckets (years if none does).
    pub(crate) fn for_span(first: i64, last: i64) -> Unit {
        Unit::ALL
            .into_iter()
            .find(|u| u.count(first, last) <= MAX_BUCKETS)
            .unwrap_or(Unit::Year)
    }

    /// Buckets from the one holding `first` to the one holding `last`.
    fn count(self, first: i64, last: i64) -> i64 {
        let (a, b) = (self.start(first), self.start(last));
        match self {
            Unit::Hour => (b - a) / HOUR + 1,
            Unit::Day => (b - a) / DAY + 1,
            Unit::Week => (b - a) / (7 * DAY) + 1,
            Unit::Month => {
                let (ya, ma, _) = civil_from_days(a.div_euclid(DAY));
                let (yb, mb, _) = civil_from_days(b.div_euclid(DAY));
                (yb * 12 + mb) - (ya * 12 + ma) + 1
            }
            Unit::Year => {
                civil_from_days(b.div_euclid(DAY)).0 - civil_from_days(a.div_euclid(DAY)).0 + 1
            }
        }
    }

    /// The start of the bucket holding `t` (naive microseconds).
    pub(crate) fn start(self, t: i64) -> i64 {
        let day = t.div_euclid(DAY);
        match self {
            Unit::Hour => t.div_euclid(HOUR) * HOUR,
            Unit::Day => day * DAY,
            // 1970-01-01 was a Thursday: Monday is 3 days before it.
            Unit::Week => ((day + 3).div_euclid(7) * 7 - 3) * DAY,
            Unit::Month => {
                let (y, m, _) = civil_from_days(day);
                days_from_civil(y, m, 1) * DAY
            }
            Unit::Year => days_from_civil(civil_from_days(day).0, 1, 1) * DAY,
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub(crate) fn next(self, start: i64) -> i64 {
        match self {
            Unit::Hour => start + HOUR,
            Unit::Day => start + DAY,
            Unit::Week => start + 7 * DAY,
            Unit::Month => {
                let (y, m, _) = civil_from_days(start.div_euclid(DAY));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                days_from_civil(y, m, 1) * DAY
            }
            Unit::Year => days_from_civil(civil_from_days(start.div_euclid(DAY)).0 + 1, 1, 1) * DAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn t(s: &str) -> i64 {
        parse_time(s).expect("a time")
    }

    #[test]
    fn the_unit_is_the_finest_that_fits_the_span() {
        let from = t("2025-10-17T09:30:00");
        for (to, unit) in [
            ("2025-10-17T09:40:00", Unit::Hour),
            ("2025-10-19T20:00:00", Unit::Hour),
            ("2025-10-24T08:59:59", Unit::Hour),
            ("2025-10-24T09:00:00", Unit::Day),
            ("2026-03-01T00:00:00", Unit::Day),
            ("2027-06-01T00:00:00", Unit::Week),
            ("2035-01-01T00:00:00", Unit::Month),
            ("2125-01-01T00:00:00", Unit::Year),
        ] {
            assert_eq!(Unit::for_span(from, t(to)), unit, "to {to}");
        }
    }

    #[test]
    fn buckets_start_on_their_boundaries_and_follow_each_other() {
        let at = t("2024-02-29T13:45:10.5");
        assert_eq!(format_time(Unit::Hour.start(at)), "2024-02-29T13:00:00");
        assert_eq!(format_time(Unit::Day.start(at)), "2024-02-29T00:00:00");
        // 2024-02-29 was a Thursday.
        assert_eq!(format_time(Unit::Week.start(at)), "2024-02-26T00:00:00");
        assert_eq!(format_time(Unit::Month.start(at)), "2024-02-01T00:00:00");
        assert_eq!(format_time(Unit::Year.start(at)), "2024-01-01T00:00:00");
        assert_eq!(
            format_time(Unit::Month.next(t("2024-12-01"))),
            "2025-01-01T00:00:00"
        );
        assert_eq!(
            format_time(Unit::Year.next(t("2024-01-01"))),
            "2025-01-01T00:00:00"
        );
        // Before 1970 too.
        assert_eq!(
            format_time(Unit::Week.start(t("1969-12-31T23:00:00"))),
            "1969-12-29T00:00:00"
        );
        assert_eq!(
            format_time(Unit::Hour.start(t("1969-12-31T23:59:00"))),
            "1969-12-31T23:00:00"
        );
    }

    #[test]
    fn a_series_lists_every_bucket_between_the_first_and_the_last() {
        let mut s = Series::default();
        s.add(t("2025-10-17T09:10:00"), true);
        s.add(t("2025-10-17T09:50:00"), false);
        s.add(t("2025-10-17T12:00:00"), true);
        // Out of order: counted into the hour it belongs to.
        s.add(t("2025-10-17T09:20:00"), true);
        s.add(i64::MIN, false);
        let v = s.finish();
        assert_eq!(v["unit"], "hour");
        assert_eq!(v["undated"], 1);
        let got: Vec<(String, u64, u64)> = v["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| {
                (
                    b["start"].as_str().unwrap_or("").to_owned(),
                    b["successful"].as_u64().unwrap_or(0),
                    b["failed"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("2025-10-17T09:00:00".to_owned(), 2, 1),
                ("2025-10-17T10:00:00".to_owned(), 0, 0),
                ("2025-10-17T11:00:00".to_owned(), 0, 0),
                ("2025-10-17T12:00:00".to_owned(), 1, 0),
            ]
        );
        let empty = Series::default().finish();
        assert_eq!(empty["buckets"], json!([]));
    }
}
