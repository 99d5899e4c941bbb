//! What the shipped setup promises its users, checked the same way however
//! the daemon was started: by tests/setup.rs (by hand, with the unit's
//! ExecStart=, UMask= and StateDirectoryMode=) and by tests/systemd_boot/
//! (the real units under systemd as PID 1). Root, a worker in the daemon's
//! group and an outsider, each a real host user, get what README's
//! "Running under systemd" promises them: root and the worker may log,
//! read and clear; nobody else may connect or read the file. The files
//! have the unit's modes and the daemon's owner. Also what both tests use
//! to get there: the users, running a command as one, the unit files.
//!
//! Split by concern: this file has the checks, one function per role
//! (root, the worker, the outsider) and one for the files' modes, and the
//! small helpers tests/setup.rs and tests/systemd_boot/ use too; `users`
//! makes the real users and runs commands as them; `target` is the running
//! daemon as the host sees it; `recipes` holds the guide's jq recipes and
//! what they must print.

mod recipes;
mod target;
mod users;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util::{files_containing, read_log};

pub(crate) use target::Target;
pub(crate) use users::{User, Users, users};

pub(crate) const REPO: &str = env!("CARGO_MANIFEST_DIR");
pub(crate) const CTL: &str = env!("CARGO_BIN_EXE_joblogctl");
/// The PATH other users run with: root's may point into /root (pyenv),
/// which they cannot enter.
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The daemon's user and group on the host. Names unlikely to clash with
/// tests/access.rs (joblogd-test…) or the host's users.
pub(crate) const DAEMON: &str = "jl-daemon";
/// In the daemon's group, as README's `usermod -aG joblog` makes a worker.
pub(crate) const WORKER: &str = "jl-worker";
/// In no such group.
pub(crate) const OUTSIDER: &str = "jl-outsider";

pub(crate) fn both(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// `systemd/<name>` as shipped.
pub(crate) fn shipped_unit(name: &str) -> String {
    fs::read_to_string(format!("{REPO}/systemd/{name}")).unwrap()
}

/// The first `key=value` line of a unit file, its value.
pub(crate) fn setting(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in:\n{unit}"))
}

/// The value of a /proc/<pid>/status line (`Uid:`, `Umask:`), without its key.
pub(crate) fn status_line(pid: i32, key: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// The programs of `tools` that cannot be started (not installed).
pub(crate) fn missing<'a>(tools: &[&'a str]) -> Vec<&'a str> {
    tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new(t)
                .arg("--version")
                .env("PATH", PATH)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
        .collect()
}

/// A file's mode bits, owner and group.
pub(crate) fn owner(p: &Path) -> (u32, u32, u32) {
    let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

pub(crate) fn video_ids(recs: &[Value]) -> Vec<&str> {
    recs.iter()
        .map(|r| r["video_id"].as_str().unwrap_or_default())
        .collect()
}

/// `clear`'s archives beside the log (`processing_log.<time>.json`; not
/// the log, a rotated `processing_log.json.1`, nor a sidecar `*.meta`).
pub(crate) fn archives(state: &Path) -> Vec<PathBuf> {
    files_containing(state, "processing_log.")
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n != "processing_log.json" && n.to_string_lossy().ends_with(".json")
            })
        })
        .collect()
}

/// Everything the shipped setup promises root, the worker and the
/// outsider, and the files' modes and owners, against a daemon that has
/// just started on an empty state directory. Leaves the log holding the
/// worker's last job (`jkl345`) and two archives (root's clear and the
/// worker's). `daemon_logs` goes into the failure messages.
pub(crate) fn check_shipped_setup(t: &Target, daemon_logs: &dyn Fn() -> String) {
    fs::set_permissions(&t.scratch, fs::Permissions::from_mode(0o755)).unwrap();
    let records = check_root(t, daemon_logs);
    let archive = check_worker(t, daemon_logs);
    check_outsider(t, &records, &archive, daemon_logs);
    check_modes(t);
}

/// Root may always connect, log and clear.
fn check_root(t: &Target, daemon_logs: &dyn Fn() -> String) -> PathBuf {
    let o = t.ctl(&["ping"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "root ping: {}\n{}",
        both(&o),
        daemon_logs()
    );
    let records = t.root_logs("root-check");
    let o = t.ctl(&["clear", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "root clear: {}", both(&o));
    let root_archives = archives(&t.state_dir);
    assert_eq!(root_archives.len(), 1, "{root_archives:?}");
    assert_eq!(video_ids(&read_log(&root_archives[0])), ["root-check"]);
    assert!(read_log(&t.log).is_empty());
    records
}

/// The worker: the guide's walkthrough through the Python client (logs,
/// queries, statistics, CSV, clear_log, one more job), then reading the
/// files as the guide does, json.load and jq. Returns the archive its
/// clear_log made, as the host sees it.
fn check_worker(t: &Target, daemon_logs: &dyn Fn() -> String) -> PathBuf {
    let archive = check_worker_guide(t, daemon_logs);
    recipes::check_worker_reads(&t.users.worker, &t.log, &archive);
    archive
}

/// The guide's walkthrough as the worker, in a directory of its own for
/// the CSV export: what it prints, the archive its clear_log made (as the
/// daemon names it, then as the host sees it) and the one job after it.
fn check_worker_guide(t: &Target, daemon_logs: &dyn Fn() -> String) -> PathBuf {
    let worker = &t.users.worker;
    let out = t.scratch.join("out");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&out, Some(worker.uid), Some(worker.gid)).unwrap();
    let script = format!("{REPO}/tests/fixtures/guide_example.py");
    let o = worker
        .python_client(&t.socket, &[&script, out.to_str().unwrap()])
        .current_dir(&out)
        .output()
        .unwrap();
    let said = both(&o);
    assert!(
        o.status.success(),
        "guide_example.py as {WORKER}: {said}\n{}",
        daemon_logs()
    );
    assert!(
        said.contains("Total: 5") && said.contains("Success rate: 60.0%"),
        "{said}"
    );
    let archive = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Archive: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no Archive: line: {said}"));
    assert_eq!(
        archive.parent(),
        Some(t.daemon_state_dir.as_path()),
        "as the daemon sees it: {said}"
    );
    let archive = t.state_dir.join(archive.file_name().unwrap());
    assert_eq!(
        video_ids(&read_log(&archive)),
        ["abc123", "xyz789", "def456", "ghi012", "abc456"],
        "the five jobs logged before clear_log, nothing else"
    );
    assert_eq!(
        video_ids(&read_log(&t.log)),
        ["jkl345"],
        "the one logged after"
    );
    assert!(out.join("jobs_export.csv").exists());
    archive
}

/// The outsider: no connection (so no logging, querying or clearing),
/// through joblogctl or the Python client, and no reading the files.
fn check_outsider(t: &Target, records: &Path, archive: &Path, daemon_logs: &dyn Fn() -> String) {
    let outsider = &t.users.outsider;
    let sock = t.socket.to_str().unwrap();
    for args in [
        &["ping"][..],
        &["log", records.to_str().unwrap(), "--ack"][..],
        &["jobs"][..],
        &["clear", "--yes"][..],
    ] {
        let mut argv = vec!["--socket", sock];
        argv.extend_from_slice(args);
        let o = outsider.run(CTL, &argv).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(3),
            "{args:?} as {OUTSIDER}: {}",
            both(&o)
        );
        assert!(both(&o).contains("Permission denied"), "{}", both(&o));
    }
    let said = t.python_refused(
        outsider,
        "get_all_jobs",
        "(PermissionError, ConnectionError)",
        daemon_logs,
    );
    assert!(said.contains("Permission denied"), "{said}");
    for file in [&t.log, archive] {
        let o = outsider
            .run("python3", &["-c", LOAD, file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success(), "json.load as {OUTSIDER}: {}", both(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("PermissionError"),
            "{}",
            both(&o)
        );
        let o = outsider
            .run("jq", &[".", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success(), "jq as {OUTSIDER}: {}", both(&o));
    }
    assert_eq!(
        video_ids(&read_log(&t.log)),
        ["jkl345"],
        "the outsider changed nothing"
    );
}

/// The modes the unit promises (StateDirectory=, StateDirectoryMode=,
/// RuntimeDirectory=, --file-mode), with the daemon's user and group as
/// owner of the directories, the log and the archives.
fn check_modes(t: &Target) {
    let d = &t.users.daemon;
    assert_eq!(
        owner(&t.state_dir),
        (t.state_dir_mode, d.uid, d.gid),
        "StateDirectory="
    );
    assert_eq!(
        owner(&t.runtime_dir),
        (t.runtime_dir_mode, d.uid, d.gid),
        "RuntimeDirectory="
    );
    let made = archives(&t.state_dir);
    assert_eq!(made.len(), 2, "root's clear and the worker's: {made:?}");
    // Each with its commit sidecar (`<file>.meta`), as readable as it.
    for f in std::iter::once(&t.log).chain(&made) {
        assert_eq!(owner(f), (t.file_mode, d.uid, d.gid), "{}", f.display());
        let meta = PathBuf::from(format!("{}.meta", f.display()));
        assert_eq!(
            owner(&meta),
            (t.file_mode, d.uid, d.gid),
            "{}",
            meta.display()
        );
    }
}

/// `json.load` of the file named by the first argument; prints its length.
const LOAD: &str = "import json,sys; print(len(json.load(open(sys.argv[1]))))";
