//! The shipped setup, end to end: the daemon runs as a system user with
//! the ExecStart= arguments, UMask= and StateDirectoryMode= of
//! systemd/joblogd.service, and root, a worker in the daemon's group and an
//! outsider, each a real user, get what README's "Running under systemd"
//! promises them: root and the worker may log, read and clear; nobody else
//! may connect or read the file.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{TempDir, add_system_user, bin, files_containing, read_log};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const CTL: &str = env!("CARGO_BIN_EXE_joblogctl");
/// The PATH other users run with: root's may point into /root (pyenv),
/// which they cannot enter.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Names unlikely to clash with tests/access.rs (joblogd-test…) or the
/// host's users.
const DAEMON: &str = "jl-daemon";
const WORKER: &str = "jl-worker";
const OUTSIDER: &str = "jl-outsider";

/// What the test takes from systemd/joblogd.service.
struct Unit {
    /// ExecStart=, split on whitespace.
    exec_start: Vec<String>,
    umask: u32,
    state_dir_mode: u32,
}

impl Unit {
    fn read() -> Unit {
        let text = fs::read_to_string(format!("{REPO}/systemd/joblogd.service")).unwrap();
        let setting = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| panic!("joblogd.service has no {key}"))
        };
        Unit {
            exec_start: setting("ExecStart=")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            umask: octal(&setting("UMask=")),
            state_dir_mode: octal(&setting("StateDirectoryMode=")),
        }
    }

    /// ExecStart= with the binary under test and the unit's directories
    /// moved to `run` (RuntimeDirectory=) and `state` (StateDirectory=).
    fn command_line(&self, run: &Path, state: &Path) -> Vec<String> {
        assert_eq!(self.exec_start[0], "/usr/local/bin/joblogd");
        self.exec_start
            .iter()
            .map(|a| {
                if a == "/usr/local/bin/joblogd" {
                    bin().to_owned()
                } else if let Some(rest) = a.strip_prefix("/run/joblogd") {
                    format!("{}{rest}", run.display())
                } else if let Some(rest) = a.strip_prefix("/var/lib/joblogd") {
                    format!("{}{rest}", state.display())
                } else {
                    a.clone()
                }
            })
            .collect()
    }
}

fn octal(s: &str) -> u32 {
    u32::from_str_radix(s, 8).unwrap_or_else(|e| panic!("{s:?} is not octal: {e}"))
}

/// The value after the option `name` in a command line.
fn flag<'a>(args: &'a [String], name: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("ExecStart= has no {name}: {args:?}"));
    &args[i + 1]
}

fn stdout_of(cmd: &mut Command) -> String {
    let o = cmd.output().expect("run");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn both(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A real user, and how `setpriv` gives a process its groups.
struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
    /// `id -G`: primary and supplementary gids.
    groups: Vec<u32>,
    /// `--init-groups` where initgroups(3) gives `groups`, else `--groups=…`.
    groups_flag: String,
}

impl User {
    fn lookup(name: &'static str) -> User {
        let id = |flag: &str| -> Vec<u32> {
            let out = stdout_of(Command::new("id").args([flag, name]));
            out.split_whitespace()
                .map(|n| {
                    n.parse().unwrap_or_else(|_| {
                        panic!("user {name} was not created: `id {flag}` said {out:?}")
                    })
                })
                .collect()
        };
        let (uid, gid, mut groups) = (id("-u")[0], id("-g")[0], id("-G"));
        groups.sort_unstable();
        let mut user = User {
            name,
            uid,
            gid,
            groups,
            groups_flag: "--init-groups".into(),
        };
        let out = stdout_of(&mut user.run("id", &["-G"]));
        let mut got: Vec<u32> = out
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        got.sort_unstable();
        if got != user.groups {
            eprintln!(
                "setpriv --init-groups gave {name} the groups {got:?}, not {:?}: using --groups",
                user.groups
            );
            let list: Vec<String> = user.groups.iter().map(u32::to_string).collect();
            user.groups_flag = format!("--groups={}", list.join(","));
        }
        user
    }

    fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            self.groups_flag.clone(),
        ]
    }

    /// `program args…` as this user, in a clean environment.
    fn run(&self, program: &str, args: &[&str]) -> Command {
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
}

/// The daemon user and group, a worker whose supplementary group is the
/// daemon's (`usermod -aG joblog pipeline-user`, as README says), and an
/// outsider in no such group.
fn users() -> (User, User, User) {
    let _ = Command::new("groupadd").args(["--system", DAEMON]).output();
    add_system_user(DAEMON, &["-g", DAEMON]);
    add_system_user(WORKER, &[]);
    let o = Command::new("usermod")
        .args(["-aG", DAEMON, WORKER])
        .output()
        .unwrap();
    assert!(o.status.success(), "usermod -aG: {}", both(&o));
    add_system_user(OUTSIDER, &[]);
    let (daemon, worker, outsider) = (
        User::lookup(DAEMON),
        User::lookup(WORKER),
        User::lookup(OUTSIDER),
    );
    let group = stdout_of(Command::new("getent").args(["group", DAEMON]));
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
        "{OUTSIDER}: {:?}",
        outsider.groups
    );
    (daemon, worker, outsider)
}

/// joblogd started as the daemon user with the unit's umask; SIGTERM and
/// wait when stopped or dropped (a failing assert leaks no process).
struct Running {
    child: Option<Child>,
    socket: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(user: &User, umask: u32, command_line: &[String], dir: &TempDir, n: usize) -> Running {
        let stderr = dir.join(&format!("daemon-{n}.log"));
        // The shell sets the umask (UMask=), setpriv the user and groups
        // (User=, Group=), then both exec: the child's pid is joblogd's.
        let child = Command::new("sh")
            .args(["-c", r#"umask "$1" && shift && exec "$@""#, "sh"])
            .arg(format!("{umask:04o}"))
            .arg("setpriv")
            .args(user.setpriv_args())
            .args(command_line)
            .env_clear()
            .env("PATH", PATH)
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn joblogd through sh and setpriv");
        let mut r = Running {
            child: Some(child),
            socket: PathBuf::from(flag(command_line, "--socket")),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Root may always connect.
        while UnixStream::connect(&r.socket).is_err() {
            if let Some(st) = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("joblogd exited with {st} before listening:\n{}", r.logs());
            }
            assert!(
                Instant::now() < deadline,
                "joblogd not ready:\n{}",
                r.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        r
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// A line of joblogd's /proc/<pid>/status (`Uid:`, `Umask:`), without its key.
    fn status_line(&self, key: &str) -> String {
        let pid = self.child.as_ref().expect("running").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
    }

    fn stop(mut self) -> ExitStatus {
        self.terminate().expect("running")
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child (sh and setpriv exec'd joblogd).
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().ok().flatten() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.terminate();
    }
}

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

fn video_ids(recs: &[Value]) -> Vec<&str> {
    recs.iter()
        .map(|r| r["video_id"].as_str().unwrap_or_default())
        .collect()
}

/// `clear`'s archives beside the log (`processing_log.<time>.json`).
fn archives(state: &Path) -> Vec<PathBuf> {
    files_containing(state, "processing_log.")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "processing_log.json"))
        .collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn the_shipped_setup_serves_root_workers_and_readers_and_no_one_else() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: creating the daemon's, a worker's and an outsider's users needs root");
        return;
    }
    let missing: Vec<&str> = [
        "useradd", "groupadd", "usermod", "setpriv", "getent", "python3", "jq",
    ]
    .into_iter()
    .filter(|t| {
        Command::new(t)
            .arg("--help")
            .env("PATH", PATH)
            .output()
            .is_err()
    })
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} needed (passwd, util-linux, python3, jq)",
            missing.join(", ")
        );
        return;
    }
    let unit = Unit::read();
    let (daemon, worker, outsider) = users();
    // The build tree, python3 and jq must be usable by the other users.
    for (user, program, args) in [
        (&daemon, bin(), &["--version"][..]),
        (&worker, CTL, &["--version"][..]),
        (&worker, "python3", &["-c", "pass"][..]),
        (&worker, "jq", &["--version"][..]),
    ] {
        let o = user.run(program, args).output().unwrap();
        if !o.status.success() {
            eprintln!(
                "SKIPPED: {program} cannot be run as {} (is the build directory readable by others?): {}",
                user.name,
                both(&o)
            );
            return;
        }
    }

    let dir = TempDir::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // RuntimeDirectory= (0755, the service's user) and StateDirectory=
    // (StateDirectoryMode=, the service's user and group).
    let run = dir.join("run");
    let state = dir.join("state");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    chown(&run, Some(daemon.uid), Some(daemon.gid)).unwrap();
    fs::create_dir(&state).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(unit.state_dir_mode)).unwrap();
    chown(&state, Some(daemon.uid), Some(daemon.gid)).unwrap();
    // The worker's own directory, for the CSV export.
    let out = dir.join("out");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&out, Some(worker.uid), Some(worker.gid)).unwrap();

    let command_line = unit.command_line(&run, &state);
    let file_mode = octal(flag(&command_line, "--file-mode"));
    let log = PathBuf::from(flag(&command_line, "--log-file"));
    assert_eq!(log.parent(), Some(state.as_path()), "{command_line:?}");
    let d = Running::start(&daemon, unit.umask, &command_line, &dir, 0);
    let sock = d.socket.clone();
    let sock_s = sock.to_str().unwrap().to_owned();
    assert_eq!(sock.parent(), Some(run.as_path()), "{command_line:?}");
    assert_eq!(
        d.status_line("Uid:").split_whitespace().next(),
        Some(daemon.uid.to_string().as_str())
    );
    assert_eq!(octal(&d.status_line("Umask:")), unit.umask);

    // Root: may always connect, log and clear.
    let ctl = |args: &[&str]| -> Output {
        Command::new(CTL)
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let o = ctl(&["ping"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "root ping: {}\n{}",
        both(&o),
        d.logs()
    );
    let root_records = dir.join("root.ndjson");
    fs::write(
        &root_records,
        "{\"video_id\":\"root-check\",\"success\":true}\n",
    )
    .unwrap();
    let o = ctl(&["log", root_records.to_str().unwrap(), "--ack"]);
    assert_eq!(o.status.code(), Some(0), "root log: {}", both(&o));
    let o = ctl(&["clear", "--yes"]);
    assert_eq!(o.status.code(), Some(0), "root clear: {}", both(&o));
    let root_archives = archives(&state);
    assert_eq!(root_archives.len(), 1, "{root_archives:?}");
    assert_eq!(video_ids(&read_log(&root_archives[0])), ["root-check"]);
    assert!(read_log(&log).is_empty());

    // The worker: the guide's walkthrough through the Python client.
    let script = format!("{REPO}/tests/fixtures/guide_example.py");
    let o = worker
        .run("python3", &[&script, out.to_str().unwrap()])
        .env("PYTHONPATH", format!("{REPO}/clients/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("JOBLOGD_SOCKET", &sock)
        .current_dir(&out)
        .output()
        .unwrap();
    let said = both(&o);
    assert!(
        o.status.success(),
        "guide_example.py as {WORKER}: {said}\n{}",
        d.logs()
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
    assert_eq!(archive.parent(), Some(state.as_path()), "{said}");
    assert_eq!(
        video_ids(&read_log(&archive)),
        ["abc123", "xyz789", "def456", "ghi012", "abc456"],
        "the five jobs logged before clear_log, nothing else"
    );
    assert_eq!(
        video_ids(&read_log(&log)),
        ["jkl345"],
        "the one logged after"
    );
    assert!(out.join("jobs_export.csv").exists());

    // The worker reads the files as the guide does: json.load and jq.
    let o = worker
        .run(
            "python3",
            &[
                "-c",
                "import json,sys; print(len(json.load(open(sys.argv[1]))))",
                log.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "json.load as {WORKER}: {}", both(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1");
    let live = run_recipes(&worker, &log);
    assert_eq!(
        values(recipe(&live, "count jobs by status")),
        [json!([{"status": true, "count": 1}])]
    );
    assert_eq!(recipe(&live, "URLs of failed videos"), "");
    let old = run_recipes(&worker, &archive);
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

    // The outsider: no connection, no reading.
    let o = outsider
        .run(CTL, &["--socket", &sock_s, "ping"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "ping as {OUTSIDER}: {}", both(&o));
    assert!(both(&o).contains("Permission denied"), "{}", both(&o));
    for file in [&log, &archive] {
        let o = outsider
            .run(
                "python3",
                &[
                    "-c",
                    "import json,sys; json.load(open(sys.argv[1]))",
                    file.to_str().unwrap(),
                ],
            )
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

    // The modes the unit promises.
    assert_eq!(mode(&state), unit.state_dir_mode, "the state directory");
    let meta = fs::metadata(&log).unwrap();
    assert_eq!(meta.mode() & 0o7777, file_mode, "the log file");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (daemon.uid, daemon.gid),
        "the log file's owner"
    );
    let made = archives(&state);
    assert_eq!(made.len(), 2, "root's clear and the worker's: {made:?}");
    for a in &made {
        assert_eq!(mode(a), file_mode, "{}", a.display());
        assert_eq!(
            fs::metadata(a).unwrap().gid(),
            daemon.gid,
            "{}",
            a.display()
        );
    }
    let st = d.stop();
    assert!(st.success(), "joblogd exited with {st}");

    // Restricted admins: the worker may log and read, not clear.
    let mut restricted = command_line.clone();
    restricted.extend(["--admin-uid".to_owned(), "0".to_owned()]);
    let d = Running::start(&daemon, unit.umask, &restricted, &dir, 1);
    let o = worker
        .run(
            "python3",
            &[
                "-c",
                "from joblog_client import JobLogger\n\
                 try:\n    JobLogger().clear_log()\n\
                 except PermissionError as e:\n    print(e)\n\
                 else:\n    raise SystemExit('clear_log did not raise PermissionError')\n",
            ],
        )
        .env("PYTHONPATH", format!("{REPO}/clients/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("JOBLOGD_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "clear_log as {WORKER}: {}\n{}",
        both(&o),
        d.logs()
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("--admin-uid"),
        "{}",
        both(&o)
    );
    assert_eq!(video_ids(&read_log(&log)), ["jkl345"], "not cleared");
    assert_eq!(archives(&state).len(), 2, "no archive made");
    let st = d.stop();
    assert!(st.success(), "joblogd exited with {st}");
}
