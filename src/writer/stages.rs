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
//! labels the same stages again.

use std::collections::HashMap;

use crate::config::tuning::METRICS_STAGES;
use crate::index::Index;
use crate::metrics::StageCount;

/// The label that stage names past the first [`METRICS_STAGES`] share.
const OTHER: &str = "other";

/// Successes and failures.
type Pair = [u64; 2];

/// See the module doc.
#[derive(Debug, Default)]
pub(super) struct StageTotals {
    /// Per stage name, what the logs replaced since start gained while
    /// they were live.
    carried: HashMap<Box<str>, Pair>,
    /// The live index's tallies when it became live.
    base: HashMap<Box<str>, Pair>,
    /// Names with a label of their own, in the order they got it.
    labelled: Vec<Box<str>>,
}

/// `index`'s successes and failures per stage name, in the order the
/// names were first seen.
fn tallies(index: &Index) -> Vec<(&str, Pair)> {
    let all = &index.all;
    all.stages
        .iter()
        .map(|(sym, total)| {
            let failed = all.stage_failures.get(&sym).copied().unwrap_or(0);
            (index.syms.name(sym), [total.saturating_sub(failed), failed])
        })
        .collect()
}

/// Gives `names` a label of their own while there is room, in order
/// (`labelled` holds those that have one).
fn label<'a>(labelled: &mut Vec<Box<str>>, names: impl Iterator<Item = &'a str>) {
    for name in names {
        if labelled.len() >= METRICS_STAGES {
            return;
        }
        if name != OTHER && !labelled.iter().any(|l| **l == *name) {
            labelled.push(Box::from(name));
        }
    }
}

fn owned(t: Vec<(&str, Pair)>) -> HashMap<Box<str>, Pair> {
    t.into_iter().map(|(n, p)| (Box::from(n), p)).collect()
}

impl StageTotals {
    /// Counting from `live`, the index the daemon starts with.
    pub(super) fn new(live: &Index) -> StageTotals {
        let mut s = StageTotals {
            base: owned(tallies(live)),
            ..StageTotals::default()
        };
        label(&mut s.labelled, tallies(live).iter().map(|(n, _)| *n));
        s
    }

    /// `old` is replaced by `new` as the live index: what `old` gained
    /// since it became live is carried, and `new` is counted from here.
    pub(super) fn replaced(&mut self, old: &Index, new: &Index) {
        for (name, [ok, failed]) in tallies(old) {
            let [b_ok, b_failed] = self.base.get(name).copied().unwrap_or_default();
            let c = self.carried.entry(Box::from(name)).or_default();
            c[0] += ok.saturating_sub(b_ok);
            c[1] += failed.saturating_sub(b_failed);
        }
        self.base = owned(tallies(new));
    }

    /// The counters now, with `live` the live index: one per labelled
    /// name, in the order they got their label, then `other`.
    pub(super) fn totals(&mut self, live: &Index) -> Vec<StageCount> {
        let mut since: HashMap<&str, Pair> = HashMap::new();
        let live_tallies = tallies(live);
        for (name, [ok, failed]) in &live_tallies {
            let [b_ok, b_failed] = self.base.get(*name).copied().unwrap_or_default();
            let e = since.entry(name).or_default();
            e[0] += ok.saturating_sub(b_ok);
            e[1] += failed.saturating_sub(b_failed);
        }
        for (name, [ok, failed]) in &self.carried {
            let e = since.entry(name).or_default();
            e[0] += ok;
            e[1] += failed;
        }
        // Names only the replaced logs had: sorted, so the labels they get
        // do not depend on a map's order.
        let mut gone: Vec<&str> = self
            .carried
            .keys()
            .map(|k| &**k)
            .filter(|k| !live_tallies.iter().any(|(n, _)| n == k))
            .collect();
        gone.sort_unstable();
        label(
            &mut self.labelled,
            live_tallies.iter().map(|(n, _)| *n).chain(gone),
        );
        let mut out: Vec<StageCount> = self
            .labelled
            .iter()
            .map(|name| {
                let [ok, failed] = since.remove(&**name).unwrap_or_default();
                StageCount {
                    stage: name.to_string(),
                    succeeded: ok,
                    failed,
                }
            })
            .collect();
        let rest = since
            .values()
            .fold([0, 0], |acc, p| [acc[0] + p[0], acc[1] + p[1]]);
        out.push(StageCount {
            stage: OTHER.to_string(),
            succeeded: rest[0],
            failed: rest[1],
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
