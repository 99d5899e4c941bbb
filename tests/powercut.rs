//! Promise 3 (README, Guarantees): 600 post-crash states
//! of real batches (written prefixes, zero and stale tails, 512 B and
//! 4 KiB sectors old or new, commits lost, torn or early), each recovered
//! by the real daemon: a valid array holding every committed record once
//! and nothing else, the bytes cut kept aside. The harness is the
//! `joblogd-powercut` example (`--states 20000` is the long run).

use std::process::Command;

#[test]
fn six_hundred_power_cut_states_keep_exactly_the_committed_records() {
    let dir = crate::util::TempDir::new();
    let harness = std::path::Path::new(crate::util::bin())
        .with_file_name("examples")
        .join("joblogd-powercut");
    assert!(
        harness.is_file(),
        "{} is missing: run the whole suite with `cargo test` (it builds the examples), \
         or `cargo build --examples` first",
        harness.display()
    );
    let out = Command::new(&harness)
        .args(["--states", "600", "--seed", "11"])
        .arg("--daemon")
        .arg(crate::util::bin())
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run joblogd-powercut");
    let summary = String::from_utf8_lossy(&out.stdout);
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("states 600 ") && summary.contains("failures 0,"),
        "{summary}"
    );
    // The states bite: in some, keeping every complete record would have
    // kept one never written whole.
    let bite: u64 = summary
        .split("never written whole ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(bite >= 20, "{summary}");
}
