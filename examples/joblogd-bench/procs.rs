//! Section 7: many writer processes, side by side with the peers a user
//! would pick instead, in one run.
//!
//! Pipeline workers are processes, each sending its records on its own
//! connection; section 1's writers are threads of the bench sending
//! 256 KiB pieces, which hides what many processes cost the daemon. Here
//! each writer is a process of its own (this program, re-run with the
//! hidden `--writer-child SOCKET FILE`): it reads its share from a file,
//! connects, says it is ready, waits for the start, sends its whole share
//! in one `write_all` (as Python's `sendall` does), closes its write side
//! and reads until the server closes. The same writers, in threads, run as
//! well (`Mode::Threads`), so the two can be told apart.
//!
//! The peers, each a process started and stopped here:
//! - the line copier (this program with `--copier-child SOCKET FILE`): a
//!   thread per connection appending whole lines to one file under a
//!   mutex; no parsing, no fsync: the limit of moving lines;
//! - syslog-ng (`syslog-ng-core`), with a private configuration: a
//!   `unix-stream()` source with `flags(no-parse)` and flow control into a
//!   `file()` with the template `$MSG\n` (so its file holds exactly the
//!   lines sent), no fsync, a window of 1,000 messages per connection; run
//!   both with `threaded(yes)` (its default: faster with many writers) and
//!   `threaded(no)` (faster with one), and joblogd is held to the better
//!   of the two at each writer count;
//! - joblogd with `--fsync never`, and with its default (`fdatasync` per
//!   batch).
//!
//! Each run starts a fresh server after `sync(2)`, and removes what the
//! server wrote when it stops, so no run pays for an earlier one's dirty
//! pages; the peers take turns within each repetition, and each
//! repetition starts with the next peer.
//!
//! The clock starts when every writer is connected and ready, and stops
//! when the server holds every record: for joblogd when a `flush` sent
//! after the last writer finished returns (then `ping` must count every
//! record); for the copier and syslog-ng when their file holds every byte
//! sent. Server CPU is its utime + stime over the run (from
//! `/proc/PID/stat`), per record.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::Bench;
use crate::daemon::{Client, Daemon, IO_TIMEOUT};
use crate::records::Kind;
use crate::stats::{Spread, spread};
use crate::throughput::run_writers;
use crate::util::{other, thousands};

/// How the writers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A process per writer, one `write_all` of its share.
    Processes,
    /// A thread of the bench per writer, 256 KiB `write_all` calls.
    Threads,
}

impl Mode {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mode::Processes => "processes",
            Mode::Threads => "threads",
        }
    }
}

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Copier,
    SyslogNg,
    SyslogNgSingle,
    JoblogdNever,
    Joblogd,
}

impl Peer {
    pub(crate) const ALL: [Peer; 5] = [
        Peer::Copier,
        Peer::SyslogNg,
        Peer::SyslogNgSingle,
        Peer::JoblogdNever,
        Peer::Joblogd,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Peer::Copier => "line copier (no parsing, no fsync)",
            Peer::SyslogNg => "syslog-ng threaded (no fsync)",
            Peer::SyslogNgSingle => "syslog-ng single-threaded (no fsync)",
            Peer::JoblogdNever => "joblogd --fsync never",
            Peer::Joblogd => "joblogd default (fdatasync per batch)",
        }
    }

    pub(crate) fn is_syslog_ng(self) -> bool {
        matches!(self, Peer::SyslogNg | Peer::SyslogNgSingle)
    }

    fn key(self) -> &'static str {
        match self {
            Peer::Copier => "copier",
            Peer::SyslogNg => "syslog_ng",
            Peer::SyslogNgSingle => "syslog_ng_single_threaded",
            Peer::JoblogdNever => "joblogd_fsync_never",
            Peer::Joblogd => "joblogd",
        }
    }
}

/// One (mode, kind, writers, peer) configuration and its repetitions.
pub(crate) struct PeerRow {
    pub(crate) mode: Mode,
    pub(crate) kind: Kind,
    pub(crate) writers: usize,
    pub(crate) peer: Peer,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) secs: Vec<f64>,
    /// Server CPU seconds (utime + stime) per repetition.
    pub(crate) cpu: Vec<f64>,
}

impl PeerRow {
    pub(crate) fn rec_per_s(&self) -> Spread {
        let v: Vec<f64> = self.secs.iter().map(|s| self.records as f64 / s).collect();
        spread(&v)
    }

    pub(crate) fn mb_per_s(&self) -> Spread {
        let v: Vec<f64> = self
            .secs
            .iter()
            .map(|s| self.bytes as f64 / 1e6 / s)
            .collect();
        spread(&v)
    }

    /// Server CPU per record, microseconds.
    pub(crate) fn cpu_us_per_record(&self) -> Spread {
        let v: Vec<f64> = self
            .cpu
            .iter()
            .map(|c| c * 1e6 / self.records as f64)
            .collect();
        spread(&v)
    }

    pub(crate) fn to_json(&self) -> Value {
        let j = |s: Spread| json!({"median": s.median, "min": s.min, "max": s.max});
        json!({
            "mode": self.mode.label(),
            "record": self.kind.label(),
            "writers": self.writers,
            "peer": self.peer.key(),
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.secs,
            "cpu_seconds": self.cpu,
            "records_per_s": j(self.rec_per_s()),
            "mb_per_s": j(self.mb_per_s()),
            "cpu_us_per_record": j(self.cpu_us_per_record()),
        })
    }
}

/// utime + stime of process `pid`, in seconds.
fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| other("bad /proc stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11) + ticks(12)) as f64 / hz)
}

// ---------------------------------------------------------------------------
// The writers.

/// Writer processes, spawned and connected before the clock starts.
struct Writers {
    children: Vec<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

impl Writers {
    fn spawn(socket: &Path, shares: &[PathBuf]) -> io::Result<Writers> {
        let exe = std::env::current_exe()?;
        let mut children = Vec::with_capacity(shares.len());
        for share in shares {
            let mut child = Command::new(&exe)
                .arg("--writer-child")
                .arg(socket)
                .arg(share)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(other("writer child without pipes"));
            };
            children.push((child, stdin, BufReader::new(stdout)));
        }
        for (_, _, out) in &mut children {
            let mut ready = [0u8; 1];
            out.read_exact(&mut ready)?;
            if ready != *b"r" {
                return Err(other("writer child did not report ready"));
            }
        }
        Ok(Writers { children })
    }

    /// Starts every writer and waits for them all; returns the reply lines
    /// they received (records get none: any is an error).
    fn run(self) -> io::Result<Vec<String>> {
        let mut waiting = Vec::with_capacity(self.children.len());
        for (child, mut stdin, out) in self.children {
            stdin.write_all(b"g")?;
            waiting.push((child, out));
        }
        let mut replies = Vec::new();
        for (mut child, mut out) in waiting {
            let mut line = String::new();
            out.read_line(&mut line)?;
            let status = child.wait()?;
            if !status.success() {
                return Err(other(format!("a writer process failed ({status})")));
            }
            let (count, first) = line.trim_end().split_once(' ').unwrap_or(("0", ""));
            if count != "0" {
                replies.push(format!("{count} replies, first: {first}"));
            }
        }
        Ok(replies)
    }
}

// ---------------------------------------------------------------------------
// The servers.

/// A server under test, running.
enum Server {
    Copier { child: Child, out: PathBuf },
    SyslogNg { child: Child, out: PathBuf },
    Joblogd(Daemon),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Copier { child, .. } | Server::SyslogNg { child, .. } => child.id(),
            Server::Joblogd(d) => d.pid(),
        }
    }

    /// Waits until the server holds every record: a `flush` for joblogd,
    /// every byte in the file for the others.
    fn finish(&self, ctl: Option<&mut Client>, bytes: u64) -> io::Result<()> {
        match (self, ctl) {
            (Server::Joblogd(_), Some(ctl)) => ctl.flush(),
            (Server::Copier { out, .. } | Server::SyslogNg { out, .. }, _) => {
                let deadline = Instant::now() + IO_TIMEOUT;
                loop {
                    let len = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
                    if len >= bytes {
                        return if len == bytes {
                            Ok(())
                        } else {
                            Err(other(format!("{len} bytes in the output, {bytes} sent")))
                        };
                    }
                    if Instant::now() > deadline {
                        return Err(other(format!("only {len} of {bytes} bytes arrived")));
                    }
                    thread::sleep(Duration::from_micros(500));
                }
            }
            (Server::Joblogd(_), None) => Err(other("no control connection")),
        }
    }

    /// Stops the server and removes what it wrote (its dirty pages would
    /// otherwise be written back during the next runs).
    fn stop(self, d_log: Option<PathBuf>) -> Vec<String> {
        match self {
            Server::Copier { mut child, out } | Server::SyslogNg { mut child, out } => {
                // SAFETY: signalling our own child, not yet reaped.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
                }
                let _ = child.wait();
                let _ = fs::remove_file(out);
                Vec::new()
            }
            Server::Joblogd(d) => {
                let problems = d.stop("section 7");
                if let Some(log) = d_log {
                    let _ = fs::remove_file(&log);
                    let _ = fs::remove_file(log.with_extension("json.meta"));
                }
                problems
            }
        }
    }
}

/// Where syslog-ng is, if installed.
pub(crate) fn syslog_ng_binary() -> Option<PathBuf> {
    ["/usr/sbin/syslog-ng", "/usr/bin/syslog-ng"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// syslog-ng's configuration: one Unix stream source without parsing,
/// flow-controlled into one file that gets exactly the lines sent.
/// (Larger `log-fetch-limit` and `flush-lines` were tried and were slower:
/// 183k against 260k small records/s with 64 writer processes.)
fn syslog_ng_config(socket: &Path, out: &Path, writers: usize, threaded: bool) -> String {
    let conns = writers + 8;
    // A window of 1,000 messages per connection (syslog-ng warns below
    // 100), and a destination queue that holds every window at once.
    let window = conns * 1000;
    format!(
        r#"@version: 3.38
options {{ threaded({threaded}); stats-freq(0); log-msg-size(1048576); mark-freq(0); }};
source s_bench {{
    unix-stream("{socket}" flags(no-parse) max-connections({conns}) log-iw-size({window}));
}};
destination d_bench {{
    file("{out}" template("$MSG\n") log-fifo-size({fifo}));
}};
log {{ source(s_bench); destination(d_bench); flags(flow-control); }};
"#,
        threaded = if threaded { "yes" } else { "no" },
        socket = socket.display(),
        out = out.display(),
        fifo = window * 2,
    )
}

impl Bench {
    fn start_server(&self, peer: Peer, writers: usize) -> io::Result<(Server, PathBuf)> {
        let socket = self.dir.join("peer.sock");
        let _ = fs::remove_file(&socket);
        let out = self.dir.join("peer.out");
        let _ = fs::remove_file(&out);
        let server = match peer {
            Peer::Copier => {
                let child = Command::new(std::env::current_exe()?)
                    .arg("--copier-child")
                    .arg(&socket)
                    .arg(&out)
                    .stdin(Stdio::null())
                    .spawn()?;
                Server::Copier { child, out }
            }
            Peer::SyslogNg | Peer::SyslogNgSingle => {
                let bin = syslog_ng_binary().ok_or_else(|| other("syslog-ng is not installed"))?;
                let conf = self.dir.join("syslog-ng.conf");
                let threaded = peer == Peer::SyslogNg;
                fs::write(&conf, syslog_ng_config(&socket, &out, writers, threaded))?;
                let child = Command::new(bin)
                    .arg("--foreground")
                    .arg("--no-caps")
                    .arg("--cfgfile")
                    .arg(&conf)
                    .arg("--persist-file")
                    .arg(self.dir.join("syslog-ng.persist"))
                    .arg("--pidfile")
                    .arg(self.dir.join("syslog-ng.pid"))
                    .arg("--control")
                    .arg(self.dir.join("syslog-ng.ctl"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?;
                Server::SyslogNg { child, out }
            }
            Peer::JoblogdNever | Peer::Joblogd => {
                let log = self.dir.join("peer.json");
                let _ = fs::remove_file(&log);
                let fsync = if peer == Peer::Joblogd {
                    "always"
                } else {
                    "never"
                };
                let d = Daemon::start_with(&self.bin, &socket, &log, fsync)?;
                Server::Joblogd(d)
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&socket).is_err() {
            if Instant::now() > deadline {
                server.stop(None);
                return Err(other(format!(
                    "{} did not accept connections",
                    peer.label()
                )));
            }
            thread::sleep(Duration::from_millis(2));
        }
        Ok((server, socket))
    }

    /// One run: a fresh server, the writers, the clock; seconds and server
    /// CPU seconds.
    fn peer_run(
        &mut self,
        peer: Peer,
        mode: Mode,
        shares: &[PathBuf],
        bufs: &[Vec<u8>],
        records: u64,
        bytes: u64,
    ) -> io::Result<(f64, f64)> {
        // Every run starts with no dirty pages of earlier runs (the peers
        // without fsync leave theirs to the kernel's write-back, which
        // would otherwise fall on whichever server runs next).
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let (server, socket) = self.start_server(peer, shares.len())?;
        let result = (|| {
            let mut ctl = match &server {
                Server::Joblogd(_) => Some(Client::connect(&socket)?),
                _ => None,
            };
            let pid = server.pid();
            let (took, cpu, replies) = match mode {
                Mode::Processes => {
                    let writers = Writers::spawn(&socket, shares)?;
                    let cpu0 = cpu_seconds(pid)?;
                    let t0 = Instant::now();
                    let replies = writers.run()?;
                    server.finish(ctl.as_mut(), bytes)?;
                    (t0.elapsed(), cpu_seconds(pid)? - cpu0, replies)
                }
                Mode::Threads => {
                    let cpu0 = cpu_seconds(pid)?;
                    let (took, replies) =
                        run_writers(&socket, bufs, || server.finish(ctl.as_mut(), bytes))?;
                    (took, cpu_seconds(pid)? - cpu0, replies)
                }
            };
            if let Some(first) = replies.first() {
                return Err(other(format!("replies to records: {first}")));
            }
            if let Some(ctl) = ctl.as_mut() {
                ctl.verify(records)?;
            }
            Ok((took.as_secs_f64(), cpu))
        })();
        let problems = server.stop(Some(self.dir.join("peer.json")));
        for p in &problems {
            self.progress(&format!("PROBLEM {p}"));
        }
        self.problems.extend(problems);
        result
    }

    /// Section 7 for one record kind: every writer count, mode and peer.
    pub(crate) fn peers(&mut self, kind: Kind) -> io::Result<Vec<PeerRow>> {
        let total = match kind {
            Kind::Small => self.plan.peer_small_total,
            Kind::Seed => self.plan.peer_seed_total,
        };
        let peers: Vec<Peer> = Peer::ALL
            .into_iter()
            .filter(|p| !p.is_syslog_ng() || syslog_ng_binary().is_some())
            .collect();
        let mut rows = Vec::new();
        for &writers in &self.plan.peer_writer_counts.clone() {
            let tag = format!("p{}{writers}", &kind.label()[..2]);
            let bufs = self.rg.writer_buffers(kind, total, writers, &tag);
            let bytes: u64 = bufs.iter().map(|b| b.len() as u64).sum();
            let mut shares = Vec::with_capacity(writers);
            for (i, b) in bufs.iter().enumerate() {
                let p = self.dir.join(format!("share-{i}.ndjson"));
                fs::write(&p, b)?;
                shares.push(p);
            }
            for mode in [Mode::Processes, Mode::Threads] {
                let mut these: Vec<PeerRow> = peers
                    .iter()
                    .map(|&peer| PeerRow {
                        mode,
                        kind,
                        writers,
                        peer,
                        records: total as u64,
                        bytes,
                        secs: Vec::new(),
                        cpu: Vec::new(),
                    })
                    .collect();
                // Peers alternate within each repetition, each repetition
                // starting one peer later, so neither a slow moment of the
                // machine nor the peer before falls on one of them only.
                let n = these.len();
                for rep in 0..self.plan.reps {
                    for k in 0..n {
                        let row = &mut these[(k + rep) % n];
                        let (secs, cpu) =
                            self.peer_run(row.peer, mode, &shares, &bufs, total as u64, bytes)?;
                        self.progress(&format!(
                            "{} x{writers} {} run {}: {}: {} rec/s, {:.1} MB/s, cpu {:.2} us/record",
                            kind.label(),
                            mode.label(),
                            rep + 1,
                            row.peer.label(),
                            thousands(total as f64 / secs),
                            bytes as f64 / 1e6 / secs,
                            cpu * 1e6 / total as f64
                        ));
                        row.secs.push(secs);
                        row.cpu.push(cpu);
                    }
                }
                rows.extend(these);
            }
            for p in &shares {
                let _ = fs::remove_file(p);
            }
        }
        Ok(rows)
    }
}
