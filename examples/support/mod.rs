//! What the development examples (`joblogd-bench`, `joblogd-torture`)
//! share. Not an example itself: cargo only takes `examples/*.rs` and
//! `examples/*/main.rs` for those.

use std::path::{Path, PathBuf};

/// The daemon built with the calling example: `target/<profile>/joblogd`,
/// one directory above `target/<profile>/examples/` where examples land.
pub fn joblogd_beside(exe: &Path) -> PathBuf {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let dir = if dir.ends_with("examples") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join("joblogd")
}

/// Sends one request line to the daemon at `sock` and reads one reply.
pub fn ask(sock: &Path, line: &str) -> Option<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    writeln!(s, "{line}").ok()?;
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).ok()?;
    serde_json::from_str(&out).ok()
}

/// xorshift64*: enough randomness for scheduling and damage, reproducible
/// from its seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A real `joblogd` process on a socket and log file, its standard error
/// appended to a file.
pub struct Daemon {
    pub child: std::process::Child,
}

impl Daemon {
    /// Starts the daemon and waits until it listens (at most 30 s).
    pub fn start(bin: &Path, sock: &Path, log: &Path, err: &Path) -> Result<Daemon, String> {
        use std::time::{Duration, Instant};
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(err)
            .map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(bin)
            .arg("--socket")
            .arg(sock)
            .arg("--log-file")
            .arg(log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(sock).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!(
                    "joblogd exited with {st} at start; see {}",
                    err.display()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("joblogd did not start listening".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(Daemon { child })
    }

    /// SIGKILL, as a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::io::Result<std::process::ExitStatus> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: a signal to our own child, which has not been waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait()
    }
}
