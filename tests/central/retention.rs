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
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(archives(&d).len(), 1);
    // Shipped: the next clear removes it (and the empty log after it).
    ok(&forward(
        &d,
        &pg,
        &["--host-id", "k", "--batch", "10", "--once"],
    ));
    assert_eq!(assert_positions_exact(&pg, "k"), 30);
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(archives(&d), Vec::<String>::new(), "{}", d.logs());
}
