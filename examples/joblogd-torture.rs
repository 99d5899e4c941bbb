//! `joblogd-torture`: the crash harness behind README's Guarantees 1 and 2.
//!
//! Each trial starts the real daemon on one long-lived log file, runs 8–32
//! writers (some waiting for `ack:true`, some fire-and-forget with an
//! occasional `flush`), SIGKILLs the daemon at a random moment (often during
//! a flush), sometimes damages the file's tail as a power cut or a torn
//! write would (truncation inside the unacknowledged tail, zero-filled
//! blocks, garbage), restarts it, and checks: the file is a valid JSON
//! array; every acknowledged record is there exactly once; no record
//! appears twice; nothing unknown appears. The normal test suite runs 50
//! trials (`tests/crash.rs`); `--trials 5000` is the soak.
//!
//!     cargo run --release --bin joblogd-torture -- --trials 1000

#[path = "support/mod.rs"]
#[allow(dead_code)] // each example uses some of the helpers
mod support;

use support::{Daemon, Rng, ask};

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "joblogd-torture",
    about = "SIGKILL and torn-write trials against joblogd"
)]
struct Args {
    /// Number of kill/restart trials.
    #[arg(long, default_value_t = 50)]
    trials: u32,
    /// The daemon binary [default: `joblogd` next to this executable].
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Random seed (trials are reproducible with the same seed and timing).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working directory [default: a fresh one under /tmp, removed after].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Instead of kill trials: run steady load for this many minutes and
    /// report the daemon's memory every minute (the long soak; not in CI).
    #[arg(long, value_name = "MINUTES")]
    soak_minutes: Option<u64>,
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Steady load (16 writers, queries twice a second), RSS each minute. The
/// index grows with the log by design (about 100 B per record), so the
/// figure to watch is RSS per record: flat after warm-up means no leak.
fn soak(bin: &Path, dir: &Path, minutes: u64) -> Result<(), String> {
    let sock = dir.join("s.sock");
    let log = dir.join("soak.json");
    let d = Daemon::start(bin, &sock, &log, &dir.join("daemon.log"))?;
    let pid = d.child.id();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    // 16 writers at about 200 records/s each: steady, and small enough that
    // a 30-minute soak stays within a few GB of log.
    let _ = ledger;
    let handles: Vec<_> = (0..16u32)
        .map(|w| {
            let (sock, stop) = (sock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = UnixStream::connect(&sock) else {
                        return;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        // Plain records: no replies to read.
                        let line = format!(
                            r#"{{"id":"s{w}-{i}","worker_id":{w},"success":{}}}"#,
                            !i.is_multiple_of(7)
                        );
                        if writeln!(s, "{line}").is_err() {
                            break;
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            })
        })
        .collect();
    println!("minute  records     rss_MiB  hwm_MiB  rss_bytes_per_record");
    let mut baseline = None;
    let mut worst = 0.0f64;
    for minute in 1..=minutes {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            let _ = ask(&sock, r#"{"op":"stats"}"#);
            let _ = ask(&sock, r#"{"op":"failed","limit":100}"#);
            std::thread::sleep(Duration::from_millis(500));
        }
        let p = ask(&sock, r#"{"op":"ping"}"#).ok_or("ping failed")?;
        let records = p["records"].as_f64().unwrap_or(0.0).max(1.0);
        let rss = vm_kib(pid, "VmRSS:") as f64 * 1024.0;
        let per = rss / records;
        println!(
            "{minute:6}  {records:10}  {:7.1}  {:7.1}  {per:8.1}",
            rss / 1048576.0,
            vm_kib(pid, "VmHWM:") as f64 / 1024.0
        );
        if minute == 2 {
            baseline = Some(per);
        }
        if let Some(b) = baseline {
            worst = worst.max(per - b);
        }
    }
    stop.store(true, Ordering::Relaxed);
    d.kill9();
    for h in handles {
        let _ = h.join();
    }
    println!(
        "memory per record after minute 2 grew by at most {worst:.1} B (the index is ~100 B/record by design; anything else would be a leak)"
    );
    Ok(())
}

/// What the writers learned: ids acknowledged as durable, ids sent.
#[derive(Default)]
struct Ledger {
    acked: HashSet<String>,
    sent: HashSet<String>,
}

fn writer(
    sock: PathBuf,
    trial: u32,
    w: u32,
    ack_mode: bool,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let Ok(s) = UnixStream::connect(&sock) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(r) = s.try_clone() else { return };
    let mut r = BufReader::new(r);
    let mut s = s;
    let mut i = 0u64;
    // Fire-and-forget ids not yet covered by a flush reply.
    let mut unconfirmed: Vec<String> = Vec::new();
    let pad = "x".repeat((w as usize * 37) % 100);
    while !stop.load(Ordering::Relaxed) {
        let id = format!("t{trial}-w{w}-{i}");
        i += 1;
        let rec = format!(
            r#"{{"id":"{id}","worker_id":{w},"success":{},"pad":"{pad}"}}"#,
            !i.is_multiple_of(4)
        );
        ledger.lock().map(|mut l| l.sent.insert(id.clone())).ok();
        if ack_mode {
            if writeln!(s, r#"{{"op":"log","job":{rec},"ack":true}}"#).is_err() {
                return;
            }
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(n) if n > 0 && line.contains("\"ok\":true") => {
                    ledger.lock().map(|mut l| l.acked.insert(id)).ok();
                }
                _ => return,
            }
        } else {
            if writeln!(s, "{rec}").is_err() {
                return;
            }
            unconfirmed.push(id);
            if i.is_multiple_of(50) {
                // Bursts, not a flood: the file (scanned at every restart
                // and parsed at every check) should not grow without bound.
                std::thread::sleep(Duration::from_millis(5));
            }
            if i.is_multiple_of(200) {
                if writeln!(s, r#"{{"op":"flush"}}"#).is_err() {
                    return;
                }
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(n) if n > 0 && line.contains("\"ok\":true") => {
                        if let Ok(mut l) = ledger.lock() {
                            l.acked.extend(unconfirmed.drain(..));
                        }
                    }
                    _ => return,
                }
            }
        }
    }
}

/// Damages the tail after the last acknowledged record, as a crash could.
fn damage(log: &Path, acked: &HashSet<String>, rng: &mut Rng) -> Result<&'static str, String> {
    let bytes = std::fs::read(log).map_err(|e| e.to_string())?;
    // The end of the last acknowledged record: nothing before it may change.
    // One pass over the file: every `"id": "…"`, kept if acknowledged.
    let pat = b"\"id\": \"";
    let mut safe = 1usize;
    let mut pos = 0usize;
    while let Some(p) = find(&bytes[pos..], pat) {
        let start = pos + p + pat.len();
        let Some(len) = bytes[start..].iter().position(|&b| b == b'"') else {
            break;
        };
        let id = String::from_utf8_lossy(&bytes[start..start + len]);
        if acked.contains(id.as_ref())
            && let Some(close) = find(&bytes[start..], b"\n  }")
        {
            safe = safe.max(start + close + 4);
        }
        pos = start + len;
    }
    // A power cut only tears what was written after the last durable
    // commit. The newest commit's slot is written while its batch is
    // synced, so it may not be durable: damage may start inside that batch
    // (the start-up then keeps the commit before it), unless a record of
    // it was acknowledged, which proves its commit durable.
    let ends = joblogd::dev::committed_ends(log);
    let at = |i: usize| {
        ends.get(i)
            .map_or(0, |&e| usize::try_from(e).unwrap_or(usize::MAX))
    };
    let (newest, before) = (at(0), at(1));
    safe = if safe > before {
        safe.max(newest)
    } else {
        before.max(safe)
    };
    if safe >= bytes.len() {
        return Ok("none (nothing after the acknowledged records)");
    }
    let cut = safe + rng.below((bytes.len() - safe) as u64) as usize;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    use std::os::unix::fs::FileExt;
    let kind = match rng.below(3) {
        0 => {
            f.set_len(cut as u64).map_err(|e| e.to_string())?;
            "truncated"
        }
        1 => {
            let zeros = vec![0u8; bytes.len() - cut + 4096];
            f.write_all_at(&zeros, cut as u64)
                .map_err(|e| e.to_string())?;
            "zero-filled"
        }
        _ => {
            f.set_len(cut as u64).map_err(|e| e.to_string())?;
            f.write_all_at(b"\x8a garbage {\"id\": ", cut as u64)
                .map_err(|e| e.to_string())?;
            "garbage"
        }
    };
    Ok(kind)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// Checks promises 1 and 2 on the file as the restarted daemon left it.
fn verify(log: &Path, ledger: &Ledger) -> Result<(usize, usize), String> {
    let bytes = std::fs::read(log).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("log is not valid JSON after restart: {e}"))?;
    let arr = v.as_array().ok_or("log is not an array")?;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in arr {
        let id = r["id"].as_str().ok_or("a record without id")?;
        if !ledger.sent.contains(id) {
            return Err(format!("unknown record {id}"));
        }
        *seen.entry(id).or_insert(0) += 1;
    }
    if let Some((id, n)) = seen.iter().find(|(_, n)| **n > 1) {
        return Err(format!("record {id} appears {n} times"));
    }
    let lost: Vec<&String> = ledger
        .acked
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} acknowledged records lost, e.g. {}",
            lost.len(),
            lost[0]
        ));
    }
    Ok((arr.len(), lost.len()))
}

fn main() {
    let args = Args::parse();
    let bin = args
        .daemon
        .clone()
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .map(|p| support::joblogd_beside(&p))
        })
        .unwrap_or_else(|| PathBuf::from("joblogd"));
    let own_dir = args.dir.is_none();
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/jltort-{}", std::process::id())));
    let _ = std::fs::create_dir_all(&dir);
    if let Some(minutes) = args.soak_minutes {
        let res = soak(&bin, &dir, minutes);
        if own_dir {
            let _ = std::fs::remove_dir_all(&dir);
        }
        if let Err(e) = res {
            eprintln!("FAILED: {e}");
            std::process::exit(1);
        }
        return;
    }
    let sock = dir.join("s.sock");
    let mut log = dir.join("log-0.json");
    let err = dir.join("daemon.log");
    let mut rng = Rng(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut ledger = Arc::new(Mutex::new(Ledger::default()));
    // Totals over all files.
    let (mut total_sent, mut total_acked, mut total_found) = (0usize, 0usize, 0usize);
    let mut damaged = 0;
    let t0 = Instant::now();
    let mut failure = None;
    for trial in 0..args.trials {
        // A new file every 10 trials keeps each check (a full parse) cheap;
        // within a file, history accumulates across kills.
        if trial > 0 && trial.is_multiple_of(10) {
            let l = ledger
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            total_sent += l.sent.len();
            total_acked += l.acked.len();
            total_found += verify(&log, &l).map(|(n, _)| n).unwrap_or(0);
            drop(l);
            ledger = Arc::new(Mutex::new(Ledger::default()));
            log = dir.join(format!("log-{}.json", trial / 10));
        }
        let d = match Daemon::start(&bin, &sock, &log, &err) {
            Ok(d) => d,
            Err(e) => {
                failure = Some(format!("trial {trial}: {e}"));
                break;
            }
        };
        let writers = 8 + rng.below(25) as u32;
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (sock, ledger, stop) = (sock.clone(), ledger.clone(), stop.clone());
                let ack_mode = w % 2 == 0;
                std::thread::spawn(move || writer(sock, trial, w, ack_mode, ledger, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.join();
        }
        if trial % 3 == 2 {
            let l = ledger.lock().map(|l| l.acked.clone()).unwrap_or_default();
            match damage(&log, &l, &mut rng) {
                Ok(kind) if !kind.starts_with("none") => damaged += 1,
                Ok(_) => {}
                Err(e) => {
                    failure = Some(format!("trial {trial}: damaging the file: {e}"));
                    break;
                }
            }
        }
        // Restart: recovery runs, then check the file it left.
        let d = match Daemon::start(&bin, &sock, &log, &err) {
            Ok(d) => d,
            Err(e) => {
                failure = Some(format!("trial {trial}: restart: {e}"));
                break;
            }
        };
        d.kill9();
        let l = ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = verify(&log, &l) {
            failure = Some(format!("trial {trial}: {e}"));
            break;
        }
    }
    let l = ledger
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let found = total_found + verify(&log, &l).map(|(n, _)| n).unwrap_or(0);
    let copies = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
                .count()
        })
        .unwrap_or(0);
    println!(
        "joblogd-torture: trials {} (tails damaged {damaged}), records sent {}, acknowledged {}, found {found}, losses {}, damaged files set aside {copies}, {:.1}s",
        args.trials,
        total_sent + l.sent.len(),
        total_acked + l.acked.len(),
        if failure.is_some() { "SEE BELOW" } else { "0" },
        t0.elapsed().as_secs_f64()
    );
    if let Some(f) = failure {
        eprintln!("FAILED: {f} (daemon log: {})", err.display());
        std::process::exit(1);
    }
    if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
