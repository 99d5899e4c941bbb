//! Readers (jq, json.load) open the file while joblogd appends. How often
//! does a reader that loads the file in a tight loop during heavy ingest see
//! an invalid array? And `snapshot` must always be valid.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::util::{Daemon, TempDir};

#[test]
fn readers_during_ingest_and_snapshot_is_always_complete() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "20"]);
    let stop = Arc::new(AtomicBool::new(false));
    // Four writers, about 10,000 records/s each, 30,000 each at most: a few
    // seconds of steady ingest into a file of a few tens of MB.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut s = d.connect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && i < 30_000 {
                    let mut buf = Vec::new();
                    for _ in 0..50 {
                        writeln!(buf, r#"{{"w":{w},"i":{i},"pad":"{}"}}"#, "r".repeat(200))
                            .unwrap();
                        i += 1;
                    }
                    if s.write_all(&buf).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    // A reader like `json.load` in a loop: read the whole file, parse it;
    // every few reads, a snapshot, which must always be a complete array.
    let (mut reads, mut invalid, mut snapshots) = (0u64, 0u64, 0u64);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let bytes = std::fs::read(&d.log).unwrap();
        reads += 1;
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            invalid += 1;
        }
        if reads % 10 == 0 {
            let path = dir.join("snap.json");
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_joblogctl"))
                .args([
                    "--socket",
                    d.socket.to_str().unwrap(),
                    "snapshot",
                    path.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
                .expect("snapshot is valid JSON");
            assert!(v.as_array().is_some());
            snapshots += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let records = d.request("ping")["records"].as_u64().unwrap();
    eprintln!(
        "readers: {reads} reads of the file during ingest, {invalid} invalid ({:.2}%); {snapshots} snapshots, all valid; {records} records written",
        100.0 * invalid as f64 / reads.max(1) as f64
    );
    assert!(reads > 10 && snapshots > 0 && records > 1000);
}
