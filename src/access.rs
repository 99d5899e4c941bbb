//! Who may talk to the daemon: peer credentials (`SO_PEERCRED`) checked on
//! every connection, on top of the socket file's mode. File permissions
//! alone are not enough: a socket passed by systemd or a directory with
//! loose permissions would otherwise let anyone in.

use std::collections::HashSet;

/// The connecting process, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
}

/// The access policy.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Users allowed to connect.
    pub uids: HashSet<u32>,
    /// Groups allowed to connect (primary or supplementary).
    pub gids: HashSet<u32>,
    /// Users allowed to `clear`.
    pub admins: HashSet<u32>,
    /// Add `"peer": {"pid", "uid"}` to every record.
    pub stamp_peer: bool,
}

/// The supplementary groups of a process, from `/proc/<pid>/status`
/// (`SO_PEERCRED` carries only the primary group). Racy by nature (the pid
/// could be reused), so it only ever *adds* permission for members of an
/// allowed group, which the socket's mode already granted them.
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
    /// May this peer connect?
    pub fn allows(&self, p: &Peer) -> bool {
        self.uids.contains(&p.uid)
            || self.gids.contains(&p.gid)
            || p.pid.is_some_and(|pid| {
                supplementary_groups(pid)
                    .iter()
                    .any(|g| self.gids.contains(g))
            })
    }

    /// May this peer `clear`?
    pub fn is_admin(&self, p: Option<&Peer>) -> bool {
        p.is_some_and(|p| self.admins.contains(&p.uid))
    }

    /// The `"peer"` member as the formatter appends it (indent=2, inside a
    /// record).
    pub fn stamp(p: &Peer) -> Vec<u8> {
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
        assert!(a.allows(&Peer {
            pid: None,
            uid: 1000,
            gid: 1
        }));
        assert!(a.allows(&Peer {
            pid: None,
            uid: 7,
            gid: 50
        }));
        assert!(!a.allows(&Peer {
            pid: None,
            uid: 7,
            gid: 1
        }));
        assert!(!a.is_admin(Some(&Peer {
            pid: None,
            uid: 1000,
            gid: 1
        })));
    }
}
