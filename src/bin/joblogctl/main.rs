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

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

mod archive;
mod conn;
mod database;
mod export;
mod forward;
mod jobs;
mod log;
mod metrics;
mod output;
mod pg;
mod report;
mod retry;
mod snapshot;
mod stats;
mod status;
mod tail;
mod when;

use conn::*;
use export::*;
use jobs::*;
use log::*;
use output::*;
use retry::*;
use snapshot::*;
use stats::*;
use tail::*;

/// Talk to a running joblogd.
#[derive(Debug, Parser)]
#[command(
    name = "joblogctl",
    version,
    about = "Query and control joblogd, the job log daemon: statistics, jobs, retry candidates, \
             exports, following new records, and forwarding them to a central PostgreSQL",
    long_about = None
)]
struct Cli {
    /// The daemon's socket [default: the first that answers of
    /// $XDG_RUNTIME_DIR/joblogd.sock (else /tmp/joblogd-<uid>.sock) and the
    /// systemd units' /run/joblogd/joblogd.sock].
    #[arg(long, global = true, env = "JOBLOGD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    /// The central PostgreSQL: `forward` ships records to it, and `stats`,
    /// `report`, `jobs`, `retry-candidates` and `export-csv` answer from it, over
    /// every host's records. A URL (postgresql://user@host/db) or libpq
    /// key=value pairs.
    #[arg(long, global = true, env = "JOBLOGD_DATABASE", value_name = "URL")]
    database: Option<String>,

    /// Answer stats, report, jobs, retry-candidates and export-csv over
    /// this log file (an archive, a copy) instead of asking the daemon:
    /// read-only, with the daemon's own query code.
    // (An id of its own: `log`'s positional argument is `file`.)
    #[arg(
        long = "file",
        id = "log_file",
        global = true,
        value_name = "LOG",
        conflicts_with = "database"
    )]
    file: Option<PathBuf>,

    /// Colour and bold on a terminal: auto follows NO_COLOR,
    /// CLICOLOR_FORCE and TERM=dumb.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,

    /// Never page a long table on a terminal (else $PAGER, or less -FRX).
    #[arg(long, global = true)]
    no_pager: bool,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Program {
    Joblogctl,
    Joblogd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
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
    Stats(StatsArgs),
    /// An HTML report to open in a browser: the headline figures,
    /// successes and failures over time, errors by type and stage,
    /// timings, subjects, workers and the newest failures.
    Report(report::ReportArgs),
    /// List jobs, filtered, sorted and paged.
    Jobs(JobsArgs),
    /// Videos whose latest attempt failed and may be retried, newest first.
    RetryCandidates {
        /// One URL per line, for a retry loop.
        #[arg(long)]
        urls: bool,
        /// At most this many, newest first.
        #[arg(long)]
        limit: Option<usize>,
        /// table|json|ndjson|csv [default: table on a terminal, else ndjson].
        #[arg(short = 'o', long, value_enum)]
        format: Option<Format>,
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
    /// Is the daemon alive? Counters and the log file, as JSON.
    Ping,
    /// A short summary for a human: up since, socket, log file, records,
    /// problems.
    Status,
    /// The daemon's counters and gauges in Prometheus's text format (what
    /// joblogd --metrics-textfile writes for node_exporter).
    Metrics,
    /// Shell completions for joblogctl (`joblogctl completions bash >
    /// /etc/bash_completion.d/joblogctl`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// A man page in roff, for joblogctl or for the daemon (`joblogctl man
    /// joblogd > /usr/local/share/man/man8/joblogd.8`).
    Man {
        #[arg(value_enum, default_value_t = Program::Joblogctl)]
        program: Program,
    },
    /// Show the last matching records (-n), and with -f the new ones as
    /// they arrive.
    Tail(TailArgs),
    /// Ship every durable record to a central PostgreSQL, exactly once
    /// (a long-running forwarder, one per host; needs --database).
    Forward(forward::ForwardArgs),
}

#[derive(Debug, clap::Args)]
struct StatsArgs {
    /// Print the stats object as JSON (-o json).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// table (the report) | json (indented) | ndjson (one line) [default:
    /// table]; the records themselves as CSV are export-csv's.
    #[arg(short = 'o', long, value_enum)]
    format: Option<Format>,
    #[command(flatten)]
    filter: StatsFilters,
    /// Count records accepted but not yet written too (a crash would
    /// take them away); without it, only records in the file.
    #[arg(long)]
    pending: bool,
}

#[derive(Debug, clap::Args)]
struct JobsArgs {
    #[command(flatten)]
    filter: Filters,
    /// At most this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Skip this many matching records first.
    #[arg(long)]
    offset: Option<usize>,
    /// Newest (or largest) first.
    #[arg(short = 'r', long, visible_alias = "reverse")]
    desc: bool,
    /// Sort by processing duration or by logged_at [default: the log's order].
    #[arg(long, value_enum)]
    sort: Option<Sort>,
    /// Comma-separated fields to show.
    #[arg(long, value_delimiter = ',')]
    fields: Option<Vec<String>>,
    /// table|json|ndjson|csv [default: table on a terminal, else ndjson].
    #[arg(short = 'o', long, value_enum)]
    format: Option<Format>,
}

#[derive(Debug, clap::Args)]
struct TailArgs {
    /// How many of the last matching records to show.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: u64,
    /// Then keep following new records, like `journalctl -f`.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Follow records as they are accepted, before they are written (a
    /// crash could take them away), as NDJSON, unfiltered; without it,
    /// once in the file.
    #[arg(long, requires = "follow")]
    pending: bool,
    #[command(flatten)]
    filter: Filters,
    /// Comma-separated fields to show.
    #[arg(long, value_delimiter = ',')]
    fields: Option<Vec<String>>,
    /// table|json|ndjson|csv [default: table on a terminal, else ndjson].
    #[arg(short = 'o', long, value_enum)]
    format: Option<Format>,
}

/// The filters `stats` and `report` take (the daemon's `stats` filters).
#[derive(Debug, clap::Args)]
struct StatsFilters {
    /// Only records of this subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only records of this worker_id.
    #[arg(long, value_name = "ID")]
    worker: Option<String>,
    /// Only records logged at or after WHEN: an ISO local time, today,
    /// yesterday, now, or a time ago (-1h, 30m ago, 2 days ago).
    #[arg(long, value_name = "WHEN", value_parser = when::parse_when, allow_hyphen_values = true)]
    since: Option<String>,
    /// Only records logged before WHEN (as --since).
    #[arg(long, value_name = "WHEN", value_parser = when::parse_when, allow_hyphen_values = true)]
    until: Option<String>,
}

impl StatsFilters {
    /// The filters given, as (request key, word for a reader, value).
    fn given(self) -> Vec<(&'static str, &'static str, String)> {
        [
            ("subject", "subject", self.subject),
            ("worker_id", "worker", self.worker),
            ("since", "since", self.since),
            ("until", "until", self.until),
        ]
        .into_iter()
        .filter_map(|(key, label, v)| Some((key, label, v?)))
        .collect()
    }
}

/// The record filters `jobs` and `tail` share.
#[derive(Debug, Default, clap::Args)]
struct Filters {
    /// Only failed jobs.
    #[arg(long, conflicts_with = "successful")]
    failed: bool,
    /// Only successful jobs.
    #[arg(long)]
    successful: bool,
    /// Only records at this stage.
    #[arg(long)]
    stage: Option<String>,
    /// Only records of this subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only records of this worker_id.
    #[arg(long, value_name = "ID")]
    worker: Option<String>,
    /// Only records of this video_id.
    #[arg(long, value_name = "ID")]
    video: Option<String>,
    /// Only failed records whose error type (the error's text before its
    /// first ':') is this.
    #[arg(long)]
    error_type: Option<String>,
    /// Only records logged at or after WHEN: an ISO local time, today,
    /// yesterday, now, or a time ago (-1h, 30m ago, 2 days ago).
    #[arg(long, value_name = "WHEN", value_parser = when::parse_when, allow_hyphen_values = true)]
    since: Option<String>,
    /// Only records logged before WHEN (as --since).
    #[arg(long, value_name = "WHEN", value_parser = when::parse_when, allow_hyphen_values = true)]
    until: Option<String>,
    /// Only the newest record of each video.
    #[arg(long)]
    latest_per_video: bool,
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
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // JOBLOGD_DATABASE in the environment (the forwarder's unit sets it)
    // does not turn the daemon's commands away; --database given does.
    let given = matches.value_source("database") == Some(clap::parser::ValueSource::CommandLine);
    set_color(cli.color);
    let mut socket = Socket::resolve(cli.socket.clone());
    if let Some(url) = &cli.database {
        match &cli.cmd {
            Cmd::Forward(_) => {}
            Cmd::Stats(_)
            | Cmd::Report(_)
            | Cmd::Jobs(_)
            | Cmd::RetryCandidates { .. }
            | Cmd::ExportCsv { .. } => {
                socket.database = Some(url.clone());
            }
            _ if !given => {}
            _ => {
                eprintln!(
                    "joblogctl: --database answers stats, report, jobs, retry-candidates and \
                     export-csv (and is where forward ships to); this command talks to the \
                     daemon: drop --database"
                );
                return ExitCode::from(2);
            }
        }
    }
    if let Some(path) = &cli.file {
        match &cli.cmd {
            Cmd::Stats(_)
            | Cmd::Report(_)
            | Cmd::Jobs(_)
            | Cmd::RetryCandidates { .. }
            | Cmd::ExportCsv { .. } => socket.file = Some(path.clone()),
            _ => {
                eprintln!(
                    "joblogctl: --file answers stats, report, jobs, retry-candidates and \
                     export-csv over a log file; this command talks to the daemon: drop --file"
                );
                return ExitCode::from(2);
            }
        }
    }
    set_pager(!cli.no_pager);
    match run(cli.cmd, &socket, cli.database.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(code)
        }
    }
}

fn run(cmd: Cmd, socket: &Socket, database: Option<&str>) -> Result<(), Fail> {
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
            if v["removed"] == true {
                writeln!(
                    out,
                    "cleared; the archive {} was removed at once (--keep-archives)",
                    text(&v["archive"])
                )?;
            } else {
                writeln!(out, "archived to {}", text(&v["archive"]))?;
            }
        }
        Cmd::Stats(a) => stats(&mut out, socket, a)?,
        Cmd::Report(a) => report::report(&mut out, socket, a)?,
        Cmd::Status => status::status(&mut out, socket)?,
        Cmd::Metrics => metrics::metrics(&mut out, socket)?,
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "joblogctl", &mut out);
        }
        Cmd::Man { program } => {
            // A daemon's page is in section 8, a command's in 1.
            let (cmd, section) = match program {
                Program::Joblogctl => (Cli::command(), "1"),
                Program::Joblogd => (joblogd::config::Args::command(), "8"),
            };
            clap_mangen::Man::new(cmd)
                .section(section)
                .render(&mut out)?;
        }
        // A table on a terminal goes through the pager, as journalctl's.
        Cmd::Jobs(a) if paged(a.format) => paging(out, |mut o| jobs(&mut o, socket, a))?,
        Cmd::Jobs(a) => jobs(&mut out, socket, a)?,
        Cmd::RetryCandidates {
            urls,
            limit,
            format,
        } if !urls && paged(format) => paging(out, |mut o| {
            retry_candidates(&mut o, socket, false, limit, format)
        })?,
        Cmd::RetryCandidates {
            urls,
            limit,
            format,
        } => retry_candidates(&mut out, socket, urls, limit, format)?,
        Cmd::ExportCsv { path } => export_csv(&mut out, socket, &path)?,
        Cmd::Log { file, ack } => log(socket, &file, ack)?,
        Cmd::Snapshot { path } => snapshot(&mut out, socket, &path)?,
        // Followed output is never paged (a pager would hold it back).
        Cmd::Tail(a) if !a.follow && paged(a.format) => {
            paging(out, |mut o| tail(&mut o, socket, a))?
        }
        Cmd::Tail(a) => tail(&mut out, socket, a)?,
        Cmd::Forward(a) => forward::forward(socket, database, a)?,
    }
    Ok(())
}

/// Whether output in `format` (the default when not given) goes through
/// the pager: a table on a terminal.
fn paged(format: Option<Format>) -> bool {
    tty() && format.is_none_or(|f| f == Format::Table)
}

/// Runs `show` writing into the pager (`out` if none could be started).
fn paging<W: Write>(
    mut out: Stdout<W>,
    show: impl FnOnce(&mut dyn Write) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let mut pager = Pager::start();
    let res = match pager.input() {
        Some(input) => show(&mut Stdout(input)),
        None => show(&mut out),
    };
    pager.wait();
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_hold_no_control_characters() {
        assert_eq!(
            text(&json!("a\tb\r\nc\u{1b}[31m\u{7}\u{9b}\u{202e}é")),
            "a\\tb\\r\\nc\\u001b[31m\\u0007\\u009b\\u202eé"
        );
        assert_eq!(text(&json!(null)), "");
        assert_eq!(text(&json!(1.5)), "1.5");
    }
}
