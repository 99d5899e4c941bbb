//! Retention: the live log rotated at a size while writers log (every
//! record in exactly one file), archives removed by count, bytes and age,
//! and an archive a consumer has not drained kept.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::util::{Client, Daemon, TempDir, is_valid_array, read_log};

/// The archives beside `log` (`log.<stamp>[-n].json`), oldest first.
fn archives(log: &Path) -> Vec<PathBuf> {
    let dir = log.parent().unwrap();
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("log.") && name.ends_with(".json") && name != "log.json"
        })
        .collect();
    found.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    found
}

fn log_some(d: &Daemon, tag: &str, n: usize) {
    let jobs: Vec<Value> = (0..n).map(|i| json!({"tag": tag, "i": i})).collect();
    let r = d.request(&json!({"op":"log_batch","jobs":jobs,"ack":true}).to_string());
    assert_eq!(r["ok"], true, "{r}");
}

fn clear(d: &Daemon) -> PathBuf {
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    PathBuf::from(r["archive"].as_str().unwrap())
}

#[test]
fn rotation_at_a_size_while_writers_log_keeps_every_record_once() {
    let dir = TempDir::new();
    let d = Daemon::start(
        &dir,
        &[
            "--rotate-at-bytes",
            "64K",
            "--batch-max-bytes",
            "65536",
            "--max-pending-bytes",
            "262144",
        ],
    );
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = Client::new(d.connect());
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for i in 0..4_000 {
                    writeln!(buf, r#"{{"w":{w},"i":{i},"pad":"{}"}}"#, "x".repeat(60)).unwrap();
                }
                c.send_bytes(&buf);
                c.send("flush");
                assert_eq!(c.reply()["ok"], true);
            })
        })
        .collect();
    for t in writers {
        t.join().unwrap();
    }
    // A rotation the last flush set off is done before the writer answers
    // the next request.
    assert_eq!(d.request("ping")["ok"], true);
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    let files = archives(&d.log);
    assert!(files.len() >= 4, "rotated again and again: {files:?}");
    for f in files.iter().chain([&d.log]) {
        assert!(is_valid_array(f), "{}", f.display());
        // Each file stopped within a batch of the limit (a batch holds at
        // most --max-pending-bytes).
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len < (64 + 512) * 1024, "{}: {len}", f.display());
        for r in read_log(f) {
            *seen
                .entry((r["w"].as_u64().unwrap(), r["i"].as_u64().unwrap()))
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 32_000, "every record is somewhere");
    assert!(seen.values().all(|&n| n == 1), "and in one file only");
    assert!(d.logs().contains("Log rotated"), "{}", d.logs());
}

#[test]
fn archives_are_removed_by_count_bytes_and_age_oldest_first() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--keep-archives", "2"]);
    let mut made = Vec::new();
    for k in 0..4 {
        log_some(&d, &format!("c{k}"), 10);
        made.push(clear(&d));
    }
    // (An archive kept is not said to be removed.)
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["removed"], serde_json::Value::Null, "{r}");
    made.push(PathBuf::from(r["archive"].as_str().unwrap()));
    let made = made[1..].to_vec();
    assert_eq!(archives(&d.log), made[2..], "the newest two kept");
    let sidecars = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .ends_with(".json.meta")
        })
        .count();
    assert_eq!(sidecars, 3, "the removed archives' sidecars went with them");
    assert!(d.logs().contains("Archive removed"), "{}", d.logs());
    drop(d);

    // By bytes: three archives of about 1 KiB, 2.5 KiB allowed.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--keep-archives-bytes", "2500"]);
    let mut made = Vec::new();
    for k in 0..3 {
        log_some(&d, &format!("b{k}"), 20);
        made.push(clear(&d));
    }
    let kept = archives(&d.log);
    let total: u64 = kept
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 2500 && !kept.is_empty(), "{kept:?}: {total}");
    assert_eq!(kept, made[made.len() - kept.len()..], "the oldest went");
    drop(d);

    // By age: an archive last written 10 days ago goes at the next clear.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--keep-archives-days", "7"]);
    log_some(&d, "old", 5);
    let old = clear(&d);
    // Its age counts from when it was archived: its sidecar's time too.
    let ten_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(10 * 86_400);
    for f in [
        old.clone(),
        PathBuf::from(format!("{}.meta", old.display())),
    ] {
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(ten_days_ago)
            .unwrap();
    }
    log_some(&d, "new", 5);
    let new = clear(&d);
    assert_eq!(archives(&d.log), [new], "only the old one went");
}

#[test]
fn an_archive_a_consumer_has_not_drained_is_kept() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--keep-archives", "0"]);
    log_some(&d, "a", 10);
    let a_id = d.request("ping")["log_id"].clone();
    let r = d.request(
        &json!({"op":"consumer","name":"forward:h","log_id":a_id,"next_seq":4}).to_string(),
    );
    assert_eq!(
        r["consumers"]["forward:h"],
        json!({"log_id": a_id, "next_seq": 4}),
        "{r}"
    );
    let a = clear(&d);
    assert_eq!(
        archives(&d.log),
        std::slice::from_ref(&a),
        "read up to 4 of 10: kept"
    );
    assert!(
        d.logs().contains("a consumer has not read it all yet"),
        "{}",
        d.logs()
    );

    // A restart does not forget the consumer.
    let socket = d.socket.clone();
    let log = d.log.clone();
    assert!(d.stop().success());
    let d = Daemon::start_with(socket, log, &dir, &["--keep-archives", "0"]);
    assert_eq!(
        d.request(r#"{"op":"consumer"}"#)["consumers"]["forward:h"]["next_seq"],
        4
    );
    // At the end of A, it is still in A (it reads A once more to learn
    // which log follows): A is kept.
    d.request(&json!({"op":"consumer","name":"forward:h","log_id":a_id,"next_seq":10}).to_string());
    log_some(&d, "b", 3);
    let b_id = d.request("ping")["log_id"].clone();
    let b = clear(&d);
    assert_eq!(archives(&d.log), [a.clone(), b.clone()]);
    // On to B: A goes at the next clear; B, where the consumer is, stays.
    d.request(&json!({"op":"consumer","name":"forward:h","log_id":b_id,"next_seq":3}).to_string());
    log_some(&d, "c", 1);
    let c = clear(&d);
    assert_eq!(archives(&d.log), [b.clone(), c.clone()]);
    // Once it is on the live log, nothing before it is kept.
    let live = d.request("ping")["log_id"].clone();
    let r = d.request(
        &json!({"op":"consumer","name":"forward:h","log_id":live,"next_seq":0}).to_string(),
    );
    assert_eq!(r["ok"], true, "{r}");
    log_some(&d, "d", 1);
    clear(&d);
    // (The archive just made holds the consumer.)
    assert_eq!(archives(&d.log).len(), 1, "{:?}", archives(&d.log));
    assert!(!b.exists() && !c.exists());
    // A log the daemon cannot place is refused (it would keep everything).
    let r = d.request(r#"{"op":"consumer","name":"forward:h","log_id":"0123abcd","next_seq":0}"#);
    assert_eq!(r["error"]["code"], "invalid_request", "{r}");
    // Removed, nothing is kept for it any more.
    let r = d.request(r#"{"op":"consumer","name":"forward:h","remove":true}"#);
    assert_eq!(r["consumers"], json!({}), "{r}");
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(
        r["removed"], true,
        "the reply says its archive is gone: {r}"
    );
    assert_eq!(archives(&d.log).len(), 0);
    for (q, needle) in [
        (
            r#"{"op":"consumer","log_id":"x","next_seq":1}"#,
            "missing field `name`",
        ),
        (
            r#"{"op":"consumer","name":"n","log_id":"x"}"#,
            "both `log_id` and `next_seq`",
        ),
        (
            r#"{"op":"consumer","name":"n","remove":true,"next_seq":1}"#,
            "`remove` goes without",
        ),
    ] {
        let r = d.request(q);
        assert_eq!(r["error"]["code"], "invalid_request", "{q}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(needle),
            "{q}: {r}"
        );
    }
}

/// An archive is queried without a daemon: `joblogctl --file`, read-only,
/// with the daemon's own answers.
#[test]
fn an_archive_is_queried_with_joblogctl_file() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let jobs: Vec<Value> = (0..12)
        .map(|i| json!({"video_id": format!("v{i}"), "success": i % 3 != 0, "stage": "s", "error": "E: x", "subject": "AI"}))
        .collect();
    let r = d.request(&json!({"op":"log_batch","jobs":jobs,"ack":true}).to_string());
    assert_eq!(r["ok"], true, "{r}");
    let ctl = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_joblogctl"))
            .env("JOBLOGD_SOCKET", &d.socket)
            .args(args)
            .output()
            .unwrap()
    };
    let live = ctl(&["stats", "--json"]);
    let archive = clear(&d);
    let before = std::fs::read(&archive).unwrap();
    let from_file = ctl(&["--file", archive.to_str().unwrap(), "stats", "--json"]);
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&from_file.stdout),
        String::from_utf8_lossy(&live.stdout)
    );
    let failed = ctl(&[
        "--file",
        archive.to_str().unwrap(),
        "jobs",
        "--failed",
        "--fields",
        "video_id",
    ]);
    let ids: Vec<String> = String::from_utf8_lossy(&failed.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["video_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["v0", "v3", "v6", "v9"]);
    assert_eq!(std::fs::read(&archive).unwrap(), before, "read-only");
    // Commands that talk to the daemon refuse it; a file that is no log is named.
    assert_eq!(
        ctl(&["--file", archive.to_str().unwrap(), "tail"])
            .status
            .code(),
        Some(2)
    );
    let bad = dir.join("not-a-log.json");
    std::fs::write(&bad, "{").unwrap();
    let o = ctl(&["--file", bad.to_str().unwrap(), "stats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a JSON array"));
}

/// Rotations, removals and archives held for a consumer are in the
/// metrics.
#[test]
fn retention_is_counted_in_the_metrics() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--keep-archives", "0", "--rotate-at-records", "5"]);
    let sample = |name: &str| -> f64 {
        let mut c = Client::new(d.connect());
        c.send("metrics");
        let n = c.reply()["bytes"].as_u64().unwrap() as usize;
        let text = String::from_utf8(c.bytes(n)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    log_some(&d, "a", 6); // rotated, and the archive removed at once
    assert_eq!(sample("joblogd_rotations_total"), 1.0);
    assert_eq!(sample("joblogd_archives_removed_total"), 1.0);
    let live = d.request("ping")["log_id"].clone();
    let r = d.request(&json!({"op":"consumer","name":"f","log_id":live,"next_seq":0}).to_string());
    assert_eq!(r["ok"], true, "{r}");
    log_some(&d, "b", 6); // rotated; the consumer has not read it: held
    assert_eq!(sample("joblogd_rotations_total"), 2.0);
    assert_eq!(sample("joblogd_archives_removed_total"), 1.0);
    assert_eq!(sample("joblogd_archives_held_for_consumers"), 1.0);
    assert_eq!(archives(&d.log).len(), 1);
}
