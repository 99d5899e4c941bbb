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

use std::ffi::CStr;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::shipped::{
    OUTSIDER, PATH, REPO, Target, Users, WORKER, both, check_shipped_setup, missing, owner,
    setting, shipped_unit, status_line, stdout, users, video_ids,
};
use crate::util::{TempDir, bin, read_log, wait_until};

const SYSTEMD: &str = "/lib/systemd/systemd";
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
/// Printed by the launcher just before it execs systemd: a container that
/// dies before it could not be set up here (an environmental skip), one
/// that dies after is a failure.
const EXEC_MARK: &str = "joblogd-test: exec systemd";

/// Run by `sh` in the host's namespaces: joins the test's cgroup (`$1`),
/// then unshares and runs the launcher (`$2`) as PID 1 of the new PID
/// namespace with the root (`$3`), the binary (`$4`) and the console (`$5`).
const OUTER: &str = r#"echo $$ > "$1" && shift &&
exec unshare --pid --mount --uts --ipc --cgroup --fork --kill-child --propagation private \
    sh -c "$1" joblogd-boot "$2" "$3" "$4""#;

/// The launcher: mounts the container's file systems, pivots into its root
/// and execs systemd. Every mount is in the private mount namespace and
/// goes with it; `<root>/run` and `<root>/var` stay the host's directories
/// (bound onto themselves, so systemd mounts nothing over them): the host
/// sees the socket and the state directory there.
const LAUNCHER: &str = r#"set -eu
R=$1 BIN=$2 CONSOLE=$3
mount --make-rprivate /
mount --bind "$R" "$R"
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
mount -t tmpfs -o mode=0755,nosuid,nodev,size=1m tmpfs "$R/usr/local/bin"
: > "$R/usr/local/bin/joblogd"
mount --bind "$BIN" "$R/usr/local/bin/joblogd"
mount -o remount,bind,ro "$R/usr/local/bin/joblogd"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs "$R/dev"
for n in null zero full random urandom tty; do
    : > "$R/dev/$n"
    mount --bind "/dev/$n" "$R/dev/$n"
done
: > "$R/dev/console"
mount --bind "$CONSOLE" "$R/dev/console"
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount --bind "$R/run" "$R/run"
mount --bind "$R/var" "$R/var"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
cd "$R"
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
echo "joblogd-test: exec systemd" >&2
exec env -i container=joblogd-test SYSTEMD_COLORS=0 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin \
    /lib/systemd/systemd --unit=joblogd-test.target --log-color=no
"#;

/// The cgroup v2 directory this process is in, on the host's cgroup2
/// mount (`0::` of /proc/self/cgroup under the mount's root).
fn own_cgroup2_dir() -> Result<PathBuf, String> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let own = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| format!("no cgroup v2 line in /proc/self/cgroup:\n{cgroup}"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    for line in mountinfo.lines() {
        let Some((fields, rest)) = line.split_once(" - ") else {
            continue;
        };
        if rest.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let f: Vec<&str> = fields.split_whitespace().collect();
        let (root, point) = (f[3], f[4]);
        let Some(below) = own.strip_prefix(root.trim_end_matches('/')) else {
            continue;
        };
        return Ok(Path::new(point).join(below.trim_start_matches('/')));
    }
    Err(format!(
        "no cgroup2 hierarchy is mounted on the host (/proc/self/cgroup: {own:?})"
    ))
}

/// Removes a cgroup and its children, deepest first.
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path())?;
            }
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A pseudo-terminal for the container's /dev/console (systemd writes its
/// status lines and, before journald runs, its log there; it needs a
/// terminal). The test holds the slave open, so the master never reads
/// EIO while systemd reopens the console; a thread collects the output.
struct Console {
    path: String,
    slave: Option<OwnedFd>,
    text: Arc<Mutex<Vec<u8>>>,
}

impl Console {
    fn open() -> std::io::Result<Console> {
        // SAFETY: posix_openpt, grantpt, unlockpt and ptsname_r on a
        // descriptor this function owns, with a buffer of the size given.
        let (master, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let master = <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd);
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0 as libc::c_char; 128];
            let r = libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len());
            if r != 0 {
                return Err(std::io::Error::from_raw_os_error(r));
            }
            let path = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
            (master, path)
        };
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)?;
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO: every slave closed (the container is gone).
                    Err(_) => break,
                }
            }
        });
        Ok(Console {
            path,
            slave: Some(slave.into()),
            text,
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).replace('\r', "")
    }
}

/// The booted container: `unshare`'s process, systemd's host pid, the
/// cgroup made for it. Dropping it prints systemd's view if a check
/// failed, kills PID 1 (the whole PID namespace dies with it) and removes
/// the cgroup; the mounts die with the mount namespace.
struct Container {
    unshare: Child,
    pid1: i32,
    cgroup: PathBuf,
    console: Console,
    stderr: PathBuf,
}

enum Boot {
    Up(Container),
    Skip(String),
}

impl Container {
    fn boot(root: &Path, dir: &TempDir, cgroup: PathBuf) -> Boot {
        let console = match Console::open() {
            Ok(c) => c,
            Err(e) => return Boot::Skip(format!("no pseudo-terminal for /dev/console: {e}")),
        };
        let stderr = dir.join("unshare.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", OUTER, "sh"])
            .arg(cgroup.join("cgroup.procs"))
            .arg(LAUNCHER)
            .arg(root)
            .arg(bin())
            .arg(&console.path)
            .env_clear()
            .env("PATH", PATH)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stderr).unwrap())
            .stderr(fs::File::options().append(true).open(&stderr).unwrap());
        // SAFETY: prctl(2) only, between fork and exec. The container dies
        // with this thread even if the test binary is killed: `unshare`
        // gets SIGKILL, and --kill-child passes it to PID 1.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let unshare = cmd.spawn().expect("spawn sh and unshare");
        let mut c = Container {
            pid1: 0,
            unshare,
            cgroup,
            console,
            stderr,
        };
        // systemd's host pid: unshare's child, once it has exec'd systemd.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.unshare.try_wait().ok().flatten() {
                let said = fs::read_to_string(&c.stderr).unwrap_or_default();
                if said.contains(EXEC_MARK) {
                    panic!(
                        "systemd exited at once ({st}):\n{said}\nconsole:\n{}",
                        c.console.text()
                    );
                }
                return Boot::Skip(format!(
                    "the container could not be set up here (unshare, mounts, pivot_root: {st}):\n{said}"
                ));
            }
            let pid = child_of(c.unshare.id());
            if let Some(p) = pid
                && fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|s| s.trim() == "systemd")
            {
                c.pid1 = p;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not start:\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Boot::Up(c)
    }

    /// `program args…` inside every namespace of the container.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["30", "nsenter", "--target"])
            .arg(self.pid1.to_string())
            .args(["--all", "--", program])
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .env("LANG", "C.UTF-8")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0")
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    fn systemctl(&self, args: &[&str]) -> Output {
        self.exec("systemctl", args)
    }

    /// `systemctl show -p KEY --value UNIT`.
    fn property(&self, unit: &str, key: &str) -> String {
        stdout(&self.systemctl(&["show", "-p", key, "--value", unit]))
    }

    fn alive(&mut self) -> bool {
        self.unshare.try_wait().ok().flatten().is_none()
    }

    /// Waits until the boot job is done: `is-system-running` says
    /// `running` (or `degraded`: returned, the caller decides).
    fn wait_booted(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(self.alive(), "systemd exited during boot:\n{}", self.logs());
            let state = stdout(&self.systemctl(&["is-system-running"]));
            if state == "running" || state == "degraded" {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "not booted after 30 s (is-system-running: {state:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host pid of the container's process `pid` (its NSpid).
    fn host_pid(&self, pid: &str) -> i32 {
        let ns = fs::read_link(format!("/proc/{}/ns/pid", self.pid1)).unwrap();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(host) = name.parse::<i32>() else {
                continue;
            };
            if fs::read_link(format!("/proc/{host}/ns/pid")).ok().as_ref() != Some(&ns) {
                continue;
            }
            let status = fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
            let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"));
            if nspid.and_then(|v| v.split_whitespace().last()) == Some(pid) {
                return host;
            }
        }
        panic!("no host process for the container's pid {pid}");
    }

    /// What systemd says: the output of the launcher, the units, the journal, the console.
    fn logs(&self) -> String {
        let mut s = format!(
            "--- unshare/launcher stderr:\n{}\n",
            fs::read_to_string(&self.stderr).unwrap_or_default()
        );
        if self.pid1 > 0 && Path::new(&format!("/proc/{}", self.pid1)).exists() {
            for args in [
                &[
                    "systemctl",
                    "--no-pager",
                    "--full",
                    "status",
                    "joblogd.socket",
                    "joblogd.service",
                ][..],
                &["systemctl", "--no-pager", "--failed"][..],
                &[
                    "journalctl",
                    "-b",
                    "--no-pager",
                    "-o",
                    "short-monotonic",
                    "-n",
                    "300",
                ][..],
            ] {
                let o = self.exec(args[0], &args[1..]);
                s.push_str(&format!("--- {}:\n{}\n", args.join(" "), both(&o)));
            }
        }
        let console = self.console.text();
        let tail: Vec<&str> = console.lines().rev().take(80).collect();
        s.push_str("--- console (last 80 lines):\n");
        for l in tail.into_iter().rev() {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    fn teardown(&mut self) {
        if self.alive() {
            if self.pid1 > 0 {
                // SAFETY: kill(2) of the container's init, whose parent
                // (unshare) has not reaped it: the pid is still its.
                unsafe {
                    libc::kill(self.pid1, libc::SIGKILL);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
        // The last processes of the namespace may take a moment to leave
        // the cgroup.
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = remove_cgroup(&self.cgroup) {
            if Instant::now() > deadline {
                eprintln!("could not remove {}: {e}", self.cgroup.display());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.console.slave = None;
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== systemd's view ===\n{}", self.logs());
        }
        self.teardown();
    }
}

/// The child of `pid`, from /proc/<pid>/task/<pid>/children or, without
/// it, from every process's parent pid.
fn child_of(pid: u32) -> Option<i32> {
    if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return s.split_whitespace().next().and_then(|p| p.parse().ok());
    }
    fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let p: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(p)
    })
}

/// Mount points under `dir` visible in this (the host's) mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix) || *m == prefix.trim_end_matches('/'))
        .collect()
}

/// The temp dir, removed only if nothing is mounted below it on the host
/// (the container's root holds a bind mount of /usr inside its own mount
/// namespace; if one ever leaked, removing the dir would reach into /usr).
struct Guarded(Option<TempDir>);

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let leaked = mounts_under(dir.path());
            if leaked.is_empty() {
                drop(dir);
            } else {
                eprintln!(
                    "NOT removing {}: mounted on the host: {leaked:?}",
                    dir.path().display()
                );
                std::mem::forget(dir);
            }
        }
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The container's root: mount points, the /usr merge's links, a private
/// /etc with the users (host ids), the shipped units and sysusers entry,
/// the test's target, joblogd.socket enabled the way README says.
fn build_root(root: &Path, users: &Users) {
    let Users {
        daemon,
        worker,
        outsider,
    } = users;
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
    let etc = root.join("etc");
    let service = shipped_unit("joblogd.service");
    let socket = shipped_unit("joblogd.socket");
    let user = setting(&service, "User=");
    let group = setting(&service, "Group=");
    assert_eq!(setting(&socket, "SocketGroup="), group);
    assert!(
        setting(&service, "ExecStart=").starts_with("/usr/local/bin/joblogd "),
        "the container has the built joblogd at /usr/local/bin/joblogd"
    );
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
    let mut names = vec![(0, "root".to_owned()), (daemon.gid, group.clone())];
    for u in [worker, outsider] {
        if !names.iter().any(|(g, _)| *g == u.gid) {
            groups.push_str(&format!("{}:x:{}:\n", u.name, u.gid));
            names.push((u.gid, u.name.to_owned()));
        }
    }
    write(&etc.join("group"), &groups, 0o644);
    let shadow: String = ["root", &user, WORKER, OUTSIDER]
        .iter()
        .map(|n| format!("{n}:!*:::::::\n"))
        .collect();
    write(&etc.join("shadow"), &shadow, 0o600);
    let gshadow: String = names.iter().map(|(_, n)| format!("{n}:!*::\n")).collect();
    write(&etc.join("gshadow"), &gshadow, 0o600);
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

    // README's setup: the sysusers entry, the units as shipped, enabled.
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

/// CAP_SYS_RESOURCE (linux/capability.h; not in the libc crate).
const CAP_SYS_RESOURCE: u32 = 24;

fn has_cap_sys_resource() -> bool {
    u64::from_str_radix(&status_line(std::process::id() as i32, "CapBnd:"), 16)
        .is_ok_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[test]
fn the_real_units_under_systemd_as_pid_1_serve_root_and_workers_only() {
    let started = Instant::now();
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: booting systemd in namespaces and creating users needs root");
        return;
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
        eprintln!(
            "SKIPPED: {} needed (util-linux, coreutils, passwd, python3, jq, systemd)",
            missing.join(", ")
        );
        return;
    }
    if !Path::new(SYSTEMD).is_file() {
        eprintln!("SKIPPED: no {SYSTEMD} (apt-get install systemd)");
        return;
    }
    let parent = match own_cgroup2_dir() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let users = users();
    let daemon = &users.daemon;
    // The build tree, python3 and jq must be usable by the other users.
    if let Some(why) = users.cannot_run(&[]) {
        eprintln!("SKIPPED: {why}");
        return;
    }

    let dir = Guarded(Some(TempDir::new()));
    let tmp = dir.0.as_ref().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.join("root");
    build_root(&root, &users);
    let cgroup = parent.join(
        tmp.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    );
    if let Err(e) = fs::create_dir(&cgroup) {
        eprintln!(
            "SKIPPED: cannot make the container's cgroup {}: {e}",
            cgroup.display()
        );
        return;
    }
    let mut c = match Container::boot(&root, tmp, cgroup) {
        Boot::Up(c) => c,
        Boot::Skip(why) => {
            let _ = remove_cgroup(&parent.join(tmp.path().file_name().unwrap()));
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    let state = c.wait_booted();
    let booted = started.elapsed();
    if state == "degraded" {
        eprintln!(
            "note: the container booted degraded (a unit of the host's /usr failed; joblogd's are checked below):\n{}",
            both(&c.systemctl(&["--no-pager", "--failed"]))
        );
    }

    // The unit's paths as the host sees them, and the modes it promises.
    let target = Target {
        users: &users,
        socket: root.join("run/joblogd/joblogd.sock"),
        runtime_dir: root.join("run/joblogd"),
        state_dir: root.join("var/lib/joblogd"),
        daemon_state_dir: PathBuf::from("/var/lib/joblogd"),
        log: root.join("var/lib/joblogd/processing_log.json"),
        runtime_dir_mode: 0o755,
        state_dir_mode: 0o750,
        file_mode: 0o640,
        scratch: tmp.path().to_owned(),
    };
    let (state_dir, log) = (&target.state_dir, &target.log);

    // Booted: the socket listens, enabled through sockets.target; the
    // service waits for its first connection.
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

    // Root: may always connect; the first connection starts the service.
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

    // The running service as the unit describes it.
    let main_pid = c.property("joblogd.service", "MainPID");
    let pid = c.host_pid(&main_pid);
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

    // Root, the worker running the guide, the outsider; the modes the
    // unit promises, made by systemd (StateDirectory=,
    // StateDirectoryMode=, RuntimeDirectory=) and joblogd (--file-mode).
    // On failure, the container prints systemd's view.
    check_shipped_setup(&target, &String::new);

    // `systemctl reload` after a rotation (README's logrotate recipe):
    // the daemon starts a new file at the path; the old one is complete.
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

    // `systemctl stop`: a clean exit; the socket stays, and the next
    // connection starts the service again.
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

    // Poweroff: systemd stops the service and PID 1 exits.
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
    drop(c);
    eprintln!(
        "systemd booted as PID 1 in {:.1} s; the whole test took {:.1} s",
        booted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
