//! Jobs accepted since start by stage and outcome, for the metrics'
//! `joblogd_jobs_succeeded_total` and `joblogd_jobs_failed_total`.
//!
//! The index already tallies every record's stage as it is accepted (and
//! failures per stage), so nothing is counted twice on the ingest path:
//! the counters are the live index's tallies, less what it held when it
//! became live (the file found at start, a file reopened or taken over),
//! plus what the logs it replaced had gained until then. The index only
//! grows between replacements, so the counters never go down: a `clear`,
//! a rotation or another process's change to the file is not a counter
//! reset to Prometheus.
//!
//! A stage name is a label value, and every label value a series kept for
//! weeks: the first [`METRICS_STAGES`] names get a label of their own, for
//! the daemon's lifetime, and every other name counts under `other` (a
//! stage really named `other` too, so no two series share a label). The
//! file's names come first, in the order it holds them, so a restart
//! labels the same stages again. Only the labelled names are kept here,
//! and `other` is the whole index's tally less theirs: a log with a
//! million stage names costs this module as much as one with twenty.
//!
//! A name gets its label the first time the writer looks (a `metrics`
//! request, or the index being replaced) while there is room; one seen
//! while there is none never gets one. So a name's jobs were never shown
//! under `other` before it got its label, and `other` never goes down.

use crate::config::tuning::METRICS_STAGES;
use crate::index::Index;
use crate::metrics::StageCount;

/// The label that stage names past the first [`METRICS_STAGES`] share.
const OTHER: &str = "other";

/// Successes and failures.
type Pair = [u64; 2];

/// A stage name with a label of its own.
#[derive(Debug)]
struct Labelled {
    name: Box<str>,
    /// Its tally in the live index when that became live.
    base: Pair,
    /// What it gained in the logs replaced since start.
    carried: Pair,
}

/// See the module doc.
#[derive(Debug, Default)]
pub(super) struct StageTotals {
    /// In the order they got their label.
    labelled: Vec<Labelled>,
    /// `base` and `carried` of every other name together.
    other_base: Pair,
    other_carried: Pair,
}

/// Every job of `index`: successes and failures.
fn overall(index: &Index) -> Pair {
    let all = &index.all;
    [all.successful, all.total - all.successful]
}

/// The jobs of `index` at stage `name`.
fn tally(index: &Index, name: &str) -> Pair {
    let Some(sym) = index.syms.get(name) else {
        return [0, 0];
    };
    let all = &index.all;
    let failed = all.stage_failures.get(&sym).copied().unwrap_or(0);
    [all.stages.get(sym).saturating_sub(failed), failed]
}

fn plus(a: Pair, b: Pair) -> Pair {
    [a[0] + b[0], a[1] + b[1]]
}

fn minus(a: Pair, b: Pair) -> Pair {
    [a[0].saturating_sub(b[0]), a[1].saturating_sub(b[1])]
}

impl StageTotals {
    /// Counting from `live`, the index the daemon starts with.
    pub(super) fn new(live: &Index) -> StageTotals {
        let mut s = StageTotals::default();
        s.rebase(live);
        s
    }

    /// Labels the names of `index` that have none, in the order it first
    /// saw them, while there is room. A name labelled here was not in the
    /// live index when it became live (see the module doc): its base is 0.
    fn label(&mut self, index: &Index) {
        let syms = &index.syms;
        for (sym, _) in index.all.stages.iter() {
            if self.labelled.len() >= METRICS_STAGES {
                return;
            }
            let name = syms.name(sym);
            if name != OTHER && !self.labelled.iter().any(|l| *l.name == *name) {
                self.labelled.push(Labelled {
                    name: Box::from(name),
                    base: [0, 0],
                    carried: [0, 0],
                });
            }
        }
    }

    /// `index` becomes the live index: what it holds now is not counted.
    fn rebase(&mut self, index: &Index) {
        self.label(index);
        let mut rest = overall(index);
        for l in &mut self.labelled {
            l.base = tally(index, &l.name);
            rest = minus(rest, l.base);
        }
        self.other_base = rest;
    }

    /// `old` is replaced by `new` as the live index: what `old` gained
    /// since it became live is carried, and `new` is counted from here.
    pub(super) fn replaced(&mut self, old: &Index, new: &Index) {
        self.label(old);
        let mut rest = overall(old);
        for l in &mut self.labelled {
            let now = tally(old, &l.name);
            l.carried = plus(l.carried, minus(now, l.base));
            rest = minus(rest, now);
        }
        self.other_carried = plus(self.other_carried, minus(rest, self.other_base));
        self.rebase(new);
    }

    /// The counters now, with `live` the live index: one per labelled
    /// name, in the order they got their label, then `other`.
    pub(super) fn totals(&mut self, live: &Index) -> Vec<StageCount> {
        self.label(live);
        let mut rest = overall(live);
        let mut out: Vec<StageCount> = self
            .labelled
            .iter()
            .map(|l| {
                let now = tally(live, &l.name);
                rest = minus(rest, now);
                let [succeeded, failed] = plus(minus(now, l.base), l.carried);
                StageCount {
                    stage: l.name.to_string(),
                    succeeded,
                    failed,
                }
            })
            .collect();
        let [succeeded, failed] = plus(minus(rest, self.other_base), self.other_carried);
        out.push(StageCount {
            stage: OTHER.to_string(),
            succeeded,
            failed,
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::RawMeta;
    use crate::json::Formatter;

    fn add(ix: &mut Index, stage: &str, success: bool) {
        let rec = format!(r#"{{"stage": "{stage}", "success": {success}}}"#);
        let mut fmt = Formatter::new();
        fmt.validate(rec.as_bytes(), 0, 64, true).expect("valid");
        let meta = RawMeta::from_input(rec.as_bytes(), &fmt.fields, 0);
        ix.add(0, rec.as_bytes(), &meta);
    }

    fn get(t: &[StageCount], stage: &str) -> (u64, u64) {
        let s = t.iter().find(|s| s.stage == stage).expect(stage);
        (s.succeeded, s.failed)
    }

    #[test]
    fn counts_since_start_and_never_go_down_when_the_index_is_replaced() {
        let mut live = Index::default();
        add(&mut live, "fetch", true);
        add(&mut live, "fetch", false);
        let mut t = StageTotals::new(&live);
        // The file found at start is not counted, its names are labelled.
        assert_eq!(get(&t.totals(&live), "fetch"), (0, 0));
        add(&mut live, "fetch", false);
        add(&mut live, "notes", true);
        assert_eq!(get(&t.totals(&live), "fetch"), (0, 1));
        // A clear: the new index starts empty; nothing goes down.
        let mut new = Index::default();
        t.replaced(&live, &new);
        assert_eq!(get(&t.totals(&new), "fetch"), (0, 1));
        assert_eq!(get(&t.totals(&new), "notes"), (1, 0));
        add(&mut new, "notes", true);
        assert_eq!(get(&t.totals(&new), "notes"), (2, 0));
        // A take-over: the new index holds records of another writer too
        // (not counted) and ours again (already counted).
        let mut taken = Index::default();
        add(&mut taken, "notes", true);
        add(&mut taken, "foreign", false);
        t.replaced(&new, &taken);
        let now = t.totals(&taken);
        assert_eq!(get(&now, "notes"), (2, 0));
        assert_eq!(get(&now, "foreign"), (0, 0));
        assert_eq!(get(&now, "other"), (0, 0));
    }

    #[test]
    fn only_labelled_names_are_kept_and_the_file_found_at_start_is_not_counted() {
        let mut live = Index::default();
        for i in 0..METRICS_STAGES * 3 {
            add(&mut live, &format!("old{i}"), false);
        }
        let mut t = StageTotals::new(&live);
        assert_eq!(t.labelled.len(), METRICS_STAGES);
        assert_eq!(t.labelled[0].name.as_ref(), "old0");
        add(&mut live, "old0", true);
        add(&mut live, &format!("old{}", METRICS_STAGES * 2), false);
        add(&mut live, "new", false);
        let now = t.totals(&live);
        assert_eq!(get(&now, "old0"), (1, 0));
        assert_eq!(get(&now, "other"), (0, 2));
        assert_eq!(t.labelled.len(), METRICS_STAGES);
    }

    #[test]
    fn names_past_the_cap_share_other_and_labels_stay_put() {
        let mut live = Index::default();
        let mut t = StageTotals::new(&live);
        add(&mut live, "other", false);
        for i in 0..METRICS_STAGES + 5 {
            add(&mut live, &format!("s{i}"), i % 2 == 0);
        }
        let now = t.totals(&live);
        assert_eq!(now.len(), METRICS_STAGES + 1);
        assert_eq!(now[0].stage, "s0");
        assert_eq!(now.last().map(|s| s.stage.as_str()), Some("other"));
        // The stage really named "other" and the five past the cap.
        let past: Vec<usize> = (METRICS_STAGES..METRICS_STAGES + 5).collect();
        let ok = past.iter().filter(|i| *i % 2 == 0).count() as u64;
        assert_eq!(get(&now, "other"), (ok, 1 + 5 - ok));
        // After a clear, new names do not take labels from the old ones.
        let mut new = Index::default();
        t.replaced(&live, &new);
        add(&mut new, "late", true);
        let after = t.totals(&new);
        assert_eq!(after.len(), METRICS_STAGES + 1);
        assert_eq!(after[0].stage, "s0");
        assert_eq!(get(&after, "other"), (ok + 1, 1 + 5 - ok));
    }
}
