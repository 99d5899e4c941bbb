//! Process life: concurrency, shutdown, exclusive ownership, the socket.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::{Arc, Barrier};

use serde_json::{Value, json};

use crate::util::{Client, Daemon, TempDir, python_loads, read_log, run_expect_exit};

/// Every record of every writer is present exactly once, in per-writer order.
fn check_per_writer_order(recs: &[Value], writers: usize, per: Option<usize>) -> usize {
    let mut next: HashMap<u64, u64> = HashMap::new();
    for r in recs {
        let w = r["w"].as_u64().expect("w");
        let i = r["i"].as_u64().expect("i");
        let n = next.entry(w).or_insert(0);
        assert_eq!(
            i, *n,
            "writer {w}: expected record {n}, found {i} (lost, duplicated or reordered)"
        );
        *n += 1;
    }
    if let Some(per) = per {
        assert_eq!(next.len(), writers);
        assert!(next.values().all(|&n| n == per as u64), "{next:?}");
    }
    recs.len()
}

#[test]
fn sixty_four_concurrent_writers_lose_nothing() {
    const WRITERS: usize = 64;
    const PER: usize = 2000;
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut c = Client::new(d.connect());
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for i in 0..PER {
                    writeln!(
                        buf,
                        r#"{{"w":{w},"i":{i},"video_id":"v{w}-{i}","pad":"{}"}}"#,
                        "é".repeat(i % 50)
                    )
                    .unwrap();
                }
                barrier.wait();
                // Uneven write sizes, so lines straddle reads.
                for part in buf.chunks(7919) {
                    c.send_bytes(part);
                }
                c.send("flush");
                assert_eq!(c.reply(), json!({"ok": true}));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let recs = read_log(&d.log);
    assert_eq!(
        check_per_writer_order(&recs, WRITERS, Some(PER)),
        WRITERS * PER
    );
    assert_eq!(python_loads(&d.log), WRITERS * PER);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn sigterm_mid_stream_keeps_every_record_read_and_exits_zero() {
    const WRITERS: usize = 16;
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut s = d.connect();
            std::thread::spawn(move || {
                let mut i = 0u64;
                loop {
                    let mut buf = Vec::new();
                    for _ in 0..50 {
                        writeln!(buf, r#"{{"w":{w},"i":{i}}}"#).unwrap();
                        i += 1;
                    }
                    if s.write_all(&buf).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let logs_path = d.stderr.clone();
    let status = d.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        fs::read_to_string(&logs_path).unwrap_or_default()
    );
    for t in threads {
        t.join().unwrap();
    }
    let recs = read_log(&dir.join("log.json"));
    assert!(recs.len() > 1000, "writers made progress: {}", recs.len());
    check_per_writer_order(&recs, WRITERS, None);
    // The daemon's own count of records written equals the file's.
    let logs = fs::read_to_string(&logs_path).unwrap();
    assert!(logs.contains(&format!("records={}", recs.len())), "{logs}");
    assert!(!dir.join("s.sock").exists(), "socket removed");
}

/// Starts a second daemon on `d`'s socket with another log file, expecting
/// it to stop at once: its status and stderr.
fn second_daemon_on(d: &Daemon, dir: &TempDir) -> (std::process::ExitStatus, String) {
    run_expect_exit(&[
        "--socket",
        d.socket.to_str().unwrap(),
        "--log-file",
        dir.join("other.json").to_str().unwrap(),
    ])
}

#[test]
fn a_second_daemon_on_the_same_socket_or_file_exits_1() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let (st, err) = second_daemon_on(&d, &dir);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("another joblogd is already serving"), "{err}");
    let (st, err) = run_expect_exit(&[
        "--socket",
        dir.join("t.sock").to_str().unwrap(),
        "--log-file",
        d.log.to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("is locked by another process"), "{err}");
    // The first daemon is unharmed.
    assert_eq!(d.request("ping")["ok"], true);
}

/// The lock file deleted under a running daemon (a `/tmp` cleaner): a
/// second daemon used to take the socket for stale, remove it and serve
/// another log in its place. A socket that still has a listener is left
/// alone; and a daemon never removes a socket file that is not the one it
/// bound.
#[test]
fn a_live_socket_is_never_taken_for_stale_or_removed_by_another() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let lock = dir.join("s.sock.lock");
    fs::remove_file(&lock).unwrap();
    let (st, err) = second_daemon_on(&d, &dir);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("although its lock file"), "{err}");
    assert_eq!(d.request("ping")["log_file"], d.log.to_str().unwrap());
    // Both files gone: a second daemon starts there; the first does not
    // take its socket for its own, and stopping it leaves it in place.
    let mut c = Client::new(d.connect());
    fs::remove_file(&d.socket).unwrap();
    fs::remove_file(&lock).unwrap();
    let e = Daemon::start_with(d.socket.clone(), dir.join("other.json"), &dir, &[]);
    c.send("ping");
    assert_eq!(c.reply()["socket_at_path"], false);
    drop(c);
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(e.request("ping")["log_file"], e.log.to_str().unwrap());
}

#[test]
fn stale_socket_is_replaced_and_a_non_socket_is_never_deleted() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"a":1},"ack":true}"#);
    d.kill9();
    assert!(
        dir.join("s.sock").exists(),
        "SIGKILL leaves the socket file"
    );
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 1);
    drop(d);

    let file = dir.join("f.sock");
    fs::write(&file, "precious").unwrap();
    let (st, err) = run_expect_exit(&[
        "--socket",
        file.to_str().unwrap(),
        "--log-file",
        dir.join("l.json").to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "precious");
}

#[test]
fn socket_mode_is_0660_whatever_the_umask() {
    let dir = TempDir::new();
    // The test process's umask is inherited; make it permissive and strict.
    for umask in [0o000, 0o077] {
        // SAFETY: umask(2) only changes this process's mask; restored below.
        let old = unsafe { libc::umask(umask) };
        let d = Daemon::start(&dir, &[]);
        unsafe { libc::umask(old) };
        let meta = fs::metadata(&d.socket).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660, "umask {umask:o}");
        drop(d);
    }
    let d = Daemon::start(&dir, &["--socket-mode", "0600"]);
    assert_eq!(
        fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let (st, err) = run_expect_exit(&["--socket-mode", "abc", "--socket", "/tmp/x.sock"]);
    assert_eq!(st.code(), Some(2));
    assert!(err.contains("--socket-mode"), "{err}");
    let (st, _) = run_expect_exit(&["--no-such-flag"]);
    assert_eq!(st.code(), Some(2));
}

#[test]
fn restart_after_shutdown_keeps_everything() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let mut c = Client::new(d.connect());
    for i in 0..500 {
        c.send(&format!(r#"{{"w":0,"i":{i}}}"#));
    }
    c.send("ping");
    assert_eq!(c.reply()["pending"], 500);
    // SIGTERM flushes what is pending.
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(read_log(&dir.join("log.json")).len(), 500);
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 500);
}

#[test]
fn connections_over_the_cap_wait_in_the_backlog_and_are_served_later() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--max-connections", "2"]);
    let mut a = Client::new(d.connect());
    let mut b = Client::new(d.connect());
    a.send("ping");
    b.send("ping");
    assert_eq!(a.reply()["ok"], true);
    assert_eq!(b.reply()["ok"], true);
    // The third connects (the kernel queues it) but is not served yet.
    let third = d.connect();
    third
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut c = Client::new(third);
    c.send(r#"{"op":"log","job":{"third":true},"ack":true}"#);
    let mut buf = [0u8; 1];
    let waited = std::io::Read::read(c.writer(), &mut buf);
    assert!(
        waited.is_err(),
        "third connection served while two were open"
    );
    // Closing one frees a slot: the third is served, nothing lost.
    drop(a);
    c.writer()
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
    assert_eq!(read_log(&d.log).len(), 1);
}
