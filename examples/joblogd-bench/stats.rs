//! Summaries of samples: [`Spread`] (median, min and max over a section's
//! repetitions) and [`Latency`] (n, nearest-rank p50 and p99, max, mean),
//! used by the measurements and by the report.

use serde_json::{Value, json};

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spread {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

pub(crate) fn spread(samples: &[f64]) -> Spread {
    if samples.is_empty() {
        return Spread::default();
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency summary in the samples' unit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Latency {
    pub(crate) n: usize,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

pub(crate) fn latency(samples: &[f64]) -> Latency {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    Latency {
        n: v.len(),
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        max: v.last().copied().unwrap_or(0.0),
        mean: if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        },
    }
}

impl Latency {
    pub(crate) fn to_json(self) -> Value {
        json!({"n": self.n, "p50": self.p50, "p99": self.p99, "max": self.max, "mean": self.mean})
    }
}
