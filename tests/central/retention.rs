//! Retention beside the forwarder: an archive `joblogctl forward` has not
//! shipped is never removed, and once shipped it goes.

use super::pg::Postgres;
use super::{assert_positions_exact, forward, init, jobs, log_batch};
use crate::util::{Daemon, TempDir};

fn archives(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.log.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log.") && n.ends_with(".json") && n != "log.json")
        .collect();
    names.sort();
    names
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_archive_the_forwarder_has_not_shipped_is_never_removed() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--keep-archives", "0"]);
    init(&d, &pg);
    log_batch(&d, &jobs("k", 0, 30));
    // The first batch of 10 committed, then the forwarder dies.
    let out = forward(
        &d,
        &pg,
        &[
            "--host-id",
            "k",
            "--batch",
            "10",
            "--once",
            "--fault-abort-before-commit",
            "2",
        ],
    );
    assert!(!out.status.success(), "the fault seam aborts");
    let r = d.request(r#"{"op":"consumer"}"#);
    assert_eq!(r["consumers"]["forward:k"]["next_seq"], 10, "{r}");
    // Cleared with 20 records not shipped: the archive stays, whatever
    // --keep-archives says.
    let clear = || {
        let r = d.request(r#"{"op":"clear","confirm":true}"#);
        assert_eq!(r["ok"], true, "{r}");
    };
    clear();
    assert_eq!(archives(&d).len(), 1);
    // Shipped: the forwarder is on the live log now, caught up.
    ok(&forward(
        &d,
        &pg,
        &["--host-id", "k", "--batch", "10", "--once"],
    ));
    assert_eq!(assert_positions_exact(&pg, "k"), 30);
    // Two clears with records between, while the forwarder waits: the log
    // it is in and the one after both stay (it reads the first once more
    // to learn of the second); the one it had finished goes.
    log_batch(&d, &jobs("k", 30, 5));
    clear();
    log_batch(&d, &jobs("k", 35, 5));
    clear();
    assert_eq!(archives(&d).len(), 2, "{}", d.logs());
    ok(&forward(
        &d,
        &pg,
        &["--host-id", "k", "--batch", "10", "--once"],
    ));
    assert_eq!(assert_positions_exact(&pg, "k"), 40, "none skipped");
    clear();
    // Only the log the forwarder is in now (just archived) is left.
    assert_eq!(archives(&d).len(), 1, "{}", d.logs());
}
