//! Small helpers with no better home: an `io::Error` from a message, the
//! temp dir removed on drop, thousands separators, shell quoting for the
//! report's command line, ANSI stripping of the daemon's stderr, page-cache
//! eviction for cold starts, and joining scoped threads.

use std::fs::{self, File};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::thread::ScopedJoinHandle;

pub(crate) fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// Removes its directory (and everything in it) when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> io::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = PathBuf::from(format!("/tmp/jlb-{}-{:x}", std::process::id(), nanos));
        fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// 1234567 -> "1,234,567".
pub(crate) fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Drops the file's pages from the page cache, so the next read comes from
/// disk (the file must be synced first).
pub(crate) fn evict_from_cache(file: &File) {
    // SAFETY: a valid open descriptor; posix_fadvise only advises the kernel.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

pub(crate) fn join<T>(h: ScopedJoinHandle<'_, io::Result<T>>) -> io::Result<T> {
    h.join()
        .map_err(|_| other("a bench thread panicked"))
        .and_then(|r| r)
}
