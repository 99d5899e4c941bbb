//! The wire protocol as a client sees it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Client, Daemon, TempDir, read_log, wait_for_records};

/// Bad input on a connection: the documented error reply with the line
/// number, and the good record sent after it on the same connection lands.
fn check_bad(args: &[&str], bad: &[u8], code: &str, line: u64) {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, args);
    let mut c = Client::new(d.connect());
    c.send_bytes(bad);
    c.send(r#"{"video_id":"after","logged_at":"x"}"#);
    c.send("flush");
    let r = c.reply();
    assert_eq!(r["ok"], false, "{bad:?} -> {r}");
    assert_eq!(
        r["error"]["code"],
        code,
        "{:?} -> {r}",
        String::from_utf8_lossy(bad)
    );
    assert_eq!(r["line"], line, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(c.reply(), json!({"ok": true}));
    let recs = read_log(&d.log);
    assert_eq!(
        recs,
        vec![json!({"video_id":"after","logged_at":"x"})],
        "for {bad:?}"
    );
}

#[test]
fn bad_input_gets_an_error_and_costs_nothing_else() {
    let cases: &[(&[u8], &str, u64)] = &[
        (b"{\"a\":1\n", "invalid_json", 1),
        (b"{\"a\":\"unterminated}\n", "invalid_json", 1),
        (b"not json at all\n", "invalid_json", 1),
        (b"{\"a\":1}}\n", "invalid_json", 1),
        (b"{\"a\xff\":1}\n", "invalid_utf8", 1),
        (b"{\"a\":\"\xc3\x28\"}\n", "invalid_utf8", 1),
        (b"[1,2]\n", "not_an_object", 1),
        (b"\"str\"\n", "not_an_object", 1),
        (b"42\n", "not_an_object", 1),
        (b"null\n", "not_an_object", 1),
        (b"\n\n  \n{\"a\":\n", "invalid_json", 4),
        (b"{\"op\":\"frobnicate\"}\n", "unknown_op", 1),
        (b"frobnicate\n", "unknown_op", 1),
        (b"PING\n", "unknown_op", 1),
        (b"retry-candidates\n", "unknown_op", 1),
        (b"NaN\n", "invalid_json", 1),
        (b"{\"op\":7}\n", "invalid_request", 1),
        (b"{\"op\":\"log\"}\n", "invalid_request", 1),
        (b"{\"op\":\"log\",\"job\":[1]}\n", "invalid_request", 1),
        (
            b"{\"op\":\"log\",\"job\":{},\"ack\":1}\n",
            "invalid_request",
            1,
        ),
        (
            b"{\"op\":\"log_batch\",\"jobs\":{}}\n",
            "invalid_request",
            1,
        ),
        (
            b"{\"op\":\"log_batch\",\"jobs\":[{},3]}\n",
            "not_an_object",
            1,
        ),
        (b"{\"op\":\"ping\",\"x\":1}\n", "invalid_request", 1),
        (b"{\"a\":\"nul\x00byte\"}\n", "invalid_json", 1),
    ];
    for (bad, code, line) in cases {
        check_bad(&[], bad, code, *line);
    }
    let deep = format!("{{\"a\":{}{}}}\n", "[".repeat(100_000), "]".repeat(100_000));
    check_bad(&[], deep.as_bytes(), "too_deep", 1);
}

#[test]
fn over_long_line_is_discarded_without_buffering_it() {
    let mut long = vec![b'{'];
    long.extend(std::iter::repeat_n(b'x', 10 << 20));
    long.push(b'\n');
    check_bad(&["--max-line-bytes", "65536"], &long, "line_too_long", 1);
}

/// A record is judged on its size as stored (pretty-printed): past
/// `--max-record-bytes` it is refused, whether printing finished (the
/// record checked whole) or was stopped on the way (at 3 × the limit).
#[test]
fn a_record_larger_than_max_record_bytes_once_printed_is_refused() {
    let args = ["--max-line-bytes", "65536", "--max-record-bytes", "65536"];
    // "1," eleven levels down prints as 27 bytes: 4,000 of them take 108 kB
    // stored (between the limit and the 192 kB at which printing stops),
    // 30,000 of them would take 810 kB.
    for n in [4_000, 30_000] {
        let rec = format!(
            "{{\"a\":{}{}1{}}}\n",
            "[".repeat(10),
            "1,".repeat(n - 1),
            "]".repeat(10)
        );
        assert!(rec.len() < 65536);
        check_bad(&args, rec.as_bytes(), "record_too_large", 1);
    }
    // A flat record just under the limit as stored lands whole.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &args);
    let mut c = Client::new(d.connect());
    let big = "x".repeat(65_000);
    c.send(&format!(r#"{{"s":"{big}","logged_at":"t"}}"#));
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    assert_eq!(read_log(&d.log), vec![json!({"s": big, "logged_at": "t"})]);
}

#[test]
fn line_details_crlf_bom_blank_lines_and_last_line_without_newline() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    c.send_bytes(b"{\"n\":1,\"logged_at\":\"t\"}\r\n");
    c.send_bytes(b"\xEF\xBB\xBF{\"n\":2,\"logged_at\":\"t\"}\n");
    c.send_bytes(b"\n   \n\r\n");
    c.send_bytes(b"oops\n"); // line 6
    c.send_bytes(b"{\"n\":3,\"logged_at\":\"t\"}"); // no newline, then EOF
    let replies = c.all_replies();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["line"], 6);
    let recs = wait_for_records(&d.log, 3);
    let ns: Vec<i64> = recs.iter().map(|r| r["n"].as_i64().unwrap()).collect();
    assert_eq!(ns, vec![1, 2, 3]);
}

#[test]
fn ack_replies_only_once_the_record_is_in_the_file() {
    let dir = TempDir::new();
    // A long interval: only the ack itself can cause the flush.
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let mut c = Client::new(d.connect());
    for i in 0..20 {
        c.send(&format!(r#"{{"op":"log","job":{{"i":{i}}},"ack":true}}"#));
        assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
        let recs = read_log(&d.log);
        assert_eq!(recs.len(), i + 1, "acked record {i} not in the file");
        assert_eq!(recs[i]["i"], i);
    }
    c.send(r#"{"op":"log_batch","jobs":[{"b":1},{"b":2},{"b":3}],"ack":true}"#);
    assert_eq!(c.reply(), json!({"ok": true, "logged": 3}));
    assert_eq!(read_log(&d.log).len(), 23);
    // Without ack the reply comes at once, before any flush.
    c.send(r#"{"op":"log","job":{"late":true}}"#);
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
    assert_eq!(read_log(&d.log).len(), 23);
}

#[test]
fn flush_covers_records_from_every_connection() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let mut writers: Vec<Client> = (0..4).map(|_| Client::new(d.connect())).collect();
    for (w, c) in writers.iter_mut().enumerate() {
        for i in 0..100 {
            c.send(&format!(r#"{{"w":{w},"i":{i}}}"#));
        }
        // A ping on the same connection proves its records were accepted.
        c.send("ping");
        assert_eq!(c.reply()["ok"], true);
    }
    assert_eq!(
        read_log(&d.log).len(),
        0,
        "nothing flushed before the interval"
    );
    let r = d.request("flush");
    assert_eq!(r, json!({"ok": true}));
    assert_eq!(read_log(&d.log).len(), 400);
}

#[test]
fn interval_flushes_fire_and_forget_records() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "50"]);
    let mut c = Client::new(d.connect());
    c.send(r#"{"only":"record"}"#);
    let recs = wait_for_records(&d.log, 1);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["only"], "record");
}

#[test]
fn ping_names_the_log_file_by_its_absolute_path() {
    // Clients run elsewhere: a path relative to the daemon's working
    // directory would name another file for them.
    let dir = TempDir::new();
    let d = Daemon::start_with(
        dir.join("s.sock"),
        std::path::PathBuf::from("notes/log.json"),
        &dir,
        &[],
    );
    let want = dir.join("notes/log.json");
    assert!(want.is_absolute());
    assert_eq!(d.request("ping")["log_file"], want.display().to_string());
    assert_eq!(std::fs::read_to_string(&want).unwrap(), "[]");
}

#[test]
fn a_pipelined_ping_counts_what_the_requests_before_it_did() {
    // Sent in one write, without waiting for replies: the ping's counts
    // follow the flush and the ack before it.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "600000"]);
    let mut c = Client::new(d.connect());
    c.send_bytes(
        b"{\"a\":1}\n{\"a\":2}\nflush\nping\n{\"op\":\"log\",\"job\":{\"a\":3},\"ack\":true}\nping\n",
    );
    assert_eq!(c.reply(), json!({"ok": true}));
    let p = c.reply();
    // (The acked record after it may already be pending, or even written:
    // its flush can finish before the ping's turn comes.)
    assert!(
        p["records"].as_u64().is_some_and(|n| n == 2 || n == 3),
        "{p}"
    );
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
    let p = c.reply();
    assert_eq!(
        (p["records"].clone(), p["pending"].clone()),
        (json!(3), json!(0)),
        "{p}"
    );
}

#[test]
fn a_ping_never_stops_the_daemon_reading_a_client_that_reads_last() {
    // A client that sends everything (a large answer's request, a ping,
    // then many records) before it reads anything must not deadlock: the
    // daemon keeps reading while the answer waits for the client.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let pad = "x".repeat(300);
    let many = |tag: &str| -> Vec<u8> {
        (0..20_000)
            .flat_map(|i| format!("{{\"{tag}\":{i},\"pad\":\"{pad}\"}}\n").into_bytes())
            .collect()
    };
    let mut c = Client::new(d.connect());
    c.send_bytes(&many("before"));
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    c.writer()
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut all = b"all\nping\n".to_vec();
    all.extend(many("after"));
    all.extend_from_slice(b"flush\n");
    c.send_bytes(&all);
    let answer = c.reply();
    assert_eq!(answer["jobs"].as_array().map(Vec::len), Some(20_000));
    assert_eq!(c.reply()["ok"], true, "the ping");
    assert_eq!(c.reply(), json!({"ok": true}), "the flush");
    assert_eq!(d.request("ping")["records"], 40_000);
}

#[test]
fn ping_reports_counters_and_bare_words_work() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    c.send(r#"{"x":NaN,"y":[Infinity,-Infinity]}"#);
    c.send(r#"{"op":"log","job":{"z":NaN},"ack":true}"#);
    assert_eq!(c.reply()["logged"], 1);
    c.send("  ping  ");
    let p = c.reply();
    assert_eq!(p["ok"], true);
    assert_eq!(p["records"], 2);
    assert_eq!(p["pending"], 0);
    assert_eq!(p["coerced"], 2);
    assert_eq!(p["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["log_file"], d.log.display().to_string());
    assert!(p["uptime_s"].as_f64().is_some());
    let recs = read_log(&d.log);
    assert_eq!(recs[0]["x"], Value::Null);
    assert_eq!(recs[0]["y"], json!([null, null]));
    assert_eq!(recs[1]["z"], Value::Null);
    let s = d.request("stats");
    assert_eq!(s["stats"]["total_jobs"], 2);
}

#[test]
fn logged_at_is_added_last_in_python_isoformat() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    c.send(r#"{"video_id":"v","logged_at":"kept"}"#);
    c.send(r#"{"video_id":"w"}"#);
    c.send("flush");
    c.reply();
    let text = std::fs::read_to_string(&d.log).unwrap();
    let recs = read_log(&d.log);
    assert_eq!(recs[0]["logged_at"], "kept");
    let ts = recs[1]["logged_at"].as_str().unwrap();
    // YYYY-MM-DDTHH:MM:SS[.ffffff]
    let ok = ts.len() == 19 || ts.len() == 26;
    assert!(ok, "{ts}");
    assert!(ts.chars().enumerate().all(|(i, ch)| match i {
        4 | 7 => ch == '-',
        10 => ch == 'T',
        13 | 16 => ch == ':',
        19 => ch == '.',
        _ => ch.is_ascii_digit(),
    }));
    assert!(text.contains(&format!(
        "\"video_id\": \"w\",\n    \"logged_at\": \"{ts}\"\n  }}"
    )));
}

#[test]
fn replies_come_in_order_and_survive_half_close() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let mut c = Client::new(d.connect());
    c.send(r#"{"op":"log","job":{"a":1},"ack":true}"#);
    c.send("bogus");
    c.send(r#"{"op":"log","job":{"a":2}}"#);
    c.send(r#"{"op":"log","job":{"a":3},"ack":true}"#);
    c.send("flush");
    let replies = c.all_replies();
    assert_eq!(replies.len(), 5, "{replies:?}");
    assert_eq!(replies[0], json!({"ok":true,"logged":1}));
    assert_eq!(replies[1]["error"]["code"], "unknown_op");
    assert_eq!(replies[2], json!({"ok":true,"logged":1}));
    assert_eq!(replies[3], json!({"ok":true,"logged":1}));
    assert_eq!(replies[4], json!({"ok":true}));
    assert_eq!(read_log(&d.log).len(), 3);
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    // Hog: floods pings and never reads a reply.
    let hog = d.connect();
    hog.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut hog = Client::new(hog);
    let line = [b"ping\n".as_slice(); 1000].concat();
    let t = std::thread::spawn(move || {
        for _ in 0..200 {
            if std::io::Write::write_all(&mut hog_writer(&mut hog), &line).is_err() {
                break; // its buffers are full: the daemon stopped reading it
            }
        }
        hog
    });
    // A silent client that connects and sends half a line.
    let mut silent = Client::new(d.connect());
    silent.send_bytes(b"{\"half\":");
    let mut c = Client::new(d.connect());
    for i in 0..50 {
        c.send(&format!(r#"{{"op":"log","job":{{"i":{i}}},"ack":true}}"#));
        assert_eq!(c.reply()["ok"], true);
    }
    let _hog = t.join().unwrap();
    assert_eq!(read_log(&d.log).len(), 50);
}

fn hog_writer(c: &mut Client) -> &mut impl std::io::Write {
    c.writer()
}

#[test]
fn a_request_refused_for_one_deep_job_names_the_job() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
    let r = d.request(&format!(
        r#"{{"op":"log_batch","jobs":[{{"n":0}},{{"s":"[[[["}},{deep},{{"n":3}}]}}"#
    ));
    assert_eq!(r["error"]["code"], "too_deep", "{r}");
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("job 2: ") && msg.ends_with("nothing from this request was logged"),
        "{msg}"
    );
    let r = d.request(&format!(r#"{{"op":"log","job":{deep}}}"#));
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("job 0: "),
        "{r}"
    );
    // A record (not a request) has no job to name.
    let r = d.request(&deep);
    assert_eq!(r["error"]["code"], "too_deep", "{r}");
    assert!(
        !r["error"]["message"].as_str().unwrap().starts_with("job"),
        "{r}"
    );
    assert_eq!(d.request("ping")["records"], 0);
}

/// A client that never reads its replies, and sends lines that get error
/// replies: once its reply queue is full, the records it sent before are
/// still written in time (they sat in the connection's chunk, never handed
/// over, and were lost at shutdown), and at shutdown so are those after.
#[test]
fn records_of_a_client_that_never_reads_its_replies_are_written() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--shutdown-timeout-ms", "2000"]);
    let mut s = d.connect();
    let mut buf = String::from("{\"id\":\"keep\"}\n");
    for _ in 0..20_000 {
        buf.push_str("[1]\n"); // not_an_object: one error reply each
    }
    buf.push_str("{\"id\":\"after\"}\n");
    std::io::Write::write_all(&mut s, buf.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(d.request("flush"), json!({"ok": true}));
    let ids = |log: &std::path::Path| -> Vec<String> {
        read_log(log)
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        ids(&d.log),
        vec!["keep"],
        "written while the client is stuck"
    );
    let log = d.log.clone();
    let logs = d.stderr.clone();
    let status = d.stop();
    let logs = std::fs::read_to_string(logs).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert_eq!(ids(&log), vec!["keep", "after"], "{logs}");
    assert!(logs.contains("left its replies unread"), "{logs}");
    // The warning names the connection's peer (a span per connection).
    let peer = format!("conn{{pid={} uid={}}}", std::process::id(), unsafe {
        libc::getuid()
    });
    assert!(
        logs.lines()
            .any(|l| l.contains("left its replies unread") && l.contains(&peer)),
        "{peer} in {logs}"
    );
    drop(s);
}

/// The per-record byte budget with room for a few records only: many
/// connections mixing records, acked `log_batch` requests and error lines;
/// every record lands once, in per-connection order, and nothing hangs.
#[test]
fn a_tiny_budget_many_connections_keep_order_and_lose_nothing() {
    let dir = TempDir::new();
    let d = Daemon::start(
        &dir,
        &[
            "--max-pending-bytes",
            "3000",
            "--batch-max-bytes",
            "1000",
            "--flush-interval-ms",
            "5",
        ],
    );
    const CONNS: usize = 12;
    const PER: usize = 300;
    let threads: Vec<_> = (0..CONNS)
        .map(|c| {
            let s = d.connect();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            std::thread::spawn(move || {
                let mut cl = Client::new(s);
                let mut buf = String::new();
                let mut acks = 0;
                for i in 0..PER {
                    let pad = "x".repeat(if i % 23 == 5 { 5000 } else { (i * 37 + c * 11) % 900 });
                    if i % 50 == 7 {
                        buf.push_str(&format!(
                            "{{\"op\":\"log_batch\",\"ack\":true,\"jobs\":[{{\"c\":{c},\"i\":{i},\"pad\":\"{pad}\"}}]}}\n"
                        ));
                        acks += 1;
                    } else if i % 40 == 3 {
                        buf.push_str(&format!("{{\"c\":{c},\"i\":{i},\"pad\":\"{pad}\"}}\n[1]\n"));
                        acks += 1;
                    } else {
                        buf.push_str(&format!("{{\"c\":{c},\"i\":{i},\"pad\":\"{pad}\"}}\n"));
                    }
                }
                let w = cl.writer().try_clone().unwrap();
                let writer = std::thread::spawn(move || {
                    let mut w = w;
                    std::io::Write::write_all(&mut w, buf.as_bytes()).unwrap();
                });
                for _ in 0..acks {
                    cl.reply();
                }
                writer.join().unwrap();
                cl.send("flush");
                assert_eq!(cl.reply()["ok"], true);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let recs = read_log(&d.log);
    assert_eq!(recs.len(), CONNS * PER);
    for c in 0..CONNS {
        let seq: Vec<u64> = recs
            .iter()
            .filter(|r| r["c"] == c as u64)
            .map(|r| r["i"].as_u64().unwrap())
            .collect();
        assert_eq!(seq, (0..PER as u64).collect::<Vec<_>>(), "connection {c}");
    }
}
