//! Booting, entering, diagnosing and tearing down the container: the
//! shell scripts that unshare the namespaces and exec systemd as PID 1,
//! the cgroup it runs in, the [`Container`] handle (commands inside it
//! through `nsenter`, systemd's view when a check fails, a teardown that
//! leaves nothing behind) and the temp dir that is only removed when no
//! mount leaked out of the container's namespace.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::console::Console;
use crate::shipped::{PATH, both, stdout};
use crate::util::{TempDir, bin};

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
pub(super) fn own_cgroup2_dir() -> Result<PathBuf, String> {
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

/// The booted container: `unshare`'s process, systemd's host pid, the
/// cgroup made for it. Dropping it prints systemd's view if a check
/// failed, kills PID 1 (the whole PID namespace dies with it) and removes
/// the cgroup; the mounts die with the mount namespace.
pub(super) struct Container {
    unshare: Child,
    /// systemd's pid on the host.
    pub(super) pid1: i32,
    cgroup: PathBuf,
    pub(super) console: Console,
    stderr: PathBuf,
}

/// How [`Container::boot`] ended: systemd running, or why this host
/// cannot run the test (a skip, not a failure).
enum Boot {
    Up(Container),
    Skip(String),
}

/// Makes the container's cgroup below `parent` (named after the temp dir)
/// and boots the container in it. `Err`: why the test is skipped here
/// (the cgroup is removed again).
pub(super) fn boot_below(parent: &Path, root: &Path, tmp: &TempDir) -> Result<Container, String> {
    let cgroup = parent.join(
        tmp.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    );
    if let Err(e) = fs::create_dir(&cgroup) {
        return Err(format!(
            "cannot make the container's cgroup {}: {e}",
            cgroup.display()
        ));
    }
    match Container::boot(root, tmp, cgroup) {
        Boot::Up(c) => Ok(c),
        Boot::Skip(why) => {
            let _ = remove_cgroup(&parent.join(tmp.path().file_name().unwrap()));
            Err(why)
        }
    }
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
    pub(super) fn exec(&self, program: &str, args: &[&str]) -> Output {
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

    /// `systemctl args…` inside the container.
    pub(super) fn systemctl(&self, args: &[&str]) -> Output {
        self.exec("systemctl", args)
    }

    /// `systemctl show -p KEY --value UNIT`.
    pub(super) fn property(&self, unit: &str, key: &str) -> String {
        stdout(&self.systemctl(&["show", "-p", key, "--value", unit]))
    }

    /// Whether `unshare` (and so systemd, its child) is still running.
    pub(super) fn alive(&mut self) -> bool {
        self.unshare.try_wait().ok().flatten().is_none()
    }

    /// Waits until the boot job is done: `is-system-running` says
    /// `running` (or `degraded`: returned, the caller decides).
    pub(super) fn wait_booted(&mut self) -> String {
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
    pub(super) fn host_pid(&self, pid: &str) -> i32 {
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

    /// Kills PID 1 (its PID namespace dies with it), waits for `unshare`,
    /// removes the cgroup and lets the console's reader see EIO.
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
pub(super) struct Guarded(pub(super) Option<TempDir>);

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
