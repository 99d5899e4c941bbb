//! A real PostgreSQL server for a test: Debian's binaries, a cluster made
//! by `initdb` in the test's temp dir, listening only on a Unix socket in
//! that dir, stopped when dropped. As root the server runs as the
//! `postgres` user (PostgreSQL refuses to run as root).

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::util::TempDir;

pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    /// Run the server's programs as this user (as root).
    user: Option<&'static str>,
    /// `--database` for joblogctl.
    pub url: String,
}

fn binaries() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

impl Postgres {
    /// A new server with an empty database `joblog`; `None` (with the
    /// reason printed) when PostgreSQL is not installed here.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = binaries() else {
            eprintln!(
                "SKIPPED: PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
                 .ci/run installs Debian's postgresql package"
            );
            return None;
        };
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let user = root.then_some("postgres");
        let dir = TempDir::new();
        if root {
            let ok = Command::new("chown")
                .args(["postgres", &dir.path().display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "chown the cluster's dir to postgres (does the user exist?)"
            );
        }
        let pg = Postgres {
            url: format!("host={} user=postgres dbname=joblog", dir.path().display()),
            dir,
            bin,
            user,
        };
        let data = pg.data();
        let out = pg.run(
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
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again();
        let out = pg.psql_on("postgres", "CREATE DATABASE joblog");
        assert!(out.contains("CREATE DATABASE") || out.is_empty(), "{out}");
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
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
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Starts (again) the server, waiting until it accepts connections.
    pub fn start_again(&self) {
        let opts = format!(
            "-c listen_addresses='' -c unix_socket_directories={} -c fsync=off \
             -c full_page_writes=off -c max_connections=40",
            self.dir.path().display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let out = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server at once, as a crash or a lost host would.
    pub fn stop_now(&self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn psql_on(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `sql` in the `joblog` database; its rows, `|`-separated.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on("joblog", sql)
    }

    /// A single number from `sql`.
    pub fn count(&self, sql: &str) -> i64 {
        let out = self.psql(sql);
        out.parse()
            .unwrap_or_else(|e| panic!("{sql}: {out:?} is not a number: {e}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop_now();
    }
}
