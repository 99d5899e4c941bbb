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
