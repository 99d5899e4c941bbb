//! Queries and statistics, checked against a reference implementation of the
//! Python logger's semantics (tests/fixtures/reference.py, standard library
//! only) reading the same file with json.load.

use std::fs;

use serde_json::{Value, json};

use crate::util::{Client, Daemon, TempDir, python, read_log};

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.py");

fn reference(args: &[&str]) -> Vec<u8> {
    let script = format!(
        "import runpy, sys; sys.argv = [{REFERENCE:?}] + sys.argv[1:]; runpy.run_path({REFERENCE:?}, run_name='__main__')"
    );
    python(&script, args).stdout
}

/// Sends a query; returns the reply line, or for export_csv the CSV text.
fn ask(c: &mut Client, q: &Value) -> Value {
    c.send(&q.to_string());
    let r = c.reply();
    if q["op"] == "export_csv" {
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["content_type"], "text/csv");
        let n = r["bytes"].as_u64().unwrap() as usize;
        return Value::String(String::from_utf8(c.bytes(n)).unwrap());
    }
    let mut r = r;
    if let Some(o) = r.as_object_mut()
        && o.contains_key("jobs")
    {
        // What the answer covered (the Python reference has no positions):
        // checked in from_seq_leaves_out_earlier_records….
        assert!(o.remove("log_id").is_some_and(|v| v.is_string()), "{q}");
        assert!(o.remove("durable").is_some_and(|v| v.is_u64()), "{q}");
    }
    r
}

/// Equal, with floats within `rel` (1% for percentiles, which come from a
/// histogram; 1e-9 elsewhere).
fn approx(got: &Value, want: &Value, path: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut gk: Vec<&String> = g.keys().collect();
            let mut wk: Vec<&String> = w.keys().collect();
            gk.sort();
            wk.sort();
            assert_eq!(gk, wk, "keys at {path}");
            for (k, wv) in w {
                approx(&g[k], wv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "length at {path}");
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                approx(gv, wv, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(g), Value::Number(w)) if g.is_f64() || w.is_f64() => {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            let rel = if path.ends_with("p50") || path.ends_with("p95") {
                0.01
            } else {
                1e-9
            };
            assert!(
                (g - w).abs() <= rel * w.abs().max(1e-12),
                "{path}: got {g}, want {w}"
            );
        }
        _ => assert_eq!(got, want, "at {path}"),
    }
}

/// The members of an object, in the order the JSON text gives them
/// (serde_json's `Value` sorts them).
struct InOrder(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for InOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<InOrder, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry()? {
                    v.push(e);
                }
                Ok(InOrder(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// The keys of `stats.<key>` in a `stats` reply's JSON text, in order.
fn stats_keys(reply: &str, key: &str) -> Vec<String> {
    let get = |text: &str, k: &str| -> String {
        let o: InOrder = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        o.0.into_iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .1
            .get()
            .to_owned()
    };
    let o: InOrder = serde_json::from_str(&get(&get(reply, "stats"), key)).unwrap();
    o.0.into_iter().map(|(k, _)| k).collect()
}

/// A request's reply line as the daemon wrote it, on a new connection.
fn raw_reply(d: &Daemon, q: &Value) -> String {
    use std::io::{BufRead, Write};
    let mut s = d.connect();
    writeln!(s, "{q}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    line
}

fn queries() -> Vec<Value> {
    vec![
        json!({"op":"stats"}),
        json!({"op":"stats","subject":"AI"}),
        json!({"op":"stats","worker_id":0,"since":"2025-10-17T01:00:00","until":"2025-10-17T05:00:00"}),
        json!({"op":"failed"}),
        json!({"op":"successful"}),
        json!({"op":"by_stage","stage":"generating_notes"}),
        json!({"op":"by_stage","stage":"null"}),
        json!({"op":"all"}),
        json!({"op":"jobs","subject":"数学"}),
        json!({"op":"jobs","worker_id":"w3"}),
        json!({"op":"jobs","worker_id":2,"success":false}),
        json!({"op":"jobs","video_id":"vid7"}),
        json!({"op":"jobs","error_type":"API rate limit exceeded"}),
        json!({"op":"jobs","error_type":"Unknown error"}),
        json!({"op":"jobs","error_type":"{\"code\":500}"}),
        json!({"op":"jobs","since":"2025-10-17T03:00:00","until":"2025-10-17T03:30:00.5"}),
        json!({"op":"jobs","latest_per_video":true,"success":false}),
        json!({"op":"jobs","sort_by":"processing_duration","order":"desc","limit":5,"fields":["video_title","processing_duration"]}),
        json!({"op":"jobs","sort_by":"processing_duration","limit":5}),
        json!({"op":"jobs","sort_by":"logged_at","order":"desc","offset":10,"limit":7}),
        json!({"op":"jobs","offset":4990}),
        json!({"op":"jobs","limit":0}),
        json!({"op":"jobs","success":true,"subject":"AI","fields":["video_id","nope"]}),
        json!({"op":"failed","stage":"completed","limit":3,"order":"desc"}),
        json!({"op":"retry_candidates"}),
        json!({"op":"export_csv"}),
        json!({"op":"export_csv","success":false,"subject":"Ελληνικά"}),
    ]
}

#[test]
fn answers_match_the_python_reference_and_survive_a_restart() {
    let dir = TempDir::new();
    let gen_path = dir.join("records.ndjson");
    reference(&["generate", gen_path.to_str().unwrap(), "5000"]);
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    // The first half goes over a lone connection (index facts computed by
    // the writer), the second while another connection is open (computed
    // by the connection): both must index alike.
    let all = fs::read(&gen_path).unwrap();
    let lines: Vec<&[u8]> = all.split_inclusive(|&b| b == b'\n').collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    c.send_bytes(&first.concat());
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    let mut other = Client::new(d.connect());
    other.send("ping");
    assert_eq!(other.reply()["ok"], true);
    c.send_bytes(&second.concat());
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    drop(other);
    assert_eq!(read_log(&d.log).len(), 5000);

    let qs = queries();
    let qpath = dir.join("queries.json");
    fs::write(&qpath, serde_json::to_vec(&qs).unwrap()).unwrap();
    let want: Vec<Value> = serde_json::from_slice(&reference(&[
        "answer",
        d.log.to_str().unwrap(),
        qpath.to_str().unwrap(),
    ]))
    .unwrap();
    let got: Vec<Value> = qs.iter().map(|q| ask(&mut c, q)).collect();
    for ((q, g), w) in qs.iter().zip(&got).zip(&want) {
        approx(g, w, &q.to_string());
    }
    // Sanity: the fixture exercises what it should.
    assert!(want[3]["count"].as_u64().unwrap() > 1000, "many failures");
    assert!(
        want[16]["count"].as_u64().unwrap() > 10,
        "videos whose latest attempt failed"
    );
    assert!(want[24]["count"].as_u64().unwrap() > 10, "retry candidates");
    // error_types and stages in the order the Python logger's dicts kept
    // (first seen), which a Value cannot show: compared in the JSON texts.
    let want_texts: Vec<Box<serde_json::value::RawValue>> = serde_json::from_slice(&reference(&[
        "answer",
        d.log.to_str().unwrap(),
        qpath.to_str().unwrap(),
    ]))
    .unwrap();
    let mut stats_lines = Vec::new();
    for (q, w) in qs.iter().zip(&want_texts) {
        if q["op"] == "stats" {
            let g = raw_reply(&d, q);
            stats_lines.push((q, g.clone()));
            for key in ["error_types", "stages"] {
                let (gk, wk) = (stats_keys(&g, key), stats_keys(w.get(), key));
                assert_eq!(gk, wk, "{key} of {q}");
                let mut sorted = wk.clone();
                sorted.sort();
                assert_ne!(sorted, wk, "{key} of {q}: the fixture shows an order");
            }
        }
    }

    // Restart: the index rebuilt by the start-up scan answers identically.
    drop(c);
    assert_eq!(d.stop().code(), Some(0));
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    for (q, before) in qs.iter().zip(&got) {
        let after = ask(&mut c, q);
        assert_eq!(&after, before, "after restart: {q}");
    }
    for (q, before) in stats_lines {
        assert_eq!(raw_reply(&d, q), before, "after restart, in order: {q}");
    }
}

/// The issue's records: errors and stages first seen out of sorted order,
/// a null stage, `total_files: true` (1 to Python: 10.5, not 9.5) and
/// `processing_duration: true`, and nested values in CSV columns. The
/// daemon's `stats` (order included) and `export_csv` (bytes) are what
/// the old logger's code gives for the same file.
#[test]
fn stats_and_csv_are_the_old_loggers_for_the_same_records() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    // Sent as written: numbers in spellings Python reads back otherwise
    // (1E5 is 100000.0, -0 is 0, 1e16 is 1e+16).
    let recs = concat!(
        r#"{"video_id":"a","success":false,"error":"Zeta: late","stage":"upload"}"#,
        "\n",
        r#"{"video_id":"b","success":true,"stage":null,"total_files":4.5,"processing_duration":true}"#,
        "\n",
        r#"{"video_id":"c","success":true,"total_files":true,"processing_duration":2}"#,
        "\n",
        r#"{"video_id":"d","success":false,"error":"Alpha: first","stage":"fetch"}"#,
        "\n",
        r#"{"video_id":"e","success":true,"stage":"upload","total_files":5,"processing_duration":false}"#,
        "\n",
        r#"{"video_id":"f","success":false,"error":{"nested":[1,2.5,true,null]},"stage":"Mid","#,
        r#""video_title":["it's","say \"hi\"","caf\u00e9\u200b\ud83d\ude00"],"#,
        r#""has_assessment":{"w":1e16,"v":1e-5,"w":0.0001},"processing_duration":1E5,"total_files":-0}"#,
        "\n",
        r#"{"video_id":"g","success":false,"error":null,"stage":"fetch","subject":{"a":[],"b":{}}}"#,
        "\n",
    );
    let mut c = Client::new(d.connect());
    c.send_bytes(recs.as_bytes());
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    let qs = vec![json!({"op":"stats"}), json!({"op":"export_csv"})];
    let qpath = dir.join("queries.json");
    fs::write(&qpath, serde_json::to_vec(&qs).unwrap()).unwrap();
    let want_text = reference(&["answer", d.log.to_str().unwrap(), qpath.to_str().unwrap()]);
    let want: Vec<Value> = serde_json::from_slice(&want_text).unwrap();
    let want_raw: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_slice(&want_text).unwrap();
    let stats = raw_reply(&d, &qs[0]);
    approx(&serde_json::from_str(&stats).unwrap(), &want[0], "stats");
    assert_eq!(
        want[0]["stats"]["total_files_created"], 10.5,
        "the fixture's premise"
    );
    for key in ["error_types", "stages"] {
        assert_eq!(
            stats_keys(&stats, key),
            stats_keys(want_raw[0].get(), key),
            "{key}"
        );
    }
    assert_eq!(
        stats_keys(&stats, "error_types"),
        [
            "Zeta",
            "Alpha",
            "{\"nested\":[1,2.5,true,null]}",
            "Unknown error"
        ]
    );
    assert_eq!(
        stats_keys(&stats, "stages"),
        ["upload", "null", "fetch", "Mid"]
    );
    let csv = ask(&mut c, &qs[1]);
    assert_eq!(csv, want[1]);
    let csv = csv.as_str().unwrap();
    assert!(
        csv.contains("\"{'nested': [1, 2.5, True, None]}\""),
        "{csv}"
    );
    assert!(csv.contains("100000.0"), "{csv}");
}

/// Unfiltered `stats` may be answered by the connection from a shared,
/// current reply instead of by the writer; it must still count every record
/// sent before it on the same connection, and see a `clear` sent before it,
/// however the reply was primed (here by a second connection asking all the
/// time).
#[test]
fn stats_counts_every_record_sent_before_it_on_the_connection() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let primer = {
        let mut b = Client::new(d.connect());
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                b.send("stats");
                assert_eq!(b.reply()["ok"], true);
            }
        })
    };
    let mut a = Client::new(d.connect());
    for i in 1..=300 {
        a.send(&format!(r#"{{"video_id":"v{i}","success":true}}"#));
        a.send("stats");
        assert_eq!(a.reply()["stats"]["total_jobs"], i, "after record {i}");
        if i % 3 == 0 {
            // A request answered by the writer in between.
            a.send("ping");
            assert_eq!(a.reply()["ok"], true);
        }
    }
    // A `clear` pipelined before `stats` on the same connection: the
    // answer is from after the clear.
    for round in 0..20 {
        a.send(r#"{"video_id":"c","success":true}"#);
        a.send("stats");
        assert!(a.reply()["stats"]["total_jobs"].as_u64() >= Some(1));
        a.send(r#"{"op":"clear","confirm":true}"#);
        a.send("stats");
        assert_eq!(a.reply()["ok"], true, "clear, round {round}");
        assert_eq!(a.reply()["stats"]["total_jobs"], 0, "round {round}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    primer.join().unwrap();
}

/// `stats` counts records in the file: by default it has everything
/// accepted written first (so it also counts every record sent before it);
/// with `include_pending` it counts accepted records at once, without a
/// flush. Queries that return records flush what the asking connection
/// sent.
#[test]
fn stats_count_durable_records_unless_asked_to_include_pending() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let mut c = Client::new(d.connect());
    for i in 0..10 {
        c.send(&format!(
            r#"{{"video_id":"v{i}","success":{},"stage":"s"}}"#,
            i % 2 == 0
        ));
    }
    c.send(r#"{"op":"stats","include_pending":true}"#);
    let s = c.reply();
    assert_eq!(s["stats"]["total_jobs"], 10);
    assert_eq!(s["stats"]["successful"], 5);
    c.send("ping");
    assert_eq!(
        c.reply()["records"],
        0,
        "include_pending did not need a flush"
    );
    c.send("stats");
    let s = c.reply();
    assert_eq!(s["stats"]["total_jobs"], 10);
    c.send("ping");
    assert_eq!(c.reply()["records"], 10, "durable stats wrote them first");
    for i in 10..12 {
        c.send(&format!(
            r#"{{"video_id":"v{i}","success":true,"stage":"s"}}"#
        ));
    }
    c.send(r#"{"op":"failed","fields":["video_id"]}"#);
    let f = c.reply();
    assert_eq!(f["count"], 5);
    assert_eq!(f["jobs"][0], json!({"video_id":"v1"}));
    c.send("retry_candidates");
    assert_eq!(c.reply()["count"], 5);
}

#[test]
fn from_seq_leaves_out_earlier_records_and_answers_say_what_they_covered() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for i in 0..10 {
        d.request(&format!(
            r#"{{"op":"log","job":{{"video_id":"v{}","i":{i},"success":{},"processing_duration":{}}},"ack":true}}"#,
            i % 4,
            i % 2 == 0,
            10 - i
        ));
    }
    let log_id = d.request("ping")["log_id"].clone();
    let is = |q: Value| -> Vec<i64> {
        let r = d.request(&q.to_string());
        assert_eq!(r["ok"], true, "{q}: {r}");
        assert_eq!((&r["log_id"], &r["durable"]), (&log_id, &json!(10)), "{q}");
        r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["i"].as_i64().unwrap())
            .collect()
    };
    // Read in slices (a filter), by the page's own walk (no filter but
    // from_seq, newest first), sorted, and after latest_per_video.
    assert_eq!(
        is(json!({"op":"jobs","success":false,"from_seq":4})),
        [5, 7, 9]
    );
    assert_eq!(
        is(json!({"op":"jobs","from_seq":7,"order":"desc","limit":2})),
        [9, 8]
    );
    assert_eq!(
        is(json!({"op":"jobs","from_seq":6,"sort_by":"processing_duration"})),
        [9, 8, 7, 6]
    );
    assert_eq!(
        is(json!({"op":"jobs","from_seq":7,"latest_per_video":true})),
        [7, 8, 9]
    );
    assert_eq!(is(json!({"op":"jobs","from_seq":10})), Vec::<i64>::new());
    assert_eq!(is(json!({"op":"jobs","from_seq":99})), Vec::<i64>::new());
    let r = d.request(r#"{"op":"jobs","from_seq":8}"#);
    assert_eq!(r["total"], 2);
    // export_csv tells the same.
    let mut c = Client::new(d.connect());
    c.send(r#"{"op":"export_csv","from_seq":9}"#);
    let head = c.reply();
    assert_eq!((&head["log_id"], &head["durable"]), (&log_id, &json!(10)));
}

#[test]
fn bad_filters_are_refused_naming_the_key() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for (q, needle) in [
        (r#"{"op":"jobs","colour":"red"}"#, "unknown field `colour`"),
        (r#"{"op":"stats","stage":"x"}"#, "unknown field `stage`"),
        (
            r#"{"op":"jobs","success":"yes"}"#,
            "field `success` must be a boolean",
        ),
        (
            r#"{"op":"jobs","limit":-1}"#,
            "field `limit` must be a non-negative integer",
        ),
        (r#"{"op":"jobs","limit":1.5}"#, "field `limit`"),
        (
            r#"{"op":"jobs","since":"last tuesday"}"#,
            "field `since` must be an ISO date-time",
        ),
        (r#"{"op":"jobs","order":"up"}"#, "field `order`"),
        (r#"{"op":"jobs","sort_by":"title"}"#, "field `sort_by`"),
        (
            r#"{"op":"jobs","worker_id":[1]}"#,
            "field `worker_id` must be a number or a string",
        ),
        (
            r#"{"op":"jobs","fields":"video_id"}"#,
            "field `fields` must be a list of strings",
        ),
        (
            r#"{"op":"failed","success":true}"#,
            "field `success` is implied",
        ),
        (r#"{"op":"by_stage"}"#, "missing field `stage`"),
        (r#"{"op":"retry_candidates","limit":"5"}"#, "field `limit`"),
        (
            r#"{"op":"jobs","from_seq":-2}"#,
            "field `from_seq` must be a non-negative integer",
        ),
    ] {
        let r = d.request(q);
        assert_eq!(r["ok"], false, "{q}");
        assert_eq!(r["error"]["code"], "invalid_request", "{q}: {r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{q}: {msg}");
    }
}

#[test]
fn clear_archives_the_file_and_starts_an_empty_one() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--flush-interval-ms", "60000"]);
    let mut c = Client::new(d.connect());
    for i in 0..5 {
        c.send(&format!(r#"{{"video_id":"v{i}","success":false}}"#));
    }
    c.send("clear");
    let r = c.reply();
    assert_eq!(r["error"]["code"], "confirmation_required", "{r}");
    c.send(r#"{"op":"clear","confirm":true}"#);
    let r = c.reply();
    assert_eq!(r["ok"], true, "{r}");
    let archive = std::path::PathBuf::from(r["archive"].as_str().unwrap());
    assert!(
        archive
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("log.")
    );
    // Every record sent before the clear is in the archive, none is lost.
    assert_eq!(read_log(&archive).len(), 5);
    assert_eq!(fs::read(&d.log).unwrap(), b"[]");
    c.send("stats");
    assert_eq!(c.reply()["stats"]["total_jobs"], 0);
    c.send(r#"{"op":"log","job":{"video_id":"new","success":true},"ack":true}"#);
    assert_eq!(c.reply()["logged"], 1);
    c.send("all");
    let all = c.reply();
    assert_eq!(all["count"], 1);
    assert_eq!(all["jobs"][0]["video_id"], "new");
    assert_eq!(read_log(&d.log).len(), 1);
    c.send("stats");
    assert_eq!(c.reply()["stats"]["total_jobs"], 1);
    // Clears in a row (within a second): each archive its own `.json`.
    let mut names = std::collections::BTreeSet::new();
    for _ in 0..3 {
        c.send(r#"{"op":"clear","confirm":true}"#);
        let r = c.reply();
        let name = r["archive"].as_str().unwrap_or_default().to_string();
        assert!(name.ends_with(".json"), "{r}");
        names.insert(name);
    }
    assert_eq!(names.len(), 3, "{names:?}");
}

/// A `timings` name given twice in one record counts once, with its last
/// value, in unfiltered stats (the index) and in filtered ones (read back
/// from the file), as `json.load` reads the record.
#[test]
fn duplicate_timing_names_count_once_with_the_last_value() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    c.send(r#"{"subject":"AI","success":true,"timings":{"fetch":100,"fetch":1}}"#);
    c.send(r#"{"subject":"AI","success":true,"timings":{"fetch":2,"\u0066etch":3}}"#);
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    for q in [r#"{"op":"stats"}"#, r#"{"op":"stats","subject":"AI"}"#] {
        c.send(q);
        let fetch = c.reply()["stats"]["timings"]["fetch"].clone();
        assert_eq!(fetch["count"], 2, "{q}: {fetch}");
        assert_eq!(fetch["max"], 3.0, "{q}: {fetch}");
        assert_eq!(fetch["mean"], 2.0, "{q}: {fetch}");
    }
}

#[test]
fn timing_names_past_the_limit_are_counted_not_listed() {
    // A worker that puts an id into its timing names: one new name per
    // record must not grow the daemon (and each stats reply) per record.
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    for i in 0..1100 {
        c.send(&format!(
            r#"{{"subject":"AI","success":true,"timings":{{"t_{i}":1,"fetch":2}}}}"#
        ));
    }
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    for q in [r#"{"op":"stats"}"#, r#"{"op":"stats","subject":"AI"}"#] {
        c.send(q);
        let s = c.reply()["stats"].clone();
        let timings = s["timings"].as_object().unwrap();
        assert_eq!(timings.len(), 1024, "{q}");
        assert_eq!(timings["fetch"]["count"], 1100, "{q}");
        assert!(
            timings.contains_key("t_1022") && !timings.contains_key("t_1023"),
            "{q}"
        );
        assert_eq!(s["timings_untracked"], 1100 - 1023, "{q}");
    }
}

/// A query after the file was cut short underneath the daemon answers
/// from the file as it now is: the cut is noticed (one `fstat`) and taken
/// over before the query is answered, so the answer never holds bytes
/// read at offsets that no longer hold the records. (It used to read past
/// the end, fail, and end the connection; that path is left for a cut that
/// lands between the look and the read.)
#[test]
fn a_query_after_the_file_was_cut_answers_from_the_file_as_it_is() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    for i in 0..50 {
        c.send(&format!(r#"{{"video_id":"v{i}","success":true}}"#));
    }
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    fs::OpenOptions::new()
        .write(true)
        .open(&d.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    c.send("all");
    assert_eq!(c.reply()["jobs"], json!([]));
    c.send("ping");
    let p = c.reply();
    assert_eq!(p["records"], 0, "{p}");
    assert_eq!(p["truncations"], 1, "{p}");
    assert_eq!(p["records_truncated"], 50, "{p}");
    assert_eq!(read_log(&d.log).len(), 0);
}

/// A timing name given twice counts with its last value even when that
/// one is not a number (then not at all), as `json.load` keeps only it.
#[test]
fn a_timing_whose_last_value_is_not_a_number_does_not_count() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut c = Client::new(d.connect());
    c.send(
        r#"{"subject":"AI","success":true,"timings":{"fetch":100,"fetch":"skipped","notes":1}}"#,
    );
    c.send(r#"{"subject":"AI","success":true,"timings":{"fetch":2,"notes":5,"n\u006ftes":null}}"#);
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    for q in [r#"{"op":"stats"}"#, r#"{"op":"stats","subject":"AI"}"#] {
        c.send(q);
        let t = c.reply()["stats"]["timings"].clone();
        assert_eq!(t["fetch"]["count"], 1, "{q}: {t}");
        assert_eq!(t["fetch"]["max"], 2.0, "{q}: {t}");
        assert_eq!(t["notes"]["count"], 1, "{q}: {t}");
        assert_eq!(t["notes"]["max"], 1.0, "{q}: {t}");
    }
}

/// One record repeating a timing name a million times (a 7 MB line) is
/// indexed in linear time: a quadratic pass held the writer, and so every
/// client, for minutes.
#[test]
fn a_record_repeating_one_timing_name_does_not_stall_the_writer() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let s = d.connect();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut c = Client::new(s);
    let members = vec![r#""a":1"#; 1_000_000].join(",");
    c.send(&format!(
        r#"{{"op":"log","job":{{"success":true,"timings":{{{members},"a":2}}}},"ack":true}}"#
    ));
    assert_eq!(c.reply()["ok"], true);
    c.send("stats");
    let a = c.reply()["stats"]["timings"]["a"].clone();
    assert_eq!(a["count"], 1, "{a}");
    assert_eq!(a["max"], 2.0, "{a}");
}

/// Keys written with escapes in a taken-over file (`"\u0073uccess"`) are
/// read as `json.load` reads them: the record counts as successful.
#[test]
fn escaped_keys_in_a_taken_over_file_are_indexed_decoded() {
    let dir = TempDir::new();
    fs::write(
        dir.join("log.json"),
        "[\n  {\n    \"\\u0073uccess\": true,\n    \"st\\u0061ge\": \"completed\"\n  }\n]",
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    let s = d.request("stats")["stats"].clone();
    assert_eq!(s["successful"], 1, "{s}");
    assert_eq!(s["stages"]["completed"], 1, "{s}");
    assert_eq!(d.request(r#"{"op":"jobs","success":true}"#)["count"], 1);
}

/// A timing member nested deeply (but within the record's own depth
/// limit) costs only itself: every other timing of the record counts.
#[test]
fn a_deeply_nested_timing_member_costs_only_itself() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let r = d.request(&format!(
        r#"{{"op":"log","ack":true,"job":{{"subject":"AI","success":true,"timings":{{"fetch":2.5,"debug":{deep}}}}}}}"#
    ));
    assert_eq!(r["ok"], true, "{r}");
    for q in [r#"{"op":"stats"}"#, r#"{"op":"stats","subject":"AI"}"#] {
        let t = d.request(q)["stats"]["timings"].clone();
        assert_eq!(t["fetch"]["count"], 1, "{q}: {t}");
    }
}
