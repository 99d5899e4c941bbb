//! Command line (clap, with environment fallbacks) and the validated
//! [`Config`] that owns every default and limit an operator can set; the
//! compile-time tuning constants are in [`tuning`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

mod retention;
pub(crate) mod tuning;

pub use retention::{Keep, Retention, RetentionArgs};

use crate::store::{FsyncPolicy, PageCache};

/// joblogd: appends newline-delimited JSON job records from many local
/// writers to one crash-safe JSON array file, and answers requests on the
/// same Unix socket.
#[derive(Debug, Parser)]
#[command(name = "joblogd", version, about, long_about = None)]
pub struct Args {
    /// Unix socket to listen on [default: $XDG_RUNTIME_DIR/joblogd.sock, else
    /// /tmp/joblogd-<uid>.sock].
    #[arg(long, env = "JOBLOGD_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The JSON array file records are appended to (created with its parent
    /// directories if missing).
    #[arg(
        long,
        env = "JOBLOGD_LOG_FILE",
        value_name = "PATH",
        default_value = "notes/processing_log.json"
    )]
    pub log_file: PathBuf,

    /// File mode of the socket, in octal, applied whatever the umask.
    #[arg(long, value_name = "OCTAL", default_value = "0660")]
    pub socket_mode: String,

    /// File mode of the log file and of every file written beside it
    /// (its commit sidecar, archives made by `clear`, copies set aside), in
    /// octal, applied whatever the umask, to an existing log file too at
    /// start: 0640 lets the daemon's group read the file (jq, `json.load`)
    /// and nobody else.
    #[arg(long, value_name = "OCTAL", default_value = "0640")]
    pub file_mode: String,

    /// Start even when the log file's lock cannot be shown to keep a second
    /// daemon out (NFS, SMB/CIFS, FUSE, 9p, Ceph; or a file system that
    /// grants a second flock): only if nothing else can ever start a daemon
    /// on the same file.
    #[arg(long)]
    pub allow_unlocked_fs: bool,

    /// Flush a batch this long after its first record arrived.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    pub flush_interval_ms: u64,

    /// Flush a batch once it holds this many records.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    pub batch_max_records: u64,

    /// Flush a batch once it holds this many bytes (as written to the file).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20)]
    pub batch_max_bytes: usize,

    /// High-water mark of accepted but not yet durable bytes; past it the
    /// daemon stops reading from sockets until a flush catches up.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_pending_bytes: usize,

    /// Longest accepted line; the rest of a longer one is discarded with an
    /// error reply.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_line_bytes: usize,

    /// Largest a record may be once pretty-printed, as it is stored (for
    /// `log_batch`, all its jobs together); a larger one gets
    /// `record_too_large` [default: 4 × --max-line-bytes, at most 3 GiB].
    #[arg(long, value_name = "BYTES")]
    pub max_record_bytes: Option<usize>,

    /// Connections served at once; further ones wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,

    /// `always`: fdatasync every batch before acknowledging it; `never`:
    /// leave write-back to the kernel (survives a daemon crash, not a power
    /// cut).
    #[arg(long, value_enum, default_value = "always")]
    pub fsync: FsyncPolicy,

    /// `drop`: once a batch is written back, let the kernel reuse the
    /// page-cache pages it was written through (the log is written once,
    /// rarely read; with `--fsync never` the write-back is started at once,
    /// not waited for); `keep`: leave them cached.
    #[arg(long, value_enum, value_name = "POLICY", default_value = "drop")]
    pub page_cache: PageCache,

    /// At shutdown, how long connected clients get to finish before they are
    /// cut off (their records read so far are still written).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub shutdown_timeout_ms: u64,

    /// Users allowed to connect (checked with SO_PEERCRED), comma-separated
    /// uids [default: the daemon's own uid].
    #[arg(long, value_name = "UID,…", value_delimiter = ',')]
    pub allow_uid: Vec<u32>,

    /// Groups allowed to connect (primary or supplementary), comma-separated
    /// gids [default: the socket file's group].
    #[arg(long, value_name = "GID,…", value_delimiter = ',')]
    pub allow_gid: Vec<u32>,

    /// Users allowed to `clear`, comma-separated uids [default: everyone
    /// allowed to connect; clear archives the file, it deletes nothing].
    /// Given this or --admin-gid, only those (and root) may clear.
    #[arg(long, value_name = "UID,…", value_delimiter = ',')]
    pub admin_uid: Vec<u32>,

    /// Groups (primary or supplementary) allowed to `clear`, comma-separated
    /// gids [default: everyone allowed to connect].
    #[arg(long, value_name = "GID,…", value_delimiter = ',')]
    pub admin_gid: Vec<u32>,

    /// Add `"peer": {"pid": …, "uid": …}` to every record, to trace which
    /// worker wrote what.
    #[arg(long)]
    pub stamp_peer: bool,

    /// Write the metrics (as `joblogctl metrics` prints them) to this file
    /// every --metrics-interval-ms, for node_exporter's textfile collector:
    /// a `.prom` file in its --collector.textfile.directory. Replaced
    /// atomically (written beside it, then renamed), mode 0644; removed at
    /// a clean stop.
    #[arg(long, env = "JOBLOGD_METRICS_TEXTFILE", value_name = "PATH")]
    pub metrics_textfile: Option<PathBuf>,

    /// How often --metrics-textfile is written.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub metrics_interval_ms: u64,

    #[command(flatten)]
    pub retention: RetentionArgs,

    /// Test seam: a file whose first word injects a disk fault into every
    /// flush (`enospc`, `torn`, `fsync`, `panic`; `cut [N]` cuts the file
    /// to N bytes just before one write). For the fault-injection tests.
    #[arg(long, value_name = "PATH", hide = true)]
    pub fault_file: Option<PathBuf>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub log_file: PathBuf,
    pub socket_mode: u32,
    pub file_mode: u32,
    pub allow_unlocked_fs: bool,
    pub flush_interval: Duration,
    pub batch_max_records: u64,
    pub batch_max_bytes: usize,
    pub max_pending_bytes: usize,
    pub max_line_bytes: usize,
    /// See [`Args::max_record_bytes`]; the default already applied.
    pub max_record_bytes: usize,
    pub max_connections: usize,
    pub fsync: FsyncPolicy,
    pub page_cache: PageCache,
    pub shutdown_timeout: Duration,
    pub fault_file: Option<PathBuf>,
    /// Explicit lists; empty means the defaults decided at bind time.
    pub allow_uid: Vec<u32>,
    pub allow_gid: Vec<u32>,
    pub admin_uid: Vec<u32>,
    pub admin_gid: Vec<u32>,
    pub stamp_peer: bool,
    /// Where the metrics are written for node_exporter, made absolute.
    pub metrics_textfile: Option<PathBuf>,
    pub metrics_interval: Duration,
    pub retention: Retention,
}

/// A setting that cannot work; fatal at start, names the flag.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Upper bound of `--max-line-bytes`: a line is held whole in memory.
const MAX_LINE_LIMIT: usize = 1 << 30;

/// Upper bound of `--max-record-bytes`. Record offsets within a chunk (at
/// most 1 MiB of earlier records plus one admitted record or `log_batch`)
/// are u32, so an admitted record must stay well under 4 GiB.
const MAX_RECORD_LIMIT: usize = 3 << 30;

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes with the
/// terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// Where the shipped systemd units put the socket (`ListenStream=` in
/// `systemd/joblogd.socket`; a test holds the two together). `joblogctl`
/// tries it after the per-user default, as `systemctl` and `journalctl`
/// reach the system instance without being told.
pub const SYSTEM_SOCKET: &str = "/run/joblogd/joblogd.sock";

/// `$XDG_RUNTIME_DIR/joblogd.sock`, else `/tmp/joblogd-<uid>.sock`. Shared
/// with `joblogctl` and the Python client, which resolve it the same way.
pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("joblogd.sock"),
        // SAFETY: getuid cannot fail and has no preconditions.
        None => PathBuf::from(format!("/tmp/joblogd-{}.sock", unsafe { libc::getuid() })),
    }
}

/// A file mode given in octal (`0660`, `0o660`), at most `0777`.
fn octal_mode(flag: &str, text: &str, example: &str) -> Result<u32, ConfigError> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            ConfigError(format!(
                "--{flag} {text}: expected an octal mode such as {example}"
            ))
        })
}

/// `--file-mode`: the daemon must read and write its file, and nobody
/// else may write it (anyone could then rewrite the log).
fn file_mode(text: &str) -> Result<u32, ConfigError> {
    let mode = octal_mode("file-mode", text, "0640")?;
    if mode & 0o600 != 0o600 {
        return Err(ConfigError(format!(
            "--file-mode {text}: the daemon's own user must be able to read and write the file (0600 at least)"
        )));
    }
    if mode & 0o002 != 0 {
        return Err(ConfigError(format!(
            "--file-mode {text}: a log every user may write is one anyone can rewrite; \
             give readers the group instead (0640)"
        )));
    }
    Ok(mode)
}

/// `--max-record-bytes`, or its default: 4 × `--max-line-bytes`, at most
/// [`MAX_RECORD_LIMIT`].
fn max_record_bytes(given: Option<usize>, max_line: usize) -> Result<usize, ConfigError> {
    match given {
        None => Ok(max_line.saturating_mul(4).min(MAX_RECORD_LIMIT)),
        Some(n) if n < max_line || n > MAX_RECORD_LIMIT => Err(ConfigError(format!(
            "--max-record-bytes ({n}) must be at least --max-line-bytes ({max_line}) and at most {MAX_RECORD_LIMIT} (3 GiB)"
        ))),
        Some(n) => Ok(n),
    }
}

/// `--metrics-textfile`: absolute (the daemon's working directory must not
/// matter), and a `.prom` file, the only ones node_exporter's textfile
/// collector reads: any other name would be written and never scraped.
fn textfile(path: &std::path::Path) -> Result<PathBuf, ConfigError> {
    if path.extension().is_none_or(|e| e != "prom") {
        return Err(ConfigError(format!(
            "--metrics-textfile {}: node_exporter's textfile collector reads only files ending \
             in .prom (e.g. /var/lib/prometheus/node-exporter/joblogd.prom)",
            path.display()
        )));
    }
    std::path::absolute(path).map_err(|e| {
        ConfigError(format!(
            "--metrics-textfile {}: cannot make it absolute: {e}",
            path.display()
        ))
    })
}

impl Config {
    /// Checks and converts raw arguments.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag and what is wrong with it.
    pub fn from_args(a: Args) -> Result<Config, ConfigError> {
        let socket = a.socket.unwrap_or_else(default_socket);
        if socket.as_os_str().len() > SUN_PATH_MAX {
            return Err(ConfigError(format!(
                "--socket {}: path is {} bytes, longer than the {SUN_PATH_MAX} a Unix socket allows",
                socket.display(),
                socket.as_os_str().len()
            )));
        }
        let socket_mode = octal_mode("socket-mode", &a.socket_mode, "0660")?;
        let file_mode = file_mode(&a.file_mode)?;
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(ConfigError(format!("--{name} must be greater than 0")))
            } else {
                Ok(())
            }
        };
        positive("flush-interval-ms", a.flush_interval_ms)?;
        positive("batch-max-records", a.batch_max_records)?;
        positive("batch-max-bytes", a.batch_max_bytes as u64)?;
        positive("max-line-bytes", a.max_line_bytes as u64)?;
        positive("max-connections", a.max_connections as u64)?;
        positive("metrics-interval-ms", a.metrics_interval_ms)?;
        let metrics_textfile = a.metrics_textfile.as_deref().map(textfile).transpose()?;
        if a.max_pending_bytes < a.batch_max_bytes {
            return Err(ConfigError(format!(
                "--max-pending-bytes ({}) must be at least --batch-max-bytes ({})",
                a.max_pending_bytes, a.batch_max_bytes
            )));
        }
        if a.max_line_bytes > MAX_LINE_LIMIT {
            return Err(ConfigError(format!(
                "--max-line-bytes ({}) must be at most {MAX_LINE_LIMIT} (1 GiB)",
                a.max_line_bytes
            )));
        }
        let max_record_bytes = max_record_bytes(a.max_record_bytes, a.max_line_bytes)?;
        if a.max_pending_bytes > u32::MAX as usize {
            return Err(ConfigError(format!(
                "--max-pending-bytes ({}) must be at most {}",
                a.max_pending_bytes,
                u32::MAX
            )));
        }
        // Absolute from here on: `ping` tells clients (whose working
        // directory differs) which file this is, and the daemon's own
        // working directory then cannot matter.
        let log_file = std::path::absolute(&a.log_file).map_err(|e| {
            ConfigError(format!(
                "--log-file {}: cannot make it absolute: {e}",
                a.log_file.display()
            ))
        })?;
        Ok(Config {
            socket,
            log_file,
            socket_mode,
            file_mode,
            allow_unlocked_fs: a.allow_unlocked_fs,
            flush_interval: Duration::from_millis(a.flush_interval_ms),
            batch_max_records: a.batch_max_records,
            batch_max_bytes: a.batch_max_bytes,
            max_pending_bytes: a.max_pending_bytes,
            max_line_bytes: a.max_line_bytes,
            max_record_bytes,
            max_connections: a.max_connections,
            fsync: a.fsync,
            page_cache: a.page_cache,
            shutdown_timeout: Duration::from_millis(a.shutdown_timeout_ms),
            fault_file: a.fault_file,
            allow_uid: a.allow_uid,
            allow_gid: a.allow_gid,
            admin_uid: a.admin_uid,
            admin_gid: a.admin_gid,
            stamp_peer: a.stamp_peer,
            metrics_textfile,
            metrics_interval: Duration::from_millis(a.metrics_interval_ms),
            retention: a.retention.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["joblogd"];
        v.extend_from_slice(args);
        Config::from_args(Args::try_parse_from(v).expect("clap accepts"))
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&["--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(c.socket_mode, 0o660);
        assert_eq!(c.file_mode, 0o640);
        assert_eq!(c.flush_interval, Duration::from_millis(200));
        assert_eq!(c.max_line_bytes, 16 << 20);
        assert_eq!(c.max_record_bytes, 64 << 20);
        let c = parse(&["--socket", "/tmp/x.sock", "--max-line-bytes", "1073741824"]).unwrap();
        assert_eq!(c.max_record_bytes, 3 << 30, "4 × the line limit, capped");
        assert_eq!(c.max_connections, 1024);
    }

    #[test]
    fn rejects_bad_values_naming_the_flag() {
        let e = parse(&["--socket-mode", "999"]).unwrap_err();
        assert!(e.0.contains("--socket-mode"));
        for bad in ["0888", "0440", "0666"] {
            let e = parse(&["--socket", "/tmp/x", "--file-mode", bad]).unwrap_err();
            assert!(e.0.contains("--file-mode"), "{bad}: {}", e.0);
        }
        let long = format!("/tmp/{}", "s".repeat(120));
        let e = parse(&["--socket", &long]).unwrap_err();
        assert!(e.0.contains("--socket"));
        let e = parse(&["--socket", "/tmp/x", "--max-pending-bytes", "10"]).unwrap_err();
        assert!(e.0.contains("--max-pending-bytes"));
        let e = parse(&["--socket", "/tmp/x", "--max-line-bytes", "1073741825"]).unwrap_err();
        assert!(e.0.contains("--max-line-bytes"));
        assert!(parse(&["--socket", "/tmp/x", "--max-line-bytes", "1073741824"]).is_ok());
        for bad in ["1000", "3221225473"] {
            let e = parse(&["--socket", "/tmp/x", "--max-record-bytes", bad]).unwrap_err();
            assert!(e.0.contains("--max-record-bytes"), "{bad}: {}", e.0);
        }
        assert!(parse(&["--socket", "/tmp/x", "--max-record-bytes", "16777216"]).is_ok());
        let e = parse(&["--socket", "/tmp/x", "--metrics-textfile", "/tmp/m.txt"]).unwrap_err();
        assert!(e.0.contains("--metrics-textfile"), "{}", e.0);
        let e = parse(&["--socket", "/tmp/x", "--metrics-interval-ms", "0"]).unwrap_err();
        assert!(e.0.contains("--metrics-interval-ms"), "{}", e.0);
        let c = parse(&["--socket", "/tmp/x", "--metrics-textfile", "m.prom"]).unwrap();
        assert!(c.metrics_textfile.is_some_and(|p| p.is_absolute()));
        assert_eq!(c.metrics_interval, Duration::from_secs(5));
    }
}
