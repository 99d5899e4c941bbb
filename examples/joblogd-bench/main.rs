//! `joblogd-bench`: measures the real `joblogd` binary end to end.
//!
//! Run `cargo build --release` first, then
//! `cargo run --release --bin joblogd-bench -- [--quick] [--out-dir DIR]`.
//!
//! Every measurement starts its own daemon (the `joblogd` binary next to this
//! one) on a socket and log file in a fresh directory under /tmp, and stops it
//! with SIGTERM afterwards. Measured:
//! 1. fire-and-forget throughput (small ~1.2 KB and seed-sized ~14 KB
//!    records, 1/8/64 writers, clock stopped when a final `flush` returns);
//! 2. the raw ceiling: the same bytes into a trivial in-process server;
//!    and the write path alone: as many bytes as joblogd's file appended
//!    by the daemon's own write path with nothing else to do;
//! 3. the client-side cost of one `write_all` per record;
//! 4. `ack` latency with 1 and 8 clients;
//! 5. start-up scan time and `flush` latency at ~10 MB and ~1 GB files;
//! 6. the index: `stats`, `failed` and sorted `jobs` round trips at
//!    1,000,000 small records (a file written directly, not through the
//!    socket), resident memory per indexed record, and the start-up scan
//!    rate (cold and warm) of that file and of a ~1 GB seed-sized one.
//!
//! `--only index` (or any comma-separated list of `throughput`, `single`,
//! `ack`, `flush`, `index`) runs just those sections.
//!
//! Progress goes to stderr; the report goes to stdout (and, with
//! `--out-dir`, to `joblogd-bench.txt` and `joblogd-bench.json` there).

#[path = "../support/mod.rs"]
#[allow(dead_code)] // each example uses some of the helpers
mod support;

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, JoinHandle, ScopedJoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;
use joblogd::store::{FsyncPolicy, PageCache, Store};
use serde_json::{Value, json};

/// Measures joblogd throughput, ack and flush latency against the real binary.
#[derive(Debug, Parser)]
#[command(name = "joblogd-bench", version, about, long_about = None)]
struct Args {
    /// Smaller workloads (about a minute in total; 100 MB instead of 1 GB,
    /// 200,000 indexed records instead of 1,000,000).
    #[arg(long)]
    quick: bool,

    /// Also write the report and the results as JSON into this directory.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,

    /// The daemon binary [default: `joblogd` next to this executable].
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,

    /// Run only these sections (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SECTION")]
    only: Vec<Section>,

    /// Throughput section: only these record kinds [default: small,seed].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    kind: Vec<Kind>,

    /// Throughput section: these writer counts [default: 1,8,64].
    #[arg(long, value_delimiter = ',', value_name = "N")]
    writers: Vec<usize>,
}

/// The report's sections, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// 1 and 2: fire-and-forget throughput and the raw ceiling.
    Throughput,
    /// 3: one `write_all` per record.
    Single,
    /// 4: ack latency and the disk floor.
    Ack,
    /// 5: flush time vs file size.
    Flush,
    /// 6: index queries, memory and start-up scan rate.
    Index,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Throughput => "throughput",
            Section::Single => "single",
            Section::Ack => "ack",
            Section::Flush => "flush",
            Section::Index => "index",
        }
    }
}

// ---------------------------------------------------------------------------
// Workload sizes

/// How much work each measurement does.
#[derive(Debug, Clone)]
struct Plan {
    small_total: usize,
    seed_total: usize,
    writer_counts: Vec<usize>,
    reps: usize,
    single_records: usize,
    ack_sequential: usize,
    ack_clients: usize,
    ack_per_client: usize,
    flush_iters: usize,
    flush_batch: usize,
    small_file: u64,
    big_file: u64,
    fsync_floor_iters: usize,
    /// Small records in the index section's file.
    index_records: u64,
    index_stats_iters: usize,
    index_failed_iters: usize,
    index_sort_iters: usize,
    index_filtered_iters: usize,
    /// Cold and warm start-ups per file in the index section.
    scan_reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        Plan {
            small_total: if quick { 60_000 } else { 400_000 },
            seed_total: if quick { 6_000 } else { 40_000 },
            writer_counts: vec![1, 8, 64],
            reps: 3,
            single_records: if quick { 20_000 } else { 100_000 },
            ack_sequential: if quick { 400 } else { 2_000 },
            ack_clients: 8,
            ack_per_client: if quick { 100 } else { 500 },
            flush_iters: 50,
            flush_batch: 100,
            small_file: 10_000_000,
            big_file: if quick { 100_000_000 } else { 1_000_000_000 },
            fsync_floor_iters: if quick { 100 } else { 300 },
            index_records: if quick { 200_000 } else { 1_000_000 },
            index_stats_iters: 2_000,
            index_failed_iters: 200,
            index_sort_iters: if quick { 50 } else { 100 },
            index_filtered_iters: if quick { 5 } else { 10 },
            scan_reps: 3,
        }
    }
}

/// Bytes per `write_all` call of a throughput writer.
const WRITE_CHUNK: usize = 256 * 1024;
/// Read buffer of the raw ceiling server.
const RAW_READ: usize = 256 * 1024;
/// No single socket operation of the bench should take this long.
const IO_TIMEOUT: Duration = Duration::from_secs(180);
/// Characters of transcript in a seed-sized record.
const TRANSCRIPT_CHARS: usize = 12_500;
/// Distinct transcripts (records stay unique through their ids).
const TRANSCRIPT_VARIANTS: usize = 16;

// ---------------------------------------------------------------------------
// Records

const SUBJECTS: &[&str] = &[
    "AI",
    "Physics",
    "History",
    "Mathematics",
    "Biology",
    "Economics",
    "Chemistry",
    "Philosophy",
];

const TITLES: &[&str] = &[
    "Introduction to Machine Learning",
    "Quantum Mechanics Fundamentals",
    "The Fall of the Roman Empire",
    "Eigenvalues and Eigenvectors",
    "Structure of the Cell Membrane",
    "Supply and Demand Explained",
    "Organic Reaction Mechanisms",
    "Kant: Critique of Pure Reason",
    "Neural Networks from Scratch",
    "Thermodynamics and Entropy",
    "Causes of World War One",
];

const WORDS: &str = "the model learning data we can see that this function gradient descent is a very \
    important idea and so when you look at training set loss of network layer \
    weights basically right now example let's consider probability distribution over \
    inputs outputs error in our case value matrix vector because it turns out simple \
    question answer today lecture going to talk about how works";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// A realistic job record with an empty transcript (~1.2 KB line).
    Small,
    /// The same with a 12,500-character transcript (~14 KB line).
    Seed,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Small => "small",
            Kind::Seed => "seed",
        }
    }
}

/// xorshift64*: deterministic, dependency-free.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn make_transcript(rng: &mut u64, chars: usize) -> String {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut s = String::with_capacity(chars + 32);
    let mut since_stop = 0;
    while s.len() < chars {
        let w = words[(next_rand(rng) % words.len() as u64) as usize];
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(w);
        since_stop += 1;
        if since_stop > 8 && next_rand(rng).is_multiple_of(6) {
            s.push('.');
            since_stop = 0;
        }
    }
    s.truncate(chars);
    s
}

/// Generates job records as newline-free compact JSON.
struct Gen {
    transcripts: Vec<String>,
    file_titles: Vec<String>,
}

impl Gen {
    fn new() -> Gen {
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        Gen {
            transcripts: (0..TRANSCRIPT_VARIANTS)
                .map(|_| make_transcript(&mut rng, TRANSCRIPT_CHARS))
                .collect(),
            file_titles: TITLES.iter().map(|t| t.replace(' ', "_")).collect(),
        }
    }

    /// Appends one record (no newline). `id` makes it unique; every tenth
    /// record is a failure.
    fn record(&self, out: &mut Vec<u8>, kind: Kind, id: &str, worker: usize, n: u64) {
        let t = n as usize;
        let transcript = match kind {
            Kind::Small => "",
            Kind::Seed => &self.transcripts[t % self.transcripts.len()],
        };
        let subject = SUBJECTS[(t / 7) % SUBJECTS.len()];
        let ti = t % TITLES.len();
        let title = TITLES[ti];
        let ft = &self.file_titles[ti];
        let start = 1_697_543_210.123 + n as f64 * 1.7;
        let took = 20.0 + (n % 50) as f64 * 0.8;
        let end = start + took;
        let (mm, ss) = (5 + n % 40, n % 60);
        let len = TRANSCRIPT_CHARS;
        let method = if n.is_multiple_of(4) {
            "whisper"
        } else {
            "api"
        };
        let _ = write!(
            out,
            r#"{{"video_id":"{id}","url":"https://youtu.be/{id}","subject":"{subject}","worker_id":{worker},"video_title":"{title}","transcript":"{transcript}","transcript_metadata":{{"duration":"{mm}:{ss:02}","length":{len},"method":"{method}"}},"#
        );
        if n % 10 == 3 {
            let retries = 1 + n % 3;
            let fetch = took * 0.1;
            let next = end + 60.0 * retries as f64;
            let _ = write!(
                out,
                r#""has_notes":false,"has_assessment":false,"notes_length":0,"assessment_length":0,"output_dir":"notes/{subject}","notes_filepath":null,"assessment_filepath":null,"notes_file_exists":false,"assessment_file_exists":false,"pdf_subdir":"notes/{subject}/pdfs","notes_pdf_path":null,"assessment_pdf_path":null,"notes_pdf_exists":false,"assessment_pdf_exists":false,"stage":"generating_notes","success":false,"error":"API rate limit exceeded: 429 Too Many Requests","start_time":{start:.3},"end_time":{end:.3},"processing_duration":{took:.1},"timings":{{"fetch_transcript":{fetch:.1}}},"retry_count":{retries},"last_retry_time":{end:.3},"next_retry_time":{next:.3},"is_retryable":true,"files_created":[],"total_files":0}}"#
            );
        } else {
            let notes = 3000 + (n * 37) % 4000;
            let assessment = 2000 + (n * 53) % 3000;
            let (a, b, c) = (took * 0.1, took * 0.55, took * 0.22);
            let d = took - a - b - c - 0.5;
            let _ = write!(
                out,
                r#""has_notes":true,"has_assessment":true,"notes_length":{notes},"assessment_length":{assessment},"output_dir":"notes/{subject}","notes_filepath":"notes/{subject}/{ft}.md","assessment_filepath":"notes/{subject}/Assessment_{ft}.md","notes_file_exists":true,"assessment_file_exists":true,"pdf_subdir":"notes/{subject}/pdfs","notes_pdf_path":"notes/{subject}/pdfs/{ft}.pdf","assessment_pdf_path":"notes/{subject}/pdfs/Assessment_{ft}.pdf","notes_pdf_exists":true,"assessment_pdf_exists":true,"stage":"completed","success":true,"error":null,"start_time":{start:.3},"end_time":{end:.3},"processing_duration":{took:.1},"timings":{{"fetch_transcript":{a:.1},"generate_notes":{b:.1},"generate_assessment":{c:.1},"write_files":0.5,"export_pdfs":{d:.1}}},"retry_count":0,"last_retry_time":null,"next_retry_time":null,"is_retryable":true,"files_created":["notes/{subject}/{ft}.md","notes/{subject}/Assessment_{ft}.md"],"total_files":4}}"#
            );
        }
    }

    /// One record as a line.
    fn line(&self, out: &mut Vec<u8>, kind: Kind, id: &str, worker: usize, n: u64) {
        self.record(out, kind, id, worker, n);
        out.push(b'\n');
    }

    /// `total` unique record lines split over `writers` buffers.
    fn writer_buffers(&self, kind: Kind, total: usize, writers: usize, tag: &str) -> Vec<Vec<u8>> {
        let approx = match kind {
            Kind::Small => 1_300,
            Kind::Seed => 14_000,
        };
        (0..writers)
            .map(|w| {
                let count = total / writers + usize::from(w < total % writers);
                let mut buf = Vec::with_capacity(count * approx);
                for i in 0..count {
                    let id = format!("{tag}{w:02}x{i:07}");
                    self.line(&mut buf, kind, &id, w, i as u64);
                }
                buf
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Small helpers

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Removes its directory (and everything in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = PathBuf::from(format!("/tmp/jlb-{}-{:x}", std::process::id(), nanos));
        fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Median, min and max of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(samples: &[f64]) -> Spread {
    if samples.is_empty() {
        return Spread::default();
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency summary in the samples' unit.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    n: usize,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

fn latency(samples: &[f64]) -> Latency {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    Latency {
        n: v.len(),
        p50: percentile(&v, 50.0),
        p99: percentile(&v, 99.0),
        max: v.last().copied().unwrap_or(0.0),
        mean: if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        },
    }
}

impl Latency {
    fn to_json(self) -> Value {
        json!({"n": self.n, "p50": self.p50, "p99": self.p99, "max": self.max, "mean": self.mean})
    }
}

/// 1234567 -> "1,234,567".
fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Drops the file's pages from the page cache, so the next read comes from
/// disk (the file must be synced first).
fn evict_from_cache(file: &File) {
    // SAFETY: a valid open descriptor; posix_fadvise only advises the kernel.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

fn join<T>(h: ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    h.join()
        .map_err(|_| other("a bench thread panicked"))
        .and_then(|r| r)
}

// ---------------------------------------------------------------------------
// The daemon under test and a line client

/// A running `joblogd`; SIGTERM and wait on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// Spawn until the socket accepted a connection.
    accept_after: Duration,
    exit: Option<ExitStatus>,
}

impl Daemon {
    fn start(bin: &Path, socket: &Path, log_file: &Path) -> io::Result<Daemon> {
        let _ = fs::remove_file(socket);
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .arg("--socket")
            .arg(socket)
            .arg("--log-file")
            .arg(log_file)
            .args(["--fsync", "always"])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| other(format!("cannot start {}: {e}", bin.display())))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take();
        let sink = Arc::clone(&stderr);
        let stderr_thread = pipe.map(|pipe| {
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut v) = sink.lock() {
                        v.push(strip_ansi(&line));
                    }
                }
            })
        });
        let mut d = Daemon {
            child,
            socket: socket.to_owned(),
            stderr,
            stderr_thread,
            accept_after: Duration::ZERO,
            exit: None,
        };
        let deadline = t0 + Duration::from_secs(600);
        loop {
            if UnixStream::connect(socket).is_ok() {
                break;
            }
            if let Some(status) = d.child.try_wait()? {
                d.exit = Some(status);
                d.join_stderr();
                return Err(other(format!(
                    "joblogd exited ({status}) before accepting connections; stderr:\n{}",
                    d.stderr_lines().join("\n")
                )));
            }
            if Instant::now() > deadline {
                return Err(other("joblogd did not accept connections within 600 s"));
            }
            thread::sleep(Duration::from_millis(1));
        }
        d.accept_after = t0.elapsed();
        Ok(d)
    }

    fn socket(&self) -> &Path {
        &self.socket
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// `took_ms` of the "Log file ready." line (waits briefly for it: it is
    /// written before the socket is bound, but read by another thread).
    fn ready_took_ms(&self) -> Option<u64> {
        self.ready_field("took_ms")
    }

    /// A numeric field (`records`, `bytes`, `took_ms`) of the "Log file
    /// ready." line.
    fn ready_field(&self, key: &str) -> Option<u64> {
        let pat = format!(" {key}=");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let found = self.stderr_lines().iter().find_map(|l| {
                if !l.contains("Log file ready.") {
                    return None;
                }
                let rest = &l[l.find(&pat)? + pat.len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            });
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// `VmRSS` and `VmHWM` (peak) of the daemon, in bytes, from
    /// /proc/<pid>/status.
    fn memory(&self) -> io::Result<(u64, u64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .ok_or_else(|| other(format!("no {name} in /proc/{}/status", self.child.id())))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    fn join_stderr(&mut self) {
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }

    /// SIGTERM, then wait (SIGKILL after 60 s).
    fn terminate(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.exit {
            return Ok(s);
        }
        if let Some(s) = self.child.try_wait()? {
            self.exit = Some(s);
            self.join_stderr();
            return Ok(s);
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|_| other("pid out of range"))?;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait()?;
            }
            thread::sleep(Duration::from_millis(2));
        };
        self.exit = Some(status);
        self.join_stderr();
        Ok(status)
    }

    /// Stops the daemon; returns its warnings and errors (including an
    /// unclean exit) for the report.
    fn stop(mut self, what: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match self.terminate() {
            Ok(s) if s.success() => {}
            Ok(s) => problems.push(format!("{what}: joblogd exited with {s}")),
            Err(e) => problems.push(format!("{what}: stopping joblogd failed: {e}")),
        }
        for l in self.stderr_lines() {
            if l.contains(" WARN ") || l.contains(" ERROR ") || l.starts_with("joblogd:") {
                problems.push(format!("{what}: daemon stderr: {}", l.trim()));
            }
        }
        problems
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// One connection with line-oriented replies.
struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    buf: String,
}

impl Client {
    fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client {
            stream,
            reader,
            buf: String::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn read_line(&mut self) -> io::Result<&str> {
        self.buf.clear();
        if self.reader.read_line(&mut self.buf)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "joblogd closed the connection",
            ));
        }
        Ok(self.buf.trim_end())
    }

    fn request(&mut self, line: &str) -> io::Result<Value> {
        self.send(format!("{line}\n").as_bytes())?;
        let reply = self.read_line()?;
        serde_json::from_str(reply).map_err(|e| other(format!("bad reply {reply:?}: {e}")))
    }

    fn flush(&mut self) -> io::Result<()> {
        let v = self.request(r#"{"op":"flush"}"#)?;
        if v["ok"] == true {
            Ok(())
        } else {
            Err(other(format!("flush failed: {v}")))
        }
    }

    /// Checks that the file holds exactly `expected` records, none pending.
    fn verify(&mut self, expected: u64) -> io::Result<Value> {
        let v = self.request(r#"{"op":"ping"}"#)?;
        if v["records"].as_u64() != Some(expected) || v["pending"].as_u64() != Some(0) {
            return Err(other(format!(
                "verification failed: expected {expected} records and 0 pending; ping: {v}"
            )));
        }
        Ok(v)
    }
}

// ---------------------------------------------------------------------------
// Writers

/// One throughput writer: connect, wait for the start, write the buffer in
/// large chunks, close the write side and read until the daemon closes
/// (which it does once everything sent is handed to its writer). Returns any
/// reply lines (errors: records get no reply).
fn writer(socket: &Path, buf: &[u8], barrier: &Barrier) -> io::Result<Vec<String>> {
    let conn = UnixStream::connect(socket).and_then(|c| {
        c.set_write_timeout(Some(IO_TIMEOUT))?;
        c.set_read_timeout(Some(IO_TIMEOUT))?;
        Ok(c)
    });
    barrier.wait(); // even after a failed connect, or the others would hang
    let mut conn = conn?;
    for chunk in buf.chunks(WRITE_CHUNK) {
        conn.write_all(chunk)?;
    }
    conn.shutdown(Shutdown::Write)?;
    let mut replies = String::new();
    conn.read_to_string(&mut replies)?;
    Ok(replies.lines().map(str::to_owned).collect())
}

/// Runs one writer thread per buffer; the clock starts when all are
/// connected and stops when `finish` (run after every writer is done)
/// returns. Returns the time and any reply lines the writers received.
fn run_writers(
    socket: &Path,
    bufs: &[Vec<u8>],
    finish: impl FnOnce() -> io::Result<()>,
) -> io::Result<(Duration, Vec<String>)> {
    let barrier = Barrier::new(bufs.len() + 1);
    thread::scope(|s| {
        let handles: Vec<_> = bufs
            .iter()
            .map(|buf| {
                let barrier = &barrier;
                s.spawn(move || writer(socket, buf, barrier))
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let results: Vec<_> = handles.into_iter().map(join).collect();
        let mut replies = Vec::new();
        for r in results {
            replies.extend(r?);
        }
        finish()?;
        Ok((t0.elapsed(), replies))
    })
}

/// The raw ceiling server: a thread per connection copying socket bytes
/// into one file under a mutex.
fn raw_serve(mut stream: UnixStream, file: &Mutex<File>) {
    let mut buf = vec![0u8; RAW_READ];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Ok(mut f) = file.lock() else { break };
                if f.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    // Dropping the stream closes it: the writer's read sees EOF.
}

/// Same bytes, same writers, into the raw server; one fdatasync at the end
/// (as joblogd's final flush). Returns the time.
fn raw_run(dir: &Path, bufs: &[Vec<u8>]) -> io::Result<Duration> {
    let sock = dir.join("raw.sock");
    let out = dir.join("raw.out");
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    let file = Mutex::new(File::create(&out)?);
    let n = bufs.len();
    let res = thread::scope(|s| {
        let (file, listener) = (&file, &listener);
        s.spawn(move || {
            for _ in 0..n {
                match listener.accept() {
                    Ok((stream, _)) => {
                        s.spawn(move || raw_serve(stream, file));
                    }
                    Err(_) => break,
                }
            }
        });
        let res = run_writers(&sock, bufs, || {
            file.lock()
                .map_err(|_| other("raw file lock poisoned"))?
                .sync_data()
        });
        if res.is_err() {
            // Unblock the acceptor if some writer never connected.
            for _ in 0..n {
                let _ = UnixStream::connect(&sock);
            }
        }
        res
    });
    let _ = fs::remove_file(&sock);
    let _ = fs::remove_file(&out);
    let (took, _) = res?;
    Ok(took)
}

/// Bytes per append of the write path alone: the daemon's default
/// `--batch-max-bytes`, which its batches reach whenever the disk is what
/// holds it back (group commit).
const DISK_BATCH: usize = 8 << 20;

/// Bytes per chunk inside one append: under load a connection hands its
/// chunk over to the writer once it holds 256 KiB (`HANDOFF_BYTES`), so a
/// full batch arrives as chunks of about this.
const DISK_CHUNK: usize = 256 << 10;

/// The write path alone: joblogd's own [`Store::append`] with the daemon's
/// defaults (`--fsync always --page-cache drop`) appending `total` bytes in
/// batches of [`DISK_BATCH`], with no socket, no parsing and no index. It
/// shows what the disk allows that path at the default batch size. It is
/// not a strict bound: under load the daemon's batches grow past
/// `--batch-max-bytes` while a flush is in flight, and larger batches write
/// faster on this VM, so seed-sized runs can beat it. `chunk` is
/// [`DISK_CHUNK`] bytes of input lines (their content does not matter to
/// the disk). Returns the time.
fn disk_run(dir: &Path, total: u64, chunk: &[u8]) -> io::Result<Duration> {
    let path = dir.join("disk.json");
    let _ = fs::remove_file(&path);
    let (mut store, _) = Store::open(
        &path,
        FsyncPolicy::Always,
        joblogd::store::FileOptions::default(),
        |_, _, _| {},
        |_, _| {},
    )
    .map_err(|e| other(e.to_string()))?;
    store.set_page_cache(PageCache::Drop);
    let per_batch = DISK_BATCH / DISK_CHUNK;
    let t0 = Instant::now();
    let mut left = total;
    let mut batch: Vec<&[u8]> = Vec::with_capacity(per_batch);
    while left > 0 {
        // Exactly `total` bytes in all: the last chunk may be cut short (the
        // store adds `\n]` and skips the first record's comma, 2 bytes either
        // way, as the daemon's file has them).
        batch.clear();
        while batch.len() < per_batch && left > 0 {
            let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
            batch.push(&chunk[..n]);
            left -= n as u64;
        }
        store
            .append(&batch, batch.len() as u64)
            .map_err(|e| other(e.to_string()))?;
    }
    let took = t0.elapsed();
    drop(store);
    let _ = fs::remove_file(&path);
    Ok(took)
}

// ---------------------------------------------------------------------------
// Measurements

struct Bench {
    bin: PathBuf,
    dir: PathBuf,
    plan: Plan,
    rg: Gen,
    started: Instant,
    problems: Vec<String>,
}

/// One throughput configuration.
struct TpRow {
    kind: Kind,
    writers: usize,
    records: u64,
    bytes: u64,
    joblogd_secs: Vec<f64>,
    raw_secs: Vec<f64>,
    /// [`disk_run`] of `file_bytes`, once per repetition.
    disk_secs: Vec<f64>,
    /// Size of joblogd's file after a run (pretty-printed, with logged_at).
    file_bytes: u64,
}

impl TpRow {
    fn rec_per_s(&self, secs: &[f64]) -> Spread {
        let v: Vec<f64> = secs.iter().map(|s| self.records as f64 / s).collect();
        spread(&v)
    }

    fn mb_per_s(&self, secs: &[f64]) -> Spread {
        let v: Vec<f64> = secs.iter().map(|s| self.bytes as f64 / 1e6 / s).collect();
        spread(&v)
    }

    /// The write path alone in MB/s of joblogd's file (not of input lines).
    fn disk_mb_per_s(&self) -> Spread {
        let v: Vec<f64> = self
            .disk_secs
            .iter()
            .map(|s| self.file_bytes as f64 / 1e6 / s)
            .collect();
        spread(&v)
    }

    fn to_json(&self) -> Value {
        let j = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        let jr = self.mb_per_s(&self.joblogd_secs).median;
        let rr = self.mb_per_s(&self.raw_secs).median;
        json!({
            "record": self.kind.label(),
            "writers": self.writers,
            "records": self.records,
            "bytes": self.bytes,
            "joblogd_seconds": self.joblogd_secs,
            "joblogd_records_per_s": j(self.rec_per_s(&self.joblogd_secs)),
            "joblogd_mb_per_s": j(self.mb_per_s(&self.joblogd_secs)),
            "raw_seconds": self.raw_secs,
            "joblogd_file_bytes": self.file_bytes,
            "raw_mb_per_s": j(self.mb_per_s(&self.raw_secs)),
            "joblogd_to_raw": if rr > 0.0 { jr / rr } else { 0.0 },
            "disk_seconds": self.disk_secs,
            "disk_mb_per_s": j(self.disk_mb_per_s()),
            "disk_records_per_s": j(self.rec_per_s(&self.disk_secs)),
        })
    }
}

struct SingleStats {
    records: u64,
    client_ns_per_record: f64,
    total_secs: f64,
}

struct AckStats {
    clients: usize,
    latency_us: Latency,
    acks_per_s: f64,
}

struct FlushStats {
    label: &'static str,
    file_bytes: u64,
    file_records: u64,
    prepare_secs: f64,
    cold_took_ms: Option<u64>,
    cold_accept_ms: f64,
    warm_took_ms: Option<u64>,
    warm_accept_ms: f64,
    flush_ms: Latency,
}

/// Start-up scans of one file: `took_ms` of "Log file ready.", cold (file
/// synced and dropped from the page cache first) and warm.
struct ScanStats {
    label: String,
    file_bytes: u64,
    records: u64,
    prepare_secs: f64,
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    cold_accept_ms: Vec<f64>,
    warm_accept_ms: Vec<f64>,
}

impl ScanStats {
    fn mb_per_s(&self, ms: &[f64]) -> Spread {
        let v: Vec<f64> = ms
            .iter()
            .map(|m| self.file_bytes as f64 / 1e6 / (m.max(1.0) / 1e3))
            .collect();
        spread(&v)
    }

    fn rec_per_s(&self, ms: &[f64]) -> Spread {
        let v: Vec<f64> = ms
            .iter()
            .map(|m| self.records as f64 / (m.max(1.0) / 1e3))
            .collect();
        spread(&v)
    }

    fn to_json(&self) -> Value {
        let j = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        json!({
            "label": self.label,
            "file_bytes": self.file_bytes,
            "records": self.records,
            "prepare_seconds": self.prepare_secs,
            "cold_scan_ms": self.cold_ms,
            "warm_scan_ms": self.warm_ms,
            "cold_accept_ms": self.cold_accept_ms,
            "warm_accept_ms": self.warm_accept_ms,
            "cold_mb_per_s": j(self.mb_per_s(&self.cold_ms)),
            "warm_mb_per_s": j(self.mb_per_s(&self.warm_ms)),
            "cold_records_per_s": j(self.rec_per_s(&self.cold_ms)),
            "warm_records_per_s": j(self.rec_per_s(&self.warm_ms)),
        })
    }
}

/// Sequential round trips of one request on one connection.
struct Rtt {
    request: &'static str,
    /// The first (unmeasured warm-up) request.
    first_us: f64,
    latency_us: Latency,
    reply_bytes: usize,
}

impl Rtt {
    fn to_json(&self) -> Value {
        json!({
            "request": self.request,
            "first_us": self.first_us,
            "latency_us": self.latency_us.to_json(),
            "reply_bytes": self.reply_bytes,
        })
    }
}

/// Section 6, everything but the seed-sized file's start-up.
struct IndexStats {
    records: u64,
    failed: u64,
    videos: u64,
    file_bytes: u64,
    scan: ScanStats,
    ping: Rtt,
    stats: Rtt,
    failed_100: Rtt,
    sort_5: Rtt,
    stats_ai: Rtt,
    /// VmRSS / VmHWM of a daemon on an empty log, after one `stats`.
    rss_empty: u64,
    hwm_empty: u64,
    index_bytes_empty: u64,
    /// The same on the full file, after start-up and one `stats`.
    rss_full: u64,
    hwm_full: u64,
    index_bytes: u64,
    /// VmRSS after all the measured requests.
    rss_after: u64,
}

impl IndexStats {
    fn rss_per_record(&self) -> f64 {
        (self.rss_full as f64 - self.rss_empty as f64) / self.records.max(1) as f64
    }

    fn index_bytes_per_record(&self) -> f64 {
        self.index_bytes as f64 / self.records.max(1) as f64
    }
}

const PING: &str = r#"{"op":"ping"}"#;
const STATS: &str = r#"{"op":"stats"}"#;
const FAILED_100: &str = r#"{"op":"failed","limit":100}"#;
const SORT_5: &str = r#"{"op":"jobs","sort_by":"processing_duration","order":"desc","limit":5}"#;
/// Filtered stats: one subject of [`SUBJECTS`] (an eighth of the records),
/// whose `timings` are read back from the file.
const STATS_AI: &str = r#"{"op":"stats","subject":"AI"}"#;
/// The stage names of a successful record's `timings` in [`Gen::record`].
const STAGES: [&str; 5] = [
    "export_pdfs",
    "fetch_transcript",
    "generate_assessment",
    "generate_notes",
    "write_files",
];
/// Longest a set of round trips may run before it stops early.
const RTT_CAP: Duration = Duration::from_secs(60);
const SORT_CAP: Duration = Duration::from_secs(30);

/// One warm-up and then up to `n` sequential round trips of `request` (for
/// at most `cap`); microseconds from writing the request to having read the
/// whole reply line. Every reply must be `"ok":true` and pass `check`
/// (parsed and checked outside the clock).
fn round_trips(
    c: &mut Client,
    request: &'static str,
    n: usize,
    cap: Duration,
    mut check: impl FnMut(&Value) -> io::Result<()>,
) -> io::Result<Rtt> {
    let line = format!("{request}\n");
    let mut samples = Vec::with_capacity(n);
    let mut first_us = 0.0;
    let mut reply_bytes = 0;
    let t0 = Instant::now();
    for i in 0..=n {
        let t = Instant::now();
        c.send(line.as_bytes())?;
        let reply = c.read_line()?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        if i == 0 {
            first_us = us;
        } else {
            samples.push(us);
        }
        reply_bytes = reply.len();
        let v: Value = serde_json::from_str(reply).map_err(|e| {
            let head: String = reply.chars().take(300).collect();
            other(format!("{request}: bad reply {head:?}: {e}"))
        })?;
        if v["ok"] != true {
            let head: String = v.to_string().chars().take(300).collect();
            return Err(other(format!("{request}: error reply {head}")));
        }
        check(&v).map_err(|e| other(format!("{request}: {e}")))?;
        if i > 0 && t0.elapsed() > cap {
            break;
        }
    }
    Ok(Rtt {
        request,
        first_us,
        latency_us: latency(&samples),
        reply_bytes,
    })
}

impl Bench {
    fn progress(&self, msg: &str) {
        eprintln!("[{:6.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    fn start_daemon(&self, name: &str) -> io::Result<(Daemon, PathBuf)> {
        let log = self.dir.join(format!("{name}.json"));
        let _ = fs::remove_file(&log);
        let d = Daemon::start(&self.bin, &self.dir.join(format!("{name}.sock")), &log)?;
        Ok((d, log))
    }

    fn stop_daemon(&mut self, d: Daemon, log: &Path, what: &str) {
        let problems = d.stop(what);
        for p in &problems {
            self.progress(&format!("PROBLEM {p}"));
        }
        self.problems.extend(problems);
        let _ = fs::remove_file(log);
    }

    /// One fire-and-forget run against a fresh daemon; returns seconds and
    /// the size of the resulting file.
    fn joblogd_run(
        &mut self,
        bufs: &[Vec<u8>],
        records: u64,
        what: &str,
    ) -> io::Result<(f64, u64)> {
        let (d, log) = self.start_daemon("tp")?;
        let result = (|| {
            let mut ctl = Client::connect(d.socket())?;
            let (took, replies) = run_writers(d.socket(), bufs, || ctl.flush())?;
            if let Some(first) = replies.first() {
                return Err(other(format!(
                    "{} replies to fire-and-forget records, first: {first}",
                    replies.len()
                )));
            }
            let ping = ctl.verify(records)?;
            Ok((took.as_secs_f64(), ping["file_bytes"].as_u64().unwrap_or(0)))
        })();
        self.stop_daemon(d, &log, what);
        result
    }

    /// Sections 1 and 2.
    fn throughput(&mut self, kind: Kind) -> io::Result<Vec<TpRow>> {
        let total = match kind {
            Kind::Small => self.plan.small_total,
            Kind::Seed => self.plan.seed_total,
        };
        let mut rows = Vec::new();
        let counts = self.plan.writer_counts.clone();
        for (ci, &writers) in counts.iter().enumerate() {
            let tag = format!("{}{ci}", &kind.label()[..2]);
            let bufs = self.rg.writer_buffers(kind, total, writers, &tag);
            let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            let mut row = TpRow {
                kind,
                writers,
                records: total as u64,
                bytes,
                joblogd_secs: Vec::new(),
                file_bytes: 0,
                raw_secs: Vec::new(),
                disk_secs: Vec::new(),
            };
            let src: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(b" ", |b| b);
            let mut chunk = Vec::with_capacity(DISK_CHUNK);
            while chunk.len() < DISK_CHUNK {
                chunk.extend_from_slice(&src[..src.len().min(DISK_CHUNK - chunk.len())]);
            }
            for rep in 0..self.plan.reps {
                let what = format!("{} x{writers} run {}", kind.label(), rep + 1);
                let (secs, file_bytes) = self.joblogd_run(&bufs, total as u64, &what)?;
                row.file_bytes = file_bytes;
                let raw = raw_run(&self.dir, &bufs)?.as_secs_f64();
                let disk = disk_run(&self.dir, file_bytes, &chunk)?.as_secs_f64();
                self.progress(&format!(
                    "{what}: joblogd {} rec/s {:.1} MB/s ({secs:.2} s); raw {:.1} MB/s; write path alone {} rec/s",
                    thousands(total as f64 / secs),
                    bytes as f64 / 1e6 / secs,
                    bytes as f64 / 1e6 / raw,
                    thousands(total as f64 / disk)
                ));
                row.joblogd_secs.push(secs);
                row.raw_secs.push(raw);
                row.disk_secs.push(disk);
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Section 3: one `write_all` per small record.
    fn single_writes(&mut self) -> io::Result<SingleStats> {
        let n = self.plan.single_records;
        let mut buf = Vec::with_capacity(n * 1_300);
        let mut ends = Vec::with_capacity(n);
        for i in 0..n {
            self.rg
                .line(&mut buf, Kind::Small, &format!("one{i:08}"), 0, i as u64);
            ends.push(buf.len());
        }
        let (d, log) = self.start_daemon("one")?;
        let result = (|| {
            let mut ctl = Client::connect(d.socket())?;
            let mut conn = UnixStream::connect(d.socket())?;
            conn.set_read_timeout(Some(IO_TIMEOUT))?;
            conn.set_write_timeout(Some(IO_TIMEOUT))?;
            let t0 = Instant::now();
            let mut start = 0;
            for &end in &ends {
                conn.write_all(&buf[start..end])?;
                start = end;
            }
            let client = t0.elapsed();
            conn.shutdown(Shutdown::Write)?;
            let mut replies = String::new();
            conn.read_to_string(&mut replies)?;
            ctl.flush()?;
            let total = t0.elapsed();
            if !replies.is_empty() {
                return Err(other(format!("unexpected replies: {replies}")));
            }
            ctl.verify(n as u64)?;
            Ok(SingleStats {
                records: n as u64,
                client_ns_per_record: client.as_nanos() as f64 / n as f64,
                total_secs: total.as_secs_f64(),
            })
        })();
        self.stop_daemon(d, &log, "single-record writes");
        result
    }

    /// Section 4: `clients` clients each sending `per_client` acked logs
    /// one at a time. Latencies in microseconds.
    fn ack_latency(&mut self, clients: usize, per_client: usize) -> io::Result<AckStats> {
        let reqs: Vec<Vec<Vec<u8>>> = (0..clients)
            .map(|c| {
                (0..per_client)
                    .map(|i| {
                        let mut line = br#"{"op":"log","job":"#.to_vec();
                        let id = format!("ack{clients}c{c:02}x{i:06}");
                        self.rg.record(&mut line, Kind::Small, &id, c, i as u64);
                        line.extend_from_slice(b",\"ack\":true}\n");
                        line
                    })
                    .collect()
            })
            .collect();
        let (d, log) = self.start_daemon("ack")?;
        let result = (|| {
            let barrier = Barrier::new(clients + 1);
            let socket = d.socket();
            let (samples, took) = thread::scope(|s| -> io::Result<(Vec<f64>, Duration)> {
                let handles: Vec<_> = reqs
                    .iter()
                    .map(|lines| {
                        let barrier = &barrier;
                        s.spawn(move || -> io::Result<Vec<f64>> {
                            let client = Client::connect(socket);
                            barrier.wait();
                            let mut client = client?;
                            let mut lat = Vec::with_capacity(lines.len());
                            for line in lines {
                                let t = Instant::now();
                                client.send(line)?;
                                let reply = client.read_line()?;
                                lat.push(t.elapsed().as_secs_f64() * 1e6);
                                if !reply.contains(r#""ok":true"#) {
                                    return Err(other(format!("ack failed: {reply}")));
                                }
                            }
                            Ok(lat)
                        })
                    })
                    .collect();
                barrier.wait();
                let t0 = Instant::now();
                let results: Vec<_> = handles.into_iter().map(join).collect();
                let took = t0.elapsed();
                let mut all = Vec::new();
                for r in results {
                    all.extend(r?);
                }
                Ok((all, took))
            })?;
            Client::connect(socket)?.verify((clients * per_client) as u64)?;
            Ok(AckStats {
                clients,
                latency_us: latency(&samples),
                acks_per_s: samples.len() as f64 / took.as_secs_f64(),
            })
        })();
        self.stop_daemon(d, &log, &format!("ack latency x{clients}"));
        result
    }

    /// Context for section 4: what one small append + fdatasync costs on
    /// this disk, without joblogd. Microseconds.
    fn fsync_floor(&self) -> io::Result<Latency> {
        let path = self.dir.join("floor.bin");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut line = Vec::new();
        self.rg.line(&mut line, Kind::Small, "floor", 0, 0);
        let mut at = 0u64;
        let mut samples = Vec::new();
        for _ in 0..self.plan.fsync_floor_iters {
            let t = Instant::now();
            file.write_all_at(&line, at)?;
            file.sync_data()?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            at += line.len() as u64;
        }
        drop(file);
        let _ = fs::remove_file(&path);
        Ok(latency(&samples))
    }

    /// Writes a valid JSON array of seed-sized compact records of about
    /// `target` bytes, syncs it and drops it from the page cache.
    fn prepare_array(&self, path: &Path, target: u64, label: &str) -> io::Result<(u64, u64)> {
        let file = File::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut rec = Vec::with_capacity(16 * 1024);
        w.write_all(b"[\n  ")?;
        let mut bytes = 4u64;
        let mut n = 0u64;
        while bytes + 2 < target {
            rec.clear();
            if n > 0 {
                rec.extend_from_slice(b",\n  ");
            }
            let id = format!("pre{label}{n:08}");
            self.rg
                .record(&mut rec, Kind::Seed, &id, (n % 64) as usize, n);
            w.write_all(&rec)?;
            bytes += rec.len() as u64;
            n += 1;
        }
        w.write_all(b"\n]")?;
        bytes += 2;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        evict_from_cache(&file);
        Ok((bytes, n))
    }

    /// Section 5 for one file size.
    fn flush_vs_size(&mut self, target: u64, label: &'static str) -> io::Result<FlushStats> {
        let name = format!("fl{}", label.replace(' ', ""));
        let log = self.dir.join(format!("{name}.json"));
        let socket = self.dir.join(format!("{name}.sock"));
        self.progress(&format!("preparing a {label} array file"));
        let t0 = Instant::now();
        let (file_bytes, file_records) = self.prepare_array(&log, target, label)?;
        let prepare_secs = t0.elapsed().as_secs_f64();
        self.progress(&format!(
            "{label}: {file_records} records, {:.1} MB written and synced in {prepare_secs:.1} s",
            file_bytes as f64 / 1e6
        ));

        // Cold start (file evicted from the page cache), then a warm one.
        let cold = Daemon::start(&self.bin, &socket, &log)?;
        let cold_took_ms = cold.ready_took_ms();
        let cold_accept_ms = cold.accept_after.as_secs_f64() * 1e3;
        let p = cold.stop(&format!("flush {label} (cold start)"));
        self.problems.extend(p);
        let warm = Daemon::start(&self.bin, &socket, &log)?;
        let warm_took_ms = warm.ready_took_ms();
        let warm_accept_ms = warm.accept_after.as_secs_f64() * 1e3;

        let iters = self.plan.flush_iters;
        let per = self.plan.flush_batch;
        let payloads: Vec<Vec<u8>> = (0..=iters)
            .map(|it| {
                let mut p = Vec::with_capacity(per * 1_300 + 16);
                for j in 0..per {
                    let id = format!("fl{name}{it:03}r{j:03}");
                    self.rg
                        .line(&mut p, Kind::Small, &id, j, (it * per + j) as u64);
                }
                p.extend_from_slice(b"{\"op\":\"flush\"}\n");
                p
            })
            .collect();
        let result = (|| {
            let mut c = Client::connect(warm.socket())?;
            let mut samples = Vec::with_capacity(iters);
            for (i, p) in payloads.iter().enumerate() {
                let t = Instant::now();
                c.send(p)?;
                let reply = c.read_line()?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if reply != r#"{"ok":true}"# {
                    return Err(other(format!("flush reply: {reply}")));
                }
                if i > 0 {
                    samples.push(ms); // the first round is a warm-up
                }
            }
            c.verify(file_records + ((iters + 1) * per) as u64)?;
            Ok(latency(&samples))
        })();
        self.stop_daemon(warm, &log, &format!("flush {label}"));
        let flush_ms = result?;
        Ok(FlushStats {
            label,
            file_bytes,
            file_records,
            prepare_secs,
            cold_took_ms,
            cold_accept_ms,
            warm_took_ms,
            warm_accept_ms,
            flush_ms,
        })
    }

    /// Section 6's file: `records` small records as a compact JSON array,
    /// each with a `logged_at` 50 ms after the previous one. Every 10th
    /// record is a failure (n % 10 == 3) and every 20th (n % 20 == 7) a
    /// retry of the failure four records before it (same `video_id`), so
    /// half the failed videos later succeeded. Synced and dropped from the
    /// page cache. Returns bytes, failed records and distinct videos.
    fn prepare_index_file(&self, path: &Path, records: u64) -> io::Result<(u64, u64, u64)> {
        let file = File::create(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut rec = Vec::with_capacity(4096);
        let mut id = String::new();
        w.write_all(b"[")?;
        let mut bytes = 1u64;
        let (mut failed, mut videos) = (0u64, 0u64);
        for n in 0..records {
            rec.clear();
            rec.extend_from_slice(if n == 0 { b"\n  " } else { b",\n  " });
            let video = if n % 20 == 7 {
                n - 4
            } else {
                videos += 1;
                n
            };
            id.clear();
            let _ = write!(id, "ix{video:07}");
            self.rg
                .record(&mut rec, Kind::Small, &id, (n % 16) as usize, n);
            if n % 10 == 3 {
                failed += 1;
            }
            rec.pop(); // the record's closing brace: logged_at goes last
            let us = 8 * 3_600_000_000 + n * 50_000;
            let (secs, micros) = (us / 1_000_000, us % 1_000_000);
            let _ = write!(
                rec,
                r#","logged_at":"2025-10-{:02}T{:02}:{:02}:{:02}"#,
                17 + secs / 86_400,
                secs / 3_600 % 24,
                secs / 60 % 60,
                secs % 60
            );
            if micros != 0 {
                let _ = write!(rec, ".{micros:06}");
            }
            rec.extend_from_slice(b"\"}");
            w.write_all(&rec)?;
            bytes += rec.len() as u64;
        }
        let end: &[u8] = if records == 0 { b"]" } else { b"\n]" };
        w.write_all(end)?;
        bytes += end.len() as u64;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        evict_from_cache(&file);
        Ok((bytes, failed, videos))
    }

    /// Starts the daemon on `log` `scan_reps` times cold (the file synced
    /// and dropped from the page cache first) and as often warm, checking
    /// the record count of its "Log file ready." line. With `keep`, the last
    /// warm daemon is returned still running.
    fn startup_scans(
        &mut self,
        log: &Path,
        label: String,
        counts: (u64, u64),
        prepare_secs: f64,
        keep: bool,
    ) -> io::Result<(ScanStats, Option<Daemon>)> {
        let (file_bytes, records) = counts;
        let socket = log.with_extension("sock");
        let reps = self.plan.scan_reps;
        let mut s = ScanStats {
            label,
            file_bytes,
            records,
            prepare_secs,
            cold_ms: Vec::new(),
            warm_ms: Vec::new(),
            cold_accept_ms: Vec::new(),
            warm_accept_ms: Vec::new(),
        };
        let mut kept = None;
        for cold in [true, false] {
            for rep in 0..reps {
                let what = format!(
                    "{} start-up {} {}",
                    s.label,
                    if cold { "cold" } else { "warm" },
                    rep + 1
                );
                if cold {
                    let f = File::open(log)?;
                    f.sync_all()?;
                    evict_from_cache(&f);
                }
                let d = Daemon::start(&self.bin, &socket, log)?;
                let accept_ms = d.accept_after.as_secs_f64() * 1e3;
                let (took, found) = (d.ready_took_ms(), d.ready_field("records"));
                let took = match (took, found) {
                    (Some(t), Some(f)) if f == records => t as f64,
                    _ => {
                        self.problems.extend(d.stop(&what));
                        return Err(other(format!(
                            "{what}: \"Log file ready.\" gave took_ms {took:?} records {found:?}, expected {records} records"
                        )));
                    }
                };
                self.progress(&format!(
                    "{what}: scan {took:.0} ms ({:.0} MB/s, {} records/s), accepting after {accept_ms:.0} ms",
                    file_bytes as f64 / 1e6 / (took.max(1.0) / 1e3),
                    thousands(records as f64 / (took.max(1.0) / 1e3))
                ));
                if cold {
                    s.cold_ms.push(took);
                    s.cold_accept_ms.push(accept_ms);
                } else {
                    s.warm_ms.push(took);
                    s.warm_accept_ms.push(accept_ms);
                }
                if keep && !cold && rep + 1 == reps {
                    kept = Some(d);
                } else {
                    self.problems.extend(d.stop(&what));
                }
            }
        }
        Ok((s, kept))
    }

    /// Section 6: baseline memory on an empty log, then the small-record
    /// file's start-up scans, memory and query round trips.
    fn index(&mut self) -> io::Result<IndexStats> {
        self.progress("index: daemon on an empty log (memory baseline)");
        let (d, log) = self.start_daemon("ixempty")?;
        let base = (|| {
            let mut c = Client::connect(d.socket())?;
            let v = c.request(STATS)?;
            if v["ok"] != true {
                return Err(other(format!("stats on an empty log: {v}")));
            }
            let ping = c.request(PING)?;
            let (rss, hwm) = d.memory()?;
            Ok((rss, hwm, ping["index_bytes"].as_u64().unwrap_or(0)))
        })();
        self.stop_daemon(d, &log, "index: empty log");
        let (rss_empty, hwm_empty, index_bytes_empty) = base?;

        let n = self.plan.index_records;
        let log = self.dir.join("ix.json");
        self.progress(&format!(
            "index: writing {} small records as a JSON array",
            thousands(n as f64)
        ));
        let t0 = Instant::now();
        let result = (|| {
            let (file_bytes, failed, videos) = self.prepare_index_file(&log, n)?;
            let prepare_secs = t0.elapsed().as_secs_f64();
            self.progress(&format!(
                "index: {:.1} MB, {} failed, {} videos, written and synced in {prepare_secs:.1} s",
                file_bytes as f64 / 1e6,
                thousands(failed as f64),
                thousands(videos as f64)
            ));
            let label = format!("{} small", thousands(n as f64));
            let (scan, d) = self.startup_scans(&log, label, (file_bytes, n), prepare_secs, true)?;
            let d = d.ok_or_else(|| other("no daemon left running for the queries"))?;
            self.progress("index: round trips");
            let q = (|| {
                let mut c = Client::connect(d.socket())?;
                let v = c.request(STATS)?;
                let st = &v["stats"];
                if st["total_jobs"].as_u64() != Some(n) || st["failed"].as_u64() != Some(failed) {
                    let head: String = v.to_string().chars().take(300).collect();
                    return Err(other(format!(
                        "first stats: expected total_jobs {n} and failed {failed}: {head}"
                    )));
                }
                let (rss_full, hwm_full) = d.memory()?;
                let ping = c.request(PING)?;
                if ping["records"].as_u64() != Some(n) {
                    return Err(other(format!("ping: expected {n} records: {ping}")));
                }
                let index_bytes = ping["index_bytes"].as_u64().unwrap_or(0);
                let iters = self.plan.index_stats_iters;
                let ping = round_trips(&mut c, PING, iters, RTT_CAP, |_| Ok(()))?;
                let stats =
                    round_trips(
                        &mut c,
                        STATS,
                        iters,
                        RTT_CAP,
                        |v| match v["stats"]["total_jobs"].as_u64() {
                            Some(t) if t == n => Ok(()),
                            t => Err(other(format!("total_jobs {t:?}, expected {n}"))),
                        },
                    )?;
                let want = failed.min(100);
                let failed_100 = round_trips(
                    &mut c,
                    FAILED_100,
                    self.plan.index_failed_iters,
                    RTT_CAP,
                    |v| {
                        let jobs = v["jobs"].as_array().map_or(&[][..], Vec::as_slice);
                        let all_failed = jobs.iter().all(|j| j["success"] == false);
                        if v["count"].as_u64() == Some(want)
                            && v["total"].as_u64() == Some(failed)
                            && jobs.len() as u64 == want
                            && all_failed
                        {
                            Ok(())
                        } else {
                            Err(other(format!(
                                "count {} total {} jobs {} all failed {all_failed}; expected {want} of {failed}",
                                v["count"],
                                v["total"],
                                jobs.len()
                            )))
                        }
                    },
                )?;
                let sort_5 =
                    round_trips(&mut c, SORT_5, self.plan.index_sort_iters, SORT_CAP, |v| {
                        let d: Vec<f64> = v["jobs"]
                            .as_array()
                            .map_or(&[][..], Vec::as_slice)
                            .iter()
                            .filter_map(|j| j["processing_duration"].as_f64())
                            .collect();
                        if d.len() == 5.min(n as usize) && d.windows(2).all(|w| w[0] >= w[1]) {
                            Ok(())
                        } else {
                            Err(other(format!("durations {d:?}: expected 5, descending")))
                        }
                    })?;
                let stats_ai = round_trips(
                    &mut c,
                    STATS_AI,
                    self.plan.index_filtered_iters,
                    SORT_CAP,
                    |v| {
                        let st = &v["stats"];
                        let total = st["total_jobs"].as_u64().unwrap_or(0);
                        let subjects = st["by_subject"].as_object().map_or(0, |m| m.len());
                        let stages: Vec<&String> = st["timings"]
                            .as_object()
                            .map_or(Vec::new(), |m| m.keys().collect());
                        if total > 0 && total < n && subjects == 1 && stages == STAGES {
                            Ok(())
                        } else {
                            Err(other(format!(
                                "total_jobs {total} of {n}, {subjects} subjects, timings {stages:?}; expected one subject and {STAGES:?}"
                            )))
                        }
                    },
                )?;
                let (rss_after, _) = d.memory()?;
                Ok((
                    rss_full,
                    hwm_full,
                    index_bytes,
                    rss_after,
                    [ping, stats, failed_100, sort_5, stats_ai],
                ))
            })();
            self.stop_daemon(d, &log, "index: queries");
            let (rss_full, hwm_full, index_bytes, rss_after, rtts) = q?;
            let [ping, stats, failed_100, sort_5, stats_ai] = rtts;
            Ok(IndexStats {
                records: n,
                failed,
                videos,
                file_bytes,
                scan,
                ping,
                stats,
                failed_100,
                sort_5,
                stats_ai,
                rss_empty,
                hwm_empty,
                index_bytes_empty,
                rss_full,
                hwm_full,
                index_bytes,
                rss_after,
            })
        })();
        let _ = fs::remove_file(&log);
        result
    }

    /// Section 6: start-up scans of a seed-sized file of about `big_file`
    /// bytes (written by the same code as section 5's).
    fn seed_scan(&mut self, label: &str) -> io::Result<ScanStats> {
        let log = self.dir.join("ixseed.json");
        self.progress(&format!("index: preparing a {label} seed-sized array file"));
        let t0 = Instant::now();
        let result = (|| {
            let (bytes, records) = self.prepare_array(&log, self.plan.big_file, "ix")?;
            let prepare_secs = t0.elapsed().as_secs_f64();
            self.progress(&format!(
                "index: {records} seed-sized records, {:.1} MB written and synced in {prepare_secs:.1} s",
                bytes as f64 / 1e6
            ));
            let label = format!("{label} seed-sized");
            self.startup_scans(&log, label, (bytes, records), prepare_secs, false)
                .map(|(s, _)| s)
        })();
        let _ = fs::remove_file(&log);
        result
    }
}

// ---------------------------------------------------------------------------
// Machine description

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Which source the daemon binary probably came from: the commit of the
/// crate's work tree, files changed since, and the binary's age. Read-only
/// git (no optional index lock).
fn daemon_provenance(bin: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["log", "-1", "--format=%h %s"]).unwrap_or_else(|| "unknown".into());
    let dirty: Vec<String> = git(&[
        "status",
        "--porcelain",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .unwrap_or_default()
    .lines()
    .filter(|l| !l.contains("src/bin/joblogd-bench.rs") && !l.ends_with("src/bin/"))
    .map(|l| l.trim().to_owned())
    .collect();
    let age = fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .map_or_else(|| "?".into(), |d| format!("{:.0} s", d.as_secs_f64()));
    format!(
        "work tree at {head}; uncommitted daemon sources: {}; binary built {age} ago",
        if dirty.is_empty() {
            "none".to_owned()
        } else {
            dirty.join(", ")
        }
    )
}

fn machine_info(dir: &Path) -> (String, Value) {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let l = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            l.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    // The mount holding the temp dir: longest matching mount point.
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let fs_desc = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} on {}", f[2], f[0])))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, d)| d)
        .unwrap_or_default();
    let text = format!(
        "{nproc} CPUs ({model}), {mem_gib:.1} GiB RAM, Linux {kernel}; temp dir on {fs_desc}"
    );
    let v = json!({"nproc": nproc, "cpu_model": model, "mem_gib": mem_gib, "kernel": kernel, "temp_fs": fs_desc});
    (text, v)
}

// ---------------------------------------------------------------------------
// Report

fn fmt_spread(s: Spread, decimals: usize) -> String {
    if decimals == 0 {
        format!(
            "{} [{}-{}]",
            thousands(s.median),
            thousands(s.min),
            thousands(s.max)
        )
    } else {
        format!(
            "{:.d$} [{:.d$}-{:.d$}]",
            s.median,
            s.min,
            s.max,
            d = decimals
        )
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

struct Results {
    /// The sections that ran (all but those left out by `--only`).
    sections: Vec<Section>,
    tp: Vec<TpRow>,
    tp_err: Vec<String>,
    single: Option<Result<SingleStats, String>>,
    acks: Vec<Result<AckStats, String>>,
    floor: Option<Result<Latency, String>>,
    flush: Vec<Result<FlushStats, String>>,
    index: Option<Result<IndexStats, String>>,
    seed_scan: Option<Result<ScanStats, String>>,
    line_sizes: (f64, f64),
}

impl Results {
    fn ran(&self, s: Section) -> bool {
        self.sections.contains(&s)
    }
}

const NOT_RUN: &str = "   not run (--only)";

fn report(b: &Bench, header: &str, r: &Results) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{header}");
    let reps = b.plan.reps;

    let _ = writeln!(
        o,
        "\n1. Fire-and-forget throughput, joblogd --fsync always (median of {reps} runs [min-max]; clock: all writers connected -> each writes its lines in 256 KiB write_all calls, closes its write side and reads until joblogd closes -> a final flush on another connection returns)"
    );
    if r.ran(Section::Throughput) {
        let _ = writeln!(
            o,
            "   {:<7} {:>7} {:>8} {:>8}   {:<30} MB/s",
            "record", "writers", "records", "MB", "records/s"
        );
        for row in &r.tp {
            let _ = writeln!(
                o,
                "   {:<7} {:>7} {:>8} {:>8.1}   {:<30} {}",
                row.kind.label(),
                row.writers,
                row.records,
                row.bytes as f64 / 1e6,
                fmt_spread(row.rec_per_s(&row.joblogd_secs), 0),
                fmt_spread(row.mb_per_s(&row.joblogd_secs), 1),
            );
        }
        for e in &r.tp_err {
            let _ = writeln!(o, "   FAILED: {e}");
        }
        let _ = writeln!(
            o,
            "   (MB = 10^6 bytes of input lines; mean line: small {:.0} B, seed-sized {:.0} B; every 10th record a failure)",
            r.line_sizes.0, r.line_sizes.1
        );
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }

    let _ = writeln!(
        o,
        "\n2. Raw ceiling: same bytes and writers into an in-process server (thread per connection, write_all to one file under a Mutex, one fdatasync at the end); joblogd's file is larger than its input (pretty-printed, logged_at added), so its disk MB/s is shown too. Write path alone: as many bytes as joblogd's file appended by joblogd's own write path (store::Store, the daemon's defaults) in 8 MiB batches of 256 KiB chunks, no socket, no parsing, no index: what the disk allows that path (the daemon's batches grow past 8 MiB under load, so it can beat this)"
    );
    if r.ran(Section::Throughput) {
        let _ = writeln!(
            o,
            "   {:<7} {:>7}   {:<28} {:>12}   {:>18}   {:>18}   {:<28} {:>14}",
            "record",
            "writers",
            "raw MB/s",
            "joblogd/raw",
            "joblogd file MB",
            "joblogd disk MB/s",
            "write path alone MB/s",
            "its rec/s"
        );
        for row in &r.tp {
            let raw = row.mb_per_s(&row.raw_secs);
            let jl = row.mb_per_s(&row.joblogd_secs);
            let _ = writeln!(
                o,
                "   {:<7} {:>7}   {:<28} {:>12.2}   {:>18}   {:>18.1}   {:<28} {:>14}",
                row.kind.label(),
                row.writers,
                fmt_spread(raw, 1),
                if raw.median > 0.0 {
                    jl.median / raw.median
                } else {
                    0.0
                },
                format!(
                    "{:.1} ({:.2}x)",
                    row.file_bytes as f64 / 1e6,
                    row.file_bytes as f64 / row.bytes as f64
                ),
                jl.median * row.file_bytes as f64 / row.bytes as f64,
                fmt_spread(row.disk_mb_per_s(), 1),
                thousands(row.rec_per_s(&row.disk_secs).median)
            );
        }
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }

    let _ = writeln!(
        o,
        "\n3. Fire-and-forget per-record client cost (1 writer, one write_all per small record)"
    );
    match &r.single {
        Some(Ok(s)) => {
            let _ = writeln!(
                o,
                "   {} records: {:.0} ns/record mean on the client side; end to end (until flush returns) {} records/s",
                thousands(s.records as f64),
                s.client_ns_per_record,
                thousands(s.records as f64 / s.total_secs)
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   FAILED: {e}");
        }
        None => {
            let _ = writeln!(o, "{NOT_RUN}");
        }
    }

    let _ = writeln!(
        o,
        "\n4. Ack latency ({{\"op\":\"log\",\"job\":<small>,\"ack\":true}}, each client one request at a time)"
    );
    if r.ran(Section::Ack) {
        let _ = writeln!(
            o,
            "   {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "clients", "acks", "p50 us", "p99 us", "max us", "mean us", "acks/s"
        );
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }
    for a in &r.acks {
        match a {
            Ok(a) => {
                let l = a.latency_us;
                let _ = writeln!(
                    o,
                    "   {:>7} {:>6} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9}",
                    a.clients,
                    l.n,
                    l.p50,
                    l.p99,
                    l.max,
                    l.mean,
                    thousands(a.acks_per_s)
                );
            }
            Err(e) => {
                let _ = writeln!(o, "   FAILED: {e}");
            }
        }
    }
    match &r.floor {
        Some(Ok(l)) => {
            let _ = writeln!(
                o,
                "   disk floor (no joblogd): append one small line + fdatasync, {} times: p50 {:.0} us, p99 {:.0} us",
                l.n, l.p50, l.p99
            );
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   disk floor FAILED: {e}");
        }
        None => {}
    }

    let _ = writeln!(
        o,
        "\n5. Flush time vs file size ({} small records + {{\"op\":\"flush\"}} on one connection, {} times after 1 warm-up; nearest-rank p99, so with 50 samples p99 = max)",
        b.plan.flush_batch, b.plan.flush_iters
    );
    if r.ran(Section::Flush) {
        let _ = writeln!(
            o,
            "   {:<7} {:>9} {:>8} {:>22} {:>22} {:>9} {:>9} {:>9}",
            "file",
            "MB",
            "records",
            "scan cold ms (MB/s)",
            "scan warm ms (MB/s)",
            "flush p50",
            "p99 ms",
            "mean ms"
        );
    } else {
        let _ = writeln!(o, "{NOT_RUN}");
    }
    let scan = |took: Option<u64>, bytes: u64| match took {
        Some(ms) => format!(
            "{ms} ({:.0})",
            bytes as f64 / 1e6 / (ms.max(1) as f64 / 1e3)
        ),
        None => "n/a".to_owned(),
    };
    let mut ok_flush = Vec::new();
    for f in &r.flush {
        match f {
            Ok(f) => {
                let _ = writeln!(
                    o,
                    "   {:<7} {:>9.1} {:>8} {:>22} {:>22} {:>9.2} {:>9.2} {:>9.2}",
                    f.label,
                    f.file_bytes as f64 / 1e6,
                    f.file_records,
                    scan(f.cold_took_ms, f.file_bytes),
                    scan(f.warm_took_ms, f.file_bytes),
                    f.flush_ms.p50,
                    f.flush_ms.p99,
                    f.flush_ms.mean
                );
                ok_flush.push(f);
            }
            Err(e) => {
                let _ = writeln!(o, "   FAILED: {e}");
            }
        }
    }
    for f in &ok_flush {
        let _ = writeln!(
            o,
            "   {}: prepared in {:.1} s; socket accepting after {:.0} ms cold, {:.0} ms warm (scan = took_ms of \"Log file ready.\")",
            f.label, f.prepare_secs, f.cold_accept_ms, f.warm_accept_ms
        );
    }
    let ratio = match ok_flush.as_slice() {
        [small, big] if small.flush_ms.p50 > 0.0 => {
            let p50 = big.flush_ms.p50 / small.flush_ms.p50;
            let p99 = big.flush_ms.p99 / small.flush_ms.p99.max(1e-9);
            let _ = writeln!(
                o,
                "   ratio {}/{}: p50 {p50:.2}x, p99 {p99:.2}x",
                big.label, small.label
            );
            Some((big.label, p50))
        }
        _ => None,
    };

    index_report(&mut o, b, r);

    let _ = writeln!(o, "\nTargets");
    let small: Vec<&TpRow> = r.tp.iter().filter(|t| t.kind == Kind::Small).collect();
    let seed: Vec<&TpRow> = r.tp.iter().filter(|t| t.kind == Kind::Seed).collect();
    let line = |rows: &[&TpRow], f: &dyn Fn(&TpRow) -> f64, lim: f64, unit: &str| {
        if rows.is_empty() {
            return "not measured".to_owned();
        }
        rows.iter()
            .map(|t| {
                let v = f(t);
                format!("{} writers {v:.0} {unit} {}", t.writers, pass(v >= lim))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = writeln!(
        o,
        "   >= 250,000 small records/s (median): {}",
        line(
            &small,
            &|t| t.rec_per_s(&t.joblogd_secs).median,
            250_000.0,
            "rec/s"
        )
    );
    if !small.is_empty() {
        let _ = writeln!(
            o,
            "      (joblogd's write path alone, same file, section 2: {})",
            small
                .iter()
                .map(|t| format!(
                    "{} writers {} rec/s",
                    t.writers,
                    thousands(t.rec_per_s(&t.disk_secs).median)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let _ = writeln!(
        o,
        "   >= 250 MB/s seed-sized (median):     {}",
        line(
            &seed,
            &|t| t.mb_per_s(&t.joblogd_secs).median,
            250.0,
            "MB/s"
        )
    );
    match ratio {
        Some((label, p50)) => {
            let _ = writeln!(
                o,
                "   flush at {label} within 1.2x of 10 MB (p50): {p50:.2}x {}",
                pass(p50 <= 1.2)
            );
        }
        None => {
            let _ = writeln!(o, "   flush ratio: not measured");
        }
    }
    index_targets(&mut o, r);

    let _ = writeln!(o, "\nProblems (daemon warnings/errors, failed checks)");
    if b.problems.is_empty() {
        let _ = writeln!(
            o,
            "   none: every run's ping matched the records sent, no error replies, clean exits"
        );
    }
    for p in &b.problems {
        let _ = writeln!(o, "   - {p}");
    }
    let _ = writeln!(
        o,
        "\nTotal bench time: {:.0} s; load average at end {} (2 CPUs: anything else running skews these numbers)",
        b.started.elapsed().as_secs_f64(),
        loadavg()
    );
    o
}

/// Bytes as MB (10^6) with one decimal.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Section 6 of the report.
fn index_report(o: &mut String, b: &Bench, r: &Results) {
    let n = b.plan.index_records;
    let _ = writeln!(
        o,
        "\n6. Index at {} small records (the file written directly as a compact JSON array, not through the socket; every record with logged_at; every 10th a failure, half of the failed videos retried later with success); one connection, requests one at a time after 1 unmeasured warm-up; clock: write the request -> whole reply line read",
        thousands(n as f64)
    );
    let ix = match &r.index {
        None => {
            let _ = writeln!(o, "{NOT_RUN}");
            return;
        }
        Some(Err(e)) => {
            let _ = writeln!(o, "   FAILED: {e}");
            None
        }
        Some(Ok(ix)) => Some(ix),
    };
    if let Some(ix) = ix {
        let _ = writeln!(
            o,
            "   file: {} records, {}, {} failed, {} distinct video_ids; written and synced in {:.1} s",
            thousands(ix.records as f64),
            mb(ix.file_bytes),
            thousands(ix.failed as f64),
            thousands(ix.videos as f64),
            ix.scan.prepare_secs
        );
        let _ = writeln!(
            o,
            "   {:<72} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
            "request", "n", "first us", "p50 us", "p99 us", "max us", "mean us", "reply B"
        );
        for rt in [
            &ix.ping,
            &ix.stats,
            &ix.failed_100,
            &ix.sort_5,
            &ix.stats_ai,
        ] {
            let l = rt.latency_us;
            let _ = writeln!(
                o,
                "   {:<72} {:>5} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>9}",
                rt.request,
                l.n,
                rt.first_us,
                l.p50,
                l.p99,
                l.max,
                l.mean,
                thousands(rt.reply_bytes as f64)
            );
        }
        let ms = |l: Latency| format!("p50 {:.2} ms, p99 {:.2} ms", l.p50 / 1e3, l.p99 / 1e3);
        let _ = writeln!(
            o,
            "   in ms: failed limit 100 {}; jobs sorted limit 5 {}; stats of one subject {} (ping is the round-trip floor of this connection)",
            ms(ix.failed_100.latency_us),
            ms(ix.sort_5.latency_us),
            ms(ix.stats_ai.latency_us)
        );
        let _ = writeln!(
            o,
            "   memory (VmRSS of /proc/<pid>/status, after start-up and one stats): empty log {}, {} records {} (peak VmHWM {}; empty-log peak {}); after the measured requests {}",
            mb(ix.rss_empty),
            thousands(ix.records as f64),
            mb(ix.rss_full),
            mb(ix.hwm_full),
            mb(ix.hwm_empty),
            mb(ix.rss_after)
        );
        let _ = writeln!(
            o,
            "   per indexed record: (VmRSS full - VmRSS empty) / records = {:.1} B; ping index_bytes {} / records = {:.1} B (empty log: index_bytes {})",
            ix.rss_per_record(),
            thousands(ix.index_bytes as f64),
            ix.index_bytes_per_record(),
            thousands(ix.index_bytes_empty as f64)
        );
    }

    let _ = writeln!(
        o,
        "   start-up scan: took_ms of \"Log file ready.\", {} starts each, median [min-max]; cold = file fdatasync'd and dropped from the page cache (POSIX_FADV_DONTNEED) before each start",
        b.plan.scan_reps
    );
    let _ = writeln!(
        o,
        "   {:<22} {:>9} {:>8} {:>20} {:>20} {:>20} {:>20} {:>18}",
        "file", "MB", "records", "cold ms", "cold MB/s", "warm ms", "warm MB/s", "warm records/s"
    );
    let mut scans = Vec::new();
    if let Some(ix) = ix {
        scans.push(&ix.scan);
    }
    match &r.seed_scan {
        Some(Ok(s)) => scans.push(s),
        Some(Err(e)) => {
            let _ = writeln!(o, "   seed-sized file FAILED: {e}");
        }
        None => {}
    }
    for s in &scans {
        let _ = writeln!(
            o,
            "   {:<22} {:>9.1} {:>8} {:>20} {:>20} {:>20} {:>20} {:>18}",
            s.label,
            s.file_bytes as f64 / 1e6,
            s.records,
            fmt_spread(spread(&s.cold_ms), 0),
            fmt_spread(s.mb_per_s(&s.cold_ms), 0),
            fmt_spread(spread(&s.warm_ms), 0),
            fmt_spread(s.mb_per_s(&s.warm_ms), 0),
            thousands(s.rec_per_s(&s.warm_ms).median)
        );
    }
    if r.seed_scan.is_some() {
        let _ = writeln!(
            o,
            "   (the seed-sized file is written by section 5's code: compact records of {TRANSCRIPT_CHARS} transcript characters, without logged_at)"
        );
    }
    for s in &scans {
        let _ = writeln!(
            o,
            "   {}: socket accepting after {:.0} ms cold, {:.0} ms warm (median; includes process start)",
            s.label,
            spread(&s.cold_accept_ms).median,
            spread(&s.warm_accept_ms).median
        );
    }
}

/// Section 6's lines of the Targets summary.
fn index_targets(o: &mut String, r: &Results) {
    let ix = match &r.index {
        Some(Ok(ix)) => Some(ix),
        _ => None,
    };
    match ix {
        Some(ix) => {
            let at = thousands(ix.records as f64);
            let p99 = ix.stats.latency_us.p99;
            let _ = writeln!(
                o,
                "   stats p99 < 200 us at {at} records: {p99:.0} us {}",
                pass(p99 < 200.0)
            );
            let p99 = ix.failed_100.latency_us.p99 / 1e3;
            let _ = writeln!(
                o,
                "   failed limit 100 p99 < 5 ms at {at} records: {p99:.2} ms {}",
                pass(p99 < 5.0)
            );
            let (rss, ib) = (ix.rss_per_record(), ix.index_bytes_per_record());
            let _ = writeln!(
                o,
                "   <= 100 B resident per indexed record: VmRSS delta {rss:.1} B {}; index_bytes {ib:.1} B {}",
                pass(rss <= 100.0),
                pass(ib <= 100.0)
            );
        }
        None => {
            let _ = writeln!(o, "   index queries and memory: not measured");
        }
    }
    let rate = |s: &ScanStats| {
        let (c, w) = (s.mb_per_s(&s.cold_ms).median, s.mb_per_s(&s.warm_ms).median);
        format!(
            "cold {c:.0} MB/s {}; warm {w:.0} MB/s {}",
            pass(c >= 500.0),
            pass(w >= 500.0)
        )
    };
    match &r.seed_scan {
        Some(Ok(s)) => {
            let _ = writeln!(
                o,
                "   >= 500 MB/s start-up scan, {} file (median): {}",
                s.label,
                rate(s)
            );
        }
        _ => {
            let _ = writeln!(o, "   start-up scan of the seed-sized file: not measured");
        }
    }
    if let Some(ix) = ix {
        let _ = writeln!(
            o,
            "   (same bar, not a stated target) start-up scan, {} file (median): {}",
            ix.scan.label,
            rate(&ix.scan)
        );
    }
}

fn results_json(b: &Bench, machine: Value, command: &str, r: &Results) -> Value {
    let err = |e: &String| json!({"error": e});
    json!({
        "command": command,
        "machine": machine,
        "quick": b.plan.small_total < 400_000,
        "daemon": b.bin.display().to_string(),
        "mean_line_bytes": {"small": r.line_sizes.0, "seed": r.line_sizes.1},
        "throughput": r.tp.iter().map(TpRow::to_json).collect::<Vec<_>>(),
        "throughput_errors": r.tp_err,
        "sections": r.sections.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "single_record_writes": match &r.single {
            Some(Ok(s)) => json!({"records": s.records, "client_ns_per_record": s.client_ns_per_record, "total_seconds": s.total_secs}),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "ack_latency_us": r.acks.iter().map(|a| match a {
            Ok(a) => json!({"clients": a.clients, "latency": a.latency_us.to_json(), "acks_per_s": a.acks_per_s}),
            Err(e) => err(e),
        }).collect::<Vec<_>>(),
        "fsync_floor_us": match &r.floor { Some(Ok(l)) => l.to_json(), Some(Err(e)) => err(e), None => Value::Null },
        "flush_vs_size": r.flush.iter().map(|f| match f {
            Ok(f) => json!({
                "label": f.label, "file_bytes": f.file_bytes, "file_records": f.file_records,
                "cold_scan_ms": f.cold_took_ms, "warm_scan_ms": f.warm_took_ms,
                "cold_accept_ms": f.cold_accept_ms, "warm_accept_ms": f.warm_accept_ms,
                "flush_ms": f.flush_ms.to_json(),
            }),
            Err(e) => err(e),
        }).collect::<Vec<_>>(),
        "index": match &r.index {
            Some(Ok(ix)) => json!({
                "records": ix.records,
                "failed": ix.failed,
                "distinct_videos": ix.videos,
                "file_bytes": ix.file_bytes,
                "round_trips": {
                    "ping": ix.ping.to_json(),
                    "stats": ix.stats.to_json(),
                    "failed_limit_100": ix.failed_100.to_json(),
                    "jobs_sort_duration_desc_limit_5": ix.sort_5.to_json(),
                    "stats_subject_ai": ix.stats_ai.to_json(),
                },
                "memory": {
                    "rss_empty_bytes": ix.rss_empty,
                    "hwm_empty_bytes": ix.hwm_empty,
                    "index_bytes_empty": ix.index_bytes_empty,
                    "rss_full_bytes": ix.rss_full,
                    "hwm_full_bytes": ix.hwm_full,
                    "rss_after_queries_bytes": ix.rss_after,
                    "index_bytes": ix.index_bytes,
                    "rss_bytes_per_record": ix.rss_per_record(),
                    "index_bytes_per_record": ix.index_bytes_per_record(),
                },
                "startup_scan": ix.scan.to_json(),
            }),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "seed_startup_scan": match &r.seed_scan {
            Some(Ok(s)) => s.to_json(),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "problems": b.problems,
        "total_seconds": b.started.elapsed().as_secs_f64(),
    })
}

// ---------------------------------------------------------------------------

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joblogd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    let bin = match &args.daemon {
        Some(p) => p.clone(),
        None => support::joblogd_beside(&std::env::current_exe()?),
    };
    if !bin.is_file() {
        return Err(other(format!(
            "the daemon binary {} is missing; run `cargo build --release` first (or pass --daemon PATH)",
            bin.display()
        )));
    }
    let command = std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let tmp = TempDir::new()?;
    let (machine_text, machine) = machine_info(&tmp.0);
    let mut plan = Plan::new(args.quick);
    if !args.writers.is_empty() {
        plan.writer_counts = args.writers.clone();
    }
    let mut b = Bench {
        bin,
        dir: tmp.0.clone(),
        plan,
        rg: Gen::new(),
        started: Instant::now(),
        problems: Vec::new(),
    };
    let header = format!(
        "joblogd-bench {} ({} mode)\ncommand: {command}\nmachine: {machine_text}; load average at start {}\ndaemon:  {} --fsync always (other settings default), fresh daemon and log file per run\nsource:  {}\ntemp:    {}",
        env!("CARGO_PKG_VERSION"),
        if args.quick { "quick" } else { "full" },
        loadavg(),
        b.bin.display(),
        daemon_provenance(&b.bin),
        b.dir.display()
    );
    eprintln!("{header}\n");

    let line_sizes = {
        let mut s = Vec::new();
        let mut mean = |kind: Kind| {
            s.clear();
            for i in 0..100u64 {
                b.rg.line(&mut s, kind, &format!("sz{kind:?}{i:07}"), 3, i);
            }
            s.len() as f64 / 100.0
        };
        (mean(Kind::Small), mean(Kind::Seed))
    };

    let sections: Vec<Section> = [
        Section::Throughput,
        Section::Single,
        Section::Ack,
        Section::Flush,
        Section::Index,
    ]
    .into_iter()
    .filter(|s| args.only.is_empty() || args.only.contains(s))
    .collect();
    let want = |s: Section| sections.contains(&s);

    let mut tp = Vec::new();
    let mut tp_err = Vec::new();
    if want(Section::Throughput) {
        let kinds = [Kind::Small, Kind::Seed]
            .into_iter()
            .filter(|k| args.kind.is_empty() || args.kind.contains(k));
        for kind in kinds {
            match b.throughput(kind) {
                Ok(rows) => tp.extend(rows),
                Err(e) => {
                    b.progress(&format!("throughput {} FAILED: {e}", kind.label()));
                    tp_err.push(format!("{}: {e}", kind.label()));
                }
            }
        }
    }

    let single = want(Section::Single).then(|| {
        b.progress("single-record writes");
        b.single_writes().map_err(|e| e.to_string())
    });

    let mut acks = Vec::new();
    let mut floor = None;
    if want(Section::Ack) {
        for (clients, per) in [
            (1, b.plan.ack_sequential),
            (b.plan.ack_clients, b.plan.ack_per_client),
        ] {
            b.progress(&format!("ack latency, {clients} client(s) x {per}"));
            acks.push(b.ack_latency(clients, per).map_err(|e| e.to_string()));
        }
        floor = Some(b.fsync_floor().map_err(|e| e.to_string()));
    }

    let big_label = if args.quick { "100 MB" } else { "1 GB" };
    let mut flush = Vec::new();
    if want(Section::Flush) {
        for (target, label) in [(b.plan.small_file, "10 MB"), (b.plan.big_file, big_label)] {
            let r = b.flush_vs_size(target, label);
            if let Err(e) = &r {
                b.progress(&format!("flush {label} FAILED: {e}"));
            }
            flush.push(r.map_err(|e| e.to_string()));
        }
    }

    let (mut index, mut seed_scan) = (None, None);
    if want(Section::Index) {
        let r = b.index();
        if let Err(e) = &r {
            b.progress(&format!("index FAILED: {e}"));
        }
        index = Some(r.map_err(|e| e.to_string()));
        let r = b.seed_scan(big_label);
        if let Err(e) = &r {
            b.progress(&format!("seed-sized start-up scan FAILED: {e}"));
        }
        seed_scan = Some(r.map_err(|e| e.to_string()));
    }

    let results = Results {
        sections,
        tp,
        tp_err,
        single,
        acks,
        floor,
        flush,
        index,
        seed_scan,
        line_sizes,
    };
    let text = report(&b, &header, &results);
    println!("{text}");
    if let Some(dir) = &args.out_dir {
        fs::create_dir_all(dir)?;
        fs::write(dir.join("joblogd-bench.txt"), &text)?;
        let v = results_json(&b, machine, &command, &results);
        let pretty = serde_json::to_string_pretty(&v).map_err(|e| other(e.to_string()))?;
        fs::write(dir.join("joblogd-bench.json"), pretty + "\n")?;
        eprintln!(
            "wrote {} and {}",
            dir.join("joblogd-bench.txt").display(),
            dir.join("joblogd-bench.json").display()
        );
    }
    drop(tmp);
    Ok(())
}
