//! `joblogctl forward`: every host's records in a real PostgreSQL, each
//! exactly once, through clears, rotations, kills, a crash between the
//! insert and the commit, two forwarders of one host, a rewound
//! checkpoint and a database outage.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{Daemon, TempDir, wait_until};

mod pg;
mod retention;

use pg::Postgres;

fn ctl() -> &'static str {
    env!("CARGO_BIN_EXE_joblogctl")
}

/// `joblogctl forward --database URL ARGS…` against the daemon `d`, to
/// the end.
fn forward(d: &Daemon, pg: &Postgres, args: &[&str]) -> Output {
    Command::new(ctl())
        .env("JOBLOGD_SOCKET", &d.socket)
        .args(["forward", "--database", &pg.url])
        .args(args)
        .output()
        .expect("joblogctl forward")
}

fn init(d: &Daemon, pg: &Postgres) {
    let out = forward(d, pg, &["--init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running forwarder, killed when dropped.
struct Forwarder(Child);

impl Forwarder {
    fn start(d: &Daemon, pg: &Postgres, host: &str, batch: &str) -> Forwarder {
        Forwarder(
            Command::new(ctl())
                .env("JOBLOGD_SOCKET", &d.socket)
                .args(["forward", "--database", &pg.url, "--host-id", host])
                .args(["--batch", batch, "--poll-interval-ms", "20"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn joblogctl forward"),
        )
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Logs `jobs` in one acknowledged `log_batch`.
fn log_batch(d: &Daemon, jobs: &[Value]) {
    let r = d.request(&json!({"op":"log_batch","jobs":jobs,"ack":true}).to_string());
    assert_eq!(r["ok"], true, "{r}");
}

/// `n` jobs of `host`, numbered from `from`: every third fails.
fn jobs(host: &str, from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let failed = i % 3 == 0;
            let subject = ["AI", "Maths", "History"][i % 3];
            json!({
                "video_id": format!("{host}-{i}"),
                "subject": subject,
                "success": !failed,
                "error": failed.then_some("timeout"),
                "error_type": failed.then_some("TimeoutError"),
                "processing_duration": i as f64 / 10.0,
            })
        })
        .collect()
}

/// Every log of `host` in the central table holds exactly positions
/// `0..n-1` once each; returns the records stored for the host.
fn assert_positions_exact(pg: &Postgres, host: &str) -> i64 {
    let rows = pg.psql(&format!(
        "SELECT log_id, count(*), count(DISTINCT seq), min(seq), max(seq) \
         FROM joblog_records WHERE host_id = '{host}' GROUP BY log_id"
    ));
    let mut total = 0;
    for row in rows.lines() {
        let f: Vec<&str> = row.split('|').collect();
        let n: i64 = f[1].parse().expect("count");
        assert_eq!(f[2], f[1], "a position twice in log {}: {row}", f[0]);
        assert_eq!(
            (f[3], f[4].parse::<i64>().expect("max")),
            ("0", n - 1),
            "positions of log {} are not 0..{}: {row}",
            f[0],
            n - 1
        );
        total += n;
    }
    total
}

/// Waits until the central table holds `n` records of `host`.
fn wait_for_rows(pg: &Postgres, host: &str, n: i64) {
    let t0 = Instant::now();
    loop {
        let have = pg.count(&format!(
            "SELECT count(*) FROM joblog_records WHERE host_id = '{host}'"
        ));
        if have >= n {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "host {host}: {have} of {n} records in the central table after 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Renames the live log away and sends SIGHUP, as logrotate does;
/// waits until the daemon writes a new file at the path.
fn rotate(d: &Daemon, n: usize) {
    std::fs::rename(&d.log, d.log.with_extension(format!("json.{n}"))).expect("rotate");
    d.signal(libc::SIGHUP);
    wait_until("the daemon reopens the log path", || {
        d.request("ping")["log_file_at_path"] == true
    });
}

/// Two hosts, each logging in phases; on host a the log is cleared and
/// rotated while two forwarders of that host run side by side and are
/// killed and restarted between phases. Every record arrives once, at its
/// position, and the central counts equal what each host logged.
#[test]
fn every_record_arrives_once_through_clears_rotations_kills_and_two_forwarders() {
    let Some(pg) = Postgres::start() else { return };
    let (da, db) = (TempDir::new(), TempDir::new());
    let a = Daemon::start(&da, &[]);
    let b = Daemon::start(&db, &[]);
    init(&a, &pg);
    let mut fa = [
        Forwarder::start(&a, &pg, "a", "7"),
        Forwarder::start(&a, &pg, "a", "13"),
    ];
    let mut fb = Forwarder::start(&b, &pg, "b", "50");
    let (phases, per) = (6, 60);
    for phase in 0..phases {
        // From phase 2 to 4 no forwarder of host a runs: it is behind
        // across a rotation and two clears, and drains three archives
        // in turn when it is back.
        if phase == 2 {
            fa.iter_mut().for_each(Forwarder::kill9);
        }
        log_batch(&a, &jobs("a", phase * per, per));
        log_batch(&b, &jobs("b", phase * per, per));
        match phase {
            1 | 3 | 4 => {
                let r = a.request(r#"{"op":"clear","confirm":true}"#);
                assert_eq!(r["ok"], true, "{r}");
            }
            2 => rotate(&a, phase),
            _ => {}
        }
        // A forwarder killed at a moment that differs each phase, then
        // started again.
        std::thread::sleep(Duration::from_millis(5 + 17 * phase as u64));
        match phase {
            2 | 3 => continue,
            4 => {
                fa = [
                    Forwarder::start(&a, &pg, "a", "7"),
                    Forwarder::start(&a, &pg, "a", "13"),
                ];
            }
            _ => {
                let k = phase % 2;
                fa[k].kill9();
                fa[k] = Forwarder::start(&a, &pg, "a", if k == 0 { "7" } else { "13" });
            }
        }
        if phase == 5 {
            fb.kill9();
            fb = Forwarder::start(&b, &pg, "b", "50");
        }
    }
    let total = (phases * per) as i64;
    wait_for_rows(&pg, "a", total);
    wait_for_rows(&pg, "b", total);
    // A little longer: nothing more may arrive.
    std::thread::sleep(Duration::from_millis(300));
    for host in ["a", "b"] {
        assert_eq!(assert_positions_exact(&pg, host), total, "host {host}");
        let distinct = pg.count(&format!(
            "SELECT count(DISTINCT record->>'video_id') FROM joblog_records WHERE host_id = '{host}'"
        ));
        assert_eq!(distinct, total, "host {host}: a record stored twice");
    }
    // Host a went through three clears and a rotation: five logs.
    assert_eq!(
        pg.count("SELECT count(DISTINCT log_id) FROM joblog_records WHERE host_id = 'a'"),
        5
    );
    // Host b's log was never cleared: its own stats and the central
    // table's agree.
    let local = b.request("stats");
    let central = pg.psql(
        "SELECT count(*), count(*) FILTER (WHERE (record->>'success')::boolean), \
         count(*) FILTER (WHERE NOT (record->>'success')::boolean) \
         FROM joblog_records WHERE host_id = 'b'",
    );
    assert_eq!(
        central,
        format!(
            "{}|{}|{}",
            local["stats"]["total_jobs"], local["stats"]["successful"], local["stats"]["failed"]
        ),
        "{local}"
    );
    let checkpoint = pg.psql("SELECT replace(log_id::text, '-', ''), next_seq FROM joblog_checkpoints WHERE host_id = 'a'");
    let live = a.request("ping");
    assert_eq!(
        checkpoint,
        format!(
            "{}|{}",
            live["log_id"].as_str().unwrap_or(""),
            live["records"]
        ),
        "host a's checkpoint is the live log's end"
    );
}

/// A forwarder that dies after its insert and before its commit stores
/// nothing of that batch; the next one stores it, once.
#[test]
fn a_crash_between_the_insert_and_the_commit_loses_and_repeats_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    log_batch(&d, &jobs("c", 0, 45));
    let out = forward(
        &d,
        &pg,
        &[
            "--host-id",
            "c",
            "--batch",
            "10",
            "--once",
            "--fault-abort-before-commit",
            "2",
        ],
    );
    assert!(!out.status.success(), "the fault seam aborts");
    // The first batch was committed, the second rolled back with the
    // crash.
    assert_eq!(pg.count("SELECT count(*) FROM joblog_records"), 10);
    assert_eq!(pg.psql("SELECT next_seq FROM joblog_checkpoints"), "10");
    let out = forward(&d, &pg, &["--host-id", "c", "--batch", "10", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_positions_exact(&pg, "c"), 45);
}

/// A checkpoint set back by hand (a restored backup, an operator's
/// mistake) sends records again, and the central table keeps each once.
#[test]
fn a_rewound_checkpoint_stores_nothing_twice() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    log_batch(&d, &jobs("r", 0, 30));
    let once = || {
        let out = forward(&d, &pg, &["--host-id", "r", "--once"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    once();
    pg.psql("UPDATE joblog_checkpoints SET next_seq = 5");
    log_batch(&d, &jobs("r", 30, 5));
    let said = once();
    assert!(said.contains("25 of 30 records"), "{said}");
    assert_eq!(assert_positions_exact(&pg, "r"), 35);
    assert_eq!(pg.psql("SELECT next_seq FROM joblog_checkpoints"), "35");
}

/// While the database is down, workers log and get their acks as ever;
/// the forwarder retries and, once it is back, catches up.
#[test]
fn a_database_outage_holds_up_no_worker_and_loses_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    let _f = Forwarder::start(&d, &pg, "o", "25");
    log_batch(&d, &jobs("o", 0, 50));
    wait_for_rows(&pg, "o", 50);
    pg.stop_now();
    let t0 = Instant::now();
    for i in 0..10 {
        log_batch(&d, &jobs("o", 50 + i * 20, 20));
    }
    // Acknowledged without the database: nothing waited for it.
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "logging took {:?} while the database was down",
        t0.elapsed()
    );
    std::thread::sleep(Duration::from_millis(700));
    pg.start_again();
    wait_for_rows(&pg, "o", 250);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(assert_positions_exact(&pg, "o"), 250);
}

/// `logged_at`, local time without an offset, is stored in UTC with the
/// host's zone: summer and winter time, and the repeated hour of the
/// autumn change read as its first occurrence.
#[test]
fn logged_at_is_stored_in_utc_with_the_hosts_zone() {
    if !Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        eprintln!("SKIPPED: no time zone data (Debian's tzdata package)");
        return;
    }
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    // A log the Python logger wrote (its own `logged_at`), taken over.
    let times = [
        ("2026-07-01T12:00:00.250000", "2026-07-01 10:00:00.25+00"),
        ("2026-01-15T08:30:00", "2026-01-15 07:30:00+00"),
        (
            "2026-10-25T02:30:00.000001",
            "2026-10-25 00:30:00.000001+00",
        ),
        ("2026-10-25T03:30:00", "2026-10-25 02:30:00+00"),
    ];
    let records: Vec<Value> = times
        .iter()
        .enumerate()
        .map(|(i, (t, _))| json!({"video_id": format!("t{i}"), "logged_at": t}))
        .chain([json!({"video_id": "no-time", "logged_at": "soon"})])
        .collect();
    let log = dir.join("log.json");
    std::fs::write(&log, serde_json::to_string_pretty(&records).expect("json")).expect("write");
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    let out = Command::new(ctl())
        .env("JOBLOGD_SOCKET", &d.socket)
        .env("TZ", "Europe/Berlin")
        .args([
            "forward",
            "--database",
            &pg.url,
            "--host-id",
            "tz",
            "--once",
        ])
        .output()
        .expect("forward");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = pg.psql(
        "SET TIME ZONE 'UTC'; SELECT record->>'video_id', coalesce(logged_at_utc::text, 'NULL') \
         FROM joblog_records ORDER BY seq",
    );
    let want: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, (_, utc))| format!("t{i}|{utc}"))
        .chain(["no-time|NULL".to_string()])
        .collect();
    assert_eq!(
        stored
            .lines()
            .skip_while(|l| *l == "SET")
            .collect::<Vec<_>>(),
        want
    );
}

/// Without `--database` the forwarder says what it needs, as a usage
/// error; a database without the tables says how to create them.
#[test]
fn forward_explains_a_missing_database_and_missing_tables() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let out = Command::new(ctl())
        .env("JOBLOGD_SOCKET", &d.socket)
        .env_remove("JOBLOGD_DATABASE")
        .args(["forward", "--once"])
        .output()
        .expect("forward");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database URL"));
    let Some(pg) = Postgres::start() else { return };
    let out = forward(&d, &pg, &["--once"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--init"), "{err}");
}

/// `joblogctl --database URL` with the arguments `args`; its stdout.
fn ctl_central(pg: &Postgres, args: &[&str]) -> String {
    let out = Command::new(ctl())
        .env_remove("JOBLOGD_SOCKET")
        .args(["--database", &pg.url])
        .args(args)
        .output()
        .expect("joblogctl");
    assert!(
        out.status.success(),
        "joblogctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `stats`, `report`, `jobs`, `retry-candidates` and `export-csv` with `--database`
/// answer over every host's records in the daemon's shapes: the counts
/// are the sums of the hosts', and a video that failed on one host and
/// later succeeded on another is no retry candidate.
#[test]
fn the_same_questions_are_answered_cluster_wide() {
    let Some(pg) = Postgres::start() else { return };
    let (da, db) = (TempDir::new(), TempDir::new());
    let a = Daemon::start(&da, &[]);
    let b = Daemon::start(&db, &[]);
    init(&a, &pg);
    let job = |v: &str, ok: bool, err: &str| json!({"video_id": v, "success": ok, "error": (!ok).then_some(err), "url": format!("https://x/{v}"), "subject": "AI", "processing_duration": 2.5});
    // x fails on a, then succeeds on b; y fails on both; z fails on b.
    log_batch(
        &a,
        &[
            job("x", false, "Timeout: slow"),
            job("y", false, "Quota: none"),
        ],
    );
    std::thread::sleep(Duration::from_millis(20));
    log_batch(
        &b,
        &[
            job("x", true, ""),
            job("y", false, "Timeout: again"),
            job("z", false, "Quota: none"),
        ],
    );
    for (d, host) in [(&a, "a"), (&b, "b")] {
        let out = forward(d, &pg, &["--host-id", host, "--once"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let central: Value =
        serde_json::from_str(&ctl_central(&pg, &["stats", "--json"])).expect("stats json");
    let (sa, sb) = (
        a.request("stats")["stats"].clone(),
        b.request("stats")["stats"].clone(),
    );
    for key in ["total_jobs", "successful", "failed", "total_files_created"] {
        let sum = sa[key].as_i64().unwrap_or(0) + sb[key].as_i64().unwrap_or(0);
        assert_eq!(central[key].as_i64(), Some(sum), "{key}: {central}");
    }
    assert_eq!(
        central["error_types"],
        json!({"Timeout": 2, "Quota": 2}),
        "{central}"
    );
    assert_eq!(central["retry_candidates"], 2, "{central}");
    assert_eq!(central["by_subject"]["AI"]["total"], 5, "{central}");
    // The HTML report shows the same figures, and each failure's host.
    let html = ctl_central(&pg, &["report", "--html", "-"]);
    crate::report::check_figures(&html, &central);
    assert!(html.contains("<th>Host</th>"), "no host column");
    // Retry candidates: y (newest attempt on b failed) and z, not x.
    let urls = ctl_central(&pg, &["retry-candidates", "--urls"]);
    let mut urls: Vec<&str> = urls.lines().collect();
    urls.sort_unstable();
    assert_eq!(urls, ["https://x/y", "https://x/z"]);
    // jobs: records with their host.
    let failed = ctl_central(&pg, &["jobs", "--failed", "--format", "ndjson"]);
    let hosts: Vec<(String, String)> = failed
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("ndjson");
            (
                v["video_id"].as_str().unwrap_or("").into(),
                v["host_id"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(hosts.len(), 4, "{failed}");
    assert!(hosts.contains(&("x".into(), "a".into())), "{hosts:?}");
    assert!(hosts.contains(&("z".into(), "b".into())), "{hosts:?}");
    let csv = ctl_central(&pg, &["export-csv", "-"]);
    assert_eq!(csv.lines().count(), 1 + 5, "{csv}");
    // The schema's views give the same answers to SQL users (and --init
    // may be run again).
    init(&a, &pg);
    assert_eq!(
        pg.psql("SELECT string_agg(video_id || '@' || host_id, ',' ORDER BY video_id) FROM joblog_retry_candidates"),
        "y@b,z@b"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(error_type || '=' || count, ',' ORDER BY error_type) FROM joblog_error_types"),
        "Quota=2,Timeout=2"
    );
    assert_eq!(
        pg.psql("SELECT string_agg(concat_ws('|', host_id, total_jobs, successful, failed), ',' ORDER BY host_id) FROM joblog_stats_by_host"),
        "a|2|0|2,b|3|1|2"
    );
    // The daemon's own commands are not answered from the database.
    let out = Command::new(ctl())
        .args(["--database", &pg.url, "flush"])
        .output()
        .expect("joblogctl");
    assert_eq!(out.status.code(), Some(2));
}

/// The logging host loses its link to the database while workers log:
/// they are not held up, the forwarder gives up its stuck connection
/// (`--db-timeout`) and retries, and once the link is back every record
/// is stored once. The two hosts are network namespaces joined by a veth
/// pair; the daemon's socket is a file both can reach.
#[test]
fn a_network_partition_while_logging_loses_and_repeats_nothing() {
    let Some(net) = pg::NetPair::new() else {
        return;
    };
    let Some(pg) = Postgres::start_in(&net.db, pg::NetPair::DB_ADDR, pg::NetPair::NET) else {
        return;
    };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    let url = format!("host={} user=postgres dbname=joblog", pg::NetPair::DB_ADDR);
    let mut f = Forwarder(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.host,
                ctl(),
                "forward",
                "--database",
                &url,
            ])
            .args([
                "--host-id",
                "p",
                "--batch",
                "20",
                "--poll-interval-ms",
                "20",
            ])
            .args(["--db-timeout", "2"])
            .env("JOBLOGD_SOCKET", &d.socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the forwarder in its namespace"),
    );
    log_batch(&d, &jobs("p", 0, 100));
    wait_for_rows(&pg, "p", 100);
    net.cut();
    let t0 = Instant::now();
    for i in 0..10 {
        log_batch(&d, &jobs("p", 100 + i * 20, 20));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "workers were held up"
    );
    // Longer than --db-timeout: the forwarder's stuck turn is given up.
    std::thread::sleep(Duration::from_millis(2500));
    let during = pg.count("SELECT count(*) FROM joblog_records");
    assert!(during < 300, "nothing crossed the cut link ({during})");
    net.heal();
    wait_for_rows(&pg, "p", 300);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(assert_positions_exact(&pg, "p"), 300);
    f.kill9();
}

/// End to end: a worker logs through the Python client with acks while
/// its host's daemon is SIGKILLed and started again, and the forwarder
/// runs throughout. Every record reaches the central store once (by
/// position and by `record_id`): the client resends what it did not see
/// acknowledged, the daemon drops what it already held, the forwarder
/// ships each position once.
#[test]
fn a_daemon_killed_while_the_python_client_logs_loses_and_duplicates_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    let _f = Forwarder::start(&d, &pg, "py", "50");
    let n = 400;
    let script = r#"
import sys, time
from joblog_client import JobLogger
lg = JobLogger(socket_path=sys.argv[1], spool_dir=sys.argv[2], timeout=1.0)
for i in range(int(sys.argv[3])):
    lg.log_job({"video_id": f"py-{i}", "i": i, "success": i % 5 != 0})
# The spool goes once the daemon is back (flush raises until then).
for _ in range(120):
    try:
        lg.flush()
        break
    except Exception:
        time.sleep(0.25)
else:
    sys.exit("the spool was never sent")
"#;
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).expect("spool dir");
    let worker = Command::new("python3")
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python"),
        )
        .args(["-c", script])
        .arg(&d.socket)
        .arg(&spool)
        .arg(n.to_string())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_millis(400));
    d.kill9();
    std::thread::sleep(Duration::from_millis(300));
    let d = Daemon::start(&dir, &[]);
    let out = worker.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the worker failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_rows(&pg, "py", n);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        pg.count("SELECT count(DISTINCT record_id) FROM joblog_records"),
        n
    );
    assert_eq!(
        pg.count("SELECT count(DISTINCT (record->>'i')::int) FROM joblog_records"),
        n
    );
    // Positions are exact within each log of the host (the restart keeps
    // the log and its id).
    assert_eq!(assert_positions_exact(&pg, "py"), n);
    assert_eq!(d.request("ping")["records"], n);
}

/// With `sslmode=verify-full` (or `require`) the forwarder speaks TLS and
/// verifies the server's certificate against `sslrootcert`: records go
/// through; a server its CA does not vouch for is refused, and so is a
/// `require` whose certificate the system's roots do not know.
#[test]
fn tls_is_used_and_the_server_verified_when_the_url_asks() {
    let Some((pg, tcp, ca)) = Postgres::start_tls() else {
        return;
    };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    log_batch(&d, &jobs("t", 0, 30));
    let run = |url: &str| {
        Command::new(ctl())
            .env("JOBLOGD_SOCKET", &d.socket)
            .args(["forward", "--database", url, "--host-id", "t", "--once"])
            .args(["--db-timeout", "5"])
            .output()
            .expect("forward")
    };
    let good = format!("{tcp} sslmode=verify-full sslrootcert={}", ca.display());
    let out = run(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_positions_exact(&pg, "t"), 30);
    // The server's sessions are encrypted: pg_stat_ssl says so for ours.
    let url = format!(
        "postgresql://postgres@127.0.0.1:{}/joblog?sslmode=verify-full&sslrootcert={}",
        tcp_port(&tcp),
        ca.display()
    );
    let stats = Command::new(ctl())
        .args(["--database", &url, "stats", "--json"])
        .output()
        .expect("stats");
    assert!(
        stats.status.success(),
        "{}",
        String::from_utf8_lossy(&stats.stderr)
    );
    // Another CA: the certificate is not trusted, nothing is sent.
    let other = dir.join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other",
        ])
        .arg("-keyout")
        .arg(dir.join("other.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success());
    log_batch(&d, &jobs("t", 30, 5));
    let out = run(&format!(
        "{tcp} sslmode=verify-full sslrootcert={}",
        other.display()
    ));
    assert!(!out.status.success() || !String::from_utf8_lossy(&out.stderr).is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert_eq!(pg.count("SELECT count(*) FROM joblog_records"), 30);
}

fn tcp_port(tcp: &str) -> &str {
    tcp.split_whitespace()
        .find_map(|kv| kv.strip_prefix("port="))
        .unwrap_or("5432")
}

/// A host forwarded for the first time ships its history too: the
/// archives beside the log, oldest first, then the live log
/// (`--start-at live` skips them).
#[test]
fn a_new_forwarder_ships_the_archives_made_before_it_then_the_live_log() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    log_batch(&d, &jobs("h", 0, 10));
    assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
    log_batch(&d, &jobs("h", 10, 5));
    assert_eq!(d.request(r#"{"op":"clear","confirm":true}"#)["ok"], true);
    log_batch(&d, &jobs("h", 15, 3));
    let out = forward(&d, &pg, &["--host-id", "old", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_positions_exact(&pg, "old"), 18);
    assert_eq!(
        pg.count("SELECT count(DISTINCT log_id) FROM joblog_records WHERE host_id = 'old'"),
        3
    );
    let out = forward(
        &d,
        &pg,
        &["--host-id", "new", "--once", "--start-at", "live"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(assert_positions_exact(&pg, "new"), 3);
}

/// Values the daemon keeps but jsonb cannot hold never stop the
/// forwarder: a lone surrogate and a NUL become U+FFFD, a time before
/// year 1 is stored as NULL, and a number beyond numeric's range is
/// stored as the record's text under `joblogd_unstorable`, at its place.
#[test]
fn values_postgresql_cannot_store_do_not_stop_the_forwarder() {
    let Some(pg) = Postgres::start() else { return };
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    init(&d, &pg);
    let mut c = crate::util::Client::new(d.connect());
    for line in [
        r#"{"video_id":"ok-1"}"#,
        r#"{"video_id":"caf\udce9","record_id":"n\u0000ul"}"#,
        r#"{"video_id":"huge","n":1e200000}"#,
        r#"{"video_id":"old","logged_at":"0001-01-01T00:00:00"}"#,
        r#"{"video_id":"ok-2"}"#,
    ] {
        c.send(line);
    }
    c.send("flush");
    assert_eq!(c.reply()["ok"], true);
    let out = Command::new(ctl())
        .env("JOBLOGD_SOCKET", &d.socket)
        .env("TZ", "Europe/Berlin")
        .args(["forward", "--database", &pg.url, "--host-id", "p", "--once"])
        .output()
        .expect("forward");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(assert_positions_exact(&pg, "p"), 5, "{err}");
    let rows = pg.psql(
        "SELECT seq, CASE WHEN record ? 'joblogd_unstorable' \
         THEN 'UNSTORABLE:' || (record->>'joblogd_unstorable') ELSE record->>'video_id' END, \
         coalesce(logged_at_utc::text, 'NULL'), coalesce(record_id, '-') FROM joblog_records ORDER BY seq",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert!(
        rows[1].starts_with("1|caf\u{fffd}|") && rows[1].ends_with("|n\u{fffd}ul"),
        "{rows:?} {err}"
    );
    assert!(
        rows[2].starts_with("2|UNSTORABLE:{") && rows[2].contains("1e200000"),
        "{rows:?}"
    );
    assert!(rows[3].starts_with("3|old|NULL|"), "{rows:?}");
    assert!(rows[4].starts_with("4|ok-2|"), "{rows:?}");
}
