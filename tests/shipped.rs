//! What the shipped setup promises its users, checked the same way however
//! the daemon was started: by tests/setup.rs (by hand, with the unit's
//! ExecStart=, UMask= and StateDirectoryMode=) and by tests/systemd_boot.rs
//! (the real units under systemd as PID 1). Root, a worker in the daemon's
//! group and an outsider, each a real host user, get what README's
//! "Running under systemd" promises them: root and the worker may log,
//! read and clear; nobody else may connect or read the file. The files
//! have the unit's modes and the daemon's owner. Also what both tests use
//! to get there: the users, running a command as one, the unit files.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{add_system_user, files_containing, read_log};

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
/// the log, nor a rotated `processing_log.json.1`).
pub(crate) fn archives(state: &Path) -> Vec<PathBuf> {
    files_containing(state, "processing_log.")
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n != "processing_log.json" && !n.to_string_lossy().ends_with(".1"))
        })
        .collect()
}

/// A real host user, and how `setpriv` gives a process its groups.
pub(crate) struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    /// `id -G`: primary and supplementary gids, sorted.
    pub groups: Vec<u32>,
    /// `--init-groups` where initgroups(3) gives `groups`, else `--groups=…`.
    groups_flag: String,
}

impl User {
    /// None while the user does not exist (yet).
    fn lookup(name: &'static str) -> Option<User> {
        let id = |flag: &str| -> Option<Vec<u32>> {
            let o = Command::new("id").args([flag, name]).output().ok()?;
            if !o.status.success() {
                return None;
            }
            stdout(&o)
                .split_whitespace()
                .map(|n| n.parse().ok())
                .collect()
        };
        let mut groups = id("-G")?;
        groups.sort_unstable();
        Some(User {
            name,
            uid: *id("-u")?.first()?,
            gid: *id("-g")?.first()?,
            groups,
            groups_flag: "--init-groups".into(),
        })
    }

    /// `--init-groups` unless setpriv gives other groups with it.
    fn settle_groups_flag(&mut self) {
        let out = stdout(&self.run("id", &["-G"]).output().expect("run setpriv"));
        let mut got: Vec<u32> = out
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        got.sort_unstable();
        if got != self.groups {
            eprintln!(
                "setpriv --init-groups gave {} the groups {got:?}, not {:?}: using --groups",
                self.name, self.groups
            );
            let list: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            self.groups_flag = format!("--groups={}", list.join(","));
        }
    }

    /// What `setpriv` needs to act as this user (before the program).
    pub(crate) fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            self.groups_flag.clone(),
        ]
    }

    /// `program args…` as this user, in a clean environment.
    pub(crate) fn run(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("setpriv");
        c.args(self.setpriv_args())
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/nonexistent")
            .env("LC_ALL", "C.UTF-8")
            .current_dir("/")
            .stdin(Stdio::null());
        c
    }

    /// `python3 args…` as this user with the Python client importable and
    /// pointed at `socket` (`JOBLOGD_SOCKET`).
    pub(crate) fn python_client(&self, socket: &Path, args: &[&str]) -> Command {
        let mut c = self.run("python3", args);
        c.env("PYTHONPATH", format!("{REPO}/clients/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("JOBLOGD_SOCKET", socket);
        c
    }
}

/// The daemon's user and group, a worker in that group and an outsider.
pub(crate) struct Users {
    pub daemon: User,
    pub worker: User,
    pub outsider: User,
}

/// The host's `jl-daemon` with its group, `jl-worker` in that group
/// (`usermod -aG`, as README says) and `jl-outsider` in none; made if
/// missing, kept if they exist. tests/setup.rs and tests/systemd_boot.rs
/// may make them at the same moment: shadow's lock serializes the tools,
/// and a lookup that still fails is retried.
pub(crate) fn users() -> Users {
    let mut last = String::new();
    let mut usermod = String::new();
    for _ in 0..5 {
        match (
            User::lookup(DAEMON),
            User::lookup(WORKER),
            User::lookup(OUTSIDER),
        ) {
            (Some(daemon), Some(worker), Some(outsider)) if worker.groups.contains(&daemon.gid) => {
                return Users::checked(daemon, worker, outsider);
            }
            (d, w, o) => {
                last = format!(
                    "{DAEMON}: {:?}, {WORKER}: {:?}, {OUTSIDER}: {:?}",
                    d.map(|u| u.groups),
                    w.map(|u| u.groups),
                    o.map(|u| u.groups)
                );
            }
        }
        let _ = Command::new("groupadd")
            .args(["--system", DAEMON])
            .env("PATH", PATH)
            .output();
        add_system_user(DAEMON, &["-g", DAEMON]);
        add_system_user(WORKER, &[]);
        usermod = match Command::new("usermod")
            .args(["-aG", DAEMON, WORKER])
            .env("PATH", PATH)
            .output()
        {
            Ok(o) => both(&o),
            Err(e) => e.to_string(),
        };
        add_system_user(OUTSIDER, &[]);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("could not create the users: {last}\nthe last usermod -aG {DAEMON} {WORKER}: {usermod}");
}

impl Users {
    fn checked(mut daemon: User, mut worker: User, mut outsider: User) -> Users {
        let group = stdout(
            &Command::new("getent")
                .args(["group", DAEMON])
                .output()
                .expect("getent"),
        );
        let gid: u32 = group
            .split(':')
            .nth(2)
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| panic!("group {DAEMON}: {group:?}"));
        assert_eq!(daemon.gid, gid, "{DAEMON}'s primary group is {DAEMON}");
        assert!(
            worker.groups.contains(&gid),
            "{WORKER}: {:?}",
            worker.groups
        );
        assert!(
            !outsider.groups.contains(&gid),
            "{OUTSIDER} is in {DAEMON}'s group: {:?}",
            outsider.groups
        );
        for u in [&mut daemon, &mut worker, &mut outsider] {
            u.settle_groups_flag();
        }
        Users {
            daemon,
            worker,
            outsider,
        }
    }

    /// Why the test must be skipped if a user cannot run what it needs
    /// (the build tree, python3, jq): `also`, then the worker's joblogctl,
    /// python3 and jq.
    pub(crate) fn cannot_run(&self, also: &[(&User, &str, &[&str])]) -> Option<String> {
        let worker: [(&User, &str, &[&str]); 3] = [
            (&self.worker, CTL, &["--version"]),
            (&self.worker, "python3", &["-c", "pass"]),
            (&self.worker, "jq", &["--version"]),
        ];
        also.iter().chain(&worker).find_map(|(user, program, args)| {
            let o = user.run(program, args).output().unwrap();
            (!o.status.success()).then(|| {
                format!(
                    "{program} cannot be run as {} (is the build directory readable by others?): {}",
                    user.name,
                    both(&o)
                )
            })
        })
    }
}

/// A running joblogd as the host sees it, and what the unit promises there.
pub(crate) struct Target<'a> {
    pub users: &'a Users,
    /// The listening socket.
    pub socket: PathBuf,
    /// RuntimeDirectory=, the socket's directory.
    pub runtime_dir: PathBuf,
    /// StateDirectory=, as the host sees it…
    pub state_dir: PathBuf,
    /// …and as the daemon does (the paths in its replies).
    pub daemon_state_dir: PathBuf,
    /// The log file, in `state_dir`.
    pub log: PathBuf,
    /// RuntimeDirectory='s mode, StateDirectoryMode=, --file-mode.
    pub runtime_dir_mode: u32,
    pub state_dir_mode: u32,
    pub file_mode: u32,
    /// A directory for root's records and the worker's CSV export.
    pub scratch: PathBuf,
}

impl Target<'_> {
    /// `joblogctl --socket SOCKET args…` as root.
    pub(crate) fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CTL)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .output()
            .unwrap()
    }

    /// Root logs one record `{"video_id": ID, "success": true}` through
    /// `joblogctl log --ack`; returns the records file (readable by all).
    pub(crate) fn root_logs(&self, video_id: &str) -> PathBuf {
        let records = self.scratch.join("root.ndjson");
        fs::write(
            &records,
            format!("{{\"video_id\":\"{video_id}\",\"success\":true}}\n"),
        )
        .unwrap();
        fs::set_permissions(&records, fs::Permissions::from_mode(0o644)).unwrap();
        let o = self.ctl(&["log", records.to_str().unwrap(), "--ack"]);
        assert_eq!(o.status.code(), Some(0), "root log: {}", both(&o));
        records
    }

    /// `JobLogger().<call>()` through the Python client as `user`, which
    /// must raise one of `errors` (a Python exception or tuple of them);
    /// returns what was printed: the exception's type and message.
    /// `daemon_logs` goes into the failure message.
    pub(crate) fn python_refused(
        &self,
        user: &User,
        call: &str,
        errors: &str,
        daemon_logs: &dyn Fn() -> String,
    ) -> String {
        let script = format!(
            "from joblog_client import JobLogger\n\
             try:\n    JobLogger().{call}()\n\
             except {errors} as e:\n    print(type(e).__name__, e)\n\
             else:\n    raise SystemExit('{call} did not raise {errors} for {}')\n",
            user.name
        );
        let o = user
            .python_client(&self.socket, &["-c", &script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{call} through the Python client as {}: {}\n{}",
            user.name,
            both(&o),
            daemon_logs()
        );
        stdout(&o)
    }
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

    let o = worker
        .run("python3", &["-c", LOAD, t.log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "json.load as {WORKER}: {}", both(&o));
    assert_eq!(stdout(&o), "1");
    let live = run_recipes(worker, &t.log);
    assert_eq!(
        values(recipe(&live, "count jobs by status")),
        [json!([{"status": true, "count": 1}])]
    );
    assert_eq!(recipe(&live, "URLs of failed videos"), "");
    let old = run_recipes(worker, &archive);
    assert_eq!(
        values(recipe(&old, "count jobs by status")),
        [json!([{"status": false, "count": 2}, {"status": true, "count": 3}])]
    );
    assert_eq!(
        values(recipe(&old, "failed jobs with error messages")),
        [
            json!({"video_id": "xyz789", "title": "Failed Video",
                   "error": "API rate limit exceeded: 429 Too Many Requests",
                   "stage": "generating_notes"}),
            json!({"video_id": "abc456", "title": "Unreachable Video",
                   "error": "Network timeout", "stage": "fetching_transcript"}),
        ]
    );
    let avg = values(recipe(&old, "average duration of successful jobs"))[0]
        .as_f64()
        .unwrap();
    assert!((avg - 45.2).abs() < 1e-9, "average {avg}");
    assert_eq!(
        values(recipe(&old, "errors grouped by type")),
        [json!([
            {"error": "API rate limit exceeded: 429 Too Many Requests", "count": 1},
            {"error": "Network timeout", "count": 1}
        ])]
    );
    assert_eq!(
        values(recipe(&old, "jobs by worker")),
        [json!([
            {"worker": 0, "count": 2, "success": 2},
            {"worker": 1, "count": 1, "success": 0},
            {"worker": 2, "count": 2, "success": 1}
        ])]
    );
    assert_eq!(
        recipe(&old, "URLs of failed videos"),
        "https://youtu.be/xyz789\nhttps://youtu.be/abc456\n"
    );
    assert_eq!(
        values(recipe(&old, "failed jobs only"))[0]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
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
    for f in std::iter::once(&t.log).chain(&made) {
        assert_eq!(owner(f), (t.file_mode, d.uid, d.gid), "{}", f.display());
    }
}

/// `json.load` of the file named by the first argument; prints its length.
const LOAD: &str = "import json,sys; print(len(json.load(open(sys.argv[1]))))";

/// The guide's jq recipes ("Command-Line Analysis with jq"). The guide
/// writes `cat notes/processing_log.json | jq FILTER`; here `jq FILTER
/// FILE`, the same but for a failing `cat` that a pipe would hide.
const RECIPES: &[(&str, &[&str])] = &[
    ("view all jobs", &["."]),
    (
        "count jobs by status",
        &["[.[] | .success] | group_by(.) | map({status: .[0], count: length})"],
    ),
    ("failed jobs only", &["[.[] | select(.success == false)]"]),
    (
        "failed jobs with error messages",
        &[".[] | select(.success == false) | {video_id, title: .video_title, error, stage}"],
    ),
    (
        "average duration of successful jobs",
        &["[.[] | select(.success == true) | .processing_duration] | add / length"],
    ),
    (
        "errors grouped by type",
        &[
            "[.[] | select(.success == false) | .error] | group_by(.) | map({error: .[0], count: length})",
        ],
    ),
    (
        "longest processing jobs",
        &[
            "sort_by(.processing_duration) | reverse | .[0:5] | .[] | {title: .video_title, duration: .processing_duration}",
        ],
    ),
    (
        "jobs by worker",
        &[
            "group_by(.worker_id) | map({worker: .[0].worker_id, count: length, success: [.[] | select(.success == true)] | length})",
        ],
    ),
    (
        "URLs of failed videos",
        &["-r", ".[] | select(.success == false) | .url"],
    ),
    ("filter by subject", &[".[] | select(.subject == \"AI\")"]),
    (
        "timing breakdown",
        &[".[] | select(.success == true) | {title: .video_title, timings}"],
    ),
];

/// Every recipe run as `user` on `file`: each must exit 0. Returns each
/// recipe's output by name.
fn run_recipes(user: &User, file: &Path) -> Vec<(&'static str, String)> {
    RECIPES
        .iter()
        .map(|(name, args)| {
            let mut argv: Vec<&str> = args.to_vec();
            argv.push(file.to_str().unwrap());
            let o = user.run("jq", &argv).output().unwrap();
            assert!(
                o.status.success(),
                "jq recipe {name:?} as {}: {}",
                user.name,
                both(&o)
            );
            (*name, String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .collect()
}

fn recipe<'a>(outputs: &'a [(&str, String)], name: &str) -> &'a str {
    &outputs.iter().find(|(n, _)| *n == name).unwrap().1
}

/// jq's output: a stream of JSON values.
fn values(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("jq printed no JSON ({e}):\n{text}"))
}
