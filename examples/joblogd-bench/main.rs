//! `joblogd-bench`: measures the real `joblogd` binary end to end.
//!
//! ```text
//! cargo build --release --bins --examples && ./target/release/examples/joblogd-bench [--quick] [--out-dir DIR]
//! ```
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
//! 4. `ack` latency with 1 and 8 clients, and the Python client's
//!    `log_job`, pipelined and `durable=True` (`python.rs`);
//! 5. start-up scan time and `flush` latency at ~10 MB and ~1 GB files;
//! 6. the index: `stats`, `failed` and sorted `jobs` round trips at
//!    1,000,000 small records (a file written directly, not through the
//!    socket), resident memory per indexed record, and the start-up scan
//!    rate (cold and warm) of that file and of a ~1 GB seed-sized one.
//!
//! 7. writers as separate processes (1, 8, 64 and 256) and as threads,
//!    joblogd (`--fsync never` and default) beside a line copier and
//!    syslog-ng, with each server's CPU per record (`procs.rs`).
//!
//! 8. memory growth per record between 1M and 2M records whose names are
//!    all distinct, and ack latency beside a loop of queries (`growth.rs`).
//!
//! 9. a backlog of 1,000,000 small records drained into a fresh, durable
//!    PostgreSQL by `joblogctl forward --once` at two batch sizes, beside
//!    psql's COPY of the same records (`forward.rs`; the cluster in `pg.rs`).
//!
//! `--only index` (or any comma-separated list of `throughput`, `single`,
//! `ack`, `flush`, `index`, `peers`, `growth`, `forward`) runs just those
//! sections.
//!
//! Progress goes to stderr; the report goes to stdout (and, with
//! `--out-dir`, to `joblogd-bench.txt` and `joblogd-bench.json` there).
//!
//! This file holds the command line and the run order. The sections are
//! `throughput` (1 and 2), `single` (3), `ack` (4), `flush` (5), and
//! `index` and `scan` (6); `peers` holds what joblogd is measured against
//! without joblogd (the raw ceiling, the write path alone, the disk floor);
//! `daemon` starts the daemon under test and talks to it; `bench` is the
//! plan and the context every section shares; `records` generates the job
//! records; `report`, `report_index`, `report_peers`, `report_forward` and
//! `report_json` write the report
//! from the results; `stats`, `machine` and `util` are small helpers.

#[path = "../support/mod.rs"]
#[allow(dead_code)] // each example uses some of the helpers
mod support;

mod ack;
mod bench;
mod children;
mod daemon;
mod flush;
mod forward;
mod growth;
mod index;
mod machine;
mod peers;
mod pg;
mod procs;
mod python;
mod records;
mod report;
mod report_forward;
mod report_index;
mod report_json;
mod report_peers;
mod scan;
mod single;
mod stats;
mod throughput;
mod util;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde_json::Value;

use crate::ack::AckStats;
use crate::bench::{Bench, Plan};
use crate::flush::FlushStats;
use crate::index::IndexStats;
use crate::machine::{daemon_provenance, loadavg, machine_info};
use crate::records::{Gen, Kind};
use crate::report::{Results, report};
use crate::report_json::results_json;
use crate::scan::ScanStats;
use crate::stats::Latency;
use crate::throughput::TpRow;
use crate::util::{TempDir, other, shell_quote};

/// Measures joblogd throughput, ack and flush latency against the real binary.
#[derive(Debug, Parser)]
#[command(name = "joblogd-bench", version, about, long_about = None)]
struct Args {
    /// Smaller workloads (about a minute in total; 100 MB instead of 1 GB,
    /// 200,000 indexed records instead of 1,000,000, and for section 9
    /// one run of 100,000 forwarded records instead of three of 1,000,000).
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

    /// Throughput and peers sections: only these record kinds [default:
    /// small,seed].
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KIND")]
    kind: Vec<Kind>,

    /// Throughput and peers sections: these writer counts [default: 1,8,64
    /// for throughput, 1,8,64,256 for peers].
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
    /// 7: writer processes and threads against a line copier and syslog-ng.
    Peers,
    /// 8: memory growth with distinct values, and acks beside queries.
    Growth,
    /// 9: `joblogctl forward` draining a backlog into PostgreSQL, beside
    /// COPY (needs Debian's postgresql package).
    Forward,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Throughput => "throughput",
            Section::Single => "single",
            Section::Ack => "ack",
            Section::Flush => "flush",
            Section::Index => "index",
            Section::Peers => "peers",
            Section::Growth => "growth",
            Section::Forward => "forward",
        }
    }
}

fn main() -> ExitCode {
    // The writer and copier processes of section 7 are this program too.
    if let Some(code) = children::child_main() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("joblogd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A section's outcome as [`Results`] keeps it: the error as its text.
type Outcome<T> = Result<T, String>;

/// Sets up the run (the daemon binary, the temp dir, the header), runs the
/// chosen sections in order, and prints and writes the report.
fn run(args: &Args) -> io::Result<()> {
    let bin = daemon_bin(args)?;
    let command = std::env::args()
        .map(|a| shell_quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let tmp = TempDir::new()?;
    let (machine_text, machine) = machine_info(&tmp.0);
    let mut plan = Plan::new(args.quick);
    if !args.writers.is_empty() {
        plan.writer_counts = args.writers.clone();
        plan.peer_writer_counts = args.writers.clone();
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

    let line_sizes = line_sizes(&b.rg);
    let results = run_sections(&mut b, args, line_sizes);
    let text = report(&b, &header, &results);
    println!("{text}");
    if let Some(dir) = &args.out_dir {
        write_out(dir, &text, &b, machine, &command, &results)?;
    }
    drop(tmp);
    Ok(())
}

/// `--daemon`, or the `joblogd` built beside this example; it must exist.
fn daemon_bin(args: &Args) -> io::Result<PathBuf> {
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
    Ok(bin)
}

/// Mean line length of small and of seed-sized records, over 100 of each.
fn line_sizes(rg: &Gen) -> (f64, f64) {
    let mut s = Vec::new();
    let mut mean = |kind: Kind| {
        s.clear();
        for i in 0..100u64 {
            rg.line(&mut s, kind, &format!("sz{kind:?}{i:07}"), 3, i);
        }
        s.len() as f64 / 100.0
    };
    (mean(Kind::Small), mean(Kind::Seed))
}

/// The sections chosen with `--only` (all without it), run in report order.
fn run_sections(b: &mut Bench, args: &Args, line_sizes: (f64, f64)) -> Results {
    let sections: Vec<Section> = [
        Section::Throughput,
        Section::Single,
        Section::Ack,
        Section::Flush,
        Section::Index,
        Section::Peers,
        Section::Growth,
        Section::Forward,
    ]
    .into_iter()
    .filter(|s| args.only.is_empty() || args.only.contains(s))
    .collect();
    let want = |s: Section| sections.contains(&s);

    let (tp, tp_err) = if want(Section::Throughput) {
        run_throughput(b, args)
    } else {
        (Vec::new(), Vec::new())
    };
    let single = want(Section::Single).then(|| {
        b.progress("single-record writes");
        b.single_writes().map_err(|e| e.to_string())
    });
    let (acks, floor) = if want(Section::Ack) {
        run_acks(b)
    } else {
        (Vec::new(), None)
    };
    let python = want(Section::Ack).then(|| {
        b.progress("python client log_job, pipelined and durable");
        outcome(b, "python client", Bench::python_client)
    });
    let big_label = if args.quick { "100 MB" } else { "1 GB" };
    let flush = if want(Section::Flush) {
        run_flush(b, big_label)
    } else {
        Vec::new()
    };
    let (index, seed_scan) = if want(Section::Index) {
        run_index(b, big_label)
    } else {
        (None, None)
    };

    let (peers, peers_err) = if want(Section::Peers) {
        run_peers(b, args)
    } else {
        (Vec::new(), Vec::new())
    };

    let growth = want(Section::Growth).then(|| outcome(b, "growth", Bench::growth));
    let forward = want(Section::Forward).then(|| outcome(b, "forward", Bench::forward));

    Results {
        forward,
        growth,
        peers,
        peers_err,
        sections,
        tp,
        tp_err,
        single,
        acks,
        floor,
        python,
        flush,
        index,
        seed_scan,
        line_sizes,
    }
}

/// Runs one section, saying so on stderr when it fails.
fn outcome<T>(
    b: &mut Bench,
    name: &str,
    section: impl FnOnce(&mut Bench) -> io::Result<T>,
) -> Outcome<T> {
    let r = section(b);
    if let Err(e) = &r {
        b.progress(&format!("{name} FAILED: {e}"));
    }
    r.map_err(|e| e.to_string())
}

/// Sections 1 and 2 for each `--kind`: the rows, and the kinds that failed.
fn run_throughput(b: &mut Bench, args: &Args) -> (Vec<TpRow>, Vec<String>) {
    let mut tp = Vec::new();
    let mut tp_err = Vec::new();
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
    (tp, tp_err)
}

/// Section 7 for each `--kind`: the rows, and the kinds that failed.
fn run_peers(b: &mut Bench, args: &Args) -> (Vec<procs::PeerRow>, Vec<String>) {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if procs::syslog_ng_binary().is_none() {
        b.progress("section 7: syslog-ng is not installed (Debian's syslog-ng-core); its rows are left out");
    }
    let kinds = [Kind::Small, Kind::Seed]
        .into_iter()
        .filter(|k| args.kind.is_empty() || args.kind.contains(k));
    for kind in kinds {
        match b.peers(kind) {
            Ok(r) => rows.extend(r),
            Err(e) => {
                b.progress(&format!("peers {} FAILED: {e}", kind.label()));
                errors.push(format!("{}: {e}", kind.label()));
            }
        }
    }
    (rows, errors)
}

/// Section 4: one client, then several, then the disk floor.
fn run_acks(b: &mut Bench) -> (Vec<Outcome<AckStats>>, Option<Outcome<Latency>>) {
    let mut acks = Vec::new();
    for (clients, per) in [
        (1, b.plan.ack_sequential),
        (b.plan.ack_clients, b.plan.ack_per_client),
    ] {
        b.progress(&format!("ack latency, {clients} client(s) x {per}"));
        acks.push(b.ack_latency(clients, per).map_err(|e| e.to_string()));
    }
    let floor = Some(b.fsync_floor().map_err(|e| e.to_string()));
    (acks, floor)
}

/// Section 5 at 10 MB and at `big_label`.
fn run_flush(b: &mut Bench, big_label: &'static str) -> Vec<Outcome<FlushStats>> {
    let mut flush = Vec::new();
    for (target, label) in [(b.plan.small_file, "10 MB"), (b.plan.big_file, big_label)] {
        let r = b.flush_vs_size(target, label);
        if let Err(e) = &r {
            b.progress(&format!("flush {label} FAILED: {e}"));
        }
        flush.push(r.map_err(|e| e.to_string()));
    }
    flush
}

/// Section 6: the index file, then the seed-sized file's start-up scans.
fn run_index(
    b: &mut Bench,
    big_label: &str,
) -> (Option<Outcome<IndexStats>>, Option<Outcome<ScanStats>>) {
    let r = b.index();
    if let Err(e) = &r {
        b.progress(&format!("index FAILED: {e}"));
    }
    let index = Some(r.map_err(|e| e.to_string()));
    let r = b.seed_scan(big_label);
    if let Err(e) = &r {
        b.progress(&format!("seed-sized start-up scan FAILED: {e}"));
    }
    let seed_scan = Some(r.map_err(|e| e.to_string()));
    (index, seed_scan)
}

/// `--out-dir`: the text report and the results as JSON.
fn write_out(
    dir: &Path,
    text: &str,
    b: &Bench,
    machine: Value,
    command: &str,
    results: &Results,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("joblogd-bench.txt"), text)?;
    let v = results_json(b, machine, command, results);
    let pretty = serde_json::to_string_pretty(&v).map_err(|e| other(e.to_string()))?;
    fs::write(dir.join("joblogd-bench.json"), pretty + "\n")?;
    eprintln!(
        "wrote {} and {}",
        dir.join("joblogd-bench.txt").display(),
        dir.join("joblogd-bench.json").display()
    );
    Ok(())
}
