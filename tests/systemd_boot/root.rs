//! The container's root file system, built in the test's temp dir before
//! the boot: the mount points and the /usr merge's links, a private /etc
//! whose accounts carry the host users' ids, and README's setup (the
//! sysusers entry, the units as shipped, joblogd.socket enabled). The
//! launcher mounts the host's /usr and the built joblogd over it.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::shipped::{OUTSIDER, REPO, Users, WORKER, both, setting, shipped_unit};

/// The unit the container boots into: sockets.target, which pulls in
/// joblogd.socket once `systemctl enable` has linked it there.
const TARGET: &str = "joblogd-test.target";
/// Units of the host's /usr that would mount kernel file systems or load
/// modules in the container: masked, nothing of joblogd's needs them.
const MASKED: &[&str] = &[
    "dev-hugepages.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "proc-sys-fs-binfmt_misc.automount",
    "modprobe@.service",
];

/// `text` as the file `path`, with `mode` (not the umask's).
fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The container's root: mount points, the /usr merge's links, a private
/// /etc with the users (host ids), the shipped units and sysusers entry,
/// the test's target, joblogd.socket enabled the way README says.
pub(super) fn build_root(root: &Path, users: &Users) {
    make_skeleton(root);
    let etc = root.join("etc");
    let (user, group) = unit_user_and_group();
    write_accounts(&etc, users, &user, &group);
    write_identity(&etc);
    install_units(root, &etc);
}

/// The directories systemd and the launcher expect (each a mount point or
/// a place systemd writes to) and `/bin`, `/lib`, `/lib64`, `/sbin` as links
/// into the host's /usr, mounted later.
fn make_skeleton(root: &Path) {
    for d in [
        "", "usr", "etc", "proc", "sys", "dev", "run", "tmp", "var", "var/lib", "var/log",
        "var/tmp", "root", ".oldroot",
    ] {
        let p = root.join(d);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(root.join("var/tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    for l in ["bin", "lib", "lib64", "sbin"] {
        symlink(format!("usr/{l}"), root.join(l)).unwrap();
    }
}

/// The unit's `User=` and `Group=`, checked against what the container
/// relies on: the socket's group is the service's, and ExecStart= runs
/// the binary the launcher mounts at /usr/local/bin/joblogd.
fn unit_user_and_group() -> (String, String) {
    let service = shipped_unit("joblogd.service");
    let socket = shipped_unit("joblogd.socket");
    let user = setting(&service, "User=");
    let group = setting(&service, "Group=");
    assert_eq!(setting(&socket, "SocketGroup="), group);
    assert!(
        setting(&service, "ExecStart=").starts_with("/usr/local/bin/joblogd "),
        "the container has the built joblogd at /usr/local/bin/joblogd"
    );
    (user, group)
}

/// passwd, group, shadow and gshadow: root, the unit's user and group with
/// the host daemon user's ids, the worker (in the group, as `usermod -aG
/// joblog` makes it) and the outsider, with the host users' ids.
fn write_accounts(etc: &Path, users: &Users, user: &str, group: &str) {
    let Users {
        daemon,
        worker,
        outsider,
    } = users;
    write(
        &etc.join("passwd"),
        &format!(
            "root:x:0:0:root:/root:/bin/sh\n\
             {user}:x:{}:{}:joblogd job log daemon:/var/lib/joblogd:/usr/sbin/nologin\n\
             {WORKER}:x:{}:{}::/nonexistent:/usr/sbin/nologin\n\
             {OUTSIDER}:x:{}:{}::/nonexistent:/usr/sbin/nologin\n",
            daemon.uid, daemon.gid, worker.uid, worker.gid, outsider.uid, outsider.gid
        ),
        0o644,
    );
    // The worker is in the group as `usermod -aG joblog` makes it.
    let mut groups = format!("root:x:0:\n{group}:x:{}:{WORKER}\n", daemon.gid);
    let mut names = vec![(0, "root".to_owned()), (daemon.gid, group.to_owned())];
    for u in [worker, outsider] {
        if !names.iter().any(|(g, _)| *g == u.gid) {
            groups.push_str(&format!("{}:x:{}:\n", u.name, u.gid));
            names.push((u.gid, u.name.to_owned()));
        }
    }
    write(&etc.join("group"), &groups, 0o644);
    let shadow: String = ["root", user, WORKER, OUTSIDER]
        .iter()
        .map(|n| format!("{n}:!*:::::::\n"))
        .collect();
    write(&etc.join("shadow"), &shadow, 0o600);
    let gshadow: String = names.iter().map(|(_, n)| format!("{n}:!*::\n")).collect();
    write(&etc.join("gshadow"), &gshadow, 0o600);
}

/// What systemd reads about the machine: name service, hostname, a fresh
/// machine id, os-release.
fn write_identity(etc: &Path) {
    write(
        &etc.join("nsswitch.conf"),
        "passwd: files\ngroup: files\nshadow: files\ngshadow: files\n",
        0o644,
    );
    write(&etc.join("hostname"), "joblogd-test\n", 0o644);
    let mut id = [0u8; 16];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut id)
        .unwrap();
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    write(&etc.join("machine-id"), &format!("{id}\n"), 0o444);
    symlink("../usr/lib/os-release", etc.join("os-release")).unwrap();
}

/// README's setup: the sysusers entry, the units as shipped, enabled;
/// beside them the test's target and the masked units of the host's /usr.
fn install_units(root: &Path, etc: &Path) {
    fs::create_dir_all(etc.join("sysusers.d")).unwrap();
    fs::copy(
        format!("{REPO}/systemd/joblogd.sysusers"),
        etc.join("sysusers.d/joblogd.conf"),
    )
    .unwrap();
    let units = etc.join("systemd/system");
    fs::create_dir_all(&units).unwrap();
    for u in ["joblogd.service", "joblogd.socket"] {
        fs::copy(format!("{REPO}/systemd/{u}"), units.join(u)).unwrap();
    }
    write(
        &units.join(TARGET),
        "[Unit]\n\
         Description=joblogd test boot: sockets.target and nothing more\n\
         Requires=sockets.target\n\
         After=sockets.target\n",
        0o644,
    );
    for u in MASKED {
        symlink("/dev/null", units.join(u)).unwrap();
    }
    let o = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["enable", "joblogd.socket"])
        .output()
        .expect("systemctl --root enable");
    assert!(o.status.success(), "systemctl --root enable: {}", both(&o));
    // A link as the container sees it (absolute, into its own /etc).
    assert_eq!(
        fs::read_link(units.join("sockets.target.wants/joblogd.socket")).ok(),
        Some(PathBuf::from("/etc/systemd/system/joblogd.socket")),
        "enable linked joblogd.socket into sockets.target: {}",
        both(&o)
    );
}
