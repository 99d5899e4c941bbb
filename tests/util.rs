//! Test fixtures: a temp dir, the real `joblogd` binary on a socket in it,
//! and small clients. Every test drives the built binary
//! (`CARGO_BIN_EXE_joblogd`), never the library in-process.

#![allow(dead_code)] // each test module uses a different part

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A directory under /tmp, removed on drop. Short, because a socket path
/// must fit in 107 bytes.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = PathBuf::from(format!(
            "/tmp/jlt-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Spawns `cmd`, trying again for a moment if its program is not found:
/// `tests/install.rs` runs `cargo install` on this suite's build
/// directory, and cargo links the binaries there again (remove, then
/// link), so for an instant `target/debug/joblogd` does not exist.
pub fn spawn_retrying(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.expect("spawn"),
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_joblogd")
}

/// A running daemon. Sends SIGTERM and waits when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Starts on `dir/s.sock` with the log file `dir/log.json`.
    pub fn start(dir: &TempDir, args: &[&str]) -> Daemon {
        Self::start_with(dir.join("s.sock"), dir.join("log.json"), dir, args)
    }

    pub fn start_with(socket: PathBuf, log: PathBuf, dir: &TempDir, args: &[&str]) -> Daemon {
        static N: AtomicUsize = AtomicUsize::new(0);
        let stderr = dir.join(&format!("daemon-{}.log", N.fetch_add(1, Ordering::SeqCst)));
        let mut cmd = Command::new(bin());
        cmd.arg("--socket")
            .arg(&socket)
            .arg("--log-file")
            .arg(&log)
            .args(args)
            .env("RUST_LOG", "info")
            // A relative --log-file lands in the test's directory.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        let child = spawn_retrying(&mut cmd);
        let mut d = Daemon {
            child: Some(child),
            socket,
            log,
            stderr,
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "joblogd exited with {status} before listening:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "joblogd not ready:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        s
    }

    /// One request on a fresh connection; returns the reply.
    pub fn request(&self, line: &str) -> Value {
        let mut c = Client::new(self.connect());
        c.send(line);
        c.reply()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        self.signal(libc::SIGKILL);
        self.wait();
    }

    fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("joblogd did not exit:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs joblogd expecting it to fail at start; returns (status, stderr).
/// One that starts serving instead is killed after 30 s (and the test
/// then fails on its status), so a regression cannot hang the suite.
pub fn run_expect_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, reader.join().unwrap_or_default())
}

/// A line-oriented client on one connection.
pub struct Client {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Client {
    pub fn new(s: UnixStream) -> Client {
        let r = BufReader::new(s.try_clone().expect("clone"));
        Client { w: s, r }
    }

    pub fn send(&mut self, line: &str) {
        self.send_bytes(line.as_bytes());
        self.send_bytes(b"\n");
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.w.write_all(b).expect("write");
    }

    pub fn reply(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("read reply");
        assert!(n > 0, "connection closed before a reply");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"))
    }

    /// Gives up on a reply after `t` (a test that waits for a line that
    /// never comes fails instead of hanging).
    pub fn reply_timeout(&mut self, t: Duration) {
        self.r.get_ref().set_read_timeout(Some(t)).expect("timeout");
    }

    pub fn half_close(&mut self) {
        self.w
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
    }

    /// Everything until the daemon closes the connection.
    pub fn rest(&mut self) -> String {
        let mut s = String::new();
        self.r.read_to_string(&mut s).expect("read");
        s
    }
}

/// The log file parsed with serde_json: must be an array.
pub fn read_log(path: &Path) -> Vec<Value> {
    let bytes = fs::read(path).expect("read log");
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(a)) => a,
        Ok(other) => panic!("log is not an array: {other}"),
        Err(e) => panic!(
            "log is not valid JSON ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// The log once it parses: a read that lands while the daemon writes (or,
/// on a failing disk, tries a batch again and cuts it back) sees the
/// array's end open, as README's Guarantees allow, and reads again; past
/// a few seconds the file must parse.
pub fn read_log_settled(path: &Path) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let bytes = fs::read(path).expect("read log");
        if let Ok(Value::Array(a)) = serde_json::from_slice::<Value>(&bytes) {
            return a;
        }
        if Instant::now() > deadline {
            return read_log(path);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until the log holds `n` records. A poll that lands while the
/// daemon is appending sees the array open (the closing bracket is
/// rewritten by every flush) and simply polls again; past the deadline the
/// file must parse.
pub fn wait_for_records(path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            return read_log(path);
        }
        let bytes = fs::read(path).expect("read log");
        if let Ok(Value::Array(recs)) = serde_json::from_slice::<Value>(&bytes)
            && recs.len() >= n
        {
            return recs;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `python3 -c script args…`; panics with its stderr on failure.
pub fn python(script: &str, args: &[&str]) -> Output {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is required by the test suite (see README)");
    assert!(
        out.status.success(),
        "python3 failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `json.load` of the file, as the Python logger's users do.
pub fn python_loads(path: &Path) -> usize {
    let out = python(
        "import json,sys; print(len(json.load(open(sys.argv[1], encoding='utf-8'))))",
        &[path.to_str().expect("utf-8 path")],
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("count")
}

/// Files in `dir` whose name contains `part`.
pub fn files_containing(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(part))
        })
        .collect();
    v.sort();
    v
}

impl Client {
    /// The raw write side, for clients that misbehave.
    pub fn writer(&mut self) -> &mut UnixStream {
        &mut self.w
    }
}

impl Client {
    /// Exactly `n` bytes (the body after an `export_csv` header).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.r.read_exact(&mut v).expect("read body");
        v
    }
}

impl Client {
    /// Half-closes, then every reply until the daemon closes the connection.
    pub fn all_replies(&mut self) -> Vec<Value> {
        self.half_close();
        let rest = self.rest();
        rest.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("reply {l:?}: {e}")))
            .collect()
    }
}

/// Polls `cond` for up to 10 s; panics with `what` if it never holds.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A system user with no home and no shell (kept if it exists); `extra`
/// goes to `useradd` before the name (`-g GROUP`, `-G GROUPS`).
pub fn add_system_user(name: &str, extra: &[&str]) {
    let _ = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .args(extra)
        .arg(name)
        .output();
}

/// Where the bytes in a copy set aside by a repair were in the original:
/// its name ends in `.from-<offset>`.
pub fn copied_from(copy: &Path) -> usize {
    copy.to_string_lossy()
        .rsplit(".from-")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{} does not name its offset", copy.display()))
}

/// Does `path` hold a valid JSON array right now?
pub fn is_valid_array(path: &Path) -> bool {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Value>>(&b).ok())
        .is_some()
}

/// Runs the development harness `name` (an example, built by `cargo test`
/// beside the daemon) against the daemon under test, in `dir`, with
/// `args`; asserts it succeeded and returns its summary (standard output).
pub fn run_harness(name: &str, dir: &TempDir, args: &[&str]) -> String {
    let harness = Path::new(bin()).with_file_name("examples").join(name);
    assert!(
        harness.is_file(),
        "{} is missing: run the whole suite with `cargo test` (it builds the examples), \
         or `cargo build --examples` first",
        harness.display()
    );
    let out = Command::new(&harness)
        .args(args)
        .arg("--daemon")
        .arg(bin())
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary
}

/// The number after `label` in a harness summary (0 if absent).
pub fn summary_figure(summary: &str, label: &str) -> u64 {
    summary
        .split(label)
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
