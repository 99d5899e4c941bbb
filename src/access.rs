//! Who may talk to the daemon: peer credentials (`SO_PEERCRED`) checked on
//! every connection, on top of the socket file's mode. File permissions
//! alone are not enough: a socket passed by systemd or a directory with
//! loose permissions would otherwise let anyone in.

use std::collections::HashSet;

/// The connecting process, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
}

/// The access policy.
///
/// Root may always connect and always `clear`: it can read and rename the
/// file anyway, and an operator running `joblogctl` under `sudo` must not
/// be told `forbidden` by the daemon it administers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// Users allowed to connect (root always is).
    pub uids: HashSet<u32>,
    /// Groups allowed to connect (primary or supplementary).
    pub gids: HashSet<u32>,
    /// Who may `clear`. `None` (the default): everyone allowed to connect,
    /// since `clear` destroys nothing (the file is archived beside it) and
    /// the old in-process logger let every worker clear; the guide's own
    /// example ends with `clear_log()`. `Some`: only these, and root.
    pub admins: Option<Admins>,
    /// Add `"peer": {"pid", "uid"}` to every record.
    pub stamp_peer: bool,
}

/// The users and groups `--admin-uid` / `--admin-gid` name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Admins {
    pub uids: HashSet<u32>,
    /// Primary or supplementary.
    pub gids: HashSet<u32>,
}

/// `SO_PEERGROUPS` (Linux 4.13), which libc does not export.
#[cfg(target_arch = "sparc64")]
const SO_PEERGROUPS: libc::c_int = 0x3d;
#[cfg(not(target_arch = "sparc64"))]
const SO_PEERGROUPS: libc::c_int = 59;

/// The supplementary groups of the process at the other end of socket
/// `fd`, as the kernel recorded them when it connected (`SO_PEERGROUPS`;
/// `SO_PEERCRED` carries only the primary group). None where the kernel
/// cannot tell (before 4.13).
///
/// Not read from `/proc/<pid>/status`, as it once was: under the shipped
/// unit (`ProtectProc=invisible`, `ProcSubset=pid`) other users' processes
/// are hidden from the daemon, so every worker let in by a supplementary
/// group (`usermod -aG joblog …`, as the README says) was refused; and a
/// client that had exited before its connection was accepted (sent its
/// records, then quit while the daemon restarted) was refused too.
pub(crate) fn peer_groups(fd: std::os::fd::RawFd) -> Option<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let size = std::mem::size_of::<libc::gid_t>();
        let mut len = libc::socklen_t::try_from(groups.len() * size).ok()?;
        // SAFETY: the kernel writes at most `len` bytes (gid_t values) into
        // `groups`, which has room for them, and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            groups.truncate(len as usize / size);
            return Some(groups);
        }
        // Too small: the kernel said how much it needs (at most 65,536
        // groups); try once more with that.
        let needed = len as usize / size;
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE)
            || needed <= groups.len()
        {
            return None;
        }
        groups.resize(needed, 0);
    }
    None
}

/// Is the peer's uid in `uids`, or its primary or a supplementary group
/// in `gids`?
fn in_lists(p: &Peer, groups: Option<&[u32]>, uids: &HashSet<u32>, gids: &HashSet<u32>) -> bool {
    if uids.contains(&p.uid) || gids.contains(&p.gid) {
        return true;
    }
    match groups {
        Some(g) => g.iter().any(|g| gids.contains(g)),
        None => p
            .pid
            .is_some_and(|pid| supplementary_groups(pid).iter().any(|g| gids.contains(g))),
    }
}

/// The supplementary groups of a process, from `/proc/<pid>/status`: only
/// where the kernel has no `SO_PEERGROUPS`. Racy by nature (the pid could
/// be reused), so it only ever *adds* permission for members of an allowed
/// group, which the socket's mode already granted them.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Groups:")).map(|l| {
                l["Groups:".len()..]
                    .split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

impl Access {
    /// May this peer connect? `groups`: its supplementary groups from
    /// [`peer_groups`], if the kernel told.
    pub(crate) fn allows(&self, p: &Peer, groups: Option<&[u32]>) -> bool {
        p.uid == 0 || in_lists(p, groups, &self.uids, &self.gids)
    }

    /// May this peer (already allowed to connect) `clear`? `groups` as
    /// for [`Access::allows`].
    pub(crate) fn may_clear(&self, p: &Peer, groups: Option<&[u32]>) -> bool {
        match &self.admins {
            None => true,
            Some(a) => p.uid == 0 || in_lists(p, groups, &a.uids, &a.gids),
        }
    }

    /// Who may clear, for the start-up log line.
    pub(crate) fn describe_admins(&self) -> String {
        match &self.admins {
            None => "everyone allowed to connect".to_string(),
            Some(a) => format!("root, uids {:?}, gids {:?}", a.uids, a.gids),
        }
    }

    /// The `"peer"` member as the formatter appends it (indent=2, inside a
    /// record).
    pub(crate) fn stamp(p: &Peer) -> Vec<u8> {
        format!(
            "\"peer\": {{\n      \"pid\": {},\n      \"uid\": {}\n    }}",
            p.pid.map_or_else(|| "null".to_string(), |v| v.to_string()),
            p.uid
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_or_group_grants_access() {
        let a = Access {
            uids: [1000].into(),
            gids: [50].into(),
            ..Access::default()
        };
        let p = |uid, gid| Peer {
            pid: None,
            uid,
            gid,
        };
        assert!(a.allows(&p(1000, 1), None));
        assert!(a.allows(&p(7, 50), None));
        assert!(!a.allows(&p(7, 1), None));
        assert!(a.allows(&p(7, 1), Some(&[3, 50])));
        assert!(!a.allows(&p(7, 1), Some(&[3, 51])));
        assert!(a.allows(&p(0, 0), Some(&[])), "root always may connect");
        assert!(
            a.may_clear(&p(7, 50), Some(&[])),
            "no admin lists: everyone"
        );
    }

    #[test]
    fn admin_lists_restrict_clear_but_never_lock_out_root() {
        let a = Access {
            uids: [1000].into(),
            gids: [50].into(),
            admins: Some(Admins {
                uids: [1000].into(),
                gids: [60].into(),
            }),
            ..Access::default()
        };
        let p = |uid, gid| Peer {
            pid: None,
            uid,
            gid,
        };
        assert!(a.may_clear(&p(1000, 1), Some(&[])));
        assert!(a.may_clear(&p(0, 0), Some(&[])));
        assert!(
            a.may_clear(&p(7, 1), Some(&[60])),
            "a supplementary admin group"
        );
        assert!(!a.may_clear(&p(7, 50), Some(&[])));
    }
}
