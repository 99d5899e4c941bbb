//! Machine facts for the report's header and JSON: CPUs, memory, kernel,
//! the temp dir's file system, the load average, and which source the
//! daemon binary was probably built from.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use serde_json::{Value, json};

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Which source the daemon binary probably came from: the commit of the
/// crate's work tree, files changed since, and the binary's age. Read-only
/// git (no optional index lock).
pub(crate) fn daemon_provenance(bin: &Path) -> String {
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
    // The bench's own sources (examples/joblogd-bench/) are outside these
    // paths: changing the bench is not a change to the daemon.
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
    .map(|l| l.trim().to_owned())
    .collect();
    let built = fs::metadata(bin).and_then(|m| m.modified()).ok();
    let age = built
        .and_then(|t| t.elapsed().ok())
        .map_or_else(|| "?".into(), |d| format!("{:.0} s", d.as_secs_f64()));
    // A binary older than the last commit to the daemon's sources is not
    // the daemon the header names.
    let last_commit = git(&[
        "log",
        "-1",
        "--format=%ct",
        "--",
        "src",
        "Cargo.toml",
        "Cargo.lock",
    ])
    .and_then(|t| t.parse::<u64>().ok());
    let built_at = built
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let stale = match (built_at, last_commit) {
        (Some(b), Some(c)) if b < c => {
            "; WARNING: the binary is older than the last commit to the daemon's sources (rebuild it)"
        }
        _ => "",
    };
    format!(
        "work tree at {head}; uncommitted daemon sources: {}; binary built {age} ago{stale}",
        if dirty.is_empty() {
            "none".to_owned()
        } else {
            dirty.join(", ")
        }
    )
}

pub(crate) fn machine_info(dir: &Path) -> (String, Value) {
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
