//! Promise 4: a full or failing disk never corrupts the file and never
//! yields a false acknowledgement; held records are written, once, when the
//! disk recovers. Through the writer's fault seam (`--fault-file`), and for
//! real on a tiny tmpfs when running as root.

use std::fs;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Client, Daemon, TempDir, read_log};

fn ids(path: &std::path::Path) -> Vec<String> {
    read_log(path)
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Sends an acked record; returns the client, whose reply must not come yet.
fn pending_ack(d: &Daemon, id: &str) -> Client {
    let s = d.connect();
    s.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut c = Client::new(s);
    c.send(&format!(
        r#"{{"op":"log","job":{{"id":"{id}"}},"ack":true}}"#
    ));
    let mut b = [0u8; 1];
    assert!(
        std::io::Read::read(c.writer(), &mut b).is_err(),
        "an ack arrived while the disk was failing"
    );
    c.writer()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    c
}

fn check_fault(kind: &str) {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    let d = Daemon::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
    fs::write(&fault, kind).unwrap();
    let mut c = pending_ack(&d, "b");
    // Meanwhile: the file is still a valid array holding only what was acked.
    assert_eq!(ids(&d.log), vec!["a"], "{kind}");
    let p = d.request("ping");
    assert_eq!(p["pending"], 1, "{p}");
    assert!(p["failed_flushes"].as_u64().unwrap() >= 1, "{p}");
    assert!(
        p["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{p}"
    );
    // The disk recovers: the held record is written once and acknowledged.
    fs::remove_file(&fault).unwrap();
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}), "{kind}");
    assert_eq!(ids(&d.log), vec!["a", "b"], "{kind}: written once");
    let p = d.request("ping");
    assert_eq!(p["last_error"], Value::Null);
    assert_eq!(p["records"], 2);
    // The daemon's own failed write and its clean-up are never taken for
    // another process's change to the file.
    assert_eq!(p["foreign_writes"], 0, "{kind}: {p}");
    assert_eq!(p["truncations"], 0, "{kind}: {p}");
    // And it stays consistent across a restart.
    drop(c);
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(ids(&dir.join("log.json")), vec!["a", "b"]);
    assert!(
        crate::util::files_containing(dir.path(), "corrupt").is_empty(),
        "{kind}: no repair needed"
    );
}

#[test]
fn enospc_holds_records_and_withholds_acks_until_space_returns() {
    check_fault("enospc");
}

#[test]
fn a_torn_write_is_cut_back_and_the_whole_batch_rewritten() {
    check_fault("torn");
}

#[test]
fn a_failed_fsync_is_never_taken_for_success() {
    check_fault("fsync");
}

/// A daemon whose every write fails with ENOSPC (until `fault` is
/// removed), with a byte budget of `budget` and batches of `batch` bytes.
fn full_disk(
    dir: &TempDir,
    budget: &str,
    batch: &str,
    more: &[&str],
) -> (Daemon, std::path::PathBuf) {
    let fault = dir.join("fault");
    fs::write(&fault, "enospc").unwrap();
    let mut args = vec![
        "--fault-file",
        fault.to_str().unwrap(),
        "--max-pending-bytes",
        budget,
        "--batch-max-bytes",
        batch,
    ];
    args.extend_from_slice(more);
    let d = Daemon::start(dir, &args);
    (d, fault)
}

/// [`full_disk`] with a 1 MiB budget and 256 KiB batches.
fn full_disk_with_a_1_mib_budget(dir: &TempDir) -> (Daemon, std::path::PathBuf) {
    full_disk(dir, "1048576", "262144", &[])
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_failing_disk_applies_backpressure_within_the_memory_bound() {
    let dir = TempDir::new();
    let (d, fault) = full_disk_with_a_1_mib_budget(&dir);
    let s = d.connect();
    s.set_write_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut c = Client::new(s);
    let line = format!(r#"{{"id":"x","pad":"{}"}}"#, "p".repeat(1000));
    let mut sent = 0u64;
    let mut blocked = false;
    for _ in 0..100_000 {
        let mut buf = String::new();
        for _ in 0..100 {
            buf.push_str(&line);
            buf.push('\n');
        }
        if std::io::Write::write_all(c.writer(), buf.as_bytes()).is_err() {
            blocked = true;
            break;
        }
        sent += 100;
    }
    assert!(
        blocked,
        "the daemon kept reading although nothing could be written ({sent} records)"
    );
    let p = d.request("ping");
    // Held in memory: at most the budget (about 1 MiB of ~1.1 KB records).
    assert!(p["pending"].as_u64().unwrap() < 2000, "{p}");
    let kb = rss_kib(d.pid());
    eprintln!(
        "held {} records, daemon RSS {kb} KiB while the disk was full",
        p["pending"]
    );
    assert!(kb < 200 * 1024, "RSS {kb} KiB");
    fs::remove_file(&fault).unwrap();
    assert_eq!(d.request("flush"), json!({"ok": true}));
    // The blocked client's socket still holds records the daemon goes on
    // reading and flushing, so a plain read could land mid-append.
    let held = p["pending"].as_u64().unwrap() as usize;
    let n = crate::util::wait_for_records(&d.log, held).len();
    assert!(n >= held, "everything held was written: {n}");
}

/// A 256 KiB tmpfs under `dir`, unmounted when dropped; None (with the
/// reason printed) where it cannot be mounted: not root, or no privilege.
struct SmallTmpfs(std::path::PathBuf);

impl SmallTmpfs {
    fn mount(dir: &TempDir) -> Option<SmallTmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: mounting a tmpfs needs root");
            return None;
        }
        let mnt = dir.join("small");
        fs::create_dir_all(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (no privilege in this sandbox)");
            return None;
        }
        Some(SmallTmpfs(mnt))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_real_full_filesystem_as_root_on_tmpfs() {
    let dir = TempDir::new();
    let Some(small) = SmallTmpfs::mount(&dir) else {
        return;
    };
    let mnt = small.0.clone();
    let log = mnt.join("log.json");
    let d = Daemon::start_with(dir.join("s.sock"), log.clone(), &dir, &[]);
    // Fill it: about 400 KB of records into 256 KB.
    let mut c = Client::new(d.connect());
    for i in 0..400 {
        c.send(&format!(r#"{{"id":"r{i}","pad":"{}"}}"#, "z".repeat(900)));
    }
    c.send("ping");
    c.reply();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let p = loop {
        let p = d.request("ping");
        if p["last_error"].is_string() || std::time::Instant::now() > deadline {
            break p;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        p["last_error"].as_str().unwrap_or("").contains("No space"),
        "{p}"
    );
    // Valid, and holding no partial record (a read may land while a retry
    // writes and cuts back; it reads again).
    let before = crate::util::read_log_settled(&log).len();
    assert!(before < 400);
    // Space returns.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=4m"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remount");
    assert_eq!(d.request("flush"), json!({"ok": true}));
    let all: Vec<String> = read_log(&log)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 400, "everything written once space returned");
    assert_eq!(all, (0..400).map(|i| format!("r{i}")).collect::<Vec<_>>());
    drop(d);
}

#[test]
fn a_read_only_log_and_directory_are_an_error_not_a_crash_and_recover() {
    // Root ignores permission bits, so "read-only" is the immutable
    // attribute, which stops root too, and open descriptors as well.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: chattr +i needs root");
        return;
    }
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
    let chattr = |flag: &str| {
        Command::new("chattr")
            .arg(flag)
            .arg(&d.log)
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !chattr("+i") {
        eprintln!("SKIPPED: chattr +i is not supported on this filesystem");
        return;
    }
    let mut c = pending_ack(&d, "b");
    let p = d.request("ping");
    let fixed = chattr("-i");
    assert!(fixed, "chattr -i");
    assert!(
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not permitted")),
        "{p}"
    );
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
    assert_eq!(ids(&d.log), vec!["a", "b"]);
}

/// A daemon with the fault seam armed but idle, and record `a` written.
fn one_record_written(dir: &TempDir) -> (Daemon, std::path::PathBuf) {
    let fault = dir.join("fault");
    let d = Daemon::start(dir, &["--fault-file", fault.to_str().unwrap()]);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
    (d, fault)
}

#[test]
fn a_writer_that_dies_makes_the_daemon_exit_1_with_the_file_intact() {
    let dir = TempDir::new();
    let (mut d, fault) = one_record_written(&dir);
    // The next write panics inside the writer (test seam): the record is
    // not acknowledged, and the daemon stops instead of refusing records
    // forever, so that systemd (Restart=on-failure) starts a working one.
    fs::write(&fault, "panic").unwrap();
    let mut c = Client::new(d.connect());
    c.send(r#"{"op":"log","job":{"id":"b"},"ack":true}"#);
    let r = c.reply();
    assert_eq!(r["ok"], false, "{r}");
    let mut child = d.child.take().expect("running");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "joblogd kept running without a writer:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{}", d.logs());
    assert!(
        d.logs().contains("writer stopped unexpectedly"),
        "{}",
        d.logs()
    );
    assert_eq!(ids(&d.log), vec!["a"], "only what was acknowledged");
    // A restart takes the file over as it is.
    fs::remove_file(&fault).unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 1);
}

#[test]
fn a_cut_between_the_size_check_and_the_write_is_caught_before_the_ack() {
    // `copytruncate` (or `: > log.json`) can land while a flush is on its
    // way, after its size check: the batch then lands after a gap of zero
    // bytes. The daemon must notice before it acknowledges, set aside what
    // the cut left, and write the batch into a new array. A cut that left
    // bytes (another process rewriting the file: it truncates, then
    // writes) is taken over as it is once settled: its complete records
    // stay, the rest is copied aside, the batch follows.
    for cut_to in [0u64, 100] {
        let dir = TempDir::new();
        let fault = dir.join("fault");
        let d = Daemon::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
        let mut c = Client::new(d.connect());
        for i in 0..50 {
            c.send(&format!(r#"{{"id":"old{i}"}}"#));
        }
        c.send("flush");
        assert_eq!(c.reply(), json!({"ok": true}));
        let old = fs::read(&d.log).unwrap();
        fs::write(&fault, format!("cut {cut_to}")).unwrap();
        c.send(r#"{"op":"log_batch","jobs":[{"id":"new0"},{"id":"new1"}],"ack":true}"#);
        assert_eq!(
            c.reply(),
            json!({"ok": true, "logged": 2}),
            "cut to {cut_to}"
        );
        // 100 bytes still hold the first record whole.
        let kept = usize::from(cut_to > 0);
        let want: Vec<&str> = ["old0"][..kept]
            .iter()
            .copied()
            .chain(["new0", "new1"])
            .collect();
        assert_eq!(ids(&d.log), want, "cut to {cut_to}");
        let p = d.request("ping");
        assert_eq!(p["records"], 2 + kept, "{p}");
        assert_eq!(p["last_error"], Value::Null, "{p}");
        let copies = crate::util::files_containing(dir.path(), "log.json.corrupt-");
        if cut_to == 0 {
            assert_eq!(p["truncations"], 1, "{p}");
            assert_eq!(p["records_truncated"], 50, "{p}");
            // What lay past the gap (the batch, written again since) is
            // copied aside before the gap is cut, whoever wrote it.
            assert!(copies.len() <= 1, "{copies:?}");
            for c in &copies {
                let copy = String::from_utf8_lossy(&fs::read(c).unwrap()).into_owned();
                assert!(copy.contains("new0"), "{copy:?}");
            }
            assert!(
                d.logs().contains("cut short underneath the daemon"),
                "{}",
                d.logs()
            );
        } else {
            assert_eq!(p["foreign_writes"], 1, "{p}");
            assert_eq!(p["records_lost"], 49, "{p}");
            // The bytes past the record kept, as the cut left them; and
            // what lay past the gap (the batch, written again since).
            assert_eq!(copies.len(), 2, "{copies:?}");
            for c in &copies {
                let copy = fs::read(c).unwrap();
                let from = crate::util::copied_from(c);
                if from < cut_to as usize {
                    assert_eq!(copy, old[from..cut_to as usize]);
                } else {
                    assert!(String::from_utf8_lossy(&copy).contains("new0"));
                }
            }
            assert!(
                d.logs().contains("Another process wrote the log file"),
                "{}",
                d.logs()
            );
        }
        c.send(r#"{"id":"after"}"#);
        c.send("flush");
        assert_eq!(c.reply(), json!({"ok": true}));
        let mut want = want;
        want.push("after");
        assert_eq!(ids(&d.log), want);
    }
}

/// Waits up to `secs` for the daemon to exit; its status, or None.
fn exit_within(d: &mut Daemon, secs: u64) -> Option<std::process::ExitStatus> {
    let child = d.child.as_mut().expect("running");
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            d.child = None;
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A shutdown that gives records up (the disk still failing after the
/// grace period) is no clean stop: the service manager must see it.
#[test]
fn a_shutdown_that_gives_records_up_exits_1() {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    fs::write(&fault, "enospc").unwrap();
    let d = Daemon::start(
        &dir,
        &[
            "--fault-file",
            fault.to_str().unwrap(),
            "--shutdown-timeout-ms",
            "500",
        ],
    );
    let mut c = Client::new(d.connect());
    c.send(r#"{"id":"lost1"}"#);
    c.send(r#"{"id":"lost2"}"#);
    c.send("ping");
    assert_eq!(c.reply()["pending"], 2);
    drop(c);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !d.request("ping")["last_error"].is_string() {
        assert!(std::time::Instant::now() < deadline, "no flush failed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = d.stderr.clone();
    let status = d.stop();
    let logs = fs::read_to_string(logs).unwrap_or_default();
    assert!(logs.contains("Gave up flushing at shutdown"), "{logs}");
    assert_eq!(status.code(), Some(1), "{logs}");
    assert_eq!(ids(&dir.join("log.json")), Vec::<String>::new());
}

/// A writer panic seen while `clear` or a SIGHUP reopen waits for the
/// flush in flight stops the daemon, as one seen by the writer's loop
/// does; it used to go on accepting records it could never write.
fn a_writer_that_dies_during(trigger: &str) {
    let dir = TempDir::new();
    let (mut d, fault) = one_record_written(&dir);
    fs::write(&fault, "panic").unwrap();
    let mut c = Client::new(d.connect());
    c.send(r#"{"id":"b"}"#);
    if trigger == "clear" {
        c.send(r#"{"op":"clear","confirm":true}"#);
        let r = c.reply();
        assert_eq!(r["ok"], false, "{r}");
    } else {
        c.send("ping");
        c.reply();
        fs::rename(&d.log, dir.join("log.json.1")).unwrap();
        d.signal(libc::SIGHUP);
    }
    let status = exit_within(&mut d, 20);
    fs::remove_file(&fault).unwrap();
    let status = status.unwrap_or_else(|| {
        panic!(
            "joblogd kept running without a writer ({trigger}): {}\n{}",
            d.request("ping"),
            d.logs()
        )
    });
    assert_eq!(status.code(), Some(1), "{}", d.logs());
}

#[test]
fn a_writer_that_dies_during_clear_stops_the_daemon() {
    a_writer_that_dies_during("clear");
}

#[test]
fn a_writer_that_dies_during_a_reopen_stops_the_daemon() {
    a_writer_that_dies_during("sighup");
}

/// Bytes added past the array by someone else (`truncate -s`, a stray
/// writer) are cut by the next flush, so its acknowledgement still means a
/// valid array.
#[test]
fn a_file_grown_underneath_is_a_valid_array_after_the_next_ack() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
    let len = fs::metadata(&d.log).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&d.log)
        .unwrap()
        .set_len(len + 4096)
        .unwrap();
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"b"},"ack":true}"#)["ok"],
        true
    );
    assert_eq!(ids(&d.log), vec!["a", "b"]);
    // The bytes are kept, beside the log.
    let copies: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("log.json.appended-")
        })
        .collect();
    assert_eq!(copies.len(), 1, "one copy of the appended bytes");
    assert_eq!(fs::read(copies[0].path()).unwrap(), vec![0u8; 4096]);
    assert!(
        d.logs().contains("appended to the log file"),
        "{}",
        d.logs()
    );
}

/// The byte budget bounds memory however many connections it holds back:
/// each used to format up to 1 MiB before asking for permits, and keep it
/// while it waited (100 connections, 1 MiB budget: +115 MB).
#[test]
fn many_connections_held_back_stay_within_the_budget() {
    let dir = TempDir::new();
    let (d, fault) = full_disk_with_a_1_mib_budget(&dir);
    let before = rss_kib(d.pid());
    // Deeply nested: indentation makes each record print ~20 times larger
    // than its line, so a read's worth of lines is over 1 MiB printed.
    let line = format!(
        "{{\"id\":\"x\",\"pad\":{}}}\n",
        "[1,".repeat(100) + "1" + &"]".repeat(100)
    );
    let writers: Vec<_> = (0..100)
        .map(|_| {
            let mut s = d.connect();
            s.set_write_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            let buf = line.repeat(50);
            std::thread::spawn(move || {
                while std::io::Write::write_all(&mut s, buf.as_bytes()).is_ok() {}
                s
            })
        })
        .collect();
    let socks: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(d.pid());
    eprintln!("RSS {before} KiB before, {after} KiB with 100 connections held back");
    assert!(
        after.saturating_sub(before) < 40 * 1024,
        "RSS grew by {} KiB with a 1 MiB budget",
        after.saturating_sub(before)
    );
    drop(socks);
    fs::remove_file(&fault).unwrap();
    assert_eq!(d.request("flush"), json!({"ok": true}));
}

/// A daemon whose disk fails (`enospc`) with a budget of about 90 records
/// of 1 KB, a 1 s grace period, and a connection that has sent it 200
/// such records followed by `extra` (all of it fits in the socket's and
/// the daemon's buffers): once this returns, the budget is used up and the
/// connection holds the rest back.
fn held_back(dir: &TempDir, extra: &str) -> (Daemon, std::os::unix::net::UnixStream) {
    let (d, _) = full_disk(dir, "100000", "50000", &["--shutdown-timeout-ms", "1000"]);
    let s = d.connect();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let line = format!(r#"{{"id":"x","pad":"{}"}}"#, "p".repeat(1000));
    let mut all: String = (0..200).map(|_| format!("{line}\n")).collect();
    all.push_str(extra);
    // Sent from a thread: the caller may read replies meanwhile.
    let mut w = s.try_clone().unwrap();
    let sent = std::thread::spawn(move || std::io::Write::write_all(&mut w, all.as_bytes()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.request("ping")["pending"].as_u64().unwrap_or(0) < 50 {
        assert!(std::time::Instant::now() < deadline, "nothing pending");
        std::thread::sleep(Duration::from_millis(20));
    }
    sent.join().unwrap().expect("everything sent");
    assert!(d.request("ping")["pending"].as_u64().unwrap_or(0) < 200);
    s.set_write_timeout(None).unwrap();
    (d, s)
}

/// Records a connection has read but holds back for the byte budget (the
/// disk failing) when the shutdown's grace period runs out are handed to
/// the writer, not lost with the connection: here the disk never
/// recovers, so the daemon gives all of them up, says so and exits 1.
#[test]
fn records_held_back_at_the_end_of_the_grace_period_reach_the_writer() {
    let dir = TempDir::new();
    let (d, s) = held_back(&dir, "");
    let logs = d.stderr.clone();
    let status = d.stop();
    let logs = fs::read_to_string(logs).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{logs}");
    assert!(
        logs.contains("Gave up flushing at shutdown; records not written. records=200"),
        "every record read is accounted for:\n{logs}"
    );
    drop(s);
}

/// After the grace period a reply that can be queued is still sent: the
/// give-up branch, ready at once then, used to win half the races against
/// a send that would not block, dropping the replies of a client that
/// reads them all (and with them acks, which clients resend: duplicates).
#[test]
fn replies_after_the_grace_period_are_not_dropped_for_a_reading_client() {
    const BAD: usize = 40;
    let dir = TempDir::new();
    // One not_an_object error reply each.
    let (d, s) = held_back(&dir, &"[1]\n".repeat(BAD));
    let got = std::thread::spawn(move || {
        std::io::BufRead::lines(std::io::BufReader::new(s))
            .map_while(Result::ok)
            .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["ok"] == false))
            .count()
    });
    let _ = d.stop();
    let n = got.join().unwrap();
    assert_eq!(
        n, BAD,
        "error replies received by a client that reads them all"
    );
}

/// The files beside `dir`'s `log.json` that a clear or a repair makes
/// (`log.<ts>.json` and its sidecar, `log.json.corrupt-*`,
/// `log.json.clearing-*`), by name: all but the log and its sidecar.
fn beside_the_log(dir: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log.") && n != "log.json" && n != "log.json.meta")
        .collect();
    v.sort();
    v
}

/// A `clear` whose new, empty file cannot be written (a full disk) changes
/// nothing: the log stays at its path with every record, no archive is
/// left, queries read the right records, and later records and a later
/// `clear` work. (The new file used to be created after the old one was
/// renamed away: the live file was left empty and not an array, and
/// queries read the archive's bytes at the new file's offsets.)
#[test]
fn a_clear_that_fails_changes_nothing() {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    let d = Daemon::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    let log = |id: &str| {
        let r = d.request(&format!(
            r#"{{"op":"log","job":{{"id":"{id}"}},"ack":true}}"#
        ));
        assert_eq!(r["ok"], true, "{r}");
    };
    for id in ["a", "b", "c"] {
        log(id);
    }
    let before = fs::read(&d.log).unwrap();
    let log_id = d.request("ping")["log_id"].as_str().unwrap().to_owned();
    assert!(
        log_id.len() == 32 && log_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{log_id}"
    );
    fs::write(&fault, "clear-enospc").unwrap();
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["error"]["code"], "write_failed", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing changed")),
        "{r}"
    );
    assert_eq!(fs::read(&d.log).unwrap(), before, "the log is untouched");
    assert!(
        beside_the_log(&dir).is_empty(),
        "no archive, no temporary file"
    );
    let r = d.request(r#"{"op":"jobs","offset":1,"limit":1,"fields":["id"]}"#);
    assert_eq!(r["jobs"], json!([{"id": "b"}]), "{r}");
    log("d");
    assert_eq!(ids(&d.log), ["a", "b", "c", "d"]);
    let r = d.request(r#"{"op":"jobs","offset":3,"fields":["id"]}"#);
    assert_eq!(r["jobs"], json!([{"id": "d"}]), "{r}");
    assert_eq!(d.request("ping")["records"], 4);
    assert_eq!(d.request("ping")["log_id"], log_id.as_str(), "the same log");
    // With room again, clear works.
    fs::remove_file(&fault).unwrap();
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    let archive = std::path::PathBuf::from(r["archive"].as_str().unwrap());
    assert_eq!(ids(&archive), ["a", "b", "c", "d"]);
    assert!(read_log(&d.log).is_empty());
    log("e");
    assert_eq!(ids(&d.log), ["e"]);
    assert_ne!(d.request("ping")["log_id"], log_id.as_str(), "a new log");
    // The archive keeps its sidecar (and its log_id); the new file has its
    // own.
    let archive_meta = format!("{}.meta", archive.display());
    assert_eq!(
        beside_the_log(&dir),
        [
            archive.file_name().unwrap().to_string_lossy().into_owned(),
            {
                std::path::Path::new(&archive_meta)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            }
        ]
    );
}

/// Directory syncs are checked, not best effort: a log file created at
/// start whose name cannot be made durable is a start-up failure (records
/// acknowledged into it could lose their file in a power cut), and a
/// `clear` whose swap cannot be made durable is undone.
#[test]
fn a_failed_directory_sync_is_an_error() {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    fs::write(&fault, "dirsync").unwrap();
    let (st, err) = crate::util::run_expect_exit(&[
        "--socket",
        dir.join("s.sock").to_str().unwrap(),
        "--log-file",
        dir.join("log.json").to_str().unwrap(),
        "--fault-file",
        fault.to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("sync the directory"), "{err}");
    fs::remove_file(&fault).unwrap();
    let d = Daemon::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    let r = d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    fs::write(&fault, "dirsync").unwrap();
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["error"]["code"], "write_failed", "{r}");
    fs::remove_file(&fault).unwrap();
    assert_eq!(ids(&d.log), ["a"], "undone: the log is back at its path");
    let left = beside_the_log(&dir);
    assert!(left.is_empty(), "{left:?}");
    let r = d.request(r#"{"op":"log","job":{"id":"b"},"ack":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(ids(&d.log), ["a", "b"]);
}

/// A full copy-on-write disk: part of a batch lands, then the write fails,
/// and so does re-closing the array. The file is cut back first (a
/// truncate needs no space), so no torn part of the batch is left in it;
/// once space returns the batch is written whole, once, and nothing is set
/// aside as another process's bytes. (The clean-up used to write the
/// closing bracket before cutting: on a full disk it failed, the torn
/// half stayed, and was later copied aside as "appended by another
/// process".)
#[test]
fn a_torn_write_on_a_full_disk_leaves_no_torn_bytes() {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    let d = Daemon::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
    let good = fs::read(&d.log).unwrap();
    fs::write(&fault, "torn-full").unwrap();
    let mut c = pending_ack(&d, "b");
    let now = fs::read(&d.log).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&now),
        String::from_utf8_lossy(&good[..good.len() - 2]),
        "the records, without the closing bracket: nothing of the torn batch"
    );
    fs::remove_file(&fault).unwrap();
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
    assert_eq!(ids(&d.log), ["a", "b"]);
    let p = d.request("ping");
    assert_eq!(p["foreign_writes"], 0, "{p}");
    assert_eq!(p["last_error"], Value::Null, "{p}");
    let set_aside: Vec<_> = crate::util::files_containing(dir.path(), "log.json.")
        .into_iter()
        .filter(|p| !p.ends_with("log.json.meta"))
        .collect();
    assert!(set_aside.is_empty(), "{set_aside:?}");
}

/// A repair needs room only for the bytes it cuts: a log with a torn tail
/// on a nearly full file system starts (a copy of the whole log would not
/// fit), and one whose tail itself does not fit is refused with the room
/// it needs named. Real tmpfs, as root.
#[test]
fn a_repair_needs_room_only_for_what_it_cuts() {
    let dir = TempDir::new();
    let Some(small) = SmallTmpfs::mount(&dir) else {
        return;
    };
    let mnt = small.0.clone();
    let log = mnt.join("log.json");
    // About 200 KiB of records, then a torn tail of `tail` zero bytes (a
    // power cut).
    let records: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "  {{\n    \"id\": \"r{i}\",\n    \"pad\": \"{}\"\n  }}",
                "z".repeat(990)
            )
        })
        .collect();
    let array = format!("[\n{}\n]", records.join(",\n"));
    for (tail, starts) in [(8 << 10, true), (40 << 10, false)] {
        let _ = fs::remove_file(&log);
        for f in crate::util::files_containing(&mnt, "log.json.") {
            fs::remove_file(f).unwrap();
        }
        let mut content = array.clone().into_bytes();
        content.truncate(content.len() - 2);
        content.extend(std::iter::repeat_n(0u8, tail));
        fs::write(&log, &content).unwrap();
        let sock = dir.join("s.sock");
        let args = [
            "--socket",
            sock.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
        ];
        if starts {
            let d = Daemon::start_with(dir.join("s.sock"), log.clone(), &dir, &[]);
            assert_eq!(d.request("ping")["records"], 200, "{}", d.logs());
            let copies = crate::util::files_containing(&mnt, "log.json.corrupt-");
            assert_eq!(copies.len(), 1, "{copies:?}");
            assert_eq!(fs::metadata(&copies[0]).unwrap().len(), tail as u64);
        } else {
            let (st, err) = crate::util::run_expect_exit(&args);
            assert_eq!(st.code(), Some(1), "{err}");
            assert!(err.contains(&format!("{tail} bytes")), "{err}");
            assert_eq!(fs::read(&log).unwrap(), content, "the log is untouched");
        }
    }
}

/// Bytes added past the array of an idle log are noticed within about a
/// second, without waiting for a flush: copied to `.appended-*` (only
/// them), cut off, and reported in `ping`.
#[test]
fn bytes_added_to_an_idle_log_are_set_aside_within_a_second() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
    let mut f = fs::OpenOptions::new().append(true).open(&d.log).unwrap();
    std::io::Write::write_all(&mut f, b"\n{\"stray\": true}\n").unwrap();
    drop(f);
    // Within a second it is seen; the daemon then waits for the file to
    // stay unchanged for a second (it does not end like an array), as
    // another writer may still be at it.
    let t0 = std::time::Instant::now();
    while !crate::util::is_valid_array(&d.log) {
        assert!(t0.elapsed() < Duration::from_secs(4), "not cut off");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ids(&d.log), ["a"], "cut off without a flush");
    let p = d.request("ping");
    assert_eq!(p["foreign_writes"], 1, "{p}");
    assert_eq!(p["records"], 1, "{p}");
    let copy = p["last_foreign_write"]["copy"].as_str().unwrap_or_default();
    assert!(copy.contains("log.json.appended-"), "{p}");
    assert_eq!(fs::read(copy).unwrap(), b"\n{\"stray\": true}\n");
}

/// Where the log file's `flock` does not keep a second daemon out (a file
/// system that grants a second lock beside ours, as some FUSE and network
/// ones do), the daemon refuses to start unless told the operator sees to
/// it; two daemons on one file each overwrite the other's records.
#[test]
fn an_unenforced_lock_is_refused_unless_allowed() {
    let dir = TempDir::new();
    let fault = dir.join("fault");
    fs::write(&fault, "lock-unenforced").unwrap();
    let sock = dir.join("s.sock");
    let log = dir.join("log.json");
    let args = [
        "--socket",
        sock.to_str().unwrap(),
        "--log-file",
        log.to_str().unwrap(),
        "--fault-file",
        fault.to_str().unwrap(),
    ];
    let (st, err) = crate::util::run_expect_exit(&args);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("--allow-unlocked-fs"), "{err}");
    assert!(err.contains("second lock"), "{err}");
    let d = Daemon::start(
        &dir,
        &[
            "--fault-file",
            fault.to_str().unwrap(),
            "--allow-unlocked-fs",
        ],
    );
    assert_eq!(
        d.request(r#"{"op":"log","job":{"id":"a"},"ack":true}"#)["ok"],
        true
    );
}

/// While writes fail, `stats` does not count records a crash could still
/// take away: it answers `write_failed` and names `include_pending`, which
/// counts them; a durable subscriber sees nothing until they are written,
/// one with `include_pending` sees them at once.
#[test]
fn stats_and_subscribers_see_only_durable_records_unless_asked() {
    use std::io::BufRead;
    let dir = TempDir::new();
    let fault = dir.join("fault");
    let d = Daemon::start(&dir, &["--fault-file", fault.to_str().unwrap()]);
    let subscribe = |req: &str| {
        let s = d.connect();
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut w = s.try_clone().unwrap();
        std::io::Write::write_all(&mut w, format!("{req}\n").as_bytes()).unwrap();
        let mut r = std::io::BufReader::new(s);
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        assert!(first.contains("\"ok\":true"), "{first}");
        r
    };
    let mut durable = subscribe(r#"{"op":"subscribe"}"#);
    let mut accepted = subscribe(r#"{"op":"subscribe","include_pending":true}"#);
    fs::write(&fault, "enospc").unwrap();
    let mut c = Client::new(d.connect());
    c.send(r#"{"id":"a","success":true}"#);
    c.send("stats");
    let r = c.reply();
    assert_eq!(r["error"]["code"], "write_failed", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("include_pending")),
        "{r}"
    );
    c.send(r#"{"op":"stats","include_pending":true}"#);
    assert_eq!(c.reply()["stats"]["total_jobs"], 1);
    let mut line = String::new();
    accepted.read_line(&mut line).unwrap();
    assert!(line.contains("\"a\""), "{line}");
    line.clear();
    assert!(
        durable.read_line(&mut line).is_err(),
        "a durable subscriber saw a record not yet written: {line}"
    );
    fs::remove_file(&fault).unwrap();
    c.send("stats");
    assert_eq!(c.reply()["stats"]["total_jobs"], 1);
    durable
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    line.clear();
    durable.read_line(&mut line).unwrap();
    assert!(line.contains("\"a\""), "{line}");
}
