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
    /// Serve TCP on this address too, inside this network namespace.
    tcp: Option<(String, String)>,
    /// The server's port (its Unix socket's name too), and settings
    /// added to its command line.
    port: u16,
    extra: String,
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
        Self::start_with(None)
    }

    /// A server that also listens on TCP at `addr` inside the network
    /// namespace `netns` (clients in `net` may connect, without a
    /// password), besides its Unix socket.
    pub fn start_in(netns: &str, addr: &str, net: &str) -> Option<Postgres> {
        Self::start_with(Some((netns.to_string(), addr.to_string(), net.to_string())))
    }

    fn start_with(tcp: Option<(String, String, String)>) -> Option<Postgres> {
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
            tcp: tcp.as_ref().map(|(ns, addr, _)| (ns.clone(), addr.clone())),
            port: 5432,
            extra: String::new(),
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
        if let Some((_, _, net)) = &tcp {
            let hba = pg.dir.join("data/pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            text.push_str(&format!("host all all {net} trust\n"));
            std::fs::write(&hba, text).expect("pg_hba.conf");
        }
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
        let mut c = match &self.tcp {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]);
                c
            }
            None => Command::new("env"),
        };
        if let Some(u) = self.user {
            c.args(["runuser", "-u", u, "--"]);
        }
        c.arg(&exe);
        c.args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    /// Starts (again) the server, waiting until it accepts connections.
    pub fn start_again(&self) {
        let listen = self.tcp.as_ref().map_or("", |(_, addr)| addr.as_str());
        let opts = format!(
            "-c listen_addresses='{listen}' -c unix_socket_directories={} -c fsync=off \
             -c full_page_writes=off -c max_connections=40 -c port={} {}",
            self.dir.path().display(),
            self.port,
            self.extra
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

    /// A server that also takes TLS connections on 127.0.0.1 (a free
    /// port), with a certificate for `127.0.0.1` and `localhost` signed by
    /// a CA made for the test; returns the server, its TCP `--database`
    /// base (`host=127.0.0.1 port=P user=postgres dbname=joblog`) and the
    /// CA's PEM file.
    pub fn start_tls() -> Option<(Postgres, String, PathBuf)> {
        let mut pg = Self::start()?;
        let dir = pg.dir.path().to_owned();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .args(["-ec", script])
                .current_dir(&dir)
                .output()
                .expect("sh");
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=joblog-test-ca             -keyout ca.key -out ca.pem 2>/dev/null",
        );
        sh(
            "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key             -out server.csr 2>/dev/null &&             printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext &&             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial             -days 2 -extfile san.ext -out server.pem 2>/dev/null && chmod 0600 server.key",
        );
        if pg.user.is_some() {
            sh("chown postgres server.key server.pem");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        pg.stop_now();
        pg.port = port;
        pg.extra = format!(
            "-c ssl=on -c ssl_cert_file={d}/server.pem -c ssl_key_file={d}/server.key \
             -c listen_addresses=127.0.0.1",
            d = dir.display()
        );
        pg.url = format!(
            "host={} port={port} user=postgres dbname=joblog",
            dir.display()
        );
        pg.start_again();
        let tcp = format!("host=127.0.0.1 port={port} user=postgres dbname=joblog");
        Some((pg, tcp, dir.join("ca.pem")))
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
            .args(["-p", &self.port.to_string()])
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

/// Two network namespaces joined by a veth pair: a database "host"
/// (10.203.77.1) and a logging "host" (10.203.77.2), whose link can be
/// cut and healed. Removed when dropped. Needs root.
pub struct NetPair {
    pub db: String,
    pub host: String,
    link: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetPair {
    pub const DB_ADDR: &'static str = "10.203.77.1";
    pub const NET: &'static str = "10.203.77.0/30";

    /// `None` (the reason printed) when namespaces cannot be made here.
    pub fn new() -> Option<NetPair> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: network namespaces need root (CI runs as root)");
            return None;
        }
        let id = std::process::id();
        let pair = NetPair {
            db: format!("jl-db-{id}"),
            host: format!("jl-h-{id}"),
            link: format!("jlvh{id}"),
        };
        let peer = format!("jlvd{id}");
        let steps: [Vec<&str>; 10] = [
            vec!["netns", "add", &pair.db],
            vec!["netns", "add", &pair.host],
            vec![
                "link", "add", &pair.link, "netns", &pair.host, "type", "veth", "peer", "name",
                &peer, "netns", &pair.db,
            ],
            vec![
                "-n",
                &pair.db,
                "addr",
                "add",
                "10.203.77.1/30",
                "dev",
                &peer,
            ],
            vec![
                "-n",
                &pair.host,
                "addr",
                "add",
                "10.203.77.2/30",
                "dev",
                &pair.link,
            ],
            vec!["-n", &pair.db, "link", "set", "lo", "up"],
            vec!["-n", &pair.host, "link", "set", "lo", "up"],
            vec!["-n", &pair.db, "link", "set", &peer, "up"],
            vec!["-n", &pair.host, "link", "set", &pair.link, "up"],
            vec!["-n", &pair.host, "route", "show"],
        ];
        for step in &steps {
            if let Err(e) = ip(step) {
                eprintln!("SKIPPED: cannot make the test's network namespaces: {e}");
                return None;
            }
        }
        Some(pair)
    }

    /// The link goes down: packets between the two hosts are dropped.
    pub fn cut(&self) {
        ip(&["-n", &self.host, "link", "set", &self.link, "down"]).expect("cut the link");
    }

    pub fn heal(&self) {
        ip(&["-n", &self.host, "link", "set", &self.link, "up"]).expect("heal the link");
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.host]);
        let _ = ip(&["netns", "del", &self.db]);
    }
}
