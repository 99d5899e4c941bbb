//! The data file: byte-compatible with Python's json.dump(indent=2,
//! ensure_ascii=False), taken over at start, repaired after damage.

use std::fs;

use serde_json::json;

use crate::util::{Client, Daemon, TempDir, files_containing, python, python_loads, read_log};

/// Python writes `records.ndjson` (one json.dumps per line, mixing
/// ensure_ascii on and off) and `expected.json` (json.dump of the list).
const MAKE_RECORDS: &str = r#"
import json, sys, random
random.seed(7)
out = sys.argv[1]
recs = []
for i in range(300):
    r = {
        "video_id": f"vid{i}", "url": f"https://youtu.be/vid{i}",
        "subject": random.choice(["AI", "Physique", "数学", "Ελληνικά", "emoji 😀"]),
        "worker_id": i % 3,
        "video_title": random.choice(["Intro", "Café \"quoted\" \\ backslash", "tab\there", "line\nbreak", "ctl \x01\x1f\x7f\x85 end", "\u2028sep\u2029"]),
        "transcript": "word " * random.randint(0, 50),
        "transcript_metadata": {"duration": "15:30", "length": 12500, "method": "api"},
        "has_notes": True, "notes_length": 5200, "stage": random.choice(["completed", "generating_notes"]),
        "success": random.random() < 0.7, "error": random.choice([None, "API rate limit exceeded: 429 Too Many Requests"]),
        "start_time": 1697543210.123 + i, "processing_duration": random.random() * 100,
        "timings": {"fetch_transcript": 5.2, "generate_notes": 25.0} if i % 5 else {},
        "files_created": [] if i % 4 == 0 else ["a.md", "b.pdf"],
        "nested": {"deep": [[], {}, [1, [2, [3, {"x": None}]]]], "big": 10**30, "neg": -0.0, "exp": 1e-07},
        "logged_at": f"2025-10-17T09:33:{i % 60:02d}.187500",
    }
    recs.append(r)
with open(out + "/records.ndjson", "w", encoding="utf-8") as f:
    for i, r in enumerate(recs):
        f.write(json.dumps(r, ensure_ascii=(i % 2 == 0)) + "\n")
with open(out + "/expected.json", "w", encoding="utf-8") as f:
    json.dump(recs, f, indent=2, ensure_ascii=False)
"#;

#[test]
fn file_is_byte_identical_to_python_json_dump() {
    let dir = TempDir::new();
    python(MAKE_RECORDS, &[dir.path().to_str().unwrap()]);
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    c.send_bytes(&fs::read(dir.join("records.ndjson")).unwrap());
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    let got = fs::read(&d.log).unwrap();
    let want = fs::read(dir.join("expected.json")).unwrap();
    if got != want {
        let at = got
            .iter()
            .zip(&want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "differs at byte {at}:\n got: {:?}\nwant: {:?}",
            String::from_utf8_lossy(&got[at.saturating_sub(80)..(at + 80).min(got.len())]),
            String::from_utf8_lossy(&want[at.saturating_sub(80)..(at + 80).min(want.len())])
        );
    }
    assert_eq!(python_loads(&d.log), 300);
}

#[test]
fn takes_over_a_python_written_file_and_restart_appends() {
    let dir = TempDir::new();
    let log = dir.join("notes/processing_log.json");
    // The old logger's file, with non-ASCII, exactly as it wrote it.
    python(
        r#"
import json, sys, os
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
recs = [{"video_id": "a", "subject": "数学", "success": True, "logged_at": "2025-10-17T09:33:10.187500"},
        {"video_id": "b", "error": "Échec: réseau", "success": False, "logged_at": "2025-10-17T09:35:22"}]
json.dump(recs, open(sys.argv[1], "w", encoding="utf-8"), indent=2, ensure_ascii=False)
"#,
        &[log.to_str().unwrap()],
    );
    let d = Daemon::start_with(dir.join("s.sock"), log.clone(), &dir, &[]);
    let r = d.request(
        r#"{"op":"log","job":{"video_id":"c","subject":"Ελληνικά","logged_at":"x"},"ack":true}"#,
    );
    assert_eq!(r["ok"], true);
    assert_eq!(d.request("ping")["records"], 3);
    assert_eq!(d.stop().code(), Some(0));
    let d = Daemon::start_with(dir.join("s.sock"), log.clone(), &dir, &[]);
    assert_eq!(d.request("ping")["records"], 3);
    d.request(r#"{"op":"log","job":{"video_id":"d","logged_at":"y"},"ack":true}"#);
    drop(d);
    // The whole file is what Python itself would have written.
    let out = python(
        r#"
import json, sys
recs = json.load(open(sys.argv[1], encoding="utf-8"))
print(open(sys.argv[1], encoding="utf-8").read() == json.dumps(recs, indent=2, ensure_ascii=False))
print(",".join(r["video_id"] for r in recs))
"#,
        &[log.to_str().unwrap()],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "True\na,b,c,d\n");
    assert!(files_containing(&dir.join("notes"), "corrupt").is_empty());
}

/// Starts a daemon on a damaged file; checks the kept prefix, the copy of
/// the bytes cut, and that appending works afterwards.
fn check_recovery(content: &[u8], kept: &[&str]) {
    let dir = TempDir::new();
    fs::write(dir.join("log.json"), content).unwrap();
    let d = Daemon::start(&dir, &[]);
    let ids: Vec<String> = read_log(&d.log)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, kept, "for {:?}", String::from_utf8_lossy(content));
    // Only the bytes cut are copied aside, named by their offset in the
    // original: the kept prefix and the copy make up the original.
    let copies = files_containing(dir.path(), "log.json.corrupt-");
    assert_eq!(copies.len(), 1, "one copy of the bytes cut");
    let from = crate::util::copied_from(&copies[0]);
    assert_eq!(
        fs::read(&copies[0]).unwrap(),
        &content[from..],
        "copy holds the bytes cut"
    );
    let now = fs::read(&d.log).unwrap();
    assert!(
        from <= 1 || now[..from] == content[..from],
        "the file keeps the original up to the copy's offset"
    );
    assert!(
        d.logs().contains("not a valid JSON array"),
        "warning logged:\n{}",
        d.logs()
    );
    let r = d.request(r#"{"op":"log","job":{"id":"new"},"ack":true}"#);
    assert_eq!(r["ok"], true);
    let mut want: Vec<&str> = kept.to_vec();
    want.push("new");
    let ids: Vec<String> = read_log(&d.log)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, want);
    assert_eq!(python_loads(&d.log), want.len());
}

#[test]
fn torn_and_garbage_tails_are_repaired_with_the_bytes_cut_copied_aside() {
    let good = "[\n  {\n    \"id\": \"a\"\n  },\n  {\n    \"id\": \"b\"\n  }";
    // Torn inside the last record.
    check_recovery(
        format!("{good},\n  {{\n    \"id\": \"c").as_bytes(),
        &["a", "b"],
    );
    // Torn right after a comma.
    check_recovery(format!("{good},").as_bytes(), &["a", "b"]);
    // Missing closing bracket only.
    check_recovery(format!("{good}\n").as_bytes(), &["a", "b"]);
    // Zero-filled blocks after the array, as after a power cut.
    let mut zeros = format!("{good}\n]").into_bytes();
    zeros.extend(std::iter::repeat_n(0u8, 8192));
    check_recovery(&zeros, &["a", "b"]);
    // Zero-filled blocks in place of the tail.
    let mut cut = format!("{good},\n  {{\"id\": ").into_bytes();
    cut.extend(std::iter::repeat_n(0u8, 4096));
    check_recovery(&cut, &["a", "b"]);
    // Garbage after the closing bracket.
    check_recovery(format!("{good}\n]garbage").as_bytes(), &["a", "b"]);
    // Not an array at all.
    check_recovery(b"{\"id\": \"x\"}", &[]);
}

#[test]
fn a_log_starting_with_a_byte_order_mark_is_taken_over_as_it_is() {
    // As saved by an editor, or by Python with encoding="utf-8-sig"; jq and
    // json.loads(bytes) read it.
    let dir = TempDir::new();
    let mut content = b"\xEF\xBB\xBF".to_vec();
    content.extend_from_slice(b"[\n  {\n    \"id\": \"a\"\n  }\n]");
    fs::write(dir.join("log.json"), &content).unwrap();
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 1);
    let r = d.request(r#"{"op":"log","job":{"id":"b"},"ack":true}"#);
    assert_eq!(r["ok"], true);
    let bytes = fs::read(&d.log).unwrap();
    assert!(
        bytes.starts_with(&content[..content.len() - 2]),
        "kept as it was, BOM included:\n{}",
        String::from_utf8_lossy(&bytes)
    );
    let recs: Vec<serde_json::Value> = serde_json::from_slice(&bytes[3..]).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["id"], "b");
    assert!(files_containing(dir.path(), "corrupt").is_empty());
    assert_eq!(d.request("stats")["stats"]["total_jobs"], 2);
    assert_eq!(d.stop().code(), Some(0));
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["records"], 2);
}

#[test]
fn empty_file_becomes_an_empty_array_and_missing_parents_are_created() {
    let dir = TempDir::new();
    let log = dir.join("a/b/c/log.json");
    let d = Daemon::start_with(dir.join("s.sock"), log.clone(), &dir, &[]);
    assert_eq!(fs::read(&log).unwrap(), b"[]");
    drop(d);
    fs::write(&log, b"").unwrap();
    let d = Daemon::start_with(dir.join("s.sock"), log.clone(), &dir, &[]);
    assert_eq!(fs::read(&log).unwrap(), b"[]");
    assert!(files_containing(&dir.join("a/b/c"), "corrupt").is_empty());
    d.request(r#"{"op":"log","job":{"k":1,"logged_at":"t"},"ack":true}"#);
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "[\n  {\n    \"k\": 1,\n    \"logged_at\": \"t\"\n  }\n]"
    );
}

/// Which pages of `path` are in the page cache (`mincore` on a mapping
/// that is never touched, so mapping it loads nothing).
fn resident_pages(path: &std::path::Path) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: a read-only shared mapping of a file we hold open, only
    // inspected with mincore (into a vector of one byte per page) and
    // unmapped before returning; its memory is never read.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        let rc = libc::mincore(p, len, vec.as_mut_ptr());
        libc::munmap(p, len);
        assert_eq!(rc, 0, "mincore");
    }
    vec.iter().map(|b| b & 1 == 1).collect()
}

#[test]
fn durable_pages_leave_the_page_cache_unless_kept() {
    let dir = TempDir::new();
    // SAFETY: statfs fills the struct it is given.
    let fs_type = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let c = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(libc::statfs(c.as_ptr(), &mut st), 0);
        st.f_type
    };
    if fs_type == libc::TMPFS_MAGIC {
        eprintln!(
            "SKIPPED: {} is on tmpfs, whose pages cannot leave the cache",
            dir.path().display()
        );
        return;
    }
    let jobs: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                r#"{{"video_id":"v{i}","success":true,"pad":"{}"}}"#,
                "x".repeat(400)
            )
        })
        .collect();
    let batch = format!(
        r#"{{"op":"log_batch","jobs":[{}],"ack":true}}"#,
        jobs.join(",")
    );
    for (policy, expect_cached) in [("drop", false), ("keep", true)] {
        let log = dir.join(&format!("{policy}.json"));
        let d = Daemon::start_with(
            dir.join("s.sock"),
            log.clone(),
            &dir,
            &["--page-cache", policy],
        );
        for _ in 0..3 {
            assert_eq!(d.request(&batch)["logged"], 2000, "{policy}");
        }
        let pages = resident_pages(&log);
        assert!(pages.len() > 100, "{} pages", pages.len());
        // The last page holds the closing bracket the next flush rewrites:
        // it always stays.
        let body = &pages[..pages.len() - 1];
        let cached = body.iter().filter(|&&r| r).count();
        if expect_cached {
            assert_eq!(cached, body.len(), "keep: every written page stays cached");
        } else {
            assert_eq!(cached, 0, "drop: durable pages were handed back");
        }
        assert!(
            pages[pages.len() - 1],
            "{policy}: the tail page stays cached"
        );
        // Records read back (from the disk now, with drop) are intact.
        let r = d.request(r#"{"op":"jobs","video_id":"v1999","limit":10}"#);
        assert_eq!(r["jobs"].as_array().map(Vec::len), Some(3), "{policy}: {r}");
        drop(d);
        assert_eq!(read_log(&log).len(), 6000);
    }
}

/// A log cut short underneath the daemon (logrotate's `copytruncate`,
/// `: > log.json`) gets a new array with every record not yet written,
/// instead of records after a gap of zero bytes; queries and counts follow
/// the new file. A file cut into its records keeps the complete records
/// left in it (another process changed it: it is taken over as it is),
/// the original is copied aside, and the records cut away are counted.
#[test]
fn a_log_cut_short_underneath_gets_a_new_array_with_the_pending_records() {
    for cut_to in [0u64, 100] {
        let dir = TempDir::new();
        // Records stay pending until asked: no timer, no size trigger.
        let d = Daemon::start(&dir, &["--flush-interval-ms", "600000"]);
        let mut c = Client::new(d.connect());
        let id = |s: &str, i: usize| format!(r#"{{"video_id":"{s}{i}","success":true}}"#);
        for i in 0..50 {
            c.send(&id("old", i));
        }
        c.send("flush");
        assert_eq!(c.reply(), json!({"ok": true}));
        for i in 0..5 {
            c.send(&id("pending", i));
        }
        c.send("ping");
        assert_eq!(c.reply()["pending"], 5);
        let f = fs::OpenOptions::new().write(true).open(&d.log).unwrap();
        f.set_len(cut_to).unwrap();
        drop(f);
        for i in 0..10 {
            c.send(&id("new", i));
        }
        c.send("flush");
        assert_eq!(c.reply(), json!({"ok": true}), "cut to {cut_to}");

        let ids: Vec<String> = read_log(&d.log)
            .iter()
            .map(|r| r["video_id"].as_str().unwrap_or_default().to_owned())
            .collect();
        // 100 bytes still hold the first record whole.
        let kept = usize::from(cut_to > 0);
        let want: Vec<String> = (0..kept)
            .map(|i| format!("old{i}"))
            .chain((0..5).map(|i| format!("pending{i}")))
            .chain((0..10).map(|i| format!("new{i}")))
            .collect();
        assert_eq!(ids, want, "cut to {cut_to}");
        c.send("ping");
        let ping = c.reply();
        assert_eq!(ping["records"], 15 + kept, "{ping}");
        assert_eq!(ping["last_error"], json!(null), "{ping}");
        if cut_to == 0 {
            assert_eq!(ping["truncations"], 1, "{ping}");
            assert_eq!(ping["records_truncated"], 50, "{ping}");
        } else {
            assert_eq!(ping["foreign_writes"], 1, "{ping}");
            assert_eq!(ping["records_lost"], 49, "{ping}");
            assert_eq!(ping["records_taken_in"], 0, "{ping}");
            assert_eq!(ping["last_foreign_write"]["records_lost"], 49, "{ping}");
        }
        c.send("stats");
        assert_eq!(c.reply()["stats"]["total_jobs"], 15 + kept);
        // Offsets follow the new file: records read back are the right ones.
        c.send(r#"{"op":"jobs","offset":4,"limit":2,"fields":["video_id"]}"#);
        let jobs = c.reply();
        let at = |i: usize| want[i].clone();
        assert_eq!(
            jobs["jobs"],
            json!([{"video_id": at(4)}, {"video_id": at(5)}]),
            "{jobs}"
        );
        // What the cut left past the last whole record is copied aside
        // (here the 100 bytes end with the first record: only its closing
        // bracket was missing, and nothing is copied).
        let copies = files_containing(dir.path(), "log.json.corrupt-");
        assert!(copies.len() <= usize::from(cut_to > 0), "{copies:?}");
        for c in &copies {
            let from = crate::util::copied_from(c) as u64;
            assert_eq!(fs::metadata(c).unwrap().len(), cut_to - from);
        }
        let log = fs::read_to_string(&d.stderr).unwrap_or_default();
        if cut_to == 0 {
            assert!(log.contains("cut short underneath the daemon"), "{log}");
        } else {
            assert!(log.contains("Another process wrote the log file"), "{log}");
            assert!(log.contains("records_lost=49"), "{log}");
        }
    }
}
