//! Promises 1 and 2 (README, Guarantees): SIGKILL at random moments and
//! torn tails never lose an acknowledged record nor leave an invalid file.
//! The harness is the `joblogd-torture` example (a development tool, so
//! `cargo install` leaves it out); this runs its normal-size version
//! (`cargo run --release --example joblogd-torture -- --trials 5000` is the
//! soak). `cargo test` builds examples before it runs any test.

use crate::util::{TempDir, run_harness, summary_figure};

#[test]
fn fifty_sigkill_trials_lose_no_acknowledged_record() {
    let dir = TempDir::new();
    let summary = run_harness("joblogd-torture", &dir, &["--trials", "50", "--seed", "7"]);
    assert!(
        summary.contains("trials 50") && summary.contains("losses 0"),
        "{summary}"
    );
    // The harness really acknowledged records and really damaged files.
    assert!(
        summary_figure(&summary, "acknowledged ") > 1000,
        "{summary}"
    );
    assert!(!summary.contains("damaged files set aside 0"), "{summary}");
}
