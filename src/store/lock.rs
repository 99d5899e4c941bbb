//! Is the `flock` on the log enforced? Refused on file systems that do
//! not keep a second daemon out.

use super::*;

/// File systems whose `flock` does not keep a daemon on another host (or,
/// for some FUSE ones, another process) out: NFS (with `local_lock=flock`
/// or `nolock`), SMB/CIFS, FUSE, 9p, Ceph. `statfs` magic numbers.
pub(super) const UNLOCKED_FS: [(i64, &str); 7] = [
    (0x6969, "NFS"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x517B, "SMB"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "Ceph"),
];

/// Checks that the `flock` just taken on `file` really keeps a second
/// daemon out: the file system is not one whose locks are local to a host
/// or not kept at all, and a second open file description of the same file
/// in this process is refused the lock, as any other would be. Two daemons
/// on one file both acknowledge records and each overwrites the other's.
pub(super) fn lock_is_enforced(path: &Path, file: &File) -> Result<(), StoreError> {
    use std::os::fd::AsRawFd;
    let refuse = |why: String| {
        Err(io_err(path, "lock")(io::Error::other(format!(
            "{why}: a second joblogd (on this or another host) could write the same file, \
             and each would overwrite the other's records. Keep the log on a local file \
             system, or pass --allow-unlocked-fs if you make sure only one daemon ever \
             writes it"
        ))))
    };
    // SAFETY: `statfs` fills the zeroed struct for a descriptor we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } == 0 {
        #[allow(clippy::unnecessary_cast)]
        let kind = st.f_type as i64;
        if let Some((_, name)) = UNLOCKED_FS.iter().find(|(m, _)| *m == kind) {
            return refuse(format!(
                "the log file is on {name}, where flock is not enforced"
            ));
        }
    }
    let probe = File::open(path).map_err(io_err(path, "open"))?;
    let enforced = match probe.try_lock() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(e)) => return Err(io_err(path, "lock")(e)),
    };
    if !enforced || injected_fault() == Some(Fault::LockUnenforced) {
        return refuse("a second lock on the log file was granted beside ours".to_string());
    }
    Ok(())
}
