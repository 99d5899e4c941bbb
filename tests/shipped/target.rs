//! The daemon under test as the host sees it (paths, the modes the unit
//! promises) and what root and a user do against it: joblogctl as root,
//! one record logged by root, a call through the Python client that must
//! be refused. Filled in by tests/setup.rs and tests/systemd_boot/, whose
//! daemons live at different host paths.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::{CTL, PATH, User, Users, both, stdout};

/// A running joblogd as the host sees it, and what the unit promises there.
pub(crate) struct Target<'a> {
    pub users: &'a Users,
    /// The listening socket.
    pub socket: PathBuf,
    /// RuntimeDirectory=, the socket's directory.
    pub runtime_dir: PathBuf,
    /// StateDirectory=, as the host sees it…
    pub state_dir: PathBuf,
    /// …and as the daemon does (the paths in its replies).
    pub daemon_state_dir: PathBuf,
    /// The log file, in `state_dir`.
    pub log: PathBuf,
    /// RuntimeDirectory='s mode, StateDirectoryMode=, --file-mode.
    pub runtime_dir_mode: u32,
    pub state_dir_mode: u32,
    pub file_mode: u32,
    /// A directory for root's records and the worker's CSV export.
    pub scratch: PathBuf,
}

impl Target<'_> {
    /// `joblogctl --socket SOCKET args…` as root.
    pub(crate) fn ctl(&self, args: &[&str]) -> Output {
        Command::new(CTL)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_clear()
            .env("PATH", PATH)
            .output()
            .unwrap()
    }

    /// Root logs one record `{"video_id": ID, "success": true}` through
    /// `joblogctl log --ack`; returns the records file (readable by all).
    pub(crate) fn root_logs(&self, video_id: &str) -> PathBuf {
        let records = self.scratch.join("root.ndjson");
        fs::write(
            &records,
            format!("{{\"video_id\":\"{video_id}\",\"success\":true}}\n"),
        )
        .unwrap();
        fs::set_permissions(&records, fs::Permissions::from_mode(0o644)).unwrap();
        let o = self.ctl(&["log", records.to_str().unwrap(), "--ack"]);
        assert_eq!(o.status.code(), Some(0), "root log: {}", both(&o));
        records
    }

    /// `JobLogger().<call>()` through the Python client as `user`, which
    /// must raise one of `errors` (a Python exception or tuple of them);
    /// returns what was printed: the exception's type and message.
    /// `daemon_logs` goes into the failure message.
    pub(crate) fn python_refused(
        &self,
        user: &User,
        call: &str,
        errors: &str,
        daemon_logs: &dyn Fn() -> String,
    ) -> String {
        let script = format!(
            "from joblog_client import JobLogger\n\
             try:\n    JobLogger().{call}()\n\
             except {errors} as e:\n    print(type(e).__name__, e)\n\
             else:\n    raise SystemExit('{call} did not raise {errors} for {}')\n",
            user.name
        );
        let o = user
            .python_client(&self.socket, &["-c", &script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{call} through the Python client as {}: {}\n{}",
            user.name,
            both(&o),
            daemon_logs()
        );
        stdout(&o)
    }
}
