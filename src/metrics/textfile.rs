//! `--metrics-textfile PATH`: the `metrics` text, written every
//! `--metrics-interval-ms` for node_exporter's textfile collector (the
//! usual way for a daemon without an HTTP port to be scraped).
//!
//! The collector reads every `*.prom` file of its directory at each
//! scrape, so a reader must never see a half-written file: the text goes
//! to a hidden temporary file in the same directory (`.<name>.tmp`, which
//! the collector ignores), which is then renamed over PATH, atomically.
//! There is no `fsync`: the file is rewritten every few seconds, and what
//! a power cut may leave (an empty file) is replaced at the next write;
//! syncing would cost a disk flush per interval for nothing. The mode is
//! 0644 whatever the umask (the unit's is 0027): node_exporter runs as
//! another user. At a clean stop the file is removed, so a stopped daemon's
//! numbers never pass for current ones (`absent(joblogd_build_info)`
//! alerts on it); after a crash it stays, and node_exporter's
//! `node_textfile_mtime_seconds` tells that it is no longer refreshed.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file's mode: the collector (another user) must read it.
const MODE: u32 = 0o644;

/// The textfile and what went wrong writing it last.
#[derive(Debug)]
pub(crate) struct Textfile {
    path: PathBuf,
    tmp: PathBuf,
    /// The last write's error, logged once (not every few seconds) until a
    /// write succeeds again.
    failing: Option<String>,
}

impl Textfile {
    pub(crate) fn new(path: PathBuf) -> Textfile {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        Textfile {
            path,
            tmp,
            failing: None,
        }
    }

    /// Replaces the file's content with `text`, atomically. A failure is
    /// logged (once, until it changes or a write succeeds) and otherwise
    /// ignored: metrics never stop the daemon from logging.
    pub(crate) fn write(&mut self, text: &[u8]) {
        match replace(&self.path, &self.tmp, text) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    tracing::info!(path = %self.path.display(), "Metrics textfile written again.");
                }
            }
            Err(e) => {
                let error = e.to_string();
                if self.failing.as_ref() != Some(&error) {
                    tracing::warn!(path = %self.path.display(), error = %error, "Cannot write the metrics textfile; trying again at the next interval.");
                    self.failing = Some(error);
                }
            }
        }
    }

    /// Removes the file (at a clean stop).
    pub(crate) fn remove(&self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Cannot remove the metrics textfile.");
            }
        }
    }
}

/// Writes `text` to `tmp` (mode [`MODE`]) and renames it to `path`; on
/// failure, `tmp` is removed.
fn replace(path: &Path, tmp: &Path, text: &[u8]) -> io::Result<()> {
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(MODE)
            .open(tmp)?;
        // `mode` above is filtered by the umask.
        f.set_permissions(Permissions::from_mode(MODE))?;
        f.write_all(text)?;
        drop(f);
        fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_with_mode_0644_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("jl-textfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("joblogd.prom");
        let mut t = Textfile::new(path.clone());
        t.write(b"a 1\n");
        t.write(b"a 2\n");
        assert_eq!(fs::read(&path).unwrap(), b"a 2\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("joblogd.prom")]);
        t.remove();
        assert!(!path.exists());
        // A directory that does not exist: logged, nothing left behind.
        let mut gone = Textfile::new(dir.join("missing").join("x.prom"));
        gone.write(b"a 1\n");
        assert!(gone.failing.is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
