//! The shipped setup, end to end: the daemon runs as a system user with
//! the ExecStart= arguments, UMask= and StateDirectoryMode= of
//! systemd/joblogd.service, and root, a worker in the daemon's group and an
//! outsider, each a real user, get what README's "Running under systemd"
//! promises them (tests/shipped/ checks it): root and the worker may log,
//! read and clear; nobody else may connect or read the file.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::shipped::{
    PATH, Target, User, archives, check_shipped_setup, missing, setting, shipped_unit, status_line,
    users, video_ids,
};
use crate::util::{TempDir, bin, read_log};

/// What the test takes from systemd/joblogd.service.
struct Unit {
    /// ExecStart=, split on whitespace.
    exec_start: Vec<String>,
    umask: u32,
    state_dir_mode: u32,
}

impl Unit {
    fn read() -> Unit {
        let text = shipped_unit("joblogd.service");
        Unit {
            exec_start: setting(&text, "ExecStart=")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            umask: octal(&setting(&text, "UMask=")),
            state_dir_mode: octal(&setting(&text, "StateDirectoryMode=")),
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
        status_line(self.child.as_ref().expect("running").id() as i32, key)
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

#[test]
fn the_shipped_setup_serves_root_workers_and_readers_and_no_one_else() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: creating the daemon's, a worker's and an outsider's users needs root");
        return;
    }
    let missing = missing(&[
        "useradd", "groupadd", "usermod", "setpriv", "getent", "id", "python3", "jq",
    ]);
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} needed (passwd, util-linux, coreutils, python3, jq)",
            missing.join(", ")
        );
        return;
    }
    let unit = Unit::read();
    let users = users();
    let daemon = &users.daemon;
    // The build tree, python3 and jq must be usable by the other users.
    if let Some(why) = users.cannot_run(&[(daemon, bin(), &["--version"])]) {
        eprintln!("SKIPPED: {why}");
        return;
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

    let command_line = unit.command_line(&run, &state);
    let log = PathBuf::from(flag(&command_line, "--log-file"));
    assert_eq!(log.parent(), Some(state.as_path()), "{command_line:?}");
    let d = Running::start(daemon, unit.umask, &command_line, &dir, 0);
    assert_eq!(d.socket.parent(), Some(run.as_path()), "{command_line:?}");
    assert_eq!(
        d.status_line("Uid:").split_whitespace().next(),
        Some(daemon.uid.to_string().as_str())
    );
    assert_eq!(octal(&d.status_line("Umask:")), unit.umask);

    // Root, the worker running the guide, the outsider; the unit's modes.
    let target = Target {
        users: &users,
        socket: d.socket.clone(),
        runtime_dir: run.clone(),
        state_dir: state.clone(),
        daemon_state_dir: state.clone(),
        log: log.clone(),
        runtime_dir_mode: 0o755,
        state_dir_mode: unit.state_dir_mode,
        file_mode: octal(flag(&command_line, "--file-mode")),
        scratch: dir.path().to_owned(),
    };
    check_shipped_setup(&target, &|| d.logs());
    let st = d.stop();
    assert!(st.success(), "joblogd exited with {st}");

    // Restricted admins: the worker may log and read, not clear.
    let mut restricted = command_line.clone();
    restricted.extend(["--admin-uid".to_owned(), "0".to_owned()]);
    let d = Running::start(daemon, unit.umask, &restricted, &dir, 1);
    let said = target.python_refused(&users.worker, "clear_log", "PermissionError", &|| d.logs());
    assert!(said.contains("--admin-uid"), "{said}");
    assert_eq!(video_ids(&read_log(&log)), ["jkl345"], "not cleared");
    assert_eq!(archives(&state).len(), 2, "no archive made");
    let st = d.stop();
    assert!(st.success(), "joblogd exited with {st}");
}
