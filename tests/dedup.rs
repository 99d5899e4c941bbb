//! `record_id`: a record the log already holds, sent again after a lost
//! acknowledgement, is answered as a duplicate and not written twice.

use serde_json::Value;

use crate::util::{Client, Daemon, TempDir, read_log};

fn ids_in(log: &std::path::Path) -> Vec<String> {
    read_log(log)
        .iter()
        .map(|r| r["record_id"].as_str().unwrap_or("-").to_owned())
        .collect()
}

fn log(d: &Daemon, id: &str) -> Value {
    d.request(&format!(
        r#"{{"op":"log","job":{{"video_id":"v","record_id":"{id}"}},"ack":true}}"#
    ))
}

/// Sent again by `log`, by `log_batch` (also twice in one batch) or as a
/// plain line, a record whose id the log holds is counted, not written;
/// across a restart and a `clear` too. A request refused as a whole notes
/// no id, so sending it again logs it.
#[test]
fn a_record_sent_again_with_its_record_id_is_written_once() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let r = log(&d, "r1");
    assert_eq!(
        (r["logged"].as_u64(), r.get("duplicates")),
        (Some(1), None),
        "{r}"
    );
    let r = log(&d, "r1");
    assert_eq!(
        (r["logged"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    let r = d.request(
        r#"{"op":"log_batch","jobs":[{"record_id":"r1"},{"record_id":"r2"},{"record_id":"r2"},{"n":1}],"ack":true}"#,
    );
    assert_eq!(
        (r["logged"].as_u64(), r["duplicates"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    let mut c = Client::new(d.connect());
    c.send(r#"{"record_id":"r2","plain":true}"#);
    c.send(r#"{"record_id":"r3","plain":true}"#);
    c.send("flush");
    assert_eq!(c.reply()["ok"], true);
    let ping = d.request("ping");
    assert_eq!(ping["duplicates"], 4, "{ping}");
    assert_eq!(ping["record_ids"], 3, "{ping}");
    assert!(ping["record_ids_bytes"].as_u64().unwrap_or(0) > 0, "{ping}");
    assert_eq!(ids_in(&d.log), ["r1", "r2", "-", "r3"]);
    // Refused as a whole (a job that is not an object): no id noted.
    let r = d.request(r#"{"op":"log_batch","jobs":[{"record_id":"r4"},7],"ack":true}"#);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(log(&d, "r4")["logged"], 1);
    // A restart finds the ids in the file.
    assert!(d.stop().success());
    let d = Daemon::start(&dir, &[]);
    assert_eq!(log(&d, "r3")["duplicates"], 1);
    // A clear keeps them: the records are in the archive.
    assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
    assert_eq!(log(&d, "r1")["duplicates"], 1);
    assert_eq!(log(&d, "r5")["logged"], 1);
    assert_eq!(ids_in(&d.log), ["r5"]);
}

/// A copy of a record whose original another connection still holds
/// (taken, not yet handed to the writer: that connection waits for the
/// byte budget while the disk refuses writes) is acknowledged only once
/// the original is on disk: never before.
#[test]
fn a_copy_is_acknowledged_only_once_its_original_is_on_disk() {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    std::fs::write(&fault, "enospc").unwrap();
    let d = Daemon::start(
        &dir,
        &[
            "--fault-file",
            fault.to_str().unwrap(),
            "--max-pending-bytes",
            "65536",
            "--batch-max-bytes",
            "65536",
        ],
    );
    // Fill the budget with records the failing disk cannot take.
    let mut filler = Client::new(d.connect());
    let pad = "x".repeat(1000);
    let mut buf = Vec::new();
    for i in 0..200 {
        buf.extend_from_slice(format!("{{\"f\":{i},\"pad\":\"{pad}\"}}\n").as_bytes());
    }
    filler.send_bytes(&buf);
    crate::util::wait_until("the budget to fill", || {
        d.request("ping")["pending"].as_u64().unwrap_or(0) > 0
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A takes the original and waits for budget; B sends the copy.
    let batch = |tag: &str| {
        format!(
            r#"{{"op":"log_batch","jobs":[{{"who":"{tag}","record_id":"orig-1","pad":"{pad}"}}],"ack":true}}"#
        )
    };
    let mut a = Client::new(d.connect());
    a.reply_timeout(std::time::Duration::from_secs(60));
    a.send(&batch("a"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut b = Client::new(d.connect());
    b.reply_timeout(std::time::Duration::from_secs(60));
    b.send(&batch("b"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::remove_file(&fault).unwrap();
    let rb = b.reply();
    assert_eq!(rb["duplicates"], 1, "{rb}");
    // B was told: the original is on disk, even if the daemon dies now.
    let log = d.log.clone();
    d.kill9();
    assert_eq!(
        ids_in(&log).iter().filter(|i| *i == "orig-1").count(),
        1,
        "the copy was acknowledged before its original was on disk"
    );
}
