//! Statistics kept incrementally: histograms of timings, tallies by
//! name, and the `Aggregate` behind `stats`.

use super::*;

/// A log-linear histogram: 128 buckets per power of two, so a percentile
/// read from it (the mean of its bucket) is within 0.8% of the exact value, at a memory cost that
/// does not grow with the number of values. Mean and max are exact.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hist {
    /// Per bucket: how many values, and their sum (so a bucket reads back
    /// as the mean of its values: exact when they are all equal). Sparse:
    /// a timing name seen once costs one bucket.
    buckets: BTreeMap<i64, (u64, f64)>,
    pub count: u64,
    pub sum: f64,
    pub max: f64,
    pub min: f64,
}

impl Hist {
    /// Buckets in the order of their values: zero alone (exact), then by
    /// sign and the top 7 bits of the mantissa, so a bucket spans at most
    /// 2^-7 of its values (within 0.8%). Negative values (not expected for
    /// durations, but any number can be sent) mirror the positive ones:
    /// sharing one bucket with zero made percentiles read back as the mean
    /// of unrelated values.
    pub(super) fn bucket(v: f64) -> i64 {
        let key = |m: f64| (m.to_bits() >> (52 - 7)) as i64 + 1;
        if v > 0.0 {
            key(v)
        } else if v < 0.0 {
            -key(-v)
        } else {
            0
        }
    }

    pub(crate) fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.max = v;
            self.min = v;
        } else {
            self.max = self.max.max(v);
            self.min = self.min.min(v);
        }
        self.count += 1;
        self.sum += v;
        let b = self.buckets.entry(Self::bucket(v)).or_insert((0, 0.0));
        b.0 += 1;
        b.1 += v;
    }

    /// Nearest-rank percentile `p` in 0..=100, or None when empty.
    pub(crate) fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(n, sum) in self.buckets.values() {
            seen += n;
            if seen >= rank {
                return Some((sum / n as f64).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub(crate) fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Keeps only the last of the items with the same `key`: a name given
/// twice in one `timings` object counts once, with its last value, as
/// Python's `json.load` (and so the Python logger's statistics) keeps it.
/// Linear: a record may repeat one name hundreds of thousands of times
/// (a quadratic pass over such a record held the writer for 30 s).
pub(crate) fn last_of_each<T, K: std::hash::Hash + Eq + ?Sized>(
    items: &mut Vec<T>,
    key: impl Fn(&T) -> &K,
) {
    // The usual handful of timings: comparing is cheaper than hashing.
    if items.len() <= 16 {
        let mut i = 0;
        while i < items.len() {
            if items[i + 1..]
                .iter()
                .any(|later| key(later) == key(&items[i]))
            {
                items.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut keep = vec![false; items.len()];
        for (i, item) in items.iter().enumerate().rev() {
            keep[i] = seen.insert(key(item));
        }
        keep
    };
    let mut k = keep.iter();
    items.retain(|_| k.next().copied().unwrap_or(true));
}

/// Counts by name that remember the order names were first counted in:
/// `error_types` and `stages`, which the Python logger's dicts gave in
/// first-seen order (a printed error report lists its errors in that
/// order). The order costs a [`Sym`] per name, pushed when the name is
/// first counted; counting a name already there is one map lookup, as
/// before.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counts {
    counts: SymMap<u64>,
    order: Vec<Sym>,
}

impl Counts {
    /// Counts `name` once more.
    #[inline]
    pub(crate) fn bump(&mut self, name: Sym) {
        match self.counts.entry(name) {
            std::collections::hash_map::Entry::Occupied(mut o) => *o.get_mut() += 1,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(1);
                self.order.push(name);
            }
        }
    }

    /// The count of `name` (0 if never counted).
    pub(crate) fn get(&self, name: Sym) -> u64 {
        self.counts.get(&name).copied().unwrap_or(0)
    }

    /// Names and their counts, in the order the names were first counted.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (Sym, u64)> + '_ {
        self.order
            .iter()
            .map(|s| (*s, self.counts.get(s).copied().unwrap_or(0)))
    }

    fn memory_bytes(&self) -> usize {
        super::map_bytes(&self.counts) + self.order.capacity() * std::mem::size_of::<Sym>()
    }
}

/// Counters for [`Aggregate`]'s `by_subject` / `by_worker`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub total: u64,
    pub successful: u64,
}

pub(crate) use crate::config::tuning::MAX_TIMING_NAMES;

/// Everything `stats` reports, over some set of records.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregate {
    pub total: u64,
    pub successful: u64,
    /// Sum and count of truthy durations of successful records.
    pub duration_sum: f64,
    pub duration_count: u64,
    pub files: f64,
    /// In first-seen order (see [`Counts`]).
    pub error_types: Counts,
    pub stages: Counts,
    /// Failed records per stage (`stages` less these succeeded), for the
    /// metrics' per-stage job counters. Counted for failed records only:
    /// one lookup more for those, none for the rest.
    pub stage_failures: SymMap<u64>,
    pub by_subject: SymMap<Tally>,
    pub by_worker: SymMap<Tally>,
    /// Per timing name, over successful records; at most
    /// [`MAX_TIMING_NAMES`] names.
    pub timings: SymMap<Hist>,
    /// Timing values not counted because their name came after the first
    /// [`MAX_TIMING_NAMES`].
    pub timings_untracked: u64,
    /// `processing_duration` of successful records.
    pub duration: Hist,
    pub first_logged_at: Option<i64>,
    pub last_logged_at: Option<i64>,
}

impl Aggregate {
    /// Bytes of its per-name maps (a timing histogram counted by its
    /// buckets).
    pub(crate) fn memory_bytes(&self) -> usize {
        use super::map_bytes;
        let hists: usize = self.timings.values().map(|h| h.buckets.len() * 64).sum();
        self.error_types.memory_bytes()
            + self.stages.memory_bytes()
            + map_bytes(&self.stage_failures)
            + map_bytes(&self.by_subject)
            + map_bytes(&self.by_worker)
            + map_bytes(&self.timings)
            + hists
            + self.duration.buckets.len() * 64
    }

    /// Adds one record. `timings` are the record's `(name, value)` pairs
    /// (only used for successful records).
    pub(crate) fn add(&mut self, e: &Entry, timings: &[(Sym, f64)]) {
        self.total += 1;
        self.stages.bump(e.stage);
        let ok = u64::from(e.success());
        let s = self.by_subject.entry(e.subject).or_default();
        s.total += 1;
        s.successful += ok;
        let w = self.by_worker.entry(e.worker).or_default();
        w.total += 1;
        w.successful += ok;
        if e.success() {
            self.successful += 1;
            if e.flags & F_HAS_DURATION != 0 {
                self.duration_sum += e.duration;
                self.duration_count += 1;
            }
            if e.duration.is_finite() {
                self.duration.add(e.duration);
            }
            self.files += f64::from(e.total_files);
            for &(name, v) in timings {
                if self.timings.len() < MAX_TIMING_NAMES {
                    self.timings.entry(name).or_default().add(v);
                } else if let Some(h) = self.timings.get_mut(&name) {
                    h.add(v);
                } else {
                    self.timings_untracked += 1;
                }
            }
        } else {
            self.error_types.bump(e.error_type);
            *self.stage_failures.entry(e.stage).or_default() += 1;
        }
        if e.logged_at != i64::MIN {
            self.first_logged_at = Some(
                self.first_logged_at
                    .map_or(e.logged_at, |f| f.min(e.logged_at)),
            );
            self.last_logged_at = Some(
                self.last_logged_at
                    .map_or(e.logged_at, |l| l.max(e.logged_at)),
            );
        }
    }
}
