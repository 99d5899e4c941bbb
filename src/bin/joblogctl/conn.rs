//! Reaching the daemon: which socket (`--socket`, `JOBLOGD_SOCKET`, the
//! per-user default, the system units'), and reading its answers, a large
//! array one element at a time.

use super::*;

/// Where to find the daemon: `--socket`, else `JOBLOGD_SOCKET` (one path,
/// nothing else tried), else the per-user default, then the systemd
/// units' socket, the first that accepts a connection.
pub(super) struct Socket {
    candidates: Vec<PathBuf>,
    explicit: bool,
    /// `--database`: queries are answered from the central store instead.
    pub(super) database: Option<String>,
    /// `--file`: queries are answered over that log file instead.
    pub(super) file: Option<PathBuf>,
}

impl Socket {
    pub(super) fn resolve(given: Option<PathBuf>) -> Socket {
        match given {
            Some(p) => Socket {
                candidates: vec![p],
                explicit: true,
                database: None,
                file: None,
            },
            None => {
                let mut candidates = vec![joblogd::config::default_socket()];
                let system = PathBuf::from(joblogd::config::SYSTEM_SOCKET);
                if candidates[0] != system {
                    candidates.push(system);
                }
                Socket {
                    candidates,
                    explicit: false,
                    database: None,
                    file: None,
                }
            }
        }
    }
}

pub(super) struct Conn {
    pub(super) w: UnixStream,
    pub(super) r: BufReader<UnixStream>,
}

impl Conn {
    /// Connects to the first candidate that accepts; if none does, the
    /// error names every path tried and why, and what to do about it.
    pub(super) fn open(socket: &Socket) -> Result<Conn, Fail> {
        if let Some(url) = &socket.database {
            return database::open(url);
        }
        if let Some(path) = &socket.file {
            return archive::open(path);
        }
        let mut tried = Vec::new();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        for path in &socket.candidates {
            // A default found, not one given: in a directory anyone may
            // write to (/tmp) anyone could have put a socket there first,
            // and would then read (and answer) what this command sends.
            let shared_dir = path
                .parent()
                .and_then(|d| std::fs::metadata(d).ok())
                .is_some_and(|d| d.mode() & 0o002 != 0);
            if !socket.explicit
                && shared_dir
                && let Ok(m) = std::fs::symlink_metadata(path)
                && m.uid() != me
                && m.uid() != 0
            {
                tried.push((
                    path,
                    io::Error::other(format!(
                        "skipped: owned by uid {}, neither you nor root",
                        m.uid()
                    )),
                ));
                continue;
            }
            match UnixStream::connect(path) {
                Ok(s) => {
                    let r = BufReader::new(s.try_clone()?);
                    return Ok(Conn { w: s, r });
                }
                Err(e) => tried.push((path, e)),
            }
        }
        let denied = tried
            .iter()
            .any(|(_, e)| e.kind() == io::ErrorKind::PermissionDenied);
        let mut msg = String::from("joblogctl: cannot connect to joblogd; tried:");
        for (path, e) in &tried {
            msg.push_str(&format!("\n  {}: {e}", path.display()));
        }
        msg.push_str(if socket.explicit {
            "\n  (given by --socket or JOBLOGD_SOCKET; no other path is tried)"
        } else {
            "\n  (the per-user default, then the systemd units' socket)"
        });
        if denied {
            msg.push_str(
                "\nhint: your user may not open a socket that exists: add it to the socket's \
                 group (`usermod -aG joblog $USER`, then log in again), or run as that group",
            );
        }
        msg.push_str(
            "\nhint: start the daemon (`systemctl start joblogd.socket` for the system one, \
             or `joblogd` for your own), or point --socket / JOBLOGD_SOCKET at its socket",
        );
        Err(Fail(3, msg))
    }

    pub(super) fn send(&mut self, v: &Value) -> Result<(), Fail> {
        let mut line = serde_json::to_vec(v).map_err(|e| Fail(1, e.to_string()))?;
        line.push(b'\n');
        match self.w.write_all(&line) {
            // The daemon may have answered and closed already (a refused
            // peer gets one error line): let `reply` read that answer.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => Ok(r?),
        }
    }

    pub(super) fn reply(&mut self) -> Result<Value, Fail> {
        Ok(self.reply_raw()?.0)
    }

    /// The reply, and its line itself, so that records in it can be
    /// printed exactly as the daemon sent them.
    pub(super) fn reply_raw(&mut self) -> Result<(Value, String), Fail> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(Fail(
                1,
                "joblogctl: the daemon closed the connection".into(),
            ));
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
        if v["ok"] == false {
            let code = v["error"]["code"].as_str().unwrap_or("error");
            let msg = v["error"]["message"].as_str().unwrap_or("");
            return Err(Fail(1, format!("joblogd: {code}: {msg}")));
        }
        Ok((v, line))
    }

    /// Reads the start of an answer whose records come in array `key`
    /// (`{"ok":true,"count":N,"total":M,"<key>":[`), up to and including
    /// its `[`, and returns its other members; the records are then read
    /// one at a time with [`Conn::each_element`], so the whole answer (a
    /// large log's) is never held. An error reply is returned as such.
    pub(super) fn answer_head(&mut self, key: &str) -> Result<Value, Fail> {
        let mut head = Vec::new();
        loop {
            let mut b = [0u8; 1];
            if self.r.read(&mut b)? == 0 {
                return Err(Fail(
                    1,
                    "joblogctl: the daemon closed the connection".into(),
                ));
            }
            head.push(b[0]);
            if b[0] == b'\n' || (b[0] == b'[' && head.starts_with(b"{\"ok\":true")) {
                break;
            }
        }
        if head.last() == Some(&b'[') {
            // Close it to read the members before the records.
            let mut text = head.clone();
            text.extend_from_slice(b"]}");
            let v: Value = serde_json::from_slice(&text)
                .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
            if v.get(key).is_some() {
                return Ok(v);
            }
            return Err(Fail(1, format!("joblogctl: bad reply: no {key}")));
        }
        let mut line = String::from_utf8_lossy(&head).into_owned();
        if !line.ends_with('\n') {
            self.r.read_line(&mut line)?;
        }
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| Fail(1, format!("joblogctl: bad reply: {e}")))?;
        let code = v["error"]["code"].as_str().unwrap_or("error");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        Err(Fail(1, format!("joblogd: {code}: {msg}")))
    }

    /// After [`Conn::answer_head`]: each element of the array, as the bytes
    /// the daemon sent (compact JSON), until its `]`. A small state machine
    /// over the socket's buffer, not `json::skim_array`, which needs the
    /// whole answer in memory.
    pub(super) fn each_element(
        &mut self,
        mut each: impl FnMut(&[u8]) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        let mut elem = Vec::new();
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        loop {
            let chunk = self.r.fill_buf()?;
            if chunk.is_empty() {
                return Err(Fail(
                    1,
                    "joblogctl: the daemon closed the connection in the middle of its answer"
                        .into(),
                ));
            }
            let mut used = 0;
            let mut done = false;
            for &b in chunk {
                used += 1;
                if in_string {
                    elem.push(b);
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_string = true;
                        elem.push(b);
                    }
                    b'{' | b'[' => {
                        depth += 1;
                        elem.push(b);
                    }
                    b'}' | b']' if depth > 0 => {
                        depth -= 1;
                        elem.push(b);
                    }
                    b']' => {
                        done = true;
                        break;
                    }
                    b',' if depth == 0 => {
                        each(&elem)?;
                        elem.clear();
                    }
                    b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => {}
                    _ => elem.push(b),
                }
            }
            self.r.consume(used);
            if done {
                if !elem.is_empty() {
                    each(&elem)?;
                }
                // The rest of the reply line (`}`), so that the connection
                // is ready for the next request's reply.
                let mut rest = Vec::new();
                self.r.read_until(b'\n', &mut rest)?;
                return Ok(());
            }
        }
    }

    pub(super) fn ask(&mut self, v: Value) -> Result<Value, Fail> {
        self.send(&v)?;
        self.reply()
    }
}
