//! `joblogd-powercut`: the power-loss simulation behind README's
//! Guarantee 3.
//!
//! The real daemon writes batches of records (sizes from tens of bytes to
//! kilobytes, so batches start and end anywhere in a sector); after each,
//! the log and its commit sidecar are copied. For each pair of copies
//! (before and after one batch) the harness makes the states a power cut
//! during that batch can leave on the disk:
//! - a prefix of the batch written, the file as long as that or as long as
//!   the whole batch with zeros after the prefix;
//! - the batch's 512 B or 4 KiB sectors each either written or not, where
//!   "not" shows zeros or the stale bytes of an earlier batch cut at the
//!   same offsets (one with the same layout and other values, whose mix
//!   with the new one parses, or another batch's records);
//! - the whole batch written with its commit lost, durable, or torn; and
//!   the commit durable before the batch (the order joblogd never uses,
//!   to show the checksum alone suffices).
//!
//! Each state is written into the log's own file (the sidecar names its
//! inode) and the real daemon started on it. Checks: it starts; the file is
//! a valid JSON array; it holds exactly the records of every committed
//! batch, once, in order (so no record that was never written whole, and
//! none of the batch whose commit is not durable); the bytes cut are in a
//! copy aside, `<file>.corrupt-*.from-<offset>`, every one of them. It also
//! counts the states in which a recovery by syntax alone (keep every
//! complete record) would have kept a record never written whole, to show
//! the states bite. The test suite runs 600 states (`tests/powercut.rs`).
//!
//!     cargo run --release --example joblogd-powercut -- --states 20000

#[path = "support/mod.rs"]
#[allow(dead_code)] // each example uses some of the helpers
mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use serde_json::Value;
use support::{Daemon, Rng};

#[derive(Debug, Parser)]
#[command(
    name = "joblogd-powercut",
    about = "Power-cut states of real batches, each recovered by joblogd"
)]
struct Args {
    /// Post-crash states to try.
    #[arg(long, default_value_t = 600)]
    states: usize,
    /// Batches the daemon writes first (each gives one before/after pair).
    #[arg(long, default_value_t = 16)]
    batches: usize,
    /// The daemon binary [default: `joblogd` next to this executable].
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Random seed (states are reproducible with the same seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working directory [default: a fresh one under /tmp, removed after].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The log and its sidecar after a batch, and the records the log holds.
struct Snap {
    file: Vec<u8>,
    meta: Vec<u8>,
    records: Vec<Value>,
}

/// What a power cut during one batch left: the two files, and which
/// snapshot's records recovery must give.
struct State {
    file: Vec<u8>,
    meta: Vec<u8>,
    expect: usize,
}

/// How the unwritten parts of a batch read after the cut.
#[derive(Clone, Copy, Debug)]
enum Background {
    Zeros,
    /// An earlier batch cut at the same offsets, same layout, other values.
    SameLayout,
    /// Other records.
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Prefix,
    PrefixZeros,
    PrefixStale,
    Sectors512,
    Sectors4096,
    CommitLost,
    Committed,
    CommitTorn,
    CommitBeforeData,
}

const KINDS: [Kind; 12] = [
    Kind::Prefix,
    Kind::PrefixZeros,
    Kind::PrefixStale,
    Kind::Sectors512,
    Kind::Sectors512,
    Kind::Sectors512,
    Kind::Sectors4096,
    Kind::Sectors4096,
    Kind::CommitLost,
    Kind::Committed,
    Kind::CommitTorn,
    Kind::CommitBeforeData,
];

fn main() {
    let args = Args::parse();
    let exe = std::env::current_exe().unwrap_or_default();
    let bin = args
        .daemon
        .clone()
        .unwrap_or_else(|| support::joblogd_beside(&exe));
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("joblogd-powercut-{}", std::process::id())),
            true,
        ),
    };
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("joblogd-powercut: {}: {e}", dir.display());
        std::process::exit(2);
    }
    let code = match run(&args, &bin, &dir) {
        Ok(failures) => i32::from(failures > 0),
        Err(e) => {
            eprintln!("joblogd-powercut: {e}");
            2
        }
    };
    if remove && code == 0 {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::process::exit(code);
}

fn run(args: &Args, bin: &Path, dir: &Path) -> Result<usize, String> {
    let t0 = Instant::now();
    let mut rng = Rng(args.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let log = dir.join("log.json");
    let snaps = record(bin, dir, &log, args.batches, &mut rng)?;
    let mut tried = 0;
    let mut failures = Vec::new();
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    let mut bite = 0;
    let mut cut_bytes = 0u64;
    let pairs = snaps.len() - 1;
    for i in 0..args.states {
        let kind = KINDS[i % KINDS.len()];
        let k = (i / KINDS.len()) % pairs;
        let state = make_state(&snaps[k], &snaps[k + 1], k, kind, &mut rng);
        if syntax_alone_keeps_unwritten(&state.file, &snaps[k], &snaps[k + 1]) {
            bite += 1;
        }
        tried += 1;
        *by_kind.entry(format!("{kind:?}")).or_default() += 1;
        match recover(bin, dir, &log, &state, &snaps[state.expect]) {
            Ok(cut) => cut_bytes += cut,
            Err(e) => failures.push(format!("state {i} ({kind:?}, batch {}): {e}", k + 1)),
        }
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "joblogd-powercut: states {tried} ({}), batches {}, failures {}, states where keeping \
         every complete record would keep one never written whole {bite}, bytes set aside \
         {cut_bytes}, {:.1}s",
        kinds.join(", "),
        pairs,
        failures.len(),
        t0.elapsed().as_secs_f64()
    );
    for f in failures.iter().take(10) {
        println!("FAILED: {f}");
    }
    Ok(failures.len())
}

/// The real daemon writes `batches` batches; the log and sidecar are
/// copied after each (and before the first).
fn record(
    bin: &Path,
    dir: &Path,
    log: &Path,
    batches: usize,
    rng: &mut Rng,
) -> Result<Vec<Snap>, String> {
    let sock = dir.join("s.sock");
    let d = Daemon::start(bin, &sock, log, &dir.join("record.log"))?;
    let mut snaps = vec![snap(log)?];
    for b in 0..batches {
        let n = [1, 2, 3, 5, 8, 1, 13, 2][b % 8];
        let mut lines = String::new();
        for r in 0..n {
            let pad = "x".repeat(10 + rng.below(if b % 3 == 0 { 3000 } else { 400 }) as usize);
            let rec = serde_json::json!({
                "id": format!("b{b}-r{r}"),
                "video_id": format!("v{}", rng.below(1000)),
                "success": rng.below(3) > 0,
                "pad": pad,
                "timings": {"fetch": rng.below(10_000) as f64 / 100.0},
            });
            lines.push_str(&rec.to_string());
            lines.push('\n');
        }
        // One write and a flush: one batch (the daemon may still split it;
        // every state below is judged by the commits as they are).
        lines.push_str("{\"op\":\"flush\"}\n");
        let mut s = UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        s.write_all(lines.as_bytes()).map_err(|e| e.to_string())?;
        let mut reply = String::new();
        BufReader::new(&s)
            .read_line(&mut reply)
            .map_err(|e| e.to_string())?;
        if !reply.contains("\"ok\":true") {
            return Err(format!("flush answered {reply}"));
        }
        snaps.push(snap(log)?);
    }
    d.kill9();
    Ok(snaps)
}

fn snap(log: &Path) -> Result<Snap, String> {
    let file = std::fs::read(log).map_err(|e| e.to_string())?;
    // (A daemon without commits, as before them, writes none.)
    let meta = std::fs::read(meta_of(log)).unwrap_or_default();
    let records: Vec<Value> =
        serde_json::from_slice(&file).map_err(|e| format!("snapshot not an array: {e}"))?;
    Ok(Snap {
        file,
        meta,
        records,
    })
}

fn meta_of(log: &Path) -> PathBuf {
    PathBuf::from(format!("{}.meta", log.display()))
}

/// Where the batch from `old` to `new` starts: their common prefix (the
/// batch overwrites the closing `\n]`, or the `]` of `[]`).
fn batch_start(old: &[u8], new: &[u8]) -> usize {
    old.iter().zip(new).take_while(|(a, b)| a == b).count()
}

/// The bytes an earlier, cut batch left at `start..start + len`.
fn stale(new: &[u8], start: usize, len: usize, bg: Background, other: &[u8]) -> Vec<u8> {
    match bg {
        Background::Zeros => vec![0; len],
        // Same layout, other values: every `x` of the padding a `y`, so
        // a mix of the two parses and makes records never written whole.
        Background::SameLayout => new[start..]
            .iter()
            .map(|&b| if b == b'x' { b'y' } else { b })
            .chain(std::iter::repeat(0))
            .take(len)
            .collect(),
        Background::Other => other.iter().copied().cycle().take(len).collect(),
    }
}

fn make_state(old: &Snap, new: &Snap, k: usize, kind: Kind, rng: &mut Rng) -> State {
    let (o, n) = (&old.file, &new.file);
    let start = batch_start(o, n);
    let span = n.len() - start;
    let cut = start + 1 + rng.below(span.saturating_sub(1) as u64) as usize;
    let bgs = [Background::Zeros, Background::SameLayout, Background::Other];
    let bg = bgs[rng.below(3) as usize];
    // Another batch's records, as stale bytes of the `Other` kind.
    let other = &n[1..start.max(2)];
    let behind = |len: usize, bg| {
        let mut v = stale(n, start, len, bg, other);
        // What the old file had there (its closing bracket) is still there.
        for (i, b) in v.iter_mut().enumerate() {
            if let Some(&ob) = o.get(start + i) {
                *b = ob;
            }
        }
        v
    };
    let mut meta = old.meta.clone();
    let mut expect = k;
    let file = match kind {
        Kind::Prefix => n[..cut].to_vec(),
        Kind::PrefixZeros | Kind::PrefixStale => {
            let bg = if kind == Kind::PrefixZeros {
                Background::Zeros
            } else {
                bgs[1 + rng.below(2) as usize]
            };
            let mut f = n[..cut].to_vec();
            f.extend_from_slice(&behind(span, bg)[cut - start..]);
            f
        }
        Kind::Sectors512 | Kind::Sectors4096 | Kind::CommitBeforeData => {
            let sector = if kind == Kind::Sectors4096 { 4096 } else { 512 };
            let bg = if kind == Kind::CommitBeforeData {
                meta = new.meta.clone();
                Background::SameLayout
            } else {
                bg
            };
            masked(n, start, sector, &behind(span, bg), rng)
        }
        Kind::CommitLost => n.clone(),
        Kind::Committed => {
            meta = new.meta.clone();
            n.clone()
        }
        Kind::CommitTorn => {
            // The sector of the slot the new commit went to: its first
            // half new, the rest old. Neither checksum holds there.
            let mut m = old.meta.clone();
            if let Some(s) =
                (0..m.len() / 512).find(|&s| m[s * 512..][..512] != new.meta[s * 512..][..512])
            {
                let at = s * 512 + 16 + rng.below(100) as usize;
                m[s * 512..at].copy_from_slice(&new.meta[s * 512..at]);
            }
            meta = m;
            n.clone()
        }
    };
    // With the new commit durable, the batch counts if every byte of it
    // is there as written (a sector "not written" may hold the same bytes).
    let body = n.len() - 2;
    if meta == new.meta && file.get(..body) == Some(&n[..body]) {
        expect = k + 1;
    }
    State { file, meta, expect }
}

/// The new file with each sector from the batch's first on either written
/// or not (`behind` shows then), at least one of each where there are two.
fn masked(n: &[u8], start: usize, sector: usize, behind: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut f = n.to_vec();
    let first = start / sector;
    let last = (n.len() - 1) / sector;
    let count = last - first + 1;
    let mut mask: Vec<bool> = (0..count).map(|_| rng.below(2) == 0).collect();
    if count > 1 && mask.iter().all(|&w| w == mask[0]) {
        let i = rng.below(count as u64) as usize;
        mask[i] = !mask[i];
    }
    for (i, written) in mask.iter().enumerate() {
        if *written {
            continue;
        }
        let from = ((first + i) * sector).max(start);
        let to = ((first + i + 1) * sector).min(n.len());
        f[from..to].copy_from_slice(&behind[from - start..to - start]);
    }
    if count == 1 && mask[0] {
        // One sector, written: tear it inside instead.
        let at = start + rng.below((n.len() - start) as u64) as usize;
        f[at..].copy_from_slice(&behind[at - start..]);
    }
    f
}

/// Would a recovery that keeps every complete record (syntax alone) keep
/// one that is neither in the old file nor in the new one, or one of a
/// batch whose commit is not durable? The longest prefix that, closed,
/// parses as an array.
fn syntax_alone_keeps_unwritten(state: &[u8], old: &Snap, new: &Snap) -> bool {
    let ends: Vec<usize> = memchr::memmem::find_iter(state, b"\n  }")
        .map(|e| e + 4)
        .collect();
    let known: HashSet<String> = old
        .records
        .iter()
        .chain(&new.records)
        .map(Value::to_string)
        .collect();
    for &e in ends.iter().rev() {
        let mut candidate = state[..e].to_vec();
        candidate.extend_from_slice(b"\n]");
        if let Ok(recs) = serde_json::from_slice::<Vec<Value>>(&candidate) {
            return recs.iter().any(|r| !known.contains(&r.to_string()));
        }
    }
    false
}

/// Writes the state into the log's own file and its sidecar, starts the
/// daemon on it, stops it, and checks what it kept. Returns the bytes set
/// aside.
fn recover(bin: &Path, dir: &Path, log: &Path, state: &State, want: &Snap) -> Result<u64, String> {
    for e in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("log.json.corrupt-") || name.starts_with("log.json.appended-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    // In place: the sidecar names the log's inode.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(log)
        .map_err(|e| e.to_string())?;
    f.write_all(&state.file).map_err(|e| e.to_string())?;
    drop(f);
    std::fs::write(meta_of(log), &state.meta).map_err(|e| e.to_string())?;
    let sock = dir.join("s.sock");
    let errlog = dir.join("daemon.log");
    let _ = std::fs::remove_file(&errlog);
    let d = Daemon::start(bin, &sock, log, &errlog)?;
    let records = support::ask(&sock, r#"{"op":"ping"}"#).map(|p| p["records"].clone());
    let st = d.stop().map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("the daemon exited with {st}"));
    }
    if records != Some(Value::from(want.records.len())) {
        return Err(format!(
            "ping counted {records:?} records, {} were committed",
            want.records.len()
        ));
    }
    let got = std::fs::read(log).map_err(|e| e.to_string())?;
    let kept: Vec<Value> = serde_json::from_slice(&got)
        .map_err(|e| format!("the file is not a valid JSON array: {e}"))?;
    if kept != want.records {
        return Err(format!(
            "kept {} records, not the {} committed ones (a record never written whole, or one \
             uncommitted, or one lost)",
            kept.len(),
            want.records.len()
        ));
    }
    let copies: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("log.json.corrupt-"))
        .collect();
    if state.file == got {
        return if copies.is_empty() {
            Ok(0)
        } else {
            Err(format!("nothing was cut, yet {copies:?} were made"))
        };
    }
    let [copy] = copies.as_slice() else {
        return Err(format!("bytes were cut; copies aside: {copies:?}"));
    };
    let from: usize = copy
        .to_string_lossy()
        .rsplit(".from-")
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{} does not say where its bytes were", copy.display()))?;
    let aside = std::fs::read(copy).map_err(|e| e.to_string())?;
    if state.file.get(from..) != Some(&aside[..]) {
        return Err(format!("{} does not hold every byte cut", copy.display()));
    }
    if got.get(..from) != state.file.get(..from) {
        return Err("bytes before the cut changed".to_string());
    }
    Ok(aside.len() as u64)
}
