//! systemd integration without libsystemd: the notify protocol (`READY=1`,
//! `RELOADING=1`, `STOPPING=1`, `STATUS=…`, `WATCHDOG=1`) is one datagram to
//! `$NOTIFY_SOCKET`, and socket activation is fd 3 when `$LISTEN_PID` is
//! ours. Both are no-ops outside systemd.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

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

/// `RELOADING=1` with the `MONOTONIC_USEC=` systemd needs to match it to a
/// reload request (without it, newer systemd ignores the message and
/// `systemctl reload` returns before the reload is done). The caller sends
/// `READY=1` when the reload is over, whatever its outcome.
pub fn reloading_message(status: &str) -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS={status}")
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

use crate::config::tuning::{SCAN_EXTEND, SCAN_REPORT_EVERY};

/// Progress of the long steps of opening a log file: the scan that indexes
/// it at start-up (and on a reopen), and setting a damaged file's original
/// bytes aside. Reading runs at 300-2,000 MB/s here, so a log of tens of GB
/// takes minutes, past systemd's default 90 s start timeout: a service that
/// is not ready by then is killed and, with `Restart=on-failure`, started
/// again to read the same file, forever. So these steps tell the service
/// manager they are alive (`EXTEND_TIMEOUT_USEC=`, and `WATCHDOG=1` for a
/// reopen while running) and how far they got (`STATUS=`), every few
/// seconds.
#[derive(Debug)]
pub struct ScanProgress {
    total: u64,
    next: Instant,
    watchdog: bool,
}

/// What a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading and indexing the records: bytes read, records so far.
    Reading { records: u64 },
    /// Copying a damaged file aside before repairing it: bytes copied.
    CopyingAside,
}

impl ScanProgress {
    /// Work on a file of `total` bytes begins at `now`; returns the first
    /// report, due at once.
    pub fn start(total: u64, now: Instant) -> (ScanProgress, String) {
        let p = ScanProgress {
            total,
            next: now + SCAN_REPORT_EVERY,
            watchdog: watchdog_interval().is_some(),
        };
        let first = p.report(Step::Reading { records: 0 }, 0);
        (p, first)
    }

    /// The report to send now, if one is due: `done` bytes of the file.
    pub fn due(&mut self, step: Step, done: u64, now: Instant) -> Option<String> {
        if now < self.next {
            return None;
        }
        self.next = now + SCAN_REPORT_EVERY;
        Some(self.report(step, done))
    }

    fn report(&self, step: Step, done: u64) -> String {
        let (what, records) = match step {
            Step::Reading { records } => ("Reading the log file", format!(", {records} records")),
            Step::CopyingAside => ("Copying the damaged log file aside", String::new()),
        };
        // In kB below 10 MB, so a small file does not read "0 of 0 MB".
        let (unit, div) = if self.total < 10_000_000 {
            ("kB", 1_000)
        } else {
            ("MB", 1_000_000)
        };
        format!(
            "EXTEND_TIMEOUT_USEC={}\n{}STATUS={what}: {} of {} {unit}{records}",
            SCAN_EXTEND.as_micros(),
            if self.watchdog { "WATCHDOG=1\n" } else { "" },
            done / div,
            self.total / div,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_reports_at_once_then_every_few_seconds_extending_the_timeout() {
        let t0 = Instant::now();
        let (mut p, first) = ScanProgress::start(3_000_000_000, t0);
        assert!(
            first.starts_with("EXTEND_TIMEOUT_USEC=30000000\n"),
            "{first}"
        );
        assert!(first.ends_with("STATUS=Reading the log file: 0 of 3000 MB, 0 records"));
        let (_, small) = ScanProgress::start(340_000, t0);
        assert!(small.ends_with("0 of 340 kB, 0 records"), "{small}");
        let reading = |records| Step::Reading { records };
        assert_eq!(p.due(reading(1), 1, t0 + Duration::from_secs(4)), None);
        let m = p.due(
            reading(1_000_000),
            1_500_000_000,
            t0 + Duration::from_secs(5),
        );
        assert!(
            m.as_deref()
                .is_some_and(|m| m.ends_with("1500 of 3000 MB, 1000000 records")),
            "{m:?}"
        );
        // The next one is five seconds after that one, not after the start.
        assert_eq!(p.due(reading(1), 1, t0 + Duration::from_secs(9)), None);
        let m = p.due(
            Step::CopyingAside,
            2_000_000_000,
            t0 + Duration::from_secs(10),
        );
        assert!(
            m.as_deref()
                .is_some_and(|m| m.starts_with("EXTEND_TIMEOUT_USEC=")
                    && m.ends_with("STATUS=Copying the damaged log file aside: 2000 of 3000 MB")),
            "{m:?}"
        );
        // Each report extends the timeout by far more than the interval.
        assert!(SCAN_EXTEND >= 4 * SCAN_REPORT_EVERY);
    }
}
