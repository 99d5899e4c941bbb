//! `joblogctl`: the human's command for joblogd, like `systemctl` and
//! `journalctl` are for systemd. Each subcommand is one request on the
//! socket (see protocol.md); output is a readable table on a terminal and
//! plain text or JSON in a pipe.
//!
//! Exit codes: 0 success, 1 the daemon answered with an error, 2 usage,
//! 3 cannot connect (with a hint how to start the daemon).

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use std::os::unix::fs::MetadataExt;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

/// Talk to a running joblogd.
#[derive(Debug, Parser)]
#[command(name = "joblogctl", version, about, long_about = None)]
struct Cli {
    /// The daemon's socket [default: the first that answers of
    /// $XDG_RUNTIME_DIR/joblogd.sock (else /tmp/joblogd-<uid>.sock) and the
    /// systemd units' /run/joblogd/joblogd.sock].
    #[arg(long, global = true, env = "JOBLOGD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Sort {
    Duration,
    LoggedAt,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Statistics (the old logger's get_statistics, and more).
    Stats {
        /// Print the stats object as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long, value_name = "ID")]
        worker: Option<String>,
        #[arg(long, value_name = "ISO")]
        since: Option<String>,
        #[arg(long, value_name = "ISO")]
        until: Option<String>,
        /// Count records accepted but not yet written too (a crash would
        /// take them away); without it, only records in the file.
        #[arg(long)]
        pending: bool,
    },
    /// List jobs, filtered, sorted and paged.
    Jobs(JobsArgs),
    /// Videos whose latest attempt failed and may be retried, newest first.
    RetryCandidates {
        /// One URL per line, for a retry loop.
        #[arg(long)]
        urls: bool,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Send NDJSON records from a file (or `-` for stdin).
    Log {
        #[arg(default_value = "-")]
        file: String,
        /// Wait until every record is durable before exiting.
        #[arg(long)]
        ack: bool,
    },
    /// Wait until everything accepted so far is on disk.
    Flush,
    /// Write the CSV export to PATH (written by joblogctl, with your
    /// permissions; `-` for standard output).
    ExportCsv { path: PathBuf },
    /// Write a complete, consistent copy of the log to PATH (always a valid
    /// JSON array, whatever is being appended meanwhile; `-` for standard
    /// output).
    Snapshot { path: PathBuf },
    /// Archive the log file and start an empty one.
    Clear {
        /// Required: clearing is not undone by anything but the archive.
        #[arg(long)]
        yes: bool,
    },
    /// Is the daemon alive? Counters and the log file.
    Ping,
    /// Show new records as they arrive.
    Tail {
        /// Keep following (the only mode: like `journalctl -f`).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Show records as they are accepted, before they are written
        /// (a crash could take them away); without it, once in the file.
        #[arg(long)]
        pending: bool,
    },
}

#[derive(Debug, clap::Args)]
struct JobsArgs {
    /// Only failed jobs.
    #[arg(long, conflicts_with = "successful")]
    failed: bool,
    /// Only successful jobs.
    #[arg(long)]
    successful: bool,
    #[arg(long)]
    stage: Option<String>,
    #[arg(long)]
    subject: Option<String>,
    #[arg(long, value_name = "ID")]
    worker: Option<String>,
    #[arg(long, value_name = "ID")]
    video: Option<String>,
    #[arg(long)]
    error_type: Option<String>,
    #[arg(long, value_name = "ISO")]
    since: Option<String>,
    #[arg(long, value_name = "ISO")]
    until: Option<String>,
    /// Only the newest record of each video.
    #[arg(long)]
    latest_per_video: bool,
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    offset: Option<usize>,
    /// Newest (or largest) first.
    #[arg(long)]
    desc: bool,
    #[arg(long, value_enum)]
    sort: Option<Sort>,
    /// Comma-separated fields to show.
    #[arg(long, value_delimiter = ',')]
    fields: Option<Vec<String>>,
    #[arg(long, value_enum)]
    format: Option<Format>,
}

/// A failure with its exit code.
struct Fail(u8, String);

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<OutputClosed>()) {
            // `joblogctl jobs | head`: the reader has what it wanted.
            return Fail(0, String::new());
        }
        Fail(1, format!("joblogctl: {e}"))
    }
}

/// Standard output, closed by its reader (a broken pipe).
#[derive(Debug)]
struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Standard output, whose broken pipe ends joblogctl quietly and with
/// success (as `head` expects), while a broken pipe to the daemon stays an
/// error.
struct Stdout<W>(W);

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

fn closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::other(OutputClosed)
    } else {
        e
    }
}

/// Where to find the daemon: `--socket`, else `JOBLOGD_SOCKET` (one path,
/// nothing else tried), else the per-user default, then the systemd
/// units' socket, the first that accepts a connection.
struct Socket {
    candidates: Vec<PathBuf>,
    explicit: bool,
}

impl Socket {
    fn resolve(given: Option<PathBuf>) -> Socket {
        match given {
            Some(p) => Socket {
                candidates: vec![p],
                explicit: true,
            },
            None => {
                let mut candidates = vec![joblogd::config::default_socket()];
                let system = PathBuf::from(joblogd::config::SYSTEM_SOCKET);
                if candidates[0] != system {
                    candidates.push(system);
                }
                Socket {
                    candidates,
                    explicit: false,
                }
            }
        }
    }
}

struct Conn {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Conn {
    /// Connects to the first candidate that accepts; if none does, the
    /// error names every path tried and why, and what to do about it.
    fn open(socket: &Socket) -> Result<Conn, Fail> {
        let mut tried = Vec::new();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        for path in &socket.candidates {
            // A default found, not one given: in a directory anyone may
            // write to (/tmp) anyone could have put a socket there first,
            // and would then read (and answer) what this command sends.
            let shared_dir = path
                .parent()
                .and_then(|d| std::fs::metadata(d).ok())
                .is_some_and(|d| d.mode() & 0o002 != 0);
            if !socket.explicit
                && shared_dir
                && let Ok(m) = std::fs::symlink_metadata(path)
                && m.uid() != me
                && m.uid() != 0
            {
                tried.push((
                    path,
                    io::Error::other(format!(
                        "skipped: owned by uid {}, neither you nor root",
                        m.uid()
                    )),
                ));
                continue;
            }
            match UnixStream::connect(path) {
                Ok(s) => {
                    let r = BufReader::new(s.try_clone()?);
                    return Ok(Conn { w: s, r });
                }
                Err(e) => tried.push((path, e)),
            }
        }
        let denied = tried
            .iter()
            .any(|(_, e)| e.kind() == io::ErrorKind::PermissionDenied);
        let mut msg = String::from("joblogctl: cannot connect to joblogd; tried:");
        for (path, e) in &tried {
            msg.push_str(&format!("\n  {}: {e}", path.display()));
        }
        msg.push_str(if socket.explicit {
            "\n  (given by --socket or JOBLOGD_SOCKET; no other path is tried)"
        } else {
            "\n  (the per-user default, then the systemd units' socket)"
        });
        if denied {
            msg.push_str(
                "\nhint: your user may not open a socket that exists: add it to the socket's \
                 group (`usermod -aG joblog $USER`, then log in again), or run as that group",
            );
        }
        msg.push_str(
            "\nhint: start the daemon (`systemctl start joblogd.socket` for the system one, \
             or `joblogd` for your own), or point --socket / JOBLOGD_SOCKET at its socket",
        );
        Err(Fail(3, msg))
    }

    fn send(&mut self, v: &Value) -> Result<(), Fail> {
        let mut line = serde_json::to_vec(v).map_err(|e| Fail(1, e.to_string()))?;
        line.push(b'\n');
        match self.w.write_all(&line) {
            // The daemon may have answered and closed already (a refused
            // peer gets one error line): let `reply` read that answer.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        }
    }

    fn reply(&mut self) -> Result<Value, Fail> {
        Ok(self.reply_raw()?.0)
    }

    /// The reply, and its line itself, so that records in it can be
    /// printed exactly as the daemon sent them.
    fn reply_raw(&mut self) -> Result<(Value, String), Fail> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(Fail(
                1,
                "joblogctl: the daemon closed the connection".into(),
            ));
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
        if v["ok"] == false {
            let code = v["error"]["code"].as_str().unwrap_or("error");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            return Err(Fail(1, format!("joblogd: {code}: {msg}")));
        }
        Ok((v, line))
    }

    /// Reads the start of an answer whose records come in array `key`
    /// (`{"ok":true,"count":N,"total":M,"<key>":[`), up to and including
    /// its `[`, and returns its other members; the records are then read
    /// one at a time with [`Conn::each_element`], so the whole answer (a
    /// large log's) is never held. An error reply is returned as such.
    fn answer_head(&mut self, key: &str) -> Result<Value, Fail> {
        let mut head = Vec::new();
        loop {
            let mut b = [0u8; 1];
            if self.r.read(&mut b)? == 0 {
                return Err(Fail(
                    1,
                    "joblogctl: the daemon closed the connection".into(),
                ));
            }
            head.push(b[0]);
            if b[0] == b'\n' || (b[0] == b'[' && head.starts_with(b"{\"ok\":true")) {
                break;
            }
        }
        if head.last() == Some(&b'[') {
            // Close it to read the members before the records.
            let mut text = head.clone();
            text.extend_from_slice(b"]}");
            let v: Value = serde_json::from_slice(&text)
                .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
            if v.get(key).is_some() {
                return Ok(v);
            }
            return Err(Fail(1, format!("joblogctl: bad reply: no {key}")));
        }
        let mut line = String::from_utf8_lossy(&head).into_owned();
        if !line.ends_with('\n') {
            self.r.read_line(&mut line)?;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        Err(Fail(1, format!("joblogd: {code}: {msg}")))
    }

    /// After [`Conn::answer_head`]: each element of the array, as the bytes
    /// the daemon sent (compact JSON), until its `]`. A small state machine
    /// over the socket's buffer, not `json::skim_array`, which needs the
    /// whole answer in memory.
    fn each_element(
        &mut self,
        mut each: impl FnMut(&[u8]) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let mut elem = Vec::new();
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        loop {
            let chunk = self.r.fill_buf()?;
            if chunk.is_empty() {
                return Err(Fail(
                    1,
                    "joblogctl: the daemon closed the connection in the middle of its answer"
                        .into(),
                ));
            }
            let mut used = 0;
            let mut done = false;
            for &b in chunk {
                used += 1;
                if in_string {
                    elem.push(b);
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_string = true;
                        elem.push(b);
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        elem.push(b);
                    }
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        elem.push(b);
                    }
                    b']' => {
                        done = true;
                        break;
                    }
                    b',' if depth == 0 => {
                        each(&elem)?;
                        elem.clear();
                    }
                    b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {}
                    _ => elem.push(b),
                }
            }
            self.r.consume(used);
            if done {
                if !elem.is_empty() {
                    each(&elem)?;
                }
                return Ok(());
            }
        }
    }

    fn ask(&mut self, v: Value) -> Result<Value, Fail> {
        self.send(&v)?;
        self.reply()
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let socket = Socket::resolve(cli.socket.clone());
    match run(cli.cmd, &socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn tty() -> bool {
    io::stdout().is_terminal()
}

fn bold(s: &str) -> String {
    if tty() {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Renders rows as aligned columns.
fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count()).min(60);
        }
    }
    let cell = |s: &str, w: usize| {
        let mut t: String = s.chars().take(w).collect();
        if s.chars().count() > w {
            t.pop();
            t.push('…');
        }
        format!("{t:<w$}")
    };
    let mut out = String::new();
    let head: Vec<String> = headers
        .iter()
        .zip(&widths)
        .map(|(h, w)| cell(h, *w))
        .collect();
    out.push_str(&bold(head.join("  ").trim_end()));
    out.push('\n');
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| cell(c, *w)).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A table cell: one line, no control characters (a tab or a carriage
/// return in a value would break the columns, an escape sequence the
/// terminal).
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        other => other.to_string(),
    }
}

fn run(cmd: Cmd, socket: &Socket) -> Result<(), Fail> {
    let mut out = Stdout(io::stdout().lock());
    match cmd {
        Cmd::Ping => {
            let v = Conn::open(socket)?.ask(json!({"op":"ping"}))?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            )?;
        }
        Cmd::Flush => {
            Conn::open(socket)?.ask(json!({"op":"flush"}))?;
        }
        Cmd::Clear { yes } => {
            if !yes {
                return Err(Fail(2, "joblogctl: clear archives the log and starts an empty one; run again with --yes".into()));
            }
            let v = Conn::open(socket)?.ask(json!({"op":"clear","confirm":true}))?;
            writeln!(out, "archived to {}", text(&v["archive"]))?;
        }
        Cmd::Stats {
            json: as_json,
            subject,
            worker,
            since,
            until,
            pending,
        } => {
            let mut q = json!({"op":"stats"});
            if pending {
                q["include_pending"] = json!(true);
            }
            for (k, v) in [
                ("subject", subject),
                ("worker_id", worker),
                ("since", since),
                ("until", until),
            ] {
                if let Some(v) = v {
                    q[k] = json!(v);
                }
            }
            let v = Conn::open(socket)?.ask(q)?;
            let s = &v["stats"];
            if as_json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(s).unwrap_or_default()
                )?;
            } else {
                print_stats(&mut out, s)?;
            }
        }
        Cmd::Jobs(a) => jobs(&mut out, socket, a)?,
        Cmd::RetryCandidates { urls, limit } => {
            let mut q = json!({"op":"retry_candidates"});
            if let Some(l) = limit {
                q["limit"] = json!(l);
            }
            let v = Conn::open(socket)?.ask(q)?;
            let empty = vec![];
            let cands = v["candidates"].as_array().unwrap_or(&empty);
            if urls {
                for c in cands {
                    if let Some(u) = c["url"].as_str() {
                        writeln!(out, "{u}")?;
                    }
                }
            } else {
                let headers: Vec<String> = ["video_id", "url", "stage", "retry_count", "error"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let rows: Vec<Vec<String>> = cands
                    .iter()
                    .map(|c| headers.iter().map(|h| text(&c[h])).collect())
                    .collect();
                write!(out, "{}", table(&headers, &rows))?;
            }
        }
        Cmd::ExportCsv { path } => {
            let mut c = Conn::open(socket)?;
            let v = c.ask(json!({"op":"export_csv"}))?;
            let n = v["bytes"].as_u64().unwrap_or(0) as usize;
            let mut body = vec![0u8; n];
            c.r.read_exact(&mut body)?;
            if path.as_os_str() == "-" {
                out.write_all(&body)?;
                out.flush()?;
                return Ok(());
            }
            std::fs::write(&path, &body).map_err(|e| cannot_write(&path, &e))?;
            eprintln!("wrote {n} bytes to {}", path.display());
        }
        Cmd::Log { file, ack } => log(socket, &file, ack)?,
        Cmd::Snapshot { path } => {
            let mut c = Conn::open(socket)?;
            let v = c.ask(json!({"op":"snapshot"}))?;
            let n = v["bytes"].as_u64().unwrap_or(0);
            if path.as_os_str() == "-" {
                let copied = io::copy(&mut (&mut c.r).take(n), &mut out)?;
                out.flush()?;
                if copied != n {
                    return Err(Fail(
                        1,
                        "joblogctl: the daemon closed the connection mid-snapshot".into(),
                    ));
                }
                return Ok(());
            }
            // Written aside and renamed, so PATH is never a partial copy.
            let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
            let mut f = File::create(&tmp).map_err(|e| cannot_write(&path, &e))?;
            let copied = io::copy(&mut (&mut c.r).take(n), &mut f)?;
            if copied != n {
                let _ = std::fs::remove_file(&tmp);
                return Err(Fail(
                    1,
                    "joblogctl: the daemon closed the connection mid-snapshot".into(),
                ));
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &path).map_err(|e| cannot_write(&path, &e))?;
            eprintln!(
                "wrote {} records ({n} bytes) to {}",
                v["records"],
                path.display()
            );
        }
        Cmd::Tail { follow: _, pending } => {
            let mut c = Conn::open(socket)?;
            c.ask(json!({"op":"subscribe","include_pending":pending}))?;
            let mut line = String::new();
            loop {
                line.clear();
                if c.r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                // The record as sent (see `jobs`): not through a `Value`.
                let v: std::collections::HashMap<&str, &serde_json::value::RawValue> =
                    serde_json::from_str(&line).unwrap_or_default();
                if let Some(n) = v.get("missed") {
                    eprintln!(
                        "joblogctl: missed {} records (too slow to keep up)",
                        n.get()
                    );
                    continue;
                }
                if let Some(record) = v.get("record") {
                    writeln!(out, "{}", record.get())?;
                    out.flush()?;
                }
            }
        }
    }
    Ok(())
}

/// A file joblogctl cannot write, named in the message.
fn cannot_write(path: &std::path::Path, e: &io::Error) -> Fail {
    Fail(
        1,
        format!("joblogctl: cannot write {}: {e}", path.display()),
    )
}

fn print_stats(out: &mut impl Write, s: &Value) -> io::Result<()> {
    let pct = s["success_rate"].as_f64().unwrap_or(0.0) * 100.0;
    writeln!(out, "{}", bold("Processing Report"))?;
    writeln!(out, "Total jobs:        {}", s["total_jobs"])?;
    writeln!(out, "Successful:        {} ({pct:.1}%)", s["successful"])?;
    writeln!(out, "Failed:            {}", s["failed"])?;
    match s["average_duration"].as_f64() {
        Some(d) => writeln!(out, "Average duration:  {d:.1}s")?,
        None => writeln!(out, "Average duration:  -")?,
    }
    writeln!(out, "Files created:     {}", s["total_files_created"])?;
    writeln!(out, "Retry candidates:  {}", s["retry_candidates"])?;
    for (title, key) in [("Errors", "error_types"), ("Stages", "stages")] {
        if let Some(m) = s[key].as_object().filter(|m| !m.is_empty()) {
            writeln!(out, "\n{}", bold(title))?;
            let rows: Vec<Vec<String>> = m
                .iter()
                .map(|(k, v)| vec![v.to_string(), k.clone()])
                .collect();
            write!(out, "{}", table(&["count".into(), "".into()], &rows))?;
        }
    }
    if let Some(m) = s["timings"].as_object().filter(|m| !m.is_empty()) {
        writeln!(out, "\n{}", bold("Timings (successful jobs, s)"))?;
        let headers: Vec<String> = ["stage", "count", "mean", "p50", "p95", "max"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = |v: &Value| v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_default();
        let rows: Vec<Vec<String>> = m
            .iter()
            .map(|(k, t)| {
                vec![
                    k.clone(),
                    t["count"].to_string(),
                    f(&t["mean"]),
                    f(&t["p50"]),
                    f(&t["p95"]),
                    f(&t["max"]),
                ]
            })
            .collect();
        write!(out, "{}", table(&headers, &rows))?;
    }
    Ok(())
}

fn jobs(out: &mut impl Write, socket: &Socket, a: JobsArgs) -> Result<(), Fail> {
    let mut q = json!({"op":"jobs"});
    if a.failed {
        q["success"] = json!(false);
    }
    if a.successful {
        q["success"] = json!(true);
    }
    for (k, v) in [
        ("stage", &a.stage),
        ("subject", &a.subject),
        ("video_id", &a.video),
        ("error_type", &a.error_type),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            q[k] = json!(v);
        }
    }
    // Always a string: the daemon keys a number by its JSON text, so "7"
    // finds worker 7, and "007" stays "007".
    if let Some(w) = &a.worker {
        q["worker_id"] = json!(w);
    }
    if a.latest_per_video {
        q["latest_per_video"] = json!(true);
    }
    if let Some(l) = a.limit {
        q["limit"] = json!(l);
    }
    if let Some(o) = a.offset {
        q["offset"] = json!(o);
    }
    if a.desc {
        q["order"] = json!("desc");
    }
    if let Some(s) = a.sort {
        q["sort_by"] = json!(match s {
            Sort::Duration => "processing_duration",
            Sort::LoggedAt => "logged_at",
        });
    }
    let format = a
        .format
        .unwrap_or(if tty() { Format::Table } else { Format::Ndjson });
    let mut c = Conn::open(socket)?;
    if format == Format::Csv {
        q["op"] = json!("export_csv");
        let v = c.ask(q)?;
        let n = v["bytes"].as_u64().unwrap_or(0) as usize;
        let mut body = vec![0u8; n];
        c.r.read_exact(&mut body)?;
        out.write_all(&body)?;
        return Ok(());
    }
    if let Some(f) = &a.fields {
        q["fields"] = json!(f);
    }
    c.send(&q)?;
    let head = c.answer_head("jobs")?;
    let bad = |e: joblogd::json::JsonError| Fail(1, format!("joblogctl: bad record in reply: {e}"));
    match format {
        Format::Json => {
            // As the log file prints them: Python's indent=2.
            let mut fmt = joblogd::json::Formatter::new();
            let mut text = Vec::new();
            let mut first = true;
            c.each_element(|j| {
                text.clear();
                text.extend_from_slice(if first { b"[\n  " } else { b",\n  " });
                first = false;
                fmt.pretty(j, &mut text).map_err(bad)?;
                out.write_all(&text)?;
                Ok(())
            })?;
            out.write_all(if first { b"[]\n" } else { b"\n]\n" })?;
        }
        Format::Ndjson => {
            // The records as the daemon sent them (compact, as in the
            // file): a `Value` would sort their keys and rewrite their
            // numbers (`1e2` as `100.0`, a 30-digit integer rounded).
            c.each_element(|j| {
                out.write_all(j)?;
                out.write_all(b"\n")?;
                Ok(())
            })?;
        }
        _ => {
            let headers: Vec<String> = a.fields.clone().unwrap_or_else(|| {
                [
                    "logged_at",
                    "video_id",
                    "subject",
                    "stage",
                    "success",
                    "processing_duration",
                    "error",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            });
            // A table needs every row for its widths; only the cells are
            // kept, not the records.
            let mut rows: Vec<Vec<String>> = Vec::new();
            c.each_element(|j| {
                let v: Value = serde_json::from_slice(j)
                    .map_err(|e| Fail(1, format!("joblogctl: bad record in reply: {e}")))?;
                rows.push(headers.iter().map(|h| text(&v[h])).collect());
                Ok(())
            })?;
            write!(out, "{}", table(&headers, &rows))?;
            if tty() {
                writeln!(out, "{} of {} matching", head["count"], head["total"])?;
            }
        }
    }
    Ok(())
}

/// Sends NDJSON records as they are, then (with `--ack`) a `flush`, then a
/// `ping`, whose reply proves every line before it was taken (and, after
/// the flush, durable). Error replies are read on a second thread as they
/// come, so a long file with bad lines cannot deadlock. A line the daemon
/// would take for a request (an object with a top-level `op`, or a bare
/// word) is not sent: a data file must not run `clear`. An empty line goes
/// in its place, so the daemon's line numbers stay the file's.
fn log(socket: &Socket, file: &str, ack: bool) -> Result<(), Fail> {
    let (input, size): (Box<dyn Read>, Option<u64>) = if file == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(file).map_err(|e| Fail(1, format!("joblogctl: {file}: {e}")))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    let mut c = Conn::open(socket)?;
    let mut reader = c.r;
    let errors = std::thread::spawn(move || -> (u64, Option<Value>) {
        let mut rejected = 0;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return (rejected, None),
                Ok(_) => {}
            }
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if v["ok"] == false {
                rejected += 1;
                eprintln!(
                    "line {}: {}: {}",
                    v["line"],
                    v["error"]["code"].as_str().unwrap_or("?"),
                    v["error"]["message"].as_str().unwrap_or("")
                );
            } else if v.get("version").is_some() {
                // The closing ping: every line before it was taken.
                return (rejected, Some(v));
            }
        }
    });
    let progress = io::stderr().is_terminal() && size.is_some_and(|s| s > 1 << 20);
    let mut input = BufReader::with_capacity(1 << 16, input);
    let (mut lines, mut sent, mut last_pct) = (0u64, 0u64, 101u64);
    let (mut skipped, mut blank) = (0u64, 0u64);
    let mut buf = Vec::new();
    // The daemon went away mid-file (stopped, restarted): say how far the
    // file got, not just "Broken pipe".
    let gone = |lines: u64, e: io::Error| {
        Fail(
            1,
            format!(
                "joblogctl: the daemon closed the connection after {lines} records were sent ({e}); \
                 those not confirmed may not be logged: check with `joblogctl jobs`, or send the rest again"
            ),
        )
    };
    loop {
        buf.clear();
        let n = input.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        if !buf.ends_with(b"\n") {
            buf.push(b'\n');
        }
        if is_request(&buf) {
            skipped += 1;
            eprintln!(
                "line {}: a request (a top-level \"op\" or a bare word), not a record: not sent",
                lines + skipped + blank
            );
            c.w.write_all(b"\n").map_err(|e| gone(lines, e))?;
            sent += n as u64;
            continue;
        }
        if buf.trim_ascii().is_empty() {
            blank += 1;
        } else {
            lines += 1;
        }
        c.w.write_all(&buf).map_err(|e| gone(lines, e))?;
        sent += n as u64;
        if progress && let Some(total) = size {
            let pct = sent * 100 / total.max(1);
            if pct != last_pct {
                eprint!("\r{pct:3}% {lines} records");
                last_pct = pct;
            }
        }
    }
    if progress {
        eprintln!();
    }
    if ack {
        c.w.write_all(b"{\"op\":\"flush\"}\n")?;
    }
    c.w.write_all(b"{\"op\":\"ping\"}\n")?;
    c.w.shutdown(std::net::Shutdown::Write)?;
    let (rejected, closing) = errors
        .join()
        .map_err(|_| Fail(1, "joblogctl: reader failed".into()))?;
    if closing.is_none() {
        return Err(Fail(
            1,
            "joblogctl: the daemon closed the connection before confirming".into(),
        ));
    }
    let logged = lines.saturating_sub(rejected);
    let how = if ack { "logged (on disk)" } else { "logged" };
    match (rejected, skipped) {
        (0, 0) => eprintln!("{how} {logged} records"),
        (r, 0) => eprintln!("{how} {logged} records, {r} rejected"),
        (r, s) => eprintln!("{how} {logged} records, {r} rejected, {s} requests not sent"),
    }
    if rejected + skipped > 0 {
        return Err(Fail(
            1,
            format!("joblogctl: {} lines not logged", rejected + skipped),
        ));
    }
    Ok(())
}

/// Would the daemon take this line for a request rather than a record?
/// (A leading byte order mark is ignored, as the daemon ignores it.)
fn is_request(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if joblogd::protocol::bare_word(line).is_some() {
        return true;
    }
    let mut fields = Vec::new();
    // An object that does not even skim as one is sent, and refused.
    joblogd::json::skim_object(line, &mut fields)
        && fields.iter().any(|(k, _)| {
            joblogd::index::string_bytes(&line[k.clone()]).is_some_and(|s| *s == *b"op")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_hold_no_control_characters() {
        assert_eq!(text(&json!("a\tb\r\nc\u{1b}[31m")), "a b  c [31m");
        assert_eq!(text(&json!(null)), "");
        assert_eq!(text(&json!(1.5)), "1.5");
    }
}
