//! What systemd does with the shipped units, checked from the host: the
//! state after boot, socket activation on the first connection, the
//! hardening applied to the running process, `systemctl reload` after a
//! rotation, `systemctl stop` and reactivation, and poweroff. One function
//! per step, in the order the test runs them; each leaves the container
//! as the next expects it.

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::container::Container;
use crate::shipped::{
    Target, User, both, owner, setting, shipped_unit, status_line, stdout, video_ids,
};
use crate::util::{read_log, wait_until};

/// A boot that ended `degraded` is no failure of joblogd's (its units are
/// checked after this): say which units failed and go on.
pub(super) fn note_degraded(c: &Container, state: &str) {
    if state == "degraded" {
        eprintln!(
            "note: the container booted degraded (a unit of the host's /usr failed; joblogd's are checked below):\n{}",
            both(&c.systemctl(&["--no-pager", "--failed"]))
        );
    }
}

/// Booted: the socket listens, enabled through sockets.target, with the
/// unit's mode, owner and group; the service waits for its first
/// connection, so there is no log yet. sysusers made the unit's user.
pub(super) fn socket_listens_and_service_waits(c: &Container, target: &Target) {
    let daemon = &target.users.daemon;
    let log = &target.log;
    assert_eq!(
        stdout(&c.systemctl(&["is-active", "joblogd.socket"])),
        "active"
    );
    assert_eq!(
        stdout(&c.systemctl(&["is-enabled", "joblogd.socket"])),
        "enabled"
    );
    assert_eq!(
        stdout(&c.systemctl(&["is-active", "joblogd.service"])),
        "inactive"
    );
    assert_eq!(
        stdout(&c.systemctl(&["is-active", "systemd-sysusers.service"])),
        "active",
        "sysusers ran with the entry installed"
    );
    assert_eq!(
        owner(&target.socket),
        (0o660, 0, daemon.gid),
        "SocketMode=, SocketUser=, SocketGroup="
    );
    assert!(
        !log.exists(),
        "nothing has started joblogd yet, so there is no log"
    );
}

/// Root may always connect; the first connection starts the service,
/// which takes the socket systemd passed rather than binding its own.
pub(super) fn first_connection_starts_the_service(c: &Container, target: &Target) {
    let o = target.ctl(&["ping"]);
    assert_eq!(o.status.code(), Some(0), "root ping: {}", both(&o));
    let pong: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pong["log_file"], "/var/lib/joblogd/processing_log.json");
    assert_eq!(
        stdout(&c.systemctl(&["is-active", "joblogd.service"])),
        "active"
    );
    let journal = stdout(&c.exec(
        "journalctl",
        &["-b", "-u", "joblogd.service", "-o", "cat", "--no-pager"],
    ));
    assert!(
        journal.contains("socket=/run/joblogd/joblogd.sock activated=true"),
        "joblogd took the socket systemd passed:\n{journal}"
    );
}

/// The running service as the unit describes it: its user and group,
/// UMask=, no new privileges, a system call filter, no capabilities, its
/// own mount, network and UTS namespaces, LimitNOFILE=. `main_pid` is
/// systemd's MainPID (the container's pid).
pub(super) fn service_is_hardened(c: &Container, main_pid: &str, daemon: &User) {
    let pid = c.host_pid(main_pid);
    let ids = |key: &str| -> Vec<u32> {
        status_line(pid, key)
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(ids("Uid:"), [daemon.uid; 4], "User=");
    assert_eq!(ids("Gid:"), [daemon.gid; 4], "Group=");
    assert_eq!(
        status_line(pid, "Umask:"),
        setting(&shipped_unit("joblogd.service"), "UMask=")
    );
    assert_eq!(status_line(pid, "NoNewPrivs:"), "1", "NoNewPrivileges=");
    assert_eq!(status_line(pid, "Seccomp:"), "2", "SystemCallFilter=");
    assert_eq!(
        status_line(pid, "CapBnd:"),
        "0000000000000000",
        "CapabilityBoundingSet="
    );
    assert_eq!(status_line(pid, "CapEff:"), "0000000000000000");
    for (ns, directive) in [
        ("mnt", "ProtectSystem= and friends"),
        ("net", "PrivateNetwork="),
        ("uts", "ProtectHostname="),
    ] {
        assert_ne!(
            fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            fs::read_link(format!("/proc/{}/ns/{ns}", c.pid1)).unwrap(),
            "{directive}: joblogd has a {ns} namespace of its own"
        );
    }
    limit_nofile_applied(pid);
}

/// CAP_SYS_RESOURCE (linux/capability.h; not in the libc crate).
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process's capability bounding set (the sandbox's, which
/// systemd in the container inherits) has CAP_SYS_RESOURCE.
fn has_cap_sys_resource() -> bool {
    u64::from_str_radix(&status_line(std::process::id() as i32, "CapBnd:"), 16)
        .is_ok_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// LimitNOFILE= on the host process `pid`, soft and hard, as far as this
/// sandbox lets systemd raise it.
fn limit_nofile_applied(pid: i32) {
    // LimitNOFILE=: raising the hard limit needs CAP_SYS_RESOURCE; where
    // the sandbox's bounding set lacks it, systemd sets the nearest limit
    // it can (setrlimit_closest), the host's hard limit.
    let unit_nofile: u64 = setting(&shipped_unit("joblogd.service"), "LimitNOFILE=")
        .parse()
        .unwrap();
    let mut host = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut host) };
    let expected = if has_cap_sys_resource() {
        unit_nofile
    } else {
        unit_nofile.min(host.rlim_max)
    };
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile: Vec<u64> = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .unwrap()
        .split_whitespace()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(nofile, [expected, expected], "LimitNOFILE=\n{limits}");
    if expected != unit_nofile {
        eprintln!(
            "note: LimitNOFILE={unit_nofile} applied as {expected}: this sandbox's capability \
             bounding set has no CAP_SYS_RESOURCE and its hard limit is {}",
            host.rlim_max
        );
    }
}

/// `systemctl reload` after a rotation (README's logrotate recipe): the
/// same process (`main_pid`) starts a new file at the path, with the
/// unit's mode and owner; the rotated one is complete.
pub(super) fn reload_after_rotation(c: &Container, target: &Target, main_pid: &str) {
    let daemon = &target.users.daemon;
    let (state_dir, log) = (&target.state_dir, &target.log);
    let rotated = state_dir.join("processing_log.json.1");
    fs::rename(log, &rotated).unwrap();
    let o = c.systemctl(&["reload", "joblogd.service"]);
    assert!(o.status.success(), "systemctl reload: {}", both(&o));
    // The reload is over when joblogd has checked the path (READY=1).
    wait_until("joblogd's SIGHUP: log file checked.", || {
        stdout(&c.exec(
            "journalctl",
            &["-b", "-u", "joblogd.service", "-o", "cat", "--no-pager"],
        ))
        .contains("SIGHUP: log file checked.")
    });
    assert!(log.exists(), "the log file made again after reload");
    assert_eq!(
        c.property("joblogd.service", "MainPID"),
        main_pid,
        "reload is not a restart"
    );
    assert_eq!(video_ids(&read_log(&rotated)), ["jkl345"]);
    target.root_logs("after-reload");
    assert_eq!(video_ids(&read_log(log)), ["after-reload"]);
    assert_eq!(owner(log), (0o640, daemon.uid, daemon.gid));
}

/// `systemctl stop`: a clean exit; the socket stays, and the next
/// connection starts the service again, a new process (not `main_pid`)
/// on the same file.
pub(super) fn stop_then_reactivation(c: &Container, target: &Target, main_pid: &str) {
    let log = &target.log;
    let o = c.systemctl(&["stop", "joblogd.service"]);
    assert!(o.status.success(), "systemctl stop: {}", both(&o));
    assert_eq!(c.property("joblogd.service", "ActiveState"), "inactive");
    assert_eq!(c.property("joblogd.service", "Result"), "success");
    assert_eq!(c.property("joblogd.service", "ExecMainStatus"), "0");
    assert_eq!(
        stdout(&c.systemctl(&["is-active", "joblogd.socket"])),
        "active"
    );
    assert_eq!(video_ids(&read_log(log)), ["after-reload"]);
    let o = target.ctl(&["ping"]);
    assert_eq!(o.status.code(), Some(0), "ping after stop: {}", both(&o));
    let pong: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pong["records"], 1, "{pong}");
    assert_eq!(
        stdout(&c.systemctl(&["is-active", "joblogd.service"])),
        "active"
    );
    assert_ne!(c.property("joblogd.service", "MainPID"), main_pid);
}

/// Poweroff: systemd stops the service and PID 1 exits; the log keeps
/// what it held.
pub(super) fn poweroff(c: &mut Container, target: &Target) {
    let log = &target.log;
    let o = c.systemctl(&["poweroff"]);
    assert!(o.status.success(), "systemctl poweroff: {}", both(&o));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.alive() {
        assert!(
            Instant::now() < deadline,
            "systemd did not power off in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let console = c.console.text();
    assert!(
        console.contains("Stopped joblogd.service"),
        "the service stopped at poweroff:\n{console}"
    );
    assert_eq!(video_ids(&read_log(log)), ["after-reload"]);
}
