//! The commit sidecar (`<file>.meta`): after a crash, bytes past the last
//! committed batch are never kept, however well they parse; after a clean
//! stop, or for a file without a sidecar (the Python logger's), the file
//! is taken over as it is. The power-cut simulation (`tests/powercut.rs`)
//! tries hundreds of torn states; these are the rules one at a time.

use std::fs;
use std::io::Write;

use crate::util::{Daemon, TempDir, copied_from, files_containing, read_log};

fn ids(path: &std::path::Path) -> Vec<String> {
    read_log(path)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn log(d: &Daemon, id: &str) {
    let r = d.request(&format!(
        r#"{{"op":"log","job":{{"id":"{id}"}},"ack":true}}"#
    ));
    assert_eq!(r["ok"], true, "{r}");
}

/// Appends a whole, well-formed record past the last one, as a torn batch
/// whose bytes happen to parse would look (the file stays a valid array).
fn append_record(path: &std::path::Path, id: &str) -> usize {
    let mut bytes = fs::read(path).unwrap();
    assert!(bytes.ends_with(b"\n]"));
    let at = bytes.len() - 2;
    bytes.truncate(at);
    bytes.extend_from_slice(format!(",\n  {{\n    \"id\": \"{id}\"\n  }}\n]").as_bytes());
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(&bytes).unwrap();
    at
}

/// After a kill (no clean stop), a batch that parses but was never
/// committed is set aside, not kept: its bytes could be a mix of a batch
/// cut short and stale bytes. The copy holds exactly the bytes cut, and
/// says where they were.
#[test]
fn after_a_crash_an_uncommitted_batch_that_parses_is_set_aside() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    log(&d, "a");
    log(&d, "b");
    let log_id = d.request("ping")["log_id"].clone();
    let path = d.log.clone();
    d.kill9();
    let at = append_record(&path, "never-committed");
    let state = fs::read(&path).unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(ids(&path), ["a", "b"]);
    assert_eq!(d.request("ping")["log_id"], log_id, "the same log");
    let copies = files_containing(dir.path(), "log.json.corrupt-");
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copied_from(&copies[0]), at);
    assert_eq!(fs::read(&copies[0]).unwrap(), &state[at..]);
    assert!(d.logs().contains("never committed"), "{}", d.logs());
    // Records go on after the kept ones.
    log(&d, "c");
    assert_eq!(ids(&path), ["a", "b", "c"]);
}

/// After a clean stop, a file changed while no daemon ran (the Python
/// logger appending a job, an operator's edit) is taken over as it is:
/// every complete record is kept, and the operator is told.
#[test]
fn after_a_clean_stop_a_changed_file_is_taken_over_as_it_is() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    log(&d, "a");
    let path = d.log.clone();
    assert!(d.stop().success());
    append_record(&path, "from-python");
    let d = Daemon::start(&dir, &[]);
    assert_eq!(ids(&path), ["a", "from-python"]);
    assert!(files_containing(dir.path(), "corrupt").is_empty());
    assert!(
        d.logs().contains("changed while no daemon was running"),
        "{}",
        d.logs()
    );
    log(&d, "b");
    assert_eq!(ids(&path), ["a", "from-python", "b"]);
    // And a clean stop with nothing changed says nothing.
    assert!(d.stop().success());
    let d = Daemon::start(&dir, &[]);
    assert!(!d.logs().contains("changed while"), "{}", d.logs());
    assert_eq!(d.request("ping")["records"], 3);
}

/// A log without a sidecar (written by the Python logger) is trusted as it
/// is, and gets one; so does a log whose sidecar belongs to another file
/// (left behind by a rotation).
#[test]
fn a_log_without_its_own_sidecar_is_trusted_and_given_one() {
    let dir = TempDir::new();
    let path = dir.join("log.json");
    fs::write(
        &path,
        "[\n  {\n    \"id\": \"p1\"\n  },\n  {\n    \"id\": \"p2\"\n  }\n]",
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 2);
    let meta = dir.join("log.json.meta");
    assert_eq!(fs::metadata(&meta).unwrap().len(), 1536);
    let first_id = d.request("ping")["log_id"].clone();
    d.kill9();
    // Replaced by another file (a new inode) while the sidecar stayed.
    let other = dir.join("other.json");
    fs::write(&other, "[\n  {\n    \"id\": \"q1\"\n  }\n]").unwrap();
    fs::rename(&other, &path).unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(ids(&path), ["q1"], "taken as it is");
    assert!(files_containing(dir.path(), "corrupt").is_empty());
    assert_ne!(d.request("ping")["log_id"], first_id, "a new log, a new id");
}

/// After a crash, if the last committed batch no longer matches its
/// checksum (the disk lost synced bytes, or the file was edited while no
/// daemon ran), nothing from that batch on is kept by its syntax alone:
/// it is set aside, and the operator is told.
#[test]
fn a_committed_batch_that_no_longer_matches_is_not_kept() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    log(&d, "a");
    log(&d, "bbbb");
    let path = d.log.clone();
    d.kill9();
    let text = fs::read_to_string(&path).unwrap();
    // Same length, other bytes: a record that parses but was not written.
    let changed = text.replace("\"bbbb\"", "\"xxxx\"");
    assert_ne!(changed, text);
    fs::write(&path, &changed).unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(ids(&path), ["a"]);
    assert!(
        d.logs().contains("does not match its checksum"),
        "{}",
        d.logs()
    );
    let copies = files_containing(dir.path(), "log.json.corrupt-");
    assert_eq!(copies.len(), 1, "{copies:?}");
    let from = copied_from(&copies[0]);
    assert_eq!(fs::read(&copies[0]).unwrap(), &changed.as_bytes()[from..]);
}

/// A log deleted and written anew after a crash is a new file, even where
/// the file system gives it the old one's inode number (ext4 and tmpfs
/// reuse them at once): the sidecar also names the file's birth time, so
/// the new file's records are not judged by the old file's commits.
#[test]
fn a_log_made_anew_is_not_judged_by_the_old_ones_commits() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for id in ["a", "b", "c"] {
        log(&d, id);
    }
    let first_id = d.request("ping")["log_id"].clone();
    let path = d.log.clone();
    d.kill9();
    fs::remove_file(&path).unwrap();
    // Longer than the old file, so the old commits cannot match it.
    let records: Vec<String> = (0..20)
        .map(|i| format!("  {{\n    \"id\": \"new{i}\"\n  }}"))
        .collect();
    fs::write(&path, format!("[\n{}\n]", records.join(",\n"))).unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 20, "{}", d.logs());
    assert!(files_containing(dir.path(), "corrupt").is_empty());
    assert_ne!(d.request("ping")["log_id"], first_id);
}

/// A change another process makes just before a clean stop, before the
/// daemon's once-a-second look, is still taken over at the next start:
/// the clean stop records the file as the daemon's own last write left it,
/// not as it found it.
#[test]
fn a_change_just_before_a_clean_stop_is_taken_over_at_the_next_start() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    log(&d, "a");
    let path = d.log.clone();
    append_record(&path, "just-before-the-stop");
    assert!(d.stop().success());
    let d = Daemon::start(&dir, &[]);
    assert_eq!(ids(&path), ["a", "just-before-the-stop"], "{}", d.logs());
    assert!(files_containing(dir.path(), "corrupt").is_empty());
}
