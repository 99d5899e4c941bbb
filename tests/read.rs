//! `read`: durable records by position, for a forwarder.

use serde_json::Value;

use crate::util::{Client, Daemon, TempDir};

fn seqs(reply: &Value) -> Vec<u64> {
    reply["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records: {reply}"))
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect()
}

/// Records come with their position, a page at a time from any position,
/// each as it is in the file; `next_seq` is where to ask from next.
#[test]
fn read_pages_through_the_log_by_position() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for i in 0..10 {
        let r = d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"r{i}","n":{i}}},"ack":true}}"#
        ));
        assert_eq!(r["ok"], true, "{r}");
    }
    let log_id = d.request("ping")["log_id"]
        .as_str()
        .expect("log_id")
        .to_owned();
    let first = d.request(&format!(r#"{{"op":"read","log_id":"{log_id}","limit":4}}"#));
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(seqs(&first), [0, 1, 2, 3]);
    assert_eq!(
        (first["next_seq"].as_u64(), first["durable"].as_u64()),
        (Some(4), Some(10))
    );
    assert_eq!(first["records"][2]["record"]["video_id"], "r2");
    assert!(
        first["records"][2]["record"]["logged_at"].is_string(),
        "{first}"
    );
    let last = d.request(r#"{"op":"read","from_seq":8,"limit":100}"#);
    assert_eq!(seqs(&last), [8, 9]);
    assert_eq!(last["next_seq"], 10);
    let past = d.request(r#"{"op":"read","from_seq":10}"#);
    assert_eq!(seqs(&past), Vec::<u64>::new());
    assert_eq!(past["next_seq"], 10);
    assert_eq!(past["log_id"], log_id.as_str());
    // Past the end: no reply gives such a position; serving it would skip.
    let beyond = d.request(r#"{"op":"read","from_seq":11}"#);
    assert_eq!(beyond["error"]["code"], "invalid_request", "{beyond}");
}

/// Records not yet durable are not served, and nothing is flushed for a
/// reader: they come once they are written.
#[test]
fn read_serves_only_durable_records_and_flushes_nothing() {
    let dir = TempDir::new();
    let d = Daemon::start(
        &dir,
        &[
            "--flush-interval-ms",
            "600000",
            "--batch-max-records",
            "1000000",
        ],
    );
    let mut c = Client::new(d.connect());
    for i in 0..5 {
        c.send(&format!(r#"{{"video_id":"p{i}"}}"#));
    }
    // `ping` on the same connection: every record above is accepted.
    c.send("ping");
    let ping = c.reply();
    assert_eq!(
        (ping["pending"].as_u64(), ping["records"].as_u64()),
        (Some(5), Some(0)),
        "{ping}"
    );
    let r = d.request(r#"{"op":"read"}"#);
    assert_eq!(seqs(&r), Vec::<u64>::new(), "{r}");
    assert_eq!(r["durable"], 0);
    assert_eq!(d.request("ping")["pending"], 5, "read flushed the batch");
    assert_eq!(d.request("flush")["ok"], true);
    assert_eq!(seqs(&d.request(r#"{"op":"read"}"#)), [0, 1, 2, 3, 4]);
}

/// A log that `clear` archived is still read by its `log_id`, from the
/// archive, and names the log that followed it; two clears while a reader
/// is behind chain three logs with nothing skipped. Once the archive is
/// gone, a reader is told `log_changed`, with the live log's id; bad
/// fields are refused.
#[test]
fn read_of_an_archived_log_is_served_from_the_archive_then_log_changed() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let id = |d: &Daemon| {
        d.request("ping")["log_id"]
            .as_str()
            .expect("log_id")
            .to_owned()
    };
    log_acked(&d, "a0");
    log_acked(&d, "a1");
    let first = id(&d);
    let cleared = d.request(r#"{"op":"clear","confirm":true}"#);
    let archive = cleared["archive"].as_str().expect("archive").to_owned();
    log_acked(&d, "b0");
    let second = id(&d);
    assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
    let live = id(&d);
    assert!(first != second && second != live);
    // From the first archive, a page at a time, then on to the next log.
    let r = d.request(&format!(
        r#"{{"op":"read","log_id":"{first}","from_seq":1,"limit":5}}"#
    ));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(seqs(&r), [1]);
    assert_eq!(r["records"][0]["record"]["video_id"], "a1", "{r}");
    assert_eq!(
        (r["durable"].as_u64(), r["next_seq"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(r["archive"], archive.as_str(), "{r}");
    assert_eq!(r["next_log_id"], second.as_str(), "{r}");
    let r = d.request(&format!(r#"{{"op":"read","log_id":"{second}"}}"#));
    assert_eq!(seqs(&r), [0], "{r}");
    assert_eq!(r["records"][0]["record"]["video_id"], "b0", "{r}");
    assert_eq!(r["next_log_id"], live.as_str(), "{r}");
    let past = d.request(&format!(
        r#"{{"op":"read","log_id":"{second}","from_seq":2}}"#
    ));
    assert_eq!(past["error"]["code"], "invalid_request", "{past}");
    // The archive removed: its records are nowhere to be served.
    std::fs::remove_file(&archive).expect("remove the archive");
    let r = d.request(&format!(r#"{{"op":"read","log_id":"{first}"}}"#));
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "log_changed", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap_or("").contains(&live),
        "{r}"
    );
    assert_eq!(r["error"]["log_id"], live.as_str(), "{r}");
    for bad in [
        r#"{"op":"read","from_seq":-1}"#,
        r#"{"op":"read","limit":"many"}"#,
        r#"{"op":"read","limit":100001}"#,
        r#"{"op":"read","log_id":7}"#,
        r#"{"op":"read","seq":1}"#,
    ] {
        let r = d.request(bad);
        assert_eq!(r["error"]["code"], "invalid_request", "{bad}: {r}");
    }
}

/// A log cut underneath the daemon (`copytruncate`) starts its positions
/// again: it gets a new `log_id`, so a reader by position is told
/// `log_changed` instead of skipping the new records.
#[test]
fn a_log_cut_underneath_gets_a_new_log_id() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for i in 0..5 {
        let r = d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"c{i}"}},"ack":true}}"#
        ));
        assert_eq!(r["ok"], true, "{r}");
    }
    let old = d.request("ping")["log_id"]
        .as_str()
        .expect("log_id")
        .to_owned();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&d.log)
        .and_then(|f| f.set_len(0))
        .expect("cut the log");
    let t0 = std::time::Instant::now();
    let ping = loop {
        let p = d.request("ping");
        if p["truncations"] == 1 || t0.elapsed() > std::time::Duration::from_secs(10) {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(ping["truncations"], 1, "{ping}");
    let new = ping["log_id"].as_str().expect("log_id");
    assert_ne!(new, old, "{ping}");
    let r = d.request(&format!(r#"{{"op":"read","log_id":"{old}","from_seq":5}}"#));
    assert_eq!(r["error"]["code"], "log_changed", "{r}");
    assert_eq!(
        d.request(r#"{"op":"log","job":{"video_id":"after"},"ack":true}"#)["ok"],
        true
    );
    let r = d.request(&format!(r#"{{"op":"read","log_id":"{new}"}}"#));
    assert_eq!(seqs(&r), [0], "{r}");
    assert_eq!(r["records"][0]["record"]["video_id"], "after");
    // The new identity outlives a restart.
    let log = d.log.clone();
    assert!(d.stop().success());
    let d = Daemon::start_with(dir.path().join("s2.sock"), log, &dir, &[]);
    assert_eq!(d.request("ping")["log_id"], new);
}

fn log_acked(d: &Daemon, id: &str) {
    let r = d.request(&format!(
        r#"{{"op":"log","job":{{"video_id":"{id}"}},"ack":true}}"#
    ));
    assert_eq!(r["ok"], true, "{r}");
}

/// `subscribe` from a position: the durable records from there, then new
/// ones as they become durable, each once, in order, with its `seq`.
#[test]
fn subscribe_from_a_position_gets_the_backlog_then_new_records_once() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for i in 0..5 {
        log_acked(&d, &format!("b{i}"));
    }
    let mut sub = Client::new(d.connect());
    sub.reply_timeout(std::time::Duration::from_secs(20));
    sub.send(r#"{"op":"subscribe","from_seq":2}"#);
    let ok = sub.reply();
    assert_eq!(
        (ok["ok"].as_bool(), ok["from_seq"].as_u64()),
        (Some(true), Some(2)),
        "{ok}"
    );
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = sub.reply();
        got.push((
            r["seq"].as_u64().expect("seq"),
            r["record"]["video_id"].clone(),
        ));
    }
    assert_eq!(got, [(2, "b2".into()), (3, "b3".into()), (4, "b4".into())]);
    for i in 5..8 {
        log_acked(&d, &format!("b{i}"));
    }
    for i in 5..8u64 {
        let r = sub.reply();
        assert_eq!(r["seq"], i, "{r}");
        assert_eq!(r["record"]["video_id"], format!("b{i}"));
    }
    // A plain subscriber's lines carry the position too.
    let mut plain = Client::new(d.connect());
    plain.send("subscribe");
    assert_eq!(plain.reply()["subscribed"], true);
    log_acked(&d, "b8");
    assert_eq!(plain.reply()["seq"], 8);
    assert_eq!(sub.reply()["seq"], 8);
}

/// A record the daemon took before a subscriber joined, but not yet
/// durable when the subscriber's backlog was read, still reaches it (it
/// was once in neither the backlog nor the feed: `joblogctl tail -f`
/// waited forever for a record logged just as it subscribed).
#[test]
fn subscribe_from_a_position_gets_a_record_taken_before_it_joined() {
    let dir = TempDir::new();
    let d = Daemon::start(
        &dir,
        &[
            "--flush-interval-ms",
            "2000",
            "--batch-max-records",
            "1000000",
        ],
    );
    let mut c = Client::new(d.connect());
    c.send(r#"{"video_id":"early"}"#);
    c.send("ping");
    let ping = c.reply();
    assert_eq!(
        (ping["pending"].as_u64(), ping["records"].as_u64()),
        (Some(1), Some(0)),
        "{ping}"
    );
    let mut sub = Client::new(d.connect());
    sub.reply_timeout(std::time::Duration::from_secs(20));
    sub.send(r#"{"op":"subscribe","from_seq":0}"#);
    assert_eq!(sub.reply()["subscribed"], true);
    let r = sub.reply();
    assert_eq!(
        (&r["seq"], &r["record"]["video_id"]),
        (&serde_json::json!(0), &serde_json::json!("early")),
        "{r}"
    );
}

/// A subscriber following a log that is cleared is told `log_changed`,
/// as is one that names a log no longer live; bad combinations are
/// refused.
#[test]
fn subscribe_from_a_position_ends_with_log_changed_when_the_log_is_replaced() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    log_acked(&d, "x0");
    let old = d.request("ping")["log_id"]
        .as_str()
        .expect("log_id")
        .to_owned();
    let mut sub = Client::new(d.connect());
    sub.reply_timeout(std::time::Duration::from_secs(20));
    sub.send(&format!(
        r#"{{"op":"subscribe","from_seq":0,"log_id":"{old}"}}"#
    ));
    assert_eq!(sub.reply()["subscribed"], true);
    assert_eq!(sub.reply()["seq"], 0);
    log_acked(&d, "x1");
    assert_eq!(sub.reply()["seq"], 1);
    assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
    log_acked(&d, "y0");
    let r = sub.reply();
    assert_eq!(r["error"]["code"], "log_changed", "{r}");
    let stale = d.request(&format!(
        r#"{{"op":"subscribe","from_seq":0,"log_id":"{old}"}}"#
    ));
    assert_eq!(stale["error"]["code"], "log_changed", "{stale}");
    let beyond = d.request(r#"{"op":"subscribe","from_seq":5}"#);
    assert_eq!(beyond["error"]["code"], "invalid_request", "{beyond}");
    for bad in [
        r#"{"op":"subscribe","from_seq":0,"include_pending":true}"#,
        r#"{"op":"subscribe","log_id":"abc"}"#,
        r#"{"op":"subscribe","from_seq":-1}"#,
    ] {
        let r = d.request(bad);
        assert_eq!(r["error"]["code"], "invalid_request", "{bad}: {r}");
    }
}

/// A log rotated away (renamed, then SIGHUP) takes its sidecar along: the
/// rotated file keeps its `log_id`, and the new file at the path gets its
/// own.
#[test]
fn a_rotated_log_keeps_its_log_id_beside_it() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    log_acked(&d, "before");
    let old = d.request("ping")["log_id"]
        .as_str()
        .expect("log_id")
        .to_owned();
    let rotated = d.log.with_extension("json.1");
    std::fs::rename(&d.log, &rotated).expect("rotate");
    d.signal(libc::SIGHUP);
    let t0 = std::time::Instant::now();
    let ping = loop {
        let p = d.request("ping");
        if p["log_file_at_path"] == true || t0.elapsed() > std::time::Duration::from_secs(10) {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(ping["log_file_at_path"], true, "{ping}");
    let new = ping["log_id"].as_str().expect("log_id").to_owned();
    assert_ne!(new, old);
    // The sidecar's header holds the log_id at bytes 16..32.
    let id_of = |meta: &std::path::Path| -> String {
        let b = std::fs::read(meta).unwrap_or_else(|e| panic!("{}: {e}", meta.display()));
        b[16..32].iter().map(|x| format!("{x:02x}")).collect()
    };
    assert_eq!(id_of(&rotated.with_extension("1.meta")), old);
    assert_eq!(id_of(&d.log.with_extension("json.meta")), new);
    // A reader behind finishes the rotated file, then goes on with the new.
    let r = d.request(&format!(r#"{{"op":"read","log_id":"{old}"}}"#));
    assert_eq!(seqs(&r), [0], "{r}");
    assert_eq!(r["records"][0]["record"]["video_id"], "before", "{r}");
    assert_eq!(r["archive"], rotated.display().to_string(), "{r}");
    assert_eq!(r["next_log_id"], new.as_str(), "{r}");
}

/// `logs` lists what can be read by position: the archives beside the
/// live log in the order they were made (through the chain their
/// sidecars record), then the live log.
#[test]
fn logs_lists_the_archives_oldest_first_then_the_live_log() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let id = |d: &Daemon| {
        d.request("ping")["log_id"]
            .as_str()
            .expect("log_id")
            .to_owned()
    };
    let mut ids = Vec::new();
    for (i, step) in ["clear", "rotate", "clear"].iter().enumerate() {
        for k in 0..=i {
            log_acked(&d, &format!("{step}-{k}"));
        }
        ids.push(id(&d));
        if *step == "clear" {
            assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
        } else {
            std::fs::rename(&d.log, d.log.with_extension("json.1")).expect("rotate");
            d.signal(libc::SIGHUP);
            crate::util::wait_until("the log is reopened", || {
                d.request("ping")["log_file_at_path"] == true
            });
        }
    }
    log_acked(&d, "live");
    ids.push(id(&d));
    // Another daemon's live log in the same directory is no archive of
    // ours, even named like one (it is locked while that daemon runs).
    let other = Daemon::start_with(dir.join("s2.sock"), dir.join("log.other.json"), &dir, &[]);
    log_acked(&other, "theirs");
    let r = d.request("logs");
    assert_eq!(r["ok"], true, "{r}");
    let logs = r["logs"].as_array().expect("logs");
    let got: Vec<&str> = logs
        .iter()
        .map(|l| l["log_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        got,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "{r}"
    );
    let records: Vec<u64> = logs
        .iter()
        .map(|l| l["records"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(records, [1, 2, 3, 1], "{r}");
    assert_eq!(logs[0]["next_log_id"], ids[1].as_str(), "{r}");
    assert_eq!(logs[3]["live"], true, "{r}");
    assert!(
        logs[1]["archive"]
            .as_str()
            .unwrap_or("")
            .ends_with(".json.1"),
        "{r}"
    );
}

/// An archive is served while an answer read from it is still being
/// streamed to a client that does not read (that answer holds a copy of
/// the file's descriptor, and with it, once, the file's lock).
#[test]
fn an_archive_is_served_while_an_answer_from_it_is_still_streaming() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let pad = "x".repeat(1000);
    let jobs: Vec<String> = (0..3000)
        .map(|i| format!(r#"{{"video_id":"s{i}","pad":"{pad}"}}"#))
        .collect();
    let r = d.request(&format!(
        r#"{{"op":"log_batch","jobs":[{}],"ack":true}}"#,
        jobs.join(",")
    ));
    assert_eq!(r["logged"], 3000, "{r}");
    let old = d.request("ping")["log_id"]
        .as_str()
        .expect("log_id")
        .to_owned();
    // Asks for every record (about 3 MB) and reads none of it.
    let mut stuck = Client::new(d.connect());
    stuck.send(r#"{"op":"all"}"#);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
    let r = d.request(&format!(
        r#"{{"op":"read","log_id":"{old}","from_seq":2990}}"#
    ));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(seqs(&r).len(), 10, "{r}");
    let logs = d.request("logs");
    assert_eq!(logs["logs"][0]["log_id"], old.as_str(), "{logs}");
    drop(stuck);
}
