//! The daemon under test and a line client. [`Daemon`] starts the real
//! `joblogd` (`--fsync always`) and times it until its socket accepts,
//! keeps its stderr, reads its "Log file ready." line and its memory, and
//! stops it with SIGTERM; [`Client`] is one connection with line-oriented
//! replies.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{other, strip_ansi};

/// No single socket operation of the bench should take this long.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(180);

/// A running `joblogd`; SIGTERM and wait on drop.
pub(crate) struct Daemon {
    child: Child,
    socket: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// Spawn until the socket accepted a connection.
    pub(crate) accept_after: Duration,
    exit: Option<ExitStatus>,
}

impl Daemon {
    pub(crate) fn start(bin: &Path, socket: &Path, log_file: &Path) -> io::Result<Daemon> {
        Daemon::start_with(bin, socket, log_file, "always")
    }

    /// [`Daemon::start`] with another `--fsync` policy.
    pub(crate) fn start_with(
        bin: &Path,
        socket: &Path,
        log_file: &Path,
        fsync: &str,
    ) -> io::Result<Daemon> {
        let _ = fs::remove_file(socket);
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .arg("--socket")
            .arg(socket)
            .arg("--log-file")
            .arg(log_file)
            .args(["--fsync", fsync])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| other(format!("cannot start {}: {e}", bin.display())))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take();
        let sink = Arc::clone(&stderr);
        let stderr_thread = pipe.map(|pipe| {
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut v) = sink.lock() {
                        v.push(strip_ansi(&line));
                    }
                }
            })
        });
        let mut d = Daemon {
            child,
            socket: socket.to_owned(),
            stderr,
            stderr_thread,
            accept_after: Duration::ZERO,
            exit: None,
        };
        let deadline = t0 + Duration::from_secs(600);
        loop {
            if UnixStream::connect(socket).is_ok() {
                break;
            }
            if let Some(status) = d.child.try_wait()? {
                d.exit = Some(status);
                d.join_stderr();
                return Err(other(format!(
                    "joblogd exited ({status}) before accepting connections; stderr:\n{}",
                    d.stderr_lines().join("\n")
                )));
            }
            if Instant::now() > deadline {
                return Err(other("joblogd did not accept connections within 600 s"));
            }
            thread::sleep(Duration::from_millis(1));
        }
        d.accept_after = t0.elapsed();
        Ok(d)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// `took_ms` of the "Log file ready." line (waits briefly for it: it is
    /// written before the socket is bound, but read by another thread).
    pub(crate) fn ready_took_ms(&self) -> Option<u64> {
        self.ready_field("took_ms")
    }

    /// A numeric field (`records`, `bytes`, `took_ms`) of the "Log file
    /// ready." line.
    pub(crate) fn ready_field(&self, key: &str) -> Option<u64> {
        let pat = format!(" {key}=");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let found = self.stderr_lines().iter().find_map(|l| {
                if !l.contains("Log file ready.") {
                    return None;
                }
                let rest = &l[l.find(&pat)? + pat.len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            });
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// `VmRSS` and `VmHWM` (peak) of the daemon, in bytes, from
    /// /proc/<pid>/status.
    pub(crate) fn memory(&self) -> io::Result<(u64, u64)> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .ok_or_else(|| other(format!("no {name} in /proc/{}/status", self.child.id())))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    fn join_stderr(&mut self) {
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
    }

    /// SIGTERM, then wait (SIGKILL after 60 s).
    fn terminate(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.exit {
            return Ok(s);
        }
        if let Some(s) = self.child.try_wait()? {
            self.exit = Some(s);
            self.join_stderr();
            return Ok(s);
        }
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|_| other("pid out of range"))?;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait()?;
            }
            thread::sleep(Duration::from_millis(2));
        };
        self.exit = Some(status);
        self.join_stderr();
        Ok(status)
    }

    /// Stops the daemon; returns its warnings and errors (including an
    /// unclean exit) for the report.
    pub(crate) fn stop(mut self, what: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match self.terminate() {
            Ok(s) if s.success() => {}
            Ok(s) => problems.push(format!("{what}: joblogd exited with {s}")),
            Err(e) => problems.push(format!("{what}: stopping joblogd failed: {e}")),
        }
        for l in self.stderr_lines() {
            if l.contains(" WARN ") || l.contains(" ERROR ") || l.starts_with("joblogd:") {
                problems.push(format!("{what}: daemon stderr: {}", l.trim()));
            }
        }
        problems
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// One connection with line-oriented replies.
pub(crate) struct Client {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    buf: String,
}

impl Client {
    pub(crate) fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client {
            stream,
            reader,
            buf: String::new(),
        })
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub(crate) fn read_line(&mut self) -> io::Result<&str> {
        self.buf.clear();
        if self.reader.read_line(&mut self.buf)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "joblogd closed the connection",
            ));
        }
        Ok(self.buf.trim_end())
    }

    pub(crate) fn request(&mut self, line: &str) -> io::Result<Value> {
        self.send(format!("{line}\n").as_bytes())?;
        let reply = self.read_line()?;
        serde_json::from_str(reply).map_err(|e| other(format!("bad reply {reply:?}: {e}")))
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let v = self.request(r#"{"op":"flush"}"#)?;
        if v["ok"] == true {
            Ok(())
        } else {
            Err(other(format!("flush failed: {v}")))
        }
    }

    /// Checks that the file holds exactly `expected` records, none pending.
    pub(crate) fn verify(&mut self, expected: u64) -> io::Result<Value> {
        let v = self.request(r#"{"op":"ping"}"#)?;
        if v["records"].as_u64() != Some(expected) || v["pending"].as_u64() != Some(0) {
            return Err(other(format!(
                "verification failed: expected {expected} records and 0 pending; ping: {v}"
            )));
        }
        Ok(v)
    }
}
