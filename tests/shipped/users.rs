//! The real host users the shipped setup is checked as: the daemon's user
//! (and group), a worker in that group and an outsider; made once, looked
//! up with `id`, and how a command runs as one of them (`setpriv`, a clean
//! environment). tests/setup.rs and tests/systemd_boot/ also use the daemon's
//! user and the ids to start the daemon and write the container's /etc.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{CTL, DAEMON, OUTSIDER, PATH, REPO, WORKER, both, stdout};
use crate::util::add_system_user;

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
/// missing, kept if they exist. tests/setup.rs and tests/systemd_boot/
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
