//! Promises 1 and 2 (README, Guarantees): SIGKILL at random moments and
//! torn tails never lose an acknowledged record nor leave an invalid file.
//! The harness is the `joblogd-torture` example (a development tool, so
//! `cargo install` leaves it out); this runs its normal-size version
//! (`cargo run --release --example joblogd-torture -- --trials 5000` is the
//! soak). `cargo test` builds examples before it runs any test.

use std::process::Command;

#[test]
fn fifty_sigkill_trials_lose_no_acknowledged_record() {
    let dir = crate::util::TempDir::new();
    let harness = std::path::Path::new(crate::util::bin())
        .with_file_name("examples")
        .join("joblogd-torture");
    assert!(
        harness.is_file(),
        "{} is missing: run the whole suite with `cargo test` (it builds the examples), \
         or `cargo build --examples` first",
        harness.display()
    );
    let out = Command::new(&harness)
        .args(["--trials", "50", "--seed", "7"])
        .arg("--daemon")
        .arg(crate::util::bin())
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run joblogd-torture");
    let summary = String::from_utf8_lossy(&out.stdout);
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("trials 50") && summary.contains("losses 0"),
        "{summary}"
    );
    // The harness really acknowledged records and really damaged files.
    let acked: u64 = summary
        .split("acknowledged ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(acked > 1000, "{summary}");
    assert!(!summary.contains("damaged files set aside 0"), "{summary}");
}
