//! The container's /dev/console: a pseudo-terminal whose output the test
//! keeps, for the failure report and for the poweroff check (systemd's
//! status lines land there).

use std::ffi::CStr;
use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

/// A pseudo-terminal for the container's /dev/console (systemd writes its
/// status lines and, before journald runs, its log there; it needs a
/// terminal). The test holds the slave open, so the master never reads
/// EIO while systemd reopens the console; a thread collects the output.
pub(super) struct Console {
    /// The slave's path, bound onto the container's /dev/console.
    pub(super) path: String,
    /// Held open until teardown (see above).
    pub(super) slave: Option<OwnedFd>,
    text: Arc<Mutex<Vec<u8>>>,
}

impl Console {
    pub(super) fn open() -> std::io::Result<Console> {
        // SAFETY: posix_openpt, grantpt, unlockpt and ptsname_r on a
        // descriptor this function owns, with a buffer of the size given.
        let (master, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let master = <fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd);
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0 as libc::c_char; 128];
            let r = libc::ptsname_r(fd, buf.as_mut_ptr(), buf.len());
            if r != 0 {
                return Err(std::io::Error::from_raw_os_error(r));
            }
            let path = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
            (master, path)
        };
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)?;
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut master = master;
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // EIO: every slave closed (the container is gone).
                    Err(_) => break,
                }
            }
        });
        Ok(Console {
            path,
            slave: Some(slave.into()),
            text,
        })
    }

    /// Everything written to the console so far, without carriage returns.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).replace('\r', "")
    }
}
