//! Migrating from the in-process logger: during a rollout one old Python
//! `JobLogger` (the guide's algorithm: load the whole file, append, write
//! it all again in place) still writes the file joblogd appends to.

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Client, Daemon, TempDir, read_log};

/// The old logger, as the guide describes it. One liberty: a file it
/// cannot parse is read again rather than replaced by `[]` (what the
/// original did, which would throw its own earlier records away too, so
/// that no daemon could keep them); joblogd's file is only ever torn while
/// a flush is being written.
const OLD_LOGGER: &str = r#"
import datetime, json, sys, time
path, n = sys.argv[1], int(sys.argv[2])
for k in range(n):
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                logs = json.load(f)
            break
        except json.JSONDecodeError:
            time.sleep(0.005)
    logs.append({
        "video_id": f"old-{k}",
        "worker_id": "old-logger",
        "success": k % 3 != 0,
        "stage": "completed",
        "logged_at": datetime.datetime.now().isoformat(),
    })
    with open(path, "w", encoding="utf-8") as f:
        json.dump(logs, f, indent=2, ensure_ascii=False)
    time.sleep(0.25)
"#;

/// How many records the old logger writes (one every 0.25 s).
const OLD: usize = 16;

#[test]
fn an_old_logger_beside_joblogd_keeps_its_records_and_what_it_destroys_is_counted() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let done = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&d, &done);
    let old = Command::new("python3")
        .arg("-c")
        .arg(OLD_LOGGER)
        .arg(&d.log)
        .arg(OLD.to_string())
        .output()
        .expect("python3 is required by the test suite");
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, Ordering::Relaxed);
    let sent: Vec<String> = writers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        old.status.success(),
        "{}",
        String::from_utf8_lossy(&old.stderr)
    );
    assert_eq!(d.request("flush")["ok"], true);
    let ping = d.request("ping");

    let records = read_log(&d.log);
    let count = count_by_video_id(&records);
    old_records_each_kept_once(&d, &count, &ping);
    let missing = own_records_once_or_counted_lost(&d, &sent, &count, &ping);
    assert_eq!(
        ping["records"].as_u64(),
        Some(records.len() as u64),
        "index = file"
    );
    // Queries follow the file as it now is.
    let stats = d.request("stats");
    assert_eq!(stats["stats"]["total_jobs"], records.len(), "{stats}");
    eprintln!(
        "old logger: {OLD} records kept; joblogd: {} sent, {} destroyed by the old logger's rewrites, {} foreign writes",
        sent.len(),
        missing.len(),
        ping["foreign_writes"]
    );
}

/// joblogd's own writers: two connections sending acknowledged records
/// until `done`, each named by its worker_id so the daemon's warning can
/// be checked. Each thread returns the ids it sent.
fn start_writers(d: &Daemon, done: &Arc<AtomicBool>) -> Vec<JoinHandle<Vec<String>>> {
    (0..2)
        .map(|w| {
            let mut c = Client::new(d.connect());
            let done = Arc::clone(done);
            std::thread::spawn(move || {
                let mut sent = Vec::new();
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let id = format!("jd-{w}-{i}");
                    c.send(&format!(
                        r#"{{"op":"log","job":{{"video_id":"{id}","worker_id":"{id}","success":true}},"ack":true}}"#
                    ));
                    assert_eq!(c.reply()["ok"], true);
                    sent.push(id);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                sent
            })
        })
        .collect()
}

/// How many times each video_id is in the file.
fn count_by_video_id(records: &[Value]) -> HashMap<String, usize> {
    let mut count: HashMap<String, usize> = HashMap::new();
    for r in records {
        *count
            .entry(r["video_id"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    count
}

/// Each of the old logger's records is in the file exactly once: joblogd
/// took them all in (`ping`) and saw the foreign writes.
fn old_records_each_kept_once(d: &Daemon, count: &HashMap<String, usize>, ping: &Value) {
    for k in 0..OLD {
        assert_eq!(
            count.get(&format!("old-{k}")),
            Some(&1),
            "old-{k}; ping {ping}\n{}",
            d.logs()
        );
    }
    assert_eq!(ping["records_taken_in"], OLD, "{ping}");
    assert!(
        ping["foreign_writes"].as_u64().is_some_and(|n| n >= 1),
        "{ping}"
    );
    assert!(ping["last_foreign_write"]["at"].is_string(), "{ping}");
}

/// joblogd's records (`sent`): each once at most; those the old logger's
/// rewrites destroyed are counted and named, none silently. Returns them.
fn own_records_once_or_counted_lost<'a>(
    d: &Daemon,
    sent: &'a [String],
    count: &HashMap<String, usize>,
    ping: &Value,
) -> Vec<&'a String> {
    let present: HashSet<&String> = sent.iter().filter(|id| count.contains_key(*id)).collect();
    for id in &present {
        assert_eq!(count[*id], 1, "{id} twice");
    }
    let missing: Vec<&String> = sent.iter().filter(|id| !present.contains(id)).collect();
    assert_eq!(
        ping["records_lost"],
        missing.len(),
        "missing {missing:?}; ping {ping}"
    );
    let logs = d.logs();
    for id in &missing {
        assert!(
            logs.contains(&format!("worker={id} ")),
            "{id} is not named:\n{logs}"
        );
    }
    missing
}

/// Three acknowledged records, then another process writes `content` over
/// the file (in place, as the old logger does); returns the daemon.
fn rewritten_after_three(dir: &TempDir, content: &str) -> Daemon {
    let d = Daemon::start(dir, &[]);
    for i in 0..3 {
        let r = d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"jd-{i}","worker_id":"jd-{i}"}},"ack":true}}"#
        ));
        assert_eq!(r["ok"], true, "{r}");
    }
    std::fs::write(&d.log, content).unwrap();
    d
}

/// The old logger's `clear_log()` (the guide's example ends with it)
/// writes `[]` over the file: that destroys joblogd's records, so it is
/// counted and named as such, not taken for a rotation.
#[test]
fn an_old_loggers_clear_log_counts_the_records_it_destroyed() {
    let dir = TempDir::new();
    let d = rewritten_after_three(&dir, "[]");
    let p = d.request("ping");
    assert_eq!(p["records"], 0, "{p}");
    assert_eq!(p["foreign_writes"], 1, "{p}");
    assert_eq!(p["records_lost"], 3, "{p}");
    assert_eq!(p["truncations"], 0, "{p}");
    for i in 0..3 {
        assert!(
            d.logs().contains(&format!("worker=jd-{i} ")),
            "{}",
            d.logs()
        );
    }
}

/// A `clear` right after another process rewrote the file takes the
/// change over first: what it destroyed is counted before the file is
/// archived (the archive would otherwise hide it for good).
#[test]
fn a_clear_right_after_a_rewrite_counts_what_the_rewrite_destroyed() {
    let dir = TempDir::new();
    let d = rewritten_after_three(
        &dir,
        "[\n  {\n    \"video_id\": \"old-1\",\n    \"success\": true\n  }\n]",
    );
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    let archive = std::path::PathBuf::from(r["archive"].as_str().unwrap());
    let kept: Vec<_> = read_log(&archive)
        .iter()
        .map(|r| r["video_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kept, ["old-1"]);
    let p = d.request("ping");
    assert_eq!(p["foreign_writes"], 1, "{p}");
    assert_eq!(p["records_lost"], 3, "{p}");
    assert_eq!(p["records_taken_in"], 1, "{p}");
}

/// A writer that kept its offset from before a cut (`copytruncate` and a
/// program that opened the log without `O_APPEND`) writes past the gap the
/// cut left: the daemon cuts the gap off, but copies what lay past it
/// aside first, whoever wrote it.
#[test]
fn bytes_written_past_a_gap_after_a_cut_are_copied_aside() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for i in 0..20 {
        let r = d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"jd-{i}"}},"ack":true}}"#
        ));
        assert_eq!(r["ok"], true, "{r}");
    }
    let len = std::fs::metadata(&d.log).unwrap().len();
    let stale = b"[\n  {\"video_id\": \"FOREIGN\", \"success\": true}\n]";
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&d.log)
            .unwrap();
        f.set_len(0).unwrap();
        f.write_all_at(stale, len + 100).unwrap();
    }
    let t0 = std::time::Instant::now();
    let copies = loop {
        let c = crate::util::files_containing(dir.path(), "log.json.corrupt-");
        if !c.is_empty() || t0.elapsed() > Duration::from_secs(5) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(copies.len(), 1, "{copies:?}\n{}", d.logs());
    let copy = std::fs::read(&copies[0]).unwrap();
    assert!(
        copy.windows(stale.len()).any(|w| w == stale),
        "{:?}",
        String::from_utf8_lossy(&copy)
    );
    // The copy is complete before the log is started anew: wait for the
    // writer to have done both (its `ping` comes after), then look.
    let t0 = std::time::Instant::now();
    let p = loop {
        let p = d.request("ping");
        if p["records_truncated"] == 20 || t0.elapsed() > Duration::from_secs(5) {
            break p;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(p["records_truncated"], 20, "{p}");
    assert!(read_log(&d.log).is_empty());
}
