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

mod conn;
mod jobs;
mod log;
mod output;
mod stats;

use conn::*;
use jobs::*;
use log::*;
use output::*;
use stats::*;

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
