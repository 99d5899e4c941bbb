//! `joblogctl`, the human's command, driving the real daemon.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Daemon, TempDir, read_log};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run joblogctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sample(dir: &TempDir) -> std::path::PathBuf {
    let p = dir.join("in.ndjson");
    let mut f = std::fs::File::create(&p).unwrap();
    for i in 0..30 {
        let ok = i % 3 != 0;
        writeln!(
            f,
            r#"{{"video_id":"v{}","url":"https://youtu.be/v{}","subject":"AI","worker_id":{},"stage":"{}","success":{ok},"error":{},"processing_duration":{}.5,"total_files":4}}"#,
            i % 20,
            i % 20,
            i % 3,
            if ok { "completed" } else { "generating_notes" },
            if ok { "null".to_string() } else { "\"API rate limit exceeded: 429\"".to_string() },
            i
        )
        .unwrap();
    }
    p
}

/// On a terminal, `joblogctl log` of a file over 1 MiB shows its progress
/// on stderr (`\r` and a percentage, rewritten in place), then the total.
/// Elsewhere (every other test here) it prints only the total.
#[test]
fn log_shows_progress_on_a_terminal() {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let path = dir.join("big.ndjson");
    let n = 6000;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..n {
        writeln!(
            f,
            r#"{{"video_id":"p{i}","logged_at":"t","pad":"{}"}}"#,
            "x".repeat(200)
        )
        .unwrap();
    }
    drop(f);
    assert!(std::fs::metadata(&path).unwrap().len() > 1 << 20);
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two descriptors through the pointers; the
    // name, termios and winsize arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        eprintln!("SKIPPED: no pseudo-terminal available (openpty failed)");
        return;
    }
    // SAFETY: both descriptors were just opened for us and are owned here.
    let (mut master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_joblogctl"));
    cmd.arg("--socket")
        .arg(&d.socket)
        .arg("log")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("run joblogctl");
    // Our copy of the terminal's other end goes with `cmd`, so the read
    // below ends (EIO) once joblogctl exits.
    drop(cmd);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
        }
    }
    assert!(child.wait().unwrap().success());
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(&format!("\r100% {n} records")), "{text:?}");
    assert!(text.contains("\r 50% "), "in place, step by step: {text:?}");
    assert!(text.contains(&format!("logged {n} records")), "{text:?}");
    // Not polled: a read during the flush of so many records could see
    // the array mid-append.
    assert_eq!(d.request(r#"{"op":"flush"}"#)["ok"], true);
    assert_eq!(read_log(&d.log).len(), n);
}

#[test]
fn log_stats_jobs_and_exports() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let input = sample(&dir);
    let o = ctl(&d, &["log", input.to_str().unwrap(), "--ack"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("logged (on disk) 30 records"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        read_log(&d.log).len(),
        30,
        "--ack: durable when the command returns"
    );

    let o = ctl(&d, &["stats"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.contains("Total jobs:        30") && text.contains("API rate limit exceeded"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colours in a pipe");
    let o = ctl(&d, &["stats", "--json"]);
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["failed"], 10);

    let o = ctl(
        &d,
        &[
            "jobs",
            "--failed",
            "--sort",
            "duration",
            "--desc",
            "--limit",
            "2",
            "--fields",
            "video_id,processing_duration",
        ],
    );
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "ndjson in a pipe");
    assert_eq!(lines[0]["processing_duration"], 27.5);
    let o = ctl(&d, &["jobs", "--worker", "1", "--format", "table"]);
    assert!(stdout(&o).starts_with("logged_at"), "{}", stdout(&o));
    assert_eq!(stdout(&o).lines().count(), 11);
    let o = ctl(
        &d,
        &["jobs", "--format", "json", "--latest-per-video", "--failed"],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v.as_array().unwrap().iter().all(|j| j["success"] == false));

    let o = ctl(&d, &["retry-candidates", "--urls"]);
    let urls = stdout(&o);
    assert!(
        urls.lines().all(|u| u.starts_with("https://youtu.be/v")) && !urls.is_empty(),
        "{urls}"
    );

    let csv = dir.join("out.csv");
    let o = ctl(&d, &["export-csv", csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let body = std::fs::read_to_string(&csv).unwrap();
    assert!(body.starts_with("video_id,video_title,url,"));
    assert_eq!(body.lines().count(), 31);
    let o = ctl(&d, &["jobs", "--format", "csv"]);
    assert_eq!(stdout(&o), body);

    let o = ctl(&d, &["flush"]);
    assert!(o.status.success());
    let o = ctl(&d, &["ping"]);
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["records"], 30);
}

#[test]
fn exit_codes_are_0_1_2_3() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(ctl(&d, &["ping"]).status.code(), Some(0));
    // 2: not a time at all, refused before anything is sent.
    let o = ctl(&d, &["stats", "--since", "not a date"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("30m ago"), "{}", stderr(&o));
    // Relative times are read: nothing logged in the last hour.
    let o = ctl(&d, &["stats", "--json", "--since", "-1h"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // 1: an error reply (shaped like a date, but none).
    let o = ctl(&d, &["jobs", "--since", "2026-13-45"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid_request"));
    let bad = dir.join("bad.ndjson");
    std::fs::write(&bad, "{\"ok\":1}\nnot json\n{\"fine\":true}\n").unwrap();
    let o = ctl(&d, &["log", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("line 2: invalid_json"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("logged 2 records, 1 rejected"),
        "{}",
        stderr(&o)
    );
    // 2: usage.
    assert_eq!(ctl(&d, &["frobnicate"]).status.code(), Some(2));
    let o = ctl(&d, &["clear"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--yes"));
    let o = ctl(&d, &["clear", "--yes"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("archived to "));
    // 3: cannot connect, with a hint.
    let o = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .args(["--socket", "/nonexistent/joblogd.sock", "ping"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("hint: start the daemon"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tail_shows_the_last_records_then_follows_and_a_slow_one_misses_nothing() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for i in 0..15 {
        d.request(&format!(r#"{{"op":"log","job":{{"n":{i}}},"ack":true}}"#));
    }
    // Without -f: the last -n records, in order, as the file has them.
    let last = stdout(&ctl(&d, &["tail", "-n", "3"]));
    let ns: Vec<i64> = last
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, [12, 13, 14], "{last}");
    assert!(last.starts_with(r#"{"n":12,"logged_at":"#), "{last}");
    assert_eq!(stdout(&ctl(&d, &["tail"])).lines().count(), 10);
    let mut tail = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "tail",
            "-f",
            "-n",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(tail.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&line).unwrap()["n"], 14);
    d.request(r#"{"op":"log","job":{"tail":1},"ack":true}"#);
    line.clear();
    out.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["tail"], 1);
    assert!(v["logged_at"].is_string());

    // Now stop reading the tail while 60,000 records arrive: the writer is
    // not slowed down, and the tail, served from the file once it falls
    // behind, still shows every one, in order.
    let t0 = Instant::now();
    let mut c = crate::util::Client::new(d.connect());
    let mut buf = Vec::new();
    for i in 0..60_000 {
        writeln!(buf, r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(100)).unwrap();
    }
    c.send_bytes(&buf);
    c.send("flush");
    assert_eq!(c.reply()["ok"], true);
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert_eq!(d.request("ping")["records"], 60_016);
    let reader = std::thread::spawn(move || {
        let mut next = 0;
        let mut l = String::new();
        while next < 60_000 && out.read_line(&mut l).unwrap_or(0) > 0 {
            let v: Value = serde_json::from_str(&l).unwrap();
            assert_eq!(v["i"], next, "in order, none missed");
            next += 1;
            l.clear();
        }
        next
    });
    let got = reader.join().unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(got, 60_000);
}

#[test]
fn tail_takes_the_filters_and_formats_of_jobs_and_follows_only_matches() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let log = |v: &str, ok: bool| {
        d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"{v}","success":{ok},"stage":"s","error":"E: {v}"}},"ack":true}}"#
        ))
    };
    for i in 0..8 {
        log(&format!("v{i}"), i % 2 == 0);
    }
    // The last two failures, oldest first, in each format.
    let ids = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["video_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        ids(&stdout(&ctl(&d, &["tail", "-n", "2", "--failed"]))),
        ["v5", "v7"]
    );
    assert_eq!(
        stdout(&ctl(
            &d,
            &[
                "tail",
                "-n",
                "2",
                "--failed",
                "-o",
                "csv",
                "--fields",
                "video_id,error"
            ]
        )),
        "video_id,error\r\nv5,E: v5\r\nv7,E: v7\r\n"
    );
    let json: Value = serde_json::from_str(&stdout(&ctl(
        &d,
        &[
            "tail",
            "-n",
            "3",
            "--successful",
            "-o",
            "json",
            "--fields",
            "video_id",
        ],
    )))
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!([{"video_id":"v2"},{"video_id":"v4"},{"video_id":"v6"}])
    );
    let table = stdout(&ctl(
        &d,
        &["tail", "-n", "1", "--video", "v3", "-o", "table"],
    ));
    assert!(
        table.starts_with("logged_at") && table.contains("v3") && !table.contains("v5"),
        "{table}"
    );
    // Following: only new matches, across a clear (the new log from its start).
    let mut tail = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "tail",
            "-f",
            "-n",
            "1",
            "--failed",
        ])
        .args(["--fields", "video_id"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(tail.stdout.take().unwrap());
    let mut next = || {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(next(), "{\"video_id\":\"v7\"}\n");
    log("ok1", true);
    log("bad1", false);
    assert_eq!(
        next(),
        "{\"video_id\":\"bad1\"}\n",
        "the success in between is not shown"
    );
    for i in 0..300 {
        log(&format!("x{i}"), i != 299);
    }
    assert_eq!(next(), "{\"video_id\":\"x299\"}\n");
    // Stopped while two more fail and the log is cleared: once it goes
    // on, the old log's last failures (from its archive) come before the
    // new log's.
    let stop = |sig: &str| {
        let s = Command::new("kill")
            .args([sig, &tail.id().to_string()])
            .status();
        assert!(s.unwrap().success());
    };
    stop("-STOP");
    log("before-clear-1", false);
    log("before-clear-2", false);
    d.request(r#"{"op":"clear","confirm":true}"#);
    log("after-clear", false);
    stop("-CONT");
    assert_eq!(next(), "{\"video_id\":\"before-clear-1\"}\n");
    assert_eq!(next(), "{\"video_id\":\"before-clear-2\"}\n");
    assert_eq!(next(), "{\"video_id\":\"after-clear\"}\n");
    let _ = tail.kill();
    let _ = tail.wait();
    // --pending takes no filters: a usage error.
    let o = ctl(&d, &["tail", "-f", "--pending", "--failed"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn a_subscriber_does_not_hold_up_shutdown() {
    // A long grace period: a subscriber that held shutdown up would keep
    // the daemon running for all of it.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--shutdown-timeout-ms", "60000"]);
    let mut c = crate::util::Client::new(d.connect());
    c.send("subscribe");
    assert_eq!(
        c.reply(),
        serde_json::json!({"ok": true, "subscribed": true})
    );
    d.request(r#"{"op":"log","job":{"n":1},"ack":true}"#);
    assert_eq!(c.reply()["record"]["n"], 1);
    let t0 = Instant::now();
    let logs = d.stderr.clone();
    let status = d.stop();
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "stopping took {:?}",
        t0.elapsed()
    );
    let log = std::fs::read_to_string(logs).unwrap_or_default();
    assert!(!log.contains("still open after the grace period"), "{log}");
    // The stream ended: end of file, not a hang.
    assert_eq!(c.rest(), "");
}

#[test]
fn jobs_prints_records_exactly_as_they_are_in_the_file() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let rec = r#"{"video_id":"v1","z":1,"a":1e2,"big":123456789012345678901234567890,"t":"é\n","logged_at":"2025-01-01T00:00:00"}"#;
    d.request(&format!(r#"{{"op":"log","job":{rec},"ack":true}}"#));
    d.request(r#"{"op":"log","job":{"video_id":"v2","logged_at":"x"},"ack":true}"#);
    // NDJSON: key order and number text kept, big integers whole.
    let o = ctl(&d, &["jobs", "--format", "ndjson"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stdout(&o).lines().next().unwrap_or_default().to_string();
    assert_eq!(first, rec.replace("\n", "\\n"));
    let o = ctl(
        &d,
        &["jobs", "--format", "ndjson", "--fields", "z,video_id,a"],
    );
    assert_eq!(
        stdout(&o).lines().next().unwrap_or_default(),
        r#"{"z":1,"video_id":"v1","a":1e2}"#
    );
    // JSON: the file's own form (Python's indent=2), so the same bytes.
    let o = ctl(&d, &["jobs", "--format", "json"]);
    let file = std::fs::read_to_string(&d.log).unwrap();
    assert_eq!(stdout(&o), format!("{file}\n"));
    let o = ctl(&d, &["jobs", "--format", "json", "--subject", "none"]);
    assert_eq!(stdout(&o), "[]\n");
}

#[test]
fn a_closed_output_pipe_ends_jobs_quietly() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let jobs: Vec<String> = (0..5000)
        .map(|i| format!(r#"{{"video_id":"v{i}","pad":"{}"}}"#, "x".repeat(200)))
        .collect();
    d.request(&format!(
        r#"{{"op":"log_batch","jobs":[{}],"ack":true}}"#,
        jobs.join(",")
    ));
    // `joblogctl jobs | head -1`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["jobs", "--format", "ndjson", "--limit", "5000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert!(line.contains("\"v0\""), "{line}");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

#[test]
fn log_sends_records_only_never_the_requests_in_a_data_file() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"a":0},"ack":true}"#);
    let input = dir.join("data.ndjson");
    std::fs::write(
        &input,
        "ping\n{\"a\":1}\n{\"op\":\"clear\",\"confirm\":true}\n\n{\"\\u006fp\":\"flush\"}\n{\"a\":2}\nnot json\n",
    )
    .unwrap();
    let o = ctl(&d, &["log", input.to_str().unwrap(), "--ack"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("logged (on disk) 2 records, 1 rejected, 3 requests not sent"),
        "{err}"
    );
    for n in [1, 3, 5] {
        assert!(err.contains(&format!("line {n}: a request")), "{err}");
    }
    assert!(err.contains("line 7: invalid_json"), "{err}");
    // Nothing was cleared: the earlier record is still there.
    let ids: Vec<i64> = read_log(&d.log)
        .iter()
        .map(|r| r["a"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert!(crate::util::files_containing(dir.path(), "log.20").is_empty());
}

/// A log taken over from Python's json.dump may hold `NaN` and `Infinity`
/// (the daemon itself writes them as null): answers give them as null, so
/// every reply stays strict JSON and `joblogctl jobs` can read it.
#[test]
fn non_finite_numbers_in_a_taken_over_file_are_answered_as_null() {
    let dir = TempDir::new();
    let log = dir.join("log.json");
    std::fs::write(
        &log,
        "[\n  {\n    \"id\": \"a\",\n    \"processing_duration\": NaN,\n    \"t\": [Infinity, -Infinity],\n    \"s\": \"NaN\"\n  }\n]",
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    let r = d.request(r#"{"op":"jobs"}"#);
    assert_eq!(
        r["jobs"][0],
        serde_json::json!({"id": "a", "processing_duration": null, "t": [null, null], "s": "NaN"})
    );
    let o = ctl(&d, &["jobs", "--format", "ndjson"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim_end(),
        r#"{"id":"a","processing_duration":null,"t":[null,null],"s":"NaN"}"#
    );
    // In CSV as Python's csv module writes float('nan').
    let o = ctl(&d, &["export-csv", "-"]);
    let csv = stdout(&o);
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let row: Vec<&str> = csv.lines().nth(1).unwrap_or_default().split(',').collect();
    let at = header.iter().position(|h| *h == "processing_duration");
    assert_eq!(at.map(|i| row[i]), Some("nan"), "{csv}");
}

/// Filters are sent as the strings given: `--subject 2024` was sent as a
/// number (refused) and `--worker 007` as 7 (worker 7's records, silently).
#[test]
fn numeric_looking_filters_mean_what_they_say() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let jobs = [
        r#"{"id":"a","subject":"2024","worker_id":"007","success":true}"#,
        r#"{"id":"b","subject":"AI","worker_id":7,"success":true}"#,
        r#"{"id":"c","subject":"AI","worker_id":"7","success":false}"#,
    ];
    let r = d.request(&format!(
        r#"{{"op":"log_batch","ack":true,"jobs":[{}]}}"#,
        jobs.join(",")
    ));
    assert_eq!(r["ok"], true, "{r}");
    let ids = |args: &[&str]| -> Vec<String> {
        let o = ctl(&d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].to_string())
            .collect()
    };
    assert_eq!(
        ids(&["jobs", "--format", "ndjson", "--worker", "007"]),
        [r#""a""#]
    );
    assert_eq!(
        ids(&["jobs", "--format", "ndjson", "--worker", "7"]),
        [r#""b""#, r#""c""#]
    );
    let o = ctl(&d, &["stats", "--json", "--subject", "2024"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(s["total_jobs"], 1, "{s}");
}

/// `stats --json` prints the daemon's figures to the last digit (serde_json
/// parsed floats to within one unit in the last place: 48/13 came out as
/// 3.692307692307693 instead of 3.6923076923076925).
#[test]
fn stats_json_keeps_every_digit() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let jobs: Vec<String> = (0..13)
        .map(|i| {
            let dur = if i == 0 { 12 } else { 3 };
            format!(r#"{{"success":true,"processing_duration":{dur}}}"#)
        })
        .collect();
    d.request(&format!(
        r#"{{"op":"log_batch","ack":true,"jobs":[{}]}}"#,
        jobs.join(",")
    ));
    let o = ctl(&d, &["stats", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3.6923076923076925"), "{}", stdout(&o));
}

/// `-` is standard output for `snapshot` and `export-csv` (it used to
/// make a file named `-`), and a path that cannot be written is named.
#[test]
fn snapshot_and_export_to_standard_output_and_bad_paths_named() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"video_id":"v1","success":true},"ack":true}"#);
    let o = ctl(&d, &["snapshot", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), std::fs::read_to_string(&d.log).unwrap());
    let o = ctl(&d, &["export-csv", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("video_id,"), "{}", stdout(&o));
    assert!(!std::path::Path::new("-").exists());
    let bad = dir.join("missing-dir").join("x.csv");
    for cmd in ["export-csv", "snapshot"] {
        let o = ctl(&d, &[cmd, bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("missing-dir/x.csv"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
}

/// `joblogctl jobs` prints records as they arrive: its memory does not
/// grow with the answer (it held the whole reply, parsed twice: about 109
/// MB for 100,000 small records, now about 14 MB). Measured by Python's
/// `RUSAGE_CHILDREN`: a child forked from this test process would count
/// its pages.
#[test]
fn jobs_streams_a_large_answer() {
    let dir = TempDir::new();
    let recs: Vec<String> = (0..100_000)
        .map(|i| {
            format!(
                r#"{{"video_id":"v{i}","success":true,"pad":"{}"}}"#,
                "x".repeat(100)
            )
        })
        .collect();
    std::fs::write(dir.join("log.json"), format!("[{}]", recs.join(","))).unwrap();
    drop(recs);
    let d = Daemon::start(&dir, &[]);
    let o = crate::util::python(
        "import resource, subprocess, sys\n\
         out = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, check=True).stdout\n\
         print(out.count(b'\\n'), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n",
        &[
            env!("CARGO_BIN_EXE_joblogctl"),
            "--socket",
            d.socket.to_str().unwrap(),
            "jobs",
            "--format",
            "ndjson",
        ],
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut it = text
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let (lines, peak_kib) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    eprintln!("joblogctl jobs: {lines} records, {peak_kib} KiB peak");
    assert_eq!(lines, 100_000);
    assert!(peak_kib < 40 * 1024, "peak {peak_kib} KiB");
}

/// `joblogctl log` into a daemon that goes away mid-file says how far it
/// got (it said only "Broken pipe").
#[test]
fn log_says_how_far_it_got_when_the_daemon_goes_away() {
    let dir = TempDir::new();
    let file = dir.join("many.ndjson");
    let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(200));
    std::fs::write(&file, line.repeat(400_000)).unwrap();
    let d = Daemon::start(&dir, &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .args([
            "--socket",
            d.socket.to_str().unwrap(),
            "log",
            file.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.kill9();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("the daemon closed the connection"), "{err}");
}

/// Without `--socket` or `JOBLOGD_SOCKET`, joblogctl tries the per-user
/// default, then the systemd units' socket, as `systemctl` users expect;
/// when neither answers, its error names both paths.
#[test]
fn finds_the_daemon_without_being_told_and_names_the_paths_it_tried() {
    let dir = TempDir::new();
    let run = dir.join("run");
    fs::create_dir(&run).unwrap();
    let bare = |xdg: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_joblogctl"))
            .env_remove("JOBLOGD_SOCKET")
            .env("XDG_RUNTIME_DIR", xdg)
            .arg("ping")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let system = std::path::Path::new(joblogd::config::SYSTEM_SOCKET);
    let system_taken = system.exists();
    // Nothing at either path (unless a real system daemon runs here).
    if !system_taken {
        let o = bare(&run);
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{}", run.join("joblogd.sock").display())),
            "{err}"
        );
        assert!(err.contains(joblogd::config::SYSTEM_SOCKET), "{err}");
        assert!(err.contains("systemctl start joblogd.socket"), "{err}");
    }
    // The per-user default.
    let d = Daemon::start_with(run.join("joblogd.sock"), dir.join("log.json"), &dir, &[]);
    let o = bare(&run);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&d.log.display().to_string()),
        "{}",
        stdout(&o)
    );
    drop(d);
    // The systemd units' socket, when the per-user one is not there.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 || system_taken {
        eprintln!(
            "SKIPPED (the system socket part): needs root and no {} on this machine",
            system.display()
        );
        return;
    }
    let created = !system.parent().unwrap().exists();
    fs::create_dir_all(system.parent().unwrap()).unwrap();
    let d = Daemon::start_with(system.to_owned(), dir.join("system.json"), &dir, &[]);
    let _ = fs::remove_file(run.join("joblogd.sock"));
    let o = bare(&run);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("system.json"), "{}", stdout(&o));
    drop(d);
    if created {
        let _ = fs::remove_dir_all(system.parent().unwrap());
    }
}

/// A socket found by default in a directory anyone may write to (/tmp) is
/// used only if it belongs to the caller or root: another user could have
/// put one there first to read and answer what joblogctl sends (`sudo
/// joblogctl clear`, say).
#[test]
fn a_default_socket_another_user_planted_in_a_shared_directory_is_skipped() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: giving a socket to another user needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let shared = dir.join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.join("joblogd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .env_remove("JOBLOGD_SOCKET")
        .env("XDG_RUNTIME_DIR", &shared)
        .arg("ping")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("skipped: owned by uid 65534"),
        "{}{err}",
        stdout(&o)
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "it never connected");
    // Given explicitly, it is the user's choice.
    let o = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .arg("--socket")
        .arg(&planted)
        .args(["ping"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(listener.accept().is_ok(), "connected when told to");
    drop(o);
}

/// `--help` says what joblogctl is (not the daemon's description), and a
/// count of one is singular.
#[test]
fn help_describes_joblogctl_and_one_record_is_singular() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .arg("--help")
        .output()
        .expect("joblogctl");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.starts_with("Query and control joblogd"), "{help}");
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let one = dir.join("one.ndjson");
    std::fs::write(&one, "{\"video_id\":\"a\"}\n").expect("write");
    let o = ctl(&d, &["log", one.to_str().expect("path"), "--ack"]);
    assert!(
        stderr(&o).contains("logged (on disk) 1 record\n"),
        "{}",
        stderr(&o)
    );
}

/// On a real terminal (`script` gives joblogctl a pseudo-terminal), text
/// from records is shown escaped: an error or a stage holding a
/// clear-screen sequence, a title sequence or BEL reaches the screen as
/// `\u001b…`, not as the sequence itself.
#[test]
fn record_text_reaches_a_terminal_escaped() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: script(1) is not installed (util-linux)");
        return;
    }
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let r = d.request(
        r#"{"op":"log_batch","jobs":[{"video_id":"v","success":false,"error":"\u001b[2J\u0007boom: x","stage":"s\u001b]0;owned\u0007"}],"ack":true}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    for cmd in ["stats", "jobs", "retry-candidates"] {
        let line = format!(
            "{} --socket {} {cmd}",
            env!("CARGO_BIN_EXE_joblogctl"),
            d.socket.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .output()
            .expect("script");
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd}: {screen}");
        for raw in ["\u{1b}[2J", "\u{1b}]0;", "\u{7}"] {
            assert!(!screen.contains(raw), "{cmd} wrote {raw:?} raw: {screen:?}");
        }
        assert!(screen.contains("\\u001b"), "{cmd}: {screen:?}");
    }
}

/// `retry-candidates` prints NDJSON in a pipe and takes `--format`;
/// `jobs --format csv --fields` keeps only those columns, in that order.
#[test]
fn retry_candidates_and_csv_follow_format_and_fields() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let r = d.request(
        r#"{"op":"log_batch","jobs":[{"video_id":"a","url":"u-a","success":false,"error":"E: x, y"},{"video_id":"b","url":"u-b","success":true}],"ack":true}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    let piped = stdout(&ctl(&d, &["retry-candidates"]));
    let lines: Vec<Value> = piped
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    assert_eq!(lines.len(), 1, "{piped}");
    assert_eq!(lines[0]["video_id"], "a");
    let csv = stdout(&ctl(&d, &["retry-candidates", "--format", "csv"]));
    assert_eq!(
        csv,
        "video_id,url,stage,retry_count,error\r\na,u-a,,,\"E: x, y\"\r\n"
    );
    let json: Value =
        serde_json::from_str(&stdout(&ctl(&d, &["retry-candidates", "-o", "json"]))).expect("json");
    assert_eq!(json[0]["url"], "u-a");
    let csv = stdout(&ctl(
        &d,
        &["jobs", "--format", "csv", "--fields", "error,video_id"],
    ));
    assert_eq!(csv, "error,video_id\r\n\"E: x, y\",a\r\n,b\r\n");
    let o = ctl(&d, &["jobs", "--format", "csv", "--fields", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a CSV column"), "{}", stderr(&o));
}

/// Bold goes to a terminal unless NO_COLOR, TERM=dumb or `--color never`
/// say otherwise, and to a pipe only with `--color always` or
/// CLICOLOR_FORCE.
#[test]
fn colour_follows_the_terminal_and_the_conventions() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: script(1) is not installed (util-linux)");
        return;
    }
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let bold = "\u{1b}[1m";
    let on_tty = |env: &[(&str, &str)], extra: &str| {
        let line = format!(
            "{} --socket {} stats {extra}",
            env!("CARGO_BIN_EXE_joblogctl"),
            d.socket.display()
        );
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR")
            .env("TERM", "xterm");
        for (k, v) in env {
            c.env(k, v);
        }
        String::from_utf8_lossy(&c.output().expect("script").stdout).into_owned()
    };
    assert!(on_tty(&[], "").contains(bold));
    assert!(!on_tty(&[("NO_COLOR", "1")], "").contains(bold));
    assert!(!on_tty(&[("TERM", "dumb")], "").contains(bold));
    assert!(!on_tty(&[], "--color never").contains(bold));
    assert!(on_tty(&[("NO_COLOR", "1")], "--color always").contains(bold));
    assert!(!stdout(&ctl(&d, &["stats"])).contains(bold));
    assert!(stdout(&ctl(&d, &["stats", "--color", "always"])).contains(bold));
    let forced = std::process::Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .args(["--socket", &d.socket.display().to_string(), "stats"])
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .output()
        .expect("joblogctl");
    assert!(String::from_utf8_lossy(&forced.stdout).contains(bold));
    // Failed jobs are red in a table, successful ones not.
    d.request(r#"{"op":"log_batch","jobs":[{"video_id":"bad","success":false},{"video_id":"good","success":true}],"ack":true}"#);
    let t = stdout(&ctl(&d, &["jobs", "-o", "table", "--color", "always"]));
    let red = |v: &str| {
        t.lines()
            .any(|l| l.starts_with("\u{1b}[31m") && l.contains(v))
    };
    assert!(red("bad") && !red("good"), "{t}");
    assert!(!stdout(&ctl(&d, &["jobs", "-o", "table"])).contains("\u{1b}[31m"));
}

/// `status` sums the daemon up for a human; `completions` and `man` are
/// generated from the same definitions as `--help` (bash accepts the
/// completion script; the pages name every subcommand and option).
#[test]
fn status_completions_and_man_pages() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"video_id":"v","success":false},"ack":true}"#);
    let o = ctl(&d, &["status"]);
    let s = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s.contains("running for"), "{s}");
    assert!(s.contains(&d.socket.display().to_string()), "{s}");
    assert!(s.contains(&d.log.display().to_string()), "{s}");
    assert!(
        s.contains("1 on disk") && s.contains("1 retry candidates"),
        "{s}"
    );
    let bash = stdout(&ctl(&d, &["completions", "bash"]));
    assert!(bash.contains("_joblogctl") && bash.contains("retry-candidates"));
    let script = dir.join("joblogctl.bash");
    std::fs::write(&script, &bash).expect("write");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    for shell in ["zsh", "fish"] {
        assert!(
            stdout(&ctl(&d, &["completions", shell])).contains("forward"),
            "{shell}"
        );
    }
    let man = stdout(&ctl(&d, &["man"]));
    assert!(man.contains(".TH joblogctl 1"), "{man}");
    assert!(
        man.contains("retry\\-candidates") && man.contains("forward"),
        "{man}"
    );
    let daemon = stdout(&ctl(&d, &["man", "joblogd"]));
    assert!(daemon.contains(".TH joblogd 8"), "{daemon}");
    assert!(daemon.contains("\\-\\-log\\-file"), "{daemon}");
}

/// A table on a terminal (`jobs`, `retry-candidates`, `tail` without
/// `-f`) goes through `$PAGER` (less -FRX without one); `--no-pager` and
/// a pipe do not; `-r` lists newest first.
#[test]
fn a_table_on_a_terminal_is_paged() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: script(1) is not installed (util-linux)");
        return;
    }
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for v in ["first", "second"] {
        d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"{v}","success":false,"url":"u-{v}"}},"ack":true}}"#
        ));
    }
    let on_tty = |extra: &str| {
        let line = format!(
            "{} --socket {} {}",
            env!("CARGO_BIN_EXE_joblogctl"),
            d.socket.display(),
            if extra.starts_with(char::is_alphabetic) {
                extra.to_owned()
            } else {
                format!("jobs {extra}")
            }
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .env("PAGER", "sed 's/^/PAGED:/'")
            .output()
            .expect("script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let paged = on_tty("");
    assert!(
        paged.contains("PAGED:") && paged.contains("first"),
        "{paged}"
    );
    let plain = on_tty("--no-pager");
    assert!(
        !plain.contains("PAGED:") && plain.contains("first"),
        "{plain}"
    );
    let newest = on_tty("--no-pager -r");
    let (a, b) = (newest.find("second"), newest.find("first"));
    assert!(a.is_some() && b.is_some() && a < b, "{newest}");
    assert!(!stdout(&ctl(&d, &["jobs"])).contains("PAGED:"));
    for cmd in ["retry-candidates", "tail -n 5"] {
        let paged = on_tty(cmd);
        assert!(
            paged.contains("PAGED:") && paged.contains("first"),
            "{cmd}: {paged}"
        );
        assert!(
            !on_tty(&format!("--no-pager {cmd}")).contains("PAGED:"),
            "{cmd}"
        );
        assert!(
            !on_tty(&format!("{cmd} -o ndjson")).contains("PAGED:"),
            "{cmd}"
        );
    }
    // A table on a terminal for tail too, and its -f never paged.
    let tail = on_tty("tail -n 5");
    assert!(
        tail.lines()
            .any(|l| l.starts_with("PAGED:") && l.contains("logged_at")),
        "{tail}"
    );
}

/// `stats` lists errors and stages in the order first seen, as the old
/// logger's report did, and `--json` keeps that order too.
#[test]
fn stats_keeps_first_seen_order() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let r = d.request(
        r#"{"op":"log_batch","jobs":[{"success":false,"error":"Zeta: 1","stage":"upload"},{"success":false,"error":"Alpha: 2","stage":"fetch"},{"success":false,"error":"Zeta: 3","stage":"upload"}],"ack":true}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    let text = stdout(&ctl(&d, &["stats"]));
    let (z, a) = (text.find("Zeta"), text.find("Alpha"));
    assert!(z.is_some() && a.is_some() && z < a, "{text}");
    // -o ndjson: the object as sent, on one line; -o csv is a usage error.
    let line = stdout(&ctl(&d, &["stats", "-o", "ndjson"]));
    assert_eq!(line.lines().count(), 1, "{line}");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["failed"], 3, "{line}");
    assert!(line.find("Zeta") < line.find("Alpha"), "{line}");
    let o = ctl(&d, &["stats", "-o", "csv"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("export-csv"), "{}", stderr(&o));
    assert_eq!(
        stdout(&ctl(&d, &["stats", "-o", "json"])),
        stdout(&ctl(&d, &["stats", "--json"]))
    );
    let (u, f) = (text.find("upload"), text.find("fetch"));
    assert!(u.is_some() && f.is_some() && u < f, "{text}");
    let json = stdout(&ctl(&d, &["stats", "--json"]));
    assert!(json.find("\"Zeta\"") < json.find("\"Alpha\""), "{json}");
    let v: Value = serde_json::from_str(&json).expect("stats --json is JSON");
    assert_eq!(v["error_types"]["Zeta"], 2);
}

/// `export-csv`, `snapshot` and `report` write their file aside and rename
/// it over PATH: a write that fails leaves PATH as it was and no
/// temporary file behind.
#[test]
fn a_failed_export_leaves_the_path_as_it_was() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"video_id":"v"},"ack":true}"#);
    // A directory where the file should go: the rename over it fails.
    let target = dir.join("out");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), "kept").unwrap();
    for args in [
        vec!["export-csv", target.to_str().unwrap()],
        vec!["snapshot", target.to_str().unwrap()],
        vec!["report", "--html", target.to_str().unwrap()],
    ] {
        let o = ctl(&d, &args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "kept");
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{args:?}: {left:?}");
    }
    // And a good one lands whole.
    let csv = dir.join("jobs.csv");
    assert!(
        ctl(&d, &["export-csv", csv.to_str().unwrap()])
            .status
            .success()
    );
    assert!(fs::read_to_string(&csv).unwrap().starts_with("video_id,"));
}
