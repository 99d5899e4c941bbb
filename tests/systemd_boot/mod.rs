//! The shipped units under the real service manager: systemd 252 booted as
//! PID 1 in private PID, mount, UTS, IPC and cgroup namespaces (a
//! container built in a temp dir: the host's /usr read-only, a private
//! /etc holding `systemd/joblogd.{service,socket}` unchanged and
//! `systemd/joblogd.sysusers`, the built `joblogd` at /usr/local/bin), with
//! joblogd.socket enabled as README's setup does. From the host, root, a
//! worker in the group `joblog` and an outsider, each a real user, get what
//! tests/setup.rs checks against a hand-started daemon (the same checks,
//! tests/shipped.rs): root and the worker may log, read and clear; nobody
//! else may connect or read the file. And systemd itself: socket
//! activation on the first connection, the hardening applied to the
//! running process, `systemctl reload` after a rotation, `systemctl stop`,
//! reactivation, and poweroff.
//!
//! The container's `joblog` user and group have the uid and gid of the
//! host's `jl-daemon` (the daemon user of tests/shipped.rs, whose group the
//! host's `jl-worker` is in): the kernel checks the socket's and the files'
//! modes with host ids, so the host users act as the container's.
//!
//! The test is a list of steps: `container` boots and tears down the
//! container (and reports systemd's view when a check fails), `console`
//! is its /dev/console, `root` builds its file system, `checks` holds the
//! steps that check systemd's handling of the units; the promises to the
//! users are tests/shipped/'s, shared with tests/setup.rs.

mod checks;
mod console;
mod container;
mod root;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use container::{Guarded, boot_below, own_cgroup2_dir};
use root::build_root;

use crate::shipped::{Target, Users, check_shipped_setup, missing, users};
use crate::util::TempDir;

/// systemd, as the launcher (container.rs) execs it.
const SYSTEMD: &str = "/lib/systemd/systemd";

#[test]
fn the_real_units_under_systemd_as_pid_1_serve_root_and_workers_only() {
    let started = Instant::now();
    let parent = match host_can_boot() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let users = users();
    // The build tree, python3 and jq must be usable by the other users.
    if let Some(why) = users.cannot_run(&[]) {
        eprintln!("SKIPPED: {why}");
        return;
    }

    // Declared before the container, so dropped after it: the temp dir
    // goes only once the container (and its mounts) is gone.
    let dir = Guarded(Some(TempDir::new()));
    let tmp = dir.0.as_ref().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.join("root");
    build_root(&root, &users);
    let mut c = match boot_below(&parent, &root, tmp) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let state = c.wait_booted();
    let booted = started.elapsed();
    checks::note_degraded(&c, &state);

    let target = unit_target(&users, &root, tmp);
    checks::socket_listens_and_service_waits(&c, &target);
    checks::first_connection_starts_the_service(&c, &target);
    let main_pid = c.property("joblogd.service", "MainPID");
    checks::service_is_hardened(&c, &main_pid, &users.daemon);
    // Root, the worker running the guide, the outsider; the modes the
    // unit promises, made by systemd (StateDirectory=,
    // StateDirectoryMode=, RuntimeDirectory=) and joblogd (--file-mode).
    // On failure, the container prints systemd's view.
    check_shipped_setup(&target, &String::new);
    checks::reload_after_rotation(&c, &target, &main_pid);
    checks::stop_then_reactivation(&c, &target, &main_pid);
    checks::poweroff(&mut c, &target);
    drop(c);
    eprintln!(
        "systemd booted as PID 1 in {:.1} s; the whole test took {:.1} s",
        booted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// Why this host cannot run the test (a skip, not a failure): not root,
/// a tool or systemd missing, no cgroup v2. Else the cgroup v2 directory
/// this process is in, below which the container gets its own.
fn host_can_boot() -> Result<PathBuf, String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err("booting systemd in namespaces and creating users needs root".into());
    }
    let missing = missing(&[
        "unshare",
        "nsenter",
        "pivot_root",
        "mount",
        "umount",
        "timeout",
        "setpriv",
        "useradd",
        "groupadd",
        "usermod",
        "getent",
        "id",
        "python3",
        "jq",
        "systemctl",
    ]);
    if !missing.is_empty() {
        return Err(format!(
            "{} needed (util-linux, coreutils, passwd, python3, jq, systemd)",
            missing.join(", ")
        ));
    }
    if !Path::new(SYSTEMD).is_file() {
        return Err(format!("no {SYSTEMD} (apt-get install systemd)"));
    }
    own_cgroup2_dir()
}

/// The daemon the units run, as the host sees it: the unit's paths below
/// the container's root, the modes it promises; root's records and the
/// worker's export go in the temp dir.
fn unit_target<'a>(users: &'a Users, root: &Path, tmp: &TempDir) -> Target<'a> {
    Target {
        users,
        socket: root.join("run/joblogd/joblogd.sock"),
        runtime_dir: root.join("run/joblogd"),
        state_dir: root.join("var/lib/joblogd"),
        daemon_state_dir: PathBuf::from("/var/lib/joblogd"),
        log: root.join("var/lib/joblogd/processing_log.json"),
        runtime_dir_mode: 0o755,
        state_dir_mode: 0o750,
        file_mode: 0o640,
        scratch: tmp.path().to_owned(),
    }
}
