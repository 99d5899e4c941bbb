//! The listening socket: ownership via a lock file, stale-socket cleanup,
//! bind with a race-free mode, the socket file known by device and inode.
//! The only user of `interprocess`.
//!
//! Staleness is decided by an exclusive `flock` on `<socket>.lock`, held for
//! the daemon's life, not by a connect probe alone (a live daemon with a full
//! backlog refuses connections too). The lock file is never deleted: deleting
//! a lock file that others may have open breaks the lock. Someone else may
//! delete it (a `/tmp` cleaner), so a socket found with its lock free is
//! also probed before it is removed: one that accepts (or has a full
//! backlog) is live and is left alone. The socket file we bound is known
//! by its device and inode, so the daemon never takes another's socket
//! for its own, or removes it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use interprocess::os::unix::uds_local_socket::tokio::Listener;

/// Errors that stop the daemon from starting.
#[derive(Debug)]
pub enum BindError {
    /// Another daemon holds the socket's lock file.
    InUse(PathBuf),
    /// A process listens on the socket although its lock file is free
    /// (deleted under a running daemon).
    Live(PathBuf),
    /// Something that is not a socket is in the way; never deleted.
    NotASocket(PathBuf),
    /// The socket's directory lets anyone replace the socket.
    UnsafeDir(PathBuf),
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::InUse(p) => write!(
                f,
                "another joblogd is already serving {} (its lock file {}.lock is held)",
                p.display(),
                p.display()
            ),
            BindError::Live(p) => write!(
                f,
                "a process is listening on {} although its lock file {}.lock is not held (was the lock file deleted?); stop it or choose another --socket",
                p.display(),
                p.display()
            ),
            BindError::UnsafeDir(p) => write!(
                f,
                "{} is writable by others and not sticky: anyone could replace the socket; use a private directory (or chmod +t)",
                p.display()
            ),
            BindError::NotASocket(p) => write!(
                f,
                "{} exists and is not a socket; refusing to replace it",
                p.display()
            ),
            BindError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for BindError {}

/// The socket's lock, taken before anything else so that a second daemon on
/// the same socket stops before touching the log file.
#[derive(Debug)]
pub(crate) struct SocketLock {
    path: PathBuf,
    _file: File,
}

/// Takes `<socket>.lock`.
///
/// # Errors
/// [`BindError::InUse`] if another daemon holds it.
pub(crate) fn lock_socket(socket: &Path) -> Result<SocketLock, BindError> {
    let lock_path = PathBuf::from(format!("{}.lock", socket.display()));
    if let Some(dir) = socket.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| BindError::Io {
            path: dir.to_owned(),
            action: "create directory",
            source,
        })?;
        let mode = fs::metadata(dir)
            .map_err(|source| BindError::Io {
                path: dir.to_owned(),
                action: "inspect",
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o002 != 0 && mode & 0o1000 == 0 {
            return Err(BindError::UnsafeDir(dir.to_owned()));
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|source| BindError::Io {
            path: lock_path.clone(),
            action: "open lock file",
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(SocketLock {
            path: socket.to_owned(),
            _file: file,
        }),
        Err(fs::TryLockError::WouldBlock) => Err(BindError::InUse(socket.to_owned())),
        Err(fs::TryLockError::Error(source)) => Err(BindError::Io {
            path: lock_path,
            action: "lock",
            source,
        }),
    }
}

/// The socket file a daemon bound, known by device and inode; shared with
/// `ping` and the status reports, and updated when SIGHUP binds again.
#[derive(Debug, Clone, Default)]
pub(crate) struct SocketFile {
    path: PathBuf,
    id: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
    /// Passed by systemd, which owns the file: always "there".
    activated: bool,
}

impl SocketFile {
    pub(super) fn new(path: &Path, id: Option<(u64, u64)>, activated: bool) -> SocketFile {
        SocketFile {
            path: path.to_owned(),
            id: Arc::new(std::sync::Mutex::new(id)),
            activated,
        }
    }

    pub(super) fn id(&self) -> Option<(u64, u64)> {
        self.id.lock().map(|g| *g).unwrap_or(None)
    }

    pub(super) fn set(&self, id: Option<(u64, u64)>) {
        if let Ok(mut g) = self.id.lock() {
            *g = id;
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Is the file at the path the socket we bound (not gone, and not
    /// another process's socket bound there since)?
    pub(crate) fn is_at_path(&self) -> bool {
        self.activated || (self.id().is_some() && file_id(&self.path) == self.id())
    }
}

/// A bound listener; removes its socket file when dropped.
#[derive(Debug)]
pub(crate) struct Bound {
    listener: Listener,
    /// The socket file we bound (its path, device and inode): only that
    /// file is ours to report as present or to remove.
    file: SocketFile,
    /// None when the socket came from systemd, which owns its file.
    lock: Option<SocketLock>,
    /// File mode, to bind again after the socket file was deleted.
    mode: u32,
}

/// Binds the socket (removing a stale one) with `mode`.
///
/// # Errors
/// [`BindError::NotASocket`] if the path holds anything else.
pub(crate) fn bind(lock: SocketLock, mode: u32) -> Result<Bound, BindError> {
    let path = lock.path.clone();
    let (listener, id) = listen(&path, mode)?;
    Ok(Bound {
        listener,
        file: SocketFile::new(&path, id, false),
        lock: Some(lock),
        mode,
    })
}

/// Removes a stale socket at `path` (never anything else), binds, and sets
/// the mode. The caller holds the socket's lock.
pub(super) fn listen(path: &Path, mode: u32) -> Result<(Listener, Option<(u64, u64)>), BindError> {
    let path = path.to_owned();
    match fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => {
            // We hold the lock, so whoever made this socket should be gone;
            // unless someone deleted the lock file under it.
            if is_live(&path) {
                return Err(BindError::Live(path));
            }
            tracing::info!(socket = %path.display(), "Removing stale socket.");
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(BindError::Io {
                        path: path.clone(),
                        action: "remove stale socket",
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(_) => return Err(BindError::NotASocket(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BindError::Io {
                path,
                action: "inspect",
                source,
            });
        }
    }
    let io_err = |source| BindError::Io {
        path: path.clone(),
        action: "bind",
        source,
    };
    let name = path
        .as_path()
        .to_fs_name::<GenericFilePath>()
        .map_err(io_err)?;
    let listener: Listener = ListenerOptions::new()
        .name(name)
        .mode(mode as libc::mode_t)
        // We remove the file ourselves, at the end of shutdown.
        .reclaim_name(false)
        .create_tokio_as()
        .map_err(io_err)?;
    // bind(2) applies the umask to the new file whatever mode the socket
    // had; set the mode again on the path.
    if let Err(source) = fs::set_permissions(&path, fs::Permissions::from_mode(mode)) {
        let _ = fs::remove_file(&path);
        return Err(BindError::Io {
            path,
            action: "set the mode of",
            source,
        });
    }
    Ok((listener, file_id(&path)))
}

/// Device and inode of the socket file at `path`, if there is one.
pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| (m.dev(), m.ino()))
}

/// Does a process listen on the socket at `path`? A non-blocking connect:
/// accepted, or refused for a full backlog (`EAGAIN`), means yes; only
/// `ECONNREFUSED` (no listener) means the socket is stale, and `ENOENT`
/// that it is gone. Anything else (no permission to connect, a datagram
/// socket) cannot tell, and counts as live: a socket is never removed on a
/// guess.
pub(super) fn is_live(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid; the path is copied in only
    // if it fits with its terminating NUL.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return true;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, &b) in addr.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    // SAFETY: plain socket(2); the descriptor is owned (and closed) below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return true;
    }
    // SAFETY: `fd` was just created and is not used elsewhere.
    let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let rc = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
    // ENOENT: removed since we looked; nothing there to be live.
    rc == 0
        || !matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ECONNREFUSED | libc::ENOENT)
        )
}

/// Adopts a listening socket passed by systemd (socket activation).
///
/// # Errors
/// The descriptor is not a usable listening socket.
pub(crate) fn adopt(fd: std::os::fd::OwnedFd, configured: &Path) -> Result<Bound, BindError> {
    let listener = Listener::try_from(fd).map_err(|source| BindError::Io {
        path: configured.to_owned(),
        action: "adopt the socket passed by systemd for",
        source,
    })?;
    let path = listener
        .inner()
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_owned))
        .unwrap_or_else(|| configured.to_owned());
    Ok(Bound {
        listener,
        file: SocketFile::new(&path, None, true),
        lock: None,
        mode: 0,
    })
}

impl Bound {
    /// The listener, for the accept loop.
    pub(super) fn listener(&self) -> &Listener {
        &self.listener
    }

    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    /// The socket came from systemd.
    pub(crate) fn is_activated(&self) -> bool {
        self.lock.is_none()
    }

    /// Is our socket file still at its path? (Someone may delete it; then
    /// new clients cannot connect until SIGHUP binds it again.)
    pub(crate) fn at_path(&self) -> bool {
        self.file.is_at_path()
    }

    /// A handle on which socket file is ours, for `ping` and status.
    pub(crate) fn file(&self) -> SocketFile {
        self.file.clone()
    }

    /// Binds the path again if the socket file is gone (SIGHUP).
    ///
    /// # Errors
    /// As [`bind`].
    pub(crate) fn rebind(&mut self) -> Result<bool, BindError> {
        if self.at_path() {
            return Ok(false);
        }
        let (listener, id) = listen(&self.file.path, self.mode)?;
        self.listener = listener;
        self.file.set(id);
        Ok(true)
    }

    /// The group of the socket file: workers in it may connect by default.
    pub(crate) fn group(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.file.path).ok().map(|m| m.gid())
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        // Only our own socket file: another daemon's (started after ours
        // was deleted) stays.
        if self.lock.is_some() && self.at_path() {
            let _ = fs::remove_file(&self.file.path);
        }
    }
}

/// SIGHUP: binds the socket again if its file is gone.
pub(super) fn rebind_now(bound: &mut Bound) {
    match bound.rebind() {
        Ok(true) => {
            tracing::info!(socket = %bound.path().display(), "Socket file was gone; bound it again.");
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "Binding the socket again failed."),
    }
}
