//! systemd integration without libsystemd: the notify protocol (`READY=1`,
//! `STOPPING=1`, `STATUS=…`, `WATCHDOG=1`) is one datagram to
//! `$NOTIFY_SOCKET`, and socket activation is fd 3 when `$LISTEN_PID` is
//! ours. Both are no-ops outside systemd.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notify message, if running under a service manager that asked
/// for them. Failures are logged at debug level: notifications are advisory.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let res = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            // Abstract namespace (Linux): "@name" means a leading NUL.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)
        } else {
            sock.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(e) = res {
        tracing::debug!(error = %e, state, "sd_notify failed.");
    }
}

/// The watchdog interval requested with `WatchdogSec=`, if it is meant for
/// this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The listening socket passed by socket activation (`LISTEN_FDS`), if any.
/// Takes exactly one; the variables are removed so children do not inherit
/// them.
///
/// # Errors
/// More than one socket was passed (the units ship exactly one).
pub fn listen_fd() -> Result<Option<OwnedFd>, String> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n: i32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if pid_ok => n,
        _ => return Ok(None),
    };
    // SAFETY: single-threaded at this point of start-up (called before the
    // runtime starts), so nothing reads the environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    match n {
        0 => Ok(None),
        1 => {
            const SD_LISTEN_FDS_START: i32 = 3;
            // SAFETY: systemd passed fd 3 to us and nothing else owns it;
            // mark it close-on-exec as sd_listen_fds does.
            unsafe {
                libc::fcntl(SD_LISTEN_FDS_START, libc::F_SETFD, libc::FD_CLOEXEC);
                Ok(Some(OwnedFd::from_raw_fd(SD_LISTEN_FDS_START)))
            }
        }
        n => Err(format!(
            "socket activation passed {n} sockets; joblogd.socket should have exactly one ListenStream="
        )),
    }
}
