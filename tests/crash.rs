//! Promises 1 and 2 (README, Guarantees): SIGKILL at random moments and
//! torn tails never lose an acknowledged record nor leave an invalid file.
//! The harness is `joblogd-torture`; this runs its normal-size version
//! (`--trials 5000` on the command line is the soak).

use std::process::Command;

#[test]
fn fifty_sigkill_trials_lose_no_acknowledged_record() {
    let dir = crate::util::TempDir::new();
    let out = Command::new(env!("CARGO_BIN_EXE_joblogd-torture"))
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
