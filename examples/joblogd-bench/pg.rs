//! The PostgreSQL server of section 9: Debian's binaries
//! (`/usr/lib/postgresql/*/bin`, the newest), a fresh cluster made by
//! `initdb` in a directory of its own, listening only on a Unix socket in
//! that directory. [`Cluster`] stops the server and removes the directory
//! when dropped, so a failed run leaves neither behind.
//!
//! The server keeps its default settings, `fsync` and
//! `synchronous_commit` on: the forwarder is measured against a durable
//! database, as it would meet one, and so is COPY. (tests/central/pg.rs
//! starts the same kind of cluster for the tests, with fsync off for speed;
//! the bench cannot import test code.) As root, the server's programs run
//! as the `postgres` user, which PostgreSQL requires.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::other;

/// The settings that decide how durable (and how fast) the server is,
/// shown in the report.
const SHOWN_SETTINGS: &str =
    "'fsync','synchronous_commit','full_page_writes','wal_level','shared_buffers','max_wal_size'";

/// A running cluster; stopped and removed on drop.
pub(crate) struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    /// Run the server's programs as this user (when the bench is root).
    user: Option<&'static str>,
    started: bool,
    /// `--database` for joblogctl: the socket directory, as libpq pairs.
    pub(crate) url: String,
}

/// The newest `/usr/lib/postgresql/VERSION/bin` holding `initdb` and
/// `pg_ctl`.
fn binaries() -> io::Result<PathBuf> {
    let missing = || {
        other(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
             `apt-get install postgresql` (Debian's package) and run again",
        )
    };
    let entries = fs::read_dir("/usr/lib/postgresql").map_err(|_| missing())?;
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e
                .file_name()
                .to_str()?
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).ok_or_else(missing)
}

/// The process's stdout, or an error with its stderr.
fn checked(out: Output, what: &str) -> io::Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    Err(other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )))
}

impl Cluster {
    /// Makes a cluster in `dir` (which must not exist), starts it and
    /// creates the database `joblog`.
    pub(crate) fn start(dir: &Path) -> io::Result<Cluster> {
        let bin = binaries()?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        fs::create_dir(dir)?;
        let mut c = Cluster {
            url: format!("host={} user=postgres dbname=joblog", dir.display()),
            dir: dir.to_owned(),
            bin,
            user: root.then_some("postgres"),
            started: false,
        };
        if root {
            let out = Command::new("chown").arg("postgres").arg(dir).output();
            checked(out?, "chown postgres (is there a postgres user?)")?;
        }
        let data = c.data();
        let out = c.run(
            "initdb",
            &[
                "-D",
                &data,
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        checked(out, "initdb")?;
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories={}",
            dir.display()
        );
        let log = dir.join("server.log").display().to_string();
        let out = c.run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &opts, "-l", &log, "-t", "120", "-w", "start",
            ],
        )?;
        c.started = true;
        if let Err(e) = checked(out, "pg_ctl start") {
            let tail = fs::read_to_string(&log).unwrap_or_default();
            return Err(other(format!("{e}; server log:\n{tail}")));
        }
        c.psql_on("postgres", "CREATE DATABASE joblog")?;
        Ok(c)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of the server's programs (as `postgres` when root).
    fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        let exe = self.bin.join(program);
        let mut c = match self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        c.args(args)
            .output()
            .map_err(|e| other(format!("cannot run {}: {e}", exe.display())))
    }

    /// `psql` of the same version, as the bench's user, on database `db`:
    /// the rows of `sql`, `|`-separated (several statements in `sql` run
    /// in one transaction, as `-c` sends them).
    pub(crate) fn psql_on(&self, db: &str, sql: &str) -> io::Result<String> {
        let out = self
            .psql_command(db, sql)
            .output()
            .map_err(|e| other(format!("cannot run psql: {e}")))?;
        checked(out, &format!("psql -c {sql:?}"))
    }

    /// The `psql` command of [`Cluster::psql_on`], to run (and time) as
    /// it is.
    pub(crate) fn psql_command(&self, db: &str, sql: &str) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-U", "postgres", "-d", db, "-c", sql]);
        for v in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
            "PGSERVICE",
        ] {
            c.env_remove(v);
        }
        c
    }

    /// [`Cluster::psql_on`] the `joblog` database.
    pub(crate) fn psql(&self, sql: &str) -> io::Result<String> {
        self.psql_on("joblog", sql)
    }

    /// One number from `sql`.
    pub(crate) fn number(&self, sql: &str) -> io::Result<u64> {
        let out = self.psql(sql)?;
        out.parse()
            .map_err(|e| other(format!("{sql}: {out:?} is not a number: {e}")))
    }

    /// An empty `joblog` database in place of the last run's (whose
    /// gigabytes would otherwise stay on the disk and in the cache).
    pub(crate) fn fresh_database(&self) -> io::Result<()> {
        self.psql_on("postgres", "DROP DATABASE IF EXISTS joblog")?;
        self.psql_on("postgres", "CREATE DATABASE joblog")?;
        Ok(())
    }

    /// "PostgreSQL 15.14" and the settings that bear on durability and
    /// speed, as the server reports them.
    pub(crate) fn describe(&self) -> io::Result<(String, String)> {
        let version = self.psql("SHOW server_version")?;
        let settings = self.psql(&format!(
            "SELECT string_agg(n || ' ' || current_setting(n), ', ' ORDER BY n) \
             FROM unnest(ARRAY[{SHOWN_SETTINGS}]) AS n"
        ))?;
        Ok((format!("PostgreSQL {version}"), settings))
    }

    /// The postmaster's process id (the first line of `postmaster.pid`).
    fn postmaster(&self) -> io::Result<u32> {
        let text = fs::read_to_string(self.dir.join("data/postmaster.pid"))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| other("postmaster.pid holds no process id"))
    }

    /// The server's CPU so far, in seconds: the postmaster's own and that
    /// of the children it reaped (backends that ended), and that of its
    /// live children (background processes, backends still running). A
    /// child reaped between the postmaster's figures and the list of its
    /// children would count in neither, so the reading is taken again
    /// until the postmaster's stay the same across it.
    pub(crate) fn cpu_seconds(&self) -> io::Result<f64> {
        let pm = self.postmaster()?;
        for _ in 0..100 {
            let before = proc_stat(pm)?;
            let live: f64 = children(pm)
                .into_iter()
                .filter_map(|c| proc_stat(c).ok())
                .map(|s| s.own)
                .sum();
            let after = proc_stat(pm)?;
            if after.reaped == before.reaped {
                return Ok(after.own + after.reaped + live);
            }
        }
        Err(other(
            "the server's processes kept ending while their CPU was read",
        ))
    }

    /// Waits (up to 10 s) until no backend of the `joblog` database is
    /// left and every child that ended was reaped: a backend's CPU shows
    /// in the postmaster's `cutime` only once it is reaped, a moment after
    /// its client exits; while it ends (its command line already gone,
    /// or a zombie) its own figures are no longer whole.
    pub(crate) fn wait_backends_gone(&self) -> io::Result<()> {
        let pm = self.postmaster()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while children(pm).into_iter().any(ending_or_backend) {
            if Instant::now() > deadline {
                return Err(other(
                    "a backend of database joblog was still running after 10 s",
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

/// Whether process `pid` is a backend of the `joblog` database, or is
/// ending (no command line left: past freeing its memory, or a zombie).
fn ending_or_backend(pid: u32) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c.is_empty() || c.starts_with(b"postgres: postgres joblog"),
        // Gone already: the postmaster reaped it.
        Err(_) => false,
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            // Immediate: the cluster is thrown away, so no shutdown
            // checkpoint writes out gigabytes first.
            let data = self.data();
            let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// CPU of a process from `/proc/PID/stat`, in seconds.
pub(crate) struct ProcCpu {
    /// utime + stime.
    pub(crate) own: f64,
    /// cutime + cstime: its children that ended and were waited for.
    pub(crate) reaped: f64,
}

pub(crate) fn proc_stat(pid: u32) -> io::Result<ProcCpu> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) from the
    // third on: utime, stime, cutime and cstime are the 14th to 17th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| other(format!("bad /proc/{pid}/stat")))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ProcCpu {
        own: (ticks(11) + ticks(12)) as f64 / hz,
        reaped: (ticks(13) + ticks(14)) as f64 / hz,
    })
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .and_then(|pp| pp.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}
