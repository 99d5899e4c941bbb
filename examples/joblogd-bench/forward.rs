//! Section 9: a backlog forwarded to a central PostgreSQL by
//! `joblogctl forward`, beside the COPY a user would load it with instead.
//!
//! One daemon takes N small records (8 writer threads, then a `flush`):
//! the backlog a host has when its forwarder starts late or the database
//! was away. The records are also read back once with `read` and written,
//! one compact JSON text a line, to a file for COPY, so both loaders get
//! the very same texts. Then, against a fresh PostgreSQL cluster with its
//! default (durable) settings (`pg.rs`), each repetition runs every
//! loader, each repetition starting with the next one:
//! - `joblogctl forward --host-id bench --batch B --once` (the release
//!   `joblogctl` beside the daemon under test), at the default batch of
//!   2,000: it drains what is durable and exits;
//! - psql's `\copy` of the file into `CREATE TABLE t(record jsonb)`, in
//!   CSV with `QUOTE e'\x01'` and `DELIMITER e'\x02'` (characters no JSON
//!   text holds raw), so each line is one value, taken as it is.
//!
//! Every run gets an empty `joblog` database (`forward --init`, or the
//! table `t`) and a `CHECKPOINT` before its clock starts, so none pays for
//! the last one's dirty pages. The clock runs from the spawn of the
//! client to its exit; afterwards the rows are counted and must be N (and
//! the forwarder's checkpoint must stand at N), or the section fails. CPU
//! per record is read for the client (its rusage), PostgreSQL (its
//! processes, and the backends it reaped) and joblogd (`/proc`), to show
//! where the time goes.

use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::bench::Bench;
use crate::daemon::{Client, Daemon};
use crate::pg::{Cluster, proc_stat};
use crate::records::Kind;
use crate::stats::{Spread, spread};
use crate::throughput::run_writers;
use crate::util::{TempDir, other, thousands};

/// The forwarder's `--batch`: its default (10,000 was measured as well,
/// within 5% of it: the cost is per record, not per transaction; see
/// docs/performance.md).
const BATCHES: [u32; 1] = [2_000];
/// Records per `read` when the backlog is written out for COPY.
const EXPORT_LIMIT: usize = 10_000;
/// The forwarder's only line on stderr when all goes well.
const CONNECTED: &str = "joblogctl forward: connected to the central database";

/// How the records get into PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loader {
    /// `joblogctl forward --batch N --once`.
    Forward(u32),
    /// psql's `\copy` into a one-column jsonb table.
    Copy,
}

impl Loader {
    pub(crate) fn label(self) -> String {
        match self {
            Loader::Forward(b) => format!("forward --batch {b}"),
            Loader::Copy => r"COPY (psql \copy, csv)".to_owned(),
        }
    }
}

/// One loader's runs.
pub(crate) struct LoadRow {
    pub(crate) loader: Loader,
    pub(crate) records: u64,
    pub(crate) secs: Vec<f64>,
    /// CPU seconds of the client (joblogctl or psql), PostgreSQL and
    /// joblogd, per run.
    pub(crate) client_cpu: Vec<f64>,
    pub(crate) server_cpu: Vec<f64>,
    pub(crate) daemon_cpu: Vec<f64>,
}

impl LoadRow {
    fn new(loader: Loader, records: u64) -> LoadRow {
        LoadRow {
            loader,
            records,
            secs: Vec::new(),
            client_cpu: Vec::new(),
            server_cpu: Vec::new(),
            daemon_cpu: Vec::new(),
        }
    }

    pub(crate) fn rec_per_s(&self) -> Spread {
        let v: Vec<f64> = self.secs.iter().map(|s| self.records as f64 / s).collect();
        spread(&v)
    }

    /// CPU microseconds per record of one of the `*_cpu` series.
    pub(crate) fn cpu_us(&self, cpu: &[f64]) -> Spread {
        let v: Vec<f64> = cpu.iter().map(|s| s * 1e6 / self.records as f64).collect();
        spread(&v)
    }

    fn to_json(&self) -> Value {
        let j = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        json!({
            "loader": match self.loader {
                Loader::Forward(_) => "forward",
                Loader::Copy => "copy",
            },
            "batch": match self.loader {
                Loader::Forward(b) => json!(b),
                Loader::Copy => Value::Null,
            },
            "seconds": self.secs,
            "records_per_s": j(self.rec_per_s()),
            "seconds_median": spread(&self.secs).median,
            "client_cpu_seconds": self.client_cpu,
            "postgres_cpu_seconds": self.server_cpu,
            "joblogd_cpu_seconds": self.daemon_cpu,
            "cpu_us_per_record": {
                "client": j(self.cpu_us(&self.client_cpu)),
                "postgres": j(self.cpu_us(&self.server_cpu)),
                "joblogd": j(self.cpu_us(&self.daemon_cpu)),
            },
        })
    }
}

/// Section 9's results.
pub(crate) struct ForwardStats {
    pub(crate) records: u64,
    /// The records' JSON texts, as forwarded and as in COPY's file.
    pub(crate) record_bytes: u64,
    /// Logging the backlog through the socket until `flush` returned.
    pub(crate) log_secs: f64,
    pub(crate) reps: usize,
    /// "PostgreSQL 15.14" and its settings that bear on durability.
    pub(crate) server: String,
    pub(crate) settings: String,
    pub(crate) rows: Vec<LoadRow>,
}

impl ForwardStats {
    pub(crate) fn row(&self, loader: Loader) -> Option<&LoadRow> {
        self.rows.iter().find(|r| r.loader == loader)
    }

    /// The forwarder at the default batch, the figure the target is for.
    pub(crate) fn default_forward(&self) -> Option<&LoadRow> {
        self.row(Loader::Forward(BATCHES[0]))
    }

    pub(crate) fn to_json(&self) -> Value {
        let rate = |l: Loader| self.row(l).map(|r| r.rec_per_s().median);
        let copy = rate(Loader::Copy).filter(|c| *c > 0.0);
        let ratios: serde_json::Map<String, Value> = BATCHES
            .iter()
            .filter_map(|&b| {
                let f = rate(Loader::Forward(b))?;
                Some((format!("batch_{b}"), json!(f / copy?)))
            })
            .collect();
        json!({
            "records": self.records,
            "record_bytes": self.record_bytes,
            "log_seconds": self.log_secs,
            "reps": self.reps,
            "server": self.server,
            "server_settings": self.settings,
            "loaders": self.rows.iter().map(LoadRow::to_json).collect::<Vec<_>>(),
            "forward_to_copy": ratios,
            "target_records_per_s": TARGET_RATE,
        })
    }
}

/// The issue's target for the forwarder, small records per second.
pub(crate) const TARGET_RATE: f64 = 20_000.0;

/// What the runs share.
struct Setup<'a> {
    daemon: &'a Daemon,
    cluster: &'a Cluster,
    ctl: &'a Path,
    copy_file: &'a Path,
    records: u64,
}

/// One timed run.
struct Sample {
    secs: f64,
    client_cpu: f64,
    server_cpu: f64,
    daemon_cpu: f64,
    /// Anything unexpected the client printed, for the problems list.
    notes: Vec<String>,
}

/// CPU seconds of this process's children that ended and were waited
/// for (`RUSAGE_CHILDREN`): around one client's run, that client's.
fn reaped_children_cpu() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `cmd` to its end: its output and the wall-clock seconds.
fn timed(mut cmd: Command) -> io::Result<(Output, f64)> {
    let t0 = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| other(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    Ok((out, t0.elapsed().as_secs_f64()))
}

/// An error carrying a failed client's stderr.
fn failed(what: &str, out: &Output) -> io::Error {
    other(format!(
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// `joblogctl --socket … --database … forward ARGS…`, with neither of the
/// environment's `JOBLOGD_*` settings.
fn joblogctl(s: &Setup<'_>, args: &[&str]) -> Command {
    let mut c = Command::new(s.ctl);
    c.arg("--socket")
        .arg(s.daemon.socket())
        .args(["--database", &s.cluster.url, "forward"])
        .args(args)
        .env_remove("JOBLOGD_SOCKET")
        .env_remove("JOBLOGD_DATABASE");
    c
}

/// A `read` reply, the records as the daemon wrote them.
#[derive(Deserialize)]
struct ReadReply<'a> {
    ok: bool,
    #[serde(borrow, default)]
    records: Vec<Positioned<'a>>,
}

#[derive(Deserialize)]
struct Positioned<'a> {
    #[serde(borrow)]
    record: &'a RawValue,
}

/// Writes the log's `n` records, read back with `read` as the forwarder
/// gets them, to `path`, one a line; returns the bytes of the records.
fn export_records(d: &Daemon, path: &Path, n: u64) -> io::Result<u64> {
    let mut c = Client::connect(d.socket())?;
    let ping = c.request(r#"{"op":"ping"}"#)?;
    let log_id = ping["log_id"]
        .as_str()
        .ok_or_else(|| other(format!("ping gave no log_id: {ping}")))?
        .to_owned();
    let mut out = BufWriter::new(File::create(path)?);
    let (mut seq, mut bytes) = (0u64, 0u64);
    while seq < n {
        let req = json!({"op":"read","log_id":log_id,"from_seq":seq,"limit":EXPORT_LIMIT});
        c.send(format!("{req}\n").as_bytes())?;
        let line = c.read_line()?;
        let reply: ReadReply<'_> = serde_json::from_str(line)
            .map_err(|e| other(format!("a read reply that does not parse: {e}")))?;
        if !reply.ok || reply.records.is_empty() {
            let head: String = line.chars().take(300).collect();
            return Err(other(format!("read from seq {seq} of {n}: {head}")));
        }
        for p in &reply.records {
            out.write_all(p.record.get().as_bytes())?;
            out.write_all(b"\n")?;
            bytes += p.record.get().len() as u64;
        }
        seq += reply.records.len() as u64;
    }
    out.flush()?;
    Ok(bytes)
}

/// Fails unless the run stored every record once.
fn check_rows(s: &Setup<'_>, loader: Loader) -> io::Result<()> {
    let what = loader.label();
    let table = match loader {
        Loader::Forward(_) => "joblog_records",
        Loader::Copy => "t",
    };
    let rows = s.cluster.number(&format!("SELECT count(*) FROM {table}"))?;
    if rows != s.records {
        return Err(other(format!(
            "{what}: SELECT count(*) FROM {table} gave {rows}, not the {} records logged",
            s.records
        )));
    }
    if let Loader::Forward(_) = loader {
        let at = s.cluster.number(
            "SELECT coalesce(max(next_seq), 0) FROM joblog_checkpoints WHERE host_id = 'bench'",
        )?;
        if at != s.records {
            return Err(other(format!(
                "{what}: the checkpoint of host bench is at seq {at}, not at {}",
                s.records
            )));
        }
    }
    Ok(())
}

/// An empty database for `loader`'s run, checkpointed, and the command
/// that loads it.
fn prepare(s: &Setup<'_>, loader: Loader) -> io::Result<Command> {
    s.cluster.fresh_database()?;
    let cmd = match loader {
        Loader::Forward(batch) => {
            let (out, _) = timed(joblogctl(s, &["--init"]))?;
            if !out.status.success() {
                return Err(failed("joblogctl forward --init", &out));
            }
            let batch = batch.to_string();
            joblogctl(s, &["--host-id", "bench", "--batch", &batch, "--once"])
        }
        Loader::Copy => {
            s.cluster.psql("CREATE TABLE t(record jsonb)")?;
            let path = s.copy_file.display().to_string();
            if path.contains('\'') {
                return Err(other(format!("a path psql cannot quote: {path}")));
            }
            let copy = format!(
                r"\copy t(record) FROM '{path}' WITH (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02')"
            );
            s.cluster.psql_command("joblog", &copy)
        }
    };
    s.cluster.psql("CHECKPOINT")?;
    Ok(cmd)
}

/// One timed run of `loader` into an empty database, checked.
fn load_once(s: &Setup<'_>, loader: Loader) -> io::Result<Sample> {
    let cmd = prepare(s, loader)?;
    let (client0, server0) = (reaped_children_cpu(), s.cluster.cpu_seconds()?);
    let daemon0 = proc_stat(s.daemon.pid())?.own;
    let (out, secs) = timed(cmd)?;
    let client_cpu = reaped_children_cpu() - client0;
    if !out.status.success() {
        return Err(failed(&loader.label(), &out));
    }
    s.cluster.wait_backends_gone()?;
    let server_cpu = s.cluster.cpu_seconds()? - server0;
    let daemon_cpu = proc_stat(s.daemon.pid())?.own - daemon0;
    check_rows(s, loader)?;
    let notes = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != CONNECTED)
        .map(|l| format!("section 9, {}: {}", loader.label(), l.trim()))
        .collect();
    Ok(Sample {
        secs,
        client_cpu,
        server_cpu,
        daemon_cpu,
        notes,
    })
}

/// `joblogctl` beside the daemon under test.
fn joblogctl_beside(daemon: &Path) -> io::Result<PathBuf> {
    let ctl = daemon.with_file_name("joblogctl");
    if ctl.is_file() {
        Ok(ctl)
    } else {
        Err(other(format!(
            "{} is missing: build it beside the daemon (`cargo build --release --bins`)",
            ctl.display()
        )))
    }
}

impl Bench {
    /// Section 9.
    pub(crate) fn forward(&mut self) -> io::Result<ForwardStats> {
        let ctl = joblogctl_beside(&self.bin)?;
        let scratch_path = self.dir.join("forward");
        std::fs::create_dir(&scratch_path)?;
        // Declared first, so dropped last: after the cluster inside it.
        let scratch = TempDir(scratch_path);
        self.progress("forward: a fresh PostgreSQL cluster");
        let cluster = Cluster::start(&scratch.0.join("pg"))?;
        let (d, log) = self.start_daemon("forward")?;
        let result = self.forward_runs(&d, &cluster, &ctl, &scratch.0);
        self.stop_daemon(d, &log, "forward");
        drop(cluster);
        drop(scratch);
        result
    }

    /// Section 9 with its daemon and cluster running: log the backlog,
    /// write it out for COPY, then every loader in turn, `reps` times.
    fn forward_runs(
        &mut self,
        d: &Daemon,
        cluster: &Cluster,
        ctl: &Path,
        dir: &Path,
    ) -> io::Result<ForwardStats> {
        let n = self.plan.forward_records;
        let log_secs = self.log_backlog(d, n)?;
        let copy_file = dir.join("records.json");
        let record_bytes = export_records(d, &copy_file, n)?;
        let (server, settings) = cluster.describe()?;
        let s = Setup {
            daemon: d,
            cluster,
            ctl,
            copy_file: &copy_file,
            records: n,
        };
        let mut rows: Vec<LoadRow> = BATCHES
            .iter()
            .map(|&b| Loader::Forward(b))
            .chain([Loader::Copy])
            .map(|l| LoadRow::new(l, n))
            .collect();
        let reps = self.plan.forward_reps;
        let loaders = rows.len();
        for rep in 0..reps {
            for k in 0..loaders {
                let row = &mut rows[(rep + k) % loaders];
                let sample = load_once(&s, row.loader)?;
                self.progress(&format!(
                    "forward run {}/{reps}, {}: {} rec/s ({:.1} s); cpu us/record: client {:.1}, postgres {:.1}, joblogd {:.1}",
                    rep + 1,
                    row.loader.label(),
                    thousands(n as f64 / sample.secs),
                    sample.secs,
                    sample.client_cpu * 1e6 / n as f64,
                    sample.server_cpu * 1e6 / n as f64,
                    sample.daemon_cpu * 1e6 / n as f64,
                ));
                for note in &sample.notes {
                    self.progress(&format!("PROBLEM {note}"));
                }
                self.problems.extend(sample.notes);
                row.secs.push(sample.secs);
                row.client_cpu.push(sample.client_cpu);
                row.server_cpu.push(sample.server_cpu);
                row.daemon_cpu.push(sample.daemon_cpu);
            }
        }
        Ok(ForwardStats {
            records: n,
            record_bytes,
            log_secs,
            reps,
            server,
            settings,
            rows,
        })
    }

    /// Logs `n` small records through the socket (8 writer threads) and
    /// waits until they are durable; returns the seconds it took.
    fn log_backlog(&self, d: &Daemon, n: u64) -> io::Result<f64> {
        self.progress(&format!("forward: logging {n} small records"));
        let total = usize::try_from(n).map_err(|_| other("too many records for this machine"))?;
        let bufs = self.rg.writer_buffers(Kind::Small, total, 8, "fw");
        let mut ctl = Client::connect(d.socket())?;
        let (took, replies) = run_writers(d.socket(), &bufs, || ctl.flush())?;
        if let Some(first) = replies.first() {
            return Err(other(format!(
                "{} replies to fire-and-forget records, first: {first}",
                replies.len()
            )));
        }
        ctl.verify(n)?;
        Ok(took.as_secs_f64())
    }
}
