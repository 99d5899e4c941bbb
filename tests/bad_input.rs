//! The bad-input corpus: `tests/fixtures/bad_input/manifest.json` lists
//! every case (the bytes of `<name>.bin`, or bytes built here for the huge
//! ones) with the replies it must get and the records of it that must land.
//!
//! One daemon serves the whole corpus. Each case goes on a fresh connection,
//! followed by one good record and a `flush`, then a `jobs` request that
//! counts the good records; the connection is half-closed and every reply
//! read to the end, so a missing or extra reply is seen. After each case a
//! `ping` on a new connection proves the daemon is alive and gives the
//! records (and `coerced`) delta. At the end the daemon's peak RSS
//! (`VmHWM`) must stay under [`RSS_BOUND_KIB`].
//!
//! A case that does not get what protocol.md promises is reported, the
//! corpus goes on, and the test fails at the end listing every such case.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Daemon, TempDir};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bad_input");

/// `--max-line-bytes` of the daemon under test (also its default).
const MAX_LINE: usize = 16 << 20;

/// Documented bound on the daemon's peak RSS over the whole corpus.
const RSS_BOUND_KIB: u64 = 1 << 20;

const GOOD: &[u8] = b"{\"video_id\":\"good-after\",\"logged_at\":\"t\"}\n";
const FLUSH: &[u8] = b"{\"op\":\"flush\"}\n";
/// Counts the good records (`total`) without sending them back.
const COUNT_GOOD: &[u8] = b"{\"op\":\"jobs\",\"video_id\":\"good-after\",\"limit\":0}\n";

/// Per read; the slowest case (a 1,000,000-record batch, debug build) takes
/// a few seconds.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone)]
enum Bytes {
    File(Vec<u8>),
    Generated(String),
}

struct Case {
    name: String,
    bytes: Bytes,
    /// `{"code","line"}` or `{"ok":true,…}` per reply, in order.
    replies: Vec<Value>,
    records: u64,
    coerced: u64,
    half_close: bool,
    check: Option<Value>,
}

/// The manifest's cases in name order; every `.bin` file must be in it.
fn load() -> Vec<Case> {
    let text = fs::read_to_string(format!("{DIR}/manifest.json")).expect("read manifest.json");
    let manifest: Value = serde_json::from_str(&text).expect("manifest.json is JSON");
    let good = manifest["good_record"].as_str().expect("good_record");
    assert_eq!(format!("{good}\n").as_bytes(), GOOD, "manifest good_record");
    let entries = manifest["cases"].as_object().expect("cases object");
    let mut names: Vec<&String> = entries.keys().collect();
    names.sort();
    let mut on_disk = BTreeSet::new();
    for e in fs::read_dir(DIR).expect("read corpus dir") {
        let name = e
            .expect("dir entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".bin") {
            on_disk.insert(name);
        }
    }
    let mut cases = Vec::new();
    for name in names {
        let e = &entries[name.as_str()];
        let bytes = match e.get("generate").and_then(Value::as_str) {
            Some(kind) => {
                assert!(!name.ends_with(".bin"), "{name}: generated, not a file");
                Bytes::Generated(kind.to_string())
            }
            None => {
                assert!(on_disk.remove(name), "{name}: in the manifest, not on disk");
                Bytes::File(fs::read(format!("{DIR}/{name}")).expect("read case"))
            }
        };
        let half_close = e["half_close"].as_bool().unwrap_or(false);
        if let Bytes::File(b) = &bytes {
            // Otherwise the good record would join the case's last line.
            assert!(
                half_close || b.ends_with(b"\n"),
                "{name}: must end with a newline"
            );
        }
        cases.push(Case {
            name: name.trim_end_matches(".bin").to_string(),
            bytes,
            replies: e["replies"].as_array().expect("replies").clone(),
            records: e["records"].as_u64().expect("records"),
            coerced: e["coerced"].as_u64().unwrap_or(0),
            half_close,
            check: e.get("check").cloned(),
        });
    }
    assert!(on_disk.is_empty(), "not in the manifest: {on_disk:?}");
    cases
}

/// A record line of exactly `len` bytes (newline not counted).
fn padded_record(video_id: &str, len: usize) -> Vec<u8> {
    let head = format!("{{\"video_id\":\"{video_id}\",\"logged_at\":\"t\",\"s\":\"");
    let mut v = Vec::with_capacity(len + 1);
    v.extend_from_slice(head.as_bytes());
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}\n");
    v
}

/// `head`, `depth` opening brackets, `0,0,…,0` (about `len` bytes in all),
/// the closing brackets and `tail`: every element prints on its own line
/// with 2 * (depth + 2) spaces, so the record prints to ~depth times its
/// size.
fn expanding(head: &[u8], depth: usize, len: usize, tail: &[u8]) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend(std::iter::repeat_n(b'[', depth));
    let elements = (len - head.len() - 2 * depth - tail.len()) / 2;
    v.extend(b"0,".iter().copied().cycle().take(2 * elements - 1));
    v.extend(std::iter::repeat_n(b']', depth));
    v.extend_from_slice(tail);
    v
}

/// A `log_batch` request of `n` empty jobs `{}`.
fn empty_jobs(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 * n + 64);
    v.extend_from_slice(b"{\"op\":\"log_batch\",\"jobs\":[");
    for _ in 1..n {
        v.extend_from_slice(b"{},");
    }
    v.extend_from_slice(b"{}]}\n");
    v
}

/// Writes the bytes of a generated case (the big ones are never files).
fn write_generated(kind: &str, w: &mut UnixStream) -> io::Result<()> {
    match kind {
        "nested_100k" => {
            let mut v = b"{\"video_id\":\"nested-100k\",\"a\":".to_vec();
            v.extend(std::iter::repeat_n(b'[', 100_000));
            v.extend(std::iter::repeat_n(b']', 100_000));
            v.extend_from_slice(b"}\n");
            w.write_all(&v)
        }
        "key_65537" => {
            let mut v = b"{\"video_id\":\"key-65537\",\"logged_at\":\"t\",\"".to_vec();
            v.extend(std::iter::repeat_n(b'k', 65_537));
            v.extend_from_slice(b"\":1}\n");
            w.write_all(&v)
        }
        "whitespace_8mb" => {
            let mut v = b"{\"video_id\":\"whitespace-8mb\",".to_vec();
            v.extend(b" \t".iter().copied().cycle().take(8 << 20));
            v.extend_from_slice(b"\"logged_at\"\t \r : \"t\" }\n");
            w.write_all(&v)
        }
        "whitespace_line_4mb" => {
            let mut v: Vec<u8> = b" \t".iter().copied().cycle().take(4 << 20).collect();
            v.extend_from_slice(b"\n{\"a\":\n");
            w.write_all(&v)
        }
        "string_10mb" => {
            let mut v = b"{\"video_id\":\"string-10mb\",\"logged_at\":\"t\",\"s\":\"".to_vec();
            v.extend(b"0123456789".iter().copied().cycle().take(10_000_000));
            v.extend_from_slice(b"\"}\n");
            w.write_all(&v)
        }
        "line_at_limit" => w.write_all(&padded_record("line-at-limit", MAX_LINE)),
        "line_over_limit" => w.write_all(&padded_record("line-over-limit", MAX_LINE + 1)),
        "long_line_100mb" => {
            // 100 MiB without a newline, streamed, then the newline.
            w.write_all(b"{\"video_id\":\"long-line\",\"s\":\"")?;
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..100 {
                w.write_all(&chunk)?;
            }
            w.write_all(b"\n")
        }
        "log_batch_1m" => w.write_all(&empty_jobs(1_000_000)),
        "expanding_16mb" => w.write_all(&expanding(
            b"{\"video_id\":\"expanding-16mb\",\"a\":",
            120,
            16_000_000,
            b"}\n",
        )),
        "expanding_100k" => w.write_all(&expanding(
            b"{\"video_id\":\"expanding-100k\",\"logged_at\":\"t\",\"a\":",
            60,
            100_000,
            b"}\n",
        )),
        "log_batch_expanding_16mb" => w.write_all(&expanding(
            b"{\"op\":\"log_batch\",\"jobs\":[{\"video_id\":\"expanding-batch\",\"a\":",
            120,
            16_000_000,
            b"}]}\n",
        )),
        "log_batch_jobs_within_limit" => {
            let mut v = b"{\"op\":\"log_batch\",\"jobs\":[".to_vec();
            for k in 0..3 {
                if k > 0 {
                    v.push(b',');
                }
                v.extend_from_slice(b"{\"video_id\":\"batch-within\",\"scores\":[");
                v.extend(b"1,".iter().copied().cycle().take(4_000_000 - 1));
                v.extend_from_slice(b"]}");
            }
            v.extend_from_slice(b"]}\n");
            w.write_all(&v)
        }
        "log_batch_jobs_over_limit" => w.write_all(&empty_jobs(1_500_000)),
        other => panic!("unknown generator {other:?}"),
    }
}

fn connect(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket)
        .unwrap_or_else(|e| panic!("cannot connect: the daemon is gone? ({e})\n{}", d.logs()));
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s
}

/// On a new connection, sends the case's bytes (if any) and `tail` from a
/// thread (the daemon answers while it reads), half-closes, and returns
/// every reply line until the daemon closes the connection.
fn exchange(d: &Daemon, case: Option<&Case>, tail: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let s = connect(d);
    let mut w = s.try_clone().expect("clone");
    let tail = tail.to_vec();
    let bytes = case.map(|c| c.bytes.clone());
    let writer = std::thread::spawn(move || -> io::Result<()> {
        match &bytes {
            Some(Bytes::File(b)) => w.write_all(b)?,
            Some(Bytes::Generated(k)) => write_generated(k, &mut w)?,
            None => {}
        }
        w.write_all(&tail)?;
        w.shutdown(Shutdown::Write)
    });
    let mut r = BufReader::new(s);
    let mut lines = Vec::new();
    let read = loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => lines.push(line),
            Err(e) => {
                break Err(format!(
                    "reading replies: {e} (after {} lines)",
                    lines.len()
                ));
            }
        }
    };
    if read.is_err() {
        // Unblock a writer the daemon no longer reads from.
        let _ = r.get_ref().shutdown(Shutdown::Both);
    }
    let wrote = writer.join().expect("writer thread");
    read?;
    wrote.map_err(|e| format!("writing: {e}"))?;
    Ok(lines)
}

fn show(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

fn parse(line: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(line).map_err(|e| format!("reply {} is not JSON: {e}", show(line)))
}

/// One reply against its manifest entry.
fn check_reply(want: &Value, line: &[u8]) -> Result<(), String> {
    let got = parse(line)?;
    let ok = match want.get("code") {
        Some(code) => {
            got["ok"] == false
                && got["error"]["code"] == *code
                && got["line"] == want["line"]
                && got["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
        }
        None => want
            .as_object()
            .expect("reply object")
            .iter()
            .all(|(k, v)| got[k] == *v),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {want}, got {}", show(line)))
    }
}

/// Counters read with `ping` on a new connection (the daemon is alive).
#[derive(Clone, Copy, Debug)]
struct Counters {
    records: u64,
    coerced: u64,
    good: u64,
}

fn ping(d: &Daemon) -> Result<(u64, u64), String> {
    let lines = exchange(d, None, b"ping\n")?;
    let [line] = lines.as_slice() else {
        return Err(format!("ping: {} replies", lines.len()));
    };
    let p = parse(line)?;
    if p["ok"] != true || p["pending"] != 0 {
        return Err(format!("ping after the flush: {}", show(line)));
    }
    Ok((
        p["records"].as_u64().ok_or("ping records")?,
        p["coerced"].as_u64().ok_or("ping coerced")?,
    ))
}

/// The `total` of a [`COUNT_GOOD`] reply.
fn good_total(line: &[u8]) -> Result<u64, String> {
    let v = parse(line)?;
    match (v["ok"].as_bool(), v["count"].as_u64(), v["total"].as_u64()) {
        (Some(true), Some(0), Some(t)) => Ok(t),
        _ => Err(format!("count of good records: {}", show(line))),
    }
}

/// What one case did: the counters after it (`None` if they could not be
/// read), the replies checked, and everything that differed from the
/// manifest.
struct Outcome {
    after: Option<Counters>,
    checked: usize,
    problems: Vec<String>,
}

fn run_case(d: &Daemon, c: &Case, before: Counters) -> Outcome {
    let mut out = Outcome {
        after: None,
        checked: 0,
        problems: Vec::new(),
    };
    if let Err(e) = run_case_into(d, c, before, &mut out) {
        out.problems.push(e);
    }
    out
}

fn run_case_into(d: &Daemon, c: &Case, before: Counters, out: &mut Outcome) -> Result<(), String> {
    let problems = &mut out.problems;
    let expected = c.replies.len();
    let (case_replies, after_good) = if c.half_close {
        let replies = exchange(d, Some(c), b"")?;
        let good = exchange(d, None, &[GOOD, FLUSH, COUNT_GOOD].concat())?;
        (replies, good)
    } else {
        let mut all = exchange(d, Some(c), &[GOOD, FLUSH, COUNT_GOOD].concat())?;
        let split = all.len().saturating_sub(2);
        let good = all.split_off(split);
        (all, good)
    };
    if case_replies.len() != expected {
        problems.push(format!(
            "{} replies to the case's bytes, expected {expected}:\n      {}",
            case_replies.len(),
            case_replies
                .iter()
                .map(|l| show(l))
                .collect::<Vec<_>>()
                .join("\n      ")
        ));
    } else {
        for (i, (want, got)) in c.replies.iter().zip(&case_replies).enumerate() {
            if let Err(e) = check_reply(want, got) {
                problems.push(format!("reply {}: {e}", i + 1));
            }
        }
    }
    out.checked += expected;
    let mut good = before.good;
    match after_good.as_slice() {
        [flush, count] => {
            if parse(flush)? != serde_json::json!({"ok": true}) {
                problems.push(format!("flush reply: {}", show(flush)));
            }
            good = good_total(count)?;
            if good != before.good + 1 {
                problems.push(format!(
                    "good-after records: {} -> {good}, expected one more",
                    before.good
                ));
            }
            out.checked += 2;
        }
        other => problems.push(format!(
            "expected the flush and count replies, got {} lines",
            other.len()
        )),
    }
    let (records, coerced) = ping(d)?;
    out.checked += 1;
    out.after = Some(Counters {
        records,
        coerced,
        good,
    });
    let landed = records.saturating_sub(before.records);
    if landed != c.records + 1 {
        problems.push(format!(
            "{landed} records landed (the good record included), expected {} + 1",
            c.records
        ));
    }
    if coerced.saturating_sub(before.coerced) != c.coerced {
        problems.push(format!(
            "coerced went {} -> {coerced}, expected +{}",
            before.coerced, c.coerced
        ));
    }
    if let Some(check) = &c.check {
        let req = format!("{}\n", check["request"]);
        let lines = exchange(d, None, req.as_bytes())?;
        out.checked += 1;
        match lines.as_slice() {
            [line] => {
                for s in check["contains"].as_array().into_iter().flatten() {
                    let s = s.as_str().expect("contains: strings");
                    if !line.windows(s.len()).any(|w| w == s.as_bytes()) {
                        problems.push(format!(
                            "check {}: the reply does not contain {s:?}: {}",
                            req.trim_end(),
                            show(line)
                        ));
                    }
                }
            }
            other => problems.push(format!("check {}: {} replies", req.trim_end(), other.len())),
        }
    }
    Ok(())
}

/// Peak resident set size of `pid`, in KiB.
fn vm_hwm_kib(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

#[test]
fn bad_input_corpus_gets_documented_replies_and_costs_nothing_else() {
    let cases = load();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let dir = TempDir::new();
    let max_line = MAX_LINE.to_string();
    let d = Daemon::start(&dir, &["--max-line-bytes", &max_line]);
    let t0 = Instant::now();

    let (records, coerced) = ping(&d).expect("first ping");
    let start = exchange(&d, None, COUNT_GOOD).expect("count good records");
    let mut now = Counters {
        records,
        coerced,
        good: good_total(&start[0]).expect("count"),
    };
    let first = now;
    let mut failures = Vec::new();
    let mut replies_checked = 0;
    for c in &cases {
        let t = Instant::now();
        let o = run_case(&d, c, now);
        replies_checked += o.checked;
        let after = match o.after {
            Some(a) => a,
            None => {
                // Resume from what the daemon says now.
                let (records, coerced) = ping(&d).expect("ping after a failed case");
                Counters {
                    records,
                    coerced,
                    ..now
                }
            }
        };
        if o.problems.is_empty() {
            println!(
                "  ok   {:<42} {:>2} replies {:>8} records {:>6} ms",
                c.name,
                c.replies.len(),
                after.records - now.records - 1,
                t.elapsed().as_millis()
            );
        } else {
            let e = format!("{}\n      {}", c.name, o.problems.join("\n      "));
            println!("  FAIL {e}");
            failures.push(e);
        }
        now = after;
    }
    let elapsed = t0.elapsed();
    let hwm = vm_hwm_kib(d.pid());
    println!(
        "bad_input: {} cases run, {replies_checked} replies checked, {} records landed \
         ({} from the cases, {} good-after), {} failed",
        cases.len(),
        now.records - first.records,
        now.records - first.records - (now.good - first.good),
        now.good - first.good,
        failures.len()
    );
    println!(
        "bad_input: daemon peak RSS (VmHWM) {} KiB = {:.1} MiB (bound {} MiB); corpus took {:.1} s",
        hwm,
        hwm as f64 / 1024.0,
        RSS_BOUND_KIB / 1024,
        elapsed.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} case(s) did not get what protocol.md promises:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    assert!(
        hwm < RSS_BOUND_KIB,
        "peak RSS {hwm} KiB over the {RSS_BOUND_KIB} KiB bound"
    );
}
