//! Record ids: a record whose `record_id` the log already holds is not
//! written again. A client that lost an acknowledgement (the connection
//! broke, the daemon was killed after reading the record) cannot know
//! whether the record was written, so it sends it again with the same id
//! (the Python client gives every record a UUIDv7 `record_id`); the daemon
//! answers `duplicates` for it instead of logging it twice.
//!
//! Each id is kept as 128 bits of two keyed hashes of its JSON text (the
//! keys are random per process, so nobody can make two ids collide on
//! purpose, and the set is rebuilt from the file at every start): 16
//! bytes a record, about 19 to 37 with the hash table's control bytes and
//! spare room. Records without a `record_id` cost nothing. The set covers
//! every record accepted since the start and every record in the live
//! file at the start; it is kept across `clear` and rotation (those
//! records are in the archives), and forgets the archives' ids at the
//! next start.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The set of ids, shared by every connection (checked and added as a
/// record is accepted) and filled by the start-up scan. In shards, so
/// that connections seldom wait for each other and a table that grows
/// (rehashing every id it holds) holds up a sixteenth of them.
#[derive(Debug, Default)]
pub(crate) struct RecordIds {
    shards: [Mutex<Generations>; SHARDS],
    keys: (RandomState, RandomState),
    duplicates: AtomicU64,
    /// Woken whenever ids leave `in_hand` (see [`RecordIds::wait_handed`]).
    handed: tokio::sync::Notify,
}

/// What [`RecordIds::admit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A new id, noted now under this key: the record is to be logged.
    New(u128),
    /// Held already, its record with the writer or in the file.
    Held,
    /// Held already, but its record is still in the hands of the
    /// connection that took it (not yet with the writer): an
    /// acknowledgement of the copy must wait until it is handed over
    /// ([`RecordIds::wait_handed`]), or it could come before the first
    /// copy is on disk.
    InHand(u128),
}

const SHARDS: usize = 16;

type Set = HashSet<u128, BuildHasherDefault<Spread>>;

/// The ids of the live log, and of the log before it (`clear` or a
/// rotation starts a new generation), so the set holds two logs' ids at
/// most, not every id since the daemon started; a record sent again
/// across one clear is still known.
#[derive(Debug, Default)]
struct Generations {
    current: Set,
    previous: Set,
    /// Ids of `current` whose records a connection holds and has not
    /// handed to the writer yet (a few thousand at most: a chunk's).
    in_hand: Set,
}

/// The keys are already keyed hashes: the table takes their low bits as
/// they are instead of hashing them again.
#[derive(Debug, Default)]
struct Spread(u64);

impl Hasher for Spread {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

impl RecordIds {
    fn key(&self, id: &[u8]) -> u128 {
        (u128::from(self.keys.0.hash_one(id)) << 64) | u128::from(self.keys.1.hash_one(id))
    }

    fn shard(&self, key: u128) -> &Mutex<Generations> {
        &self.shards[(key >> 124) as usize % SHARDS]
    }

    /// Notes the id of a record found in the file.
    pub(crate) fn note(&self, id: &[u8]) {
        let key = self.key(id);
        if let Ok(mut g) = self.shard(key).lock() {
            g.current.insert(key);
        }
    }

    /// Whether the id is new (noted now, and in hand until
    /// [`RecordIds::handed`] is told its key), or held already, which is
    /// counted.
    pub(crate) fn admit(&self, id: &[u8]) -> Admit {
        let key = self.key(id);
        // A poisoned lock (a panic elsewhere while holding it) admits:
        // a record twice is better than a record lost.
        let Ok(mut g) = self.shard(key).lock() else {
            return Admit::New(key);
        };
        // (In hand first: a clear may have moved its id to `previous`.)
        let found = if g.in_hand.contains(&key) {
            Admit::InHand(key)
        } else if g.previous.contains(&key) {
            Admit::Held
        } else if g.current.insert(key) {
            g.in_hand.insert(key);
            return Admit::New(key);
        } else {
            Admit::Held
        };
        drop(g);
        self.duplicates.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The records of these keys (from [`Admit::New`]) are with the
    /// writer now (or will never be: the connection is gone).
    pub(crate) fn handed(&self, keys: &[u128]) {
        if keys.is_empty() {
            return;
        }
        for (i, shard) in self.shards.iter().enumerate() {
            if let Ok(mut g) = shard.lock() {
                for k in keys.iter().filter(|k| (**k >> 124) as usize % SHARDS == i) {
                    g.in_hand.remove(k);
                }
            }
        }
        self.handed.notify_waiters();
    }

    /// Waits until none of `keys` is in a connection's hands any more.
    pub(crate) async fn wait_handed(&self, keys: &[u128]) {
        loop {
            let notified = self.handed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let in_hand = keys
                .iter()
                .any(|k| self.shard(*k).lock().is_ok_and(|g| g.in_hand.contains(k)));
            if !in_hand {
                return;
            }
            notified.await;
        }
    }

    /// A new log took the live one's place (`clear`, a rotation): its ids
    /// become the previous generation, and the oldest are forgotten.
    pub(crate) fn new_log(&self) {
        for shard in &self.shards {
            if let Ok(mut g) = shard.lock() {
                g.previous = std::mem::take(&mut g.current);
            }
        }
    }

    /// Ids held, and the bytes their tables take.
    pub(crate) fn size(&self) -> (usize, usize) {
        let mut held = (0, 0);
        for shard in &self.shards {
            if let Ok(g) = shard.lock() {
                for set in [&g.current, &g.previous] {
                    held.0 += set.len();
                    held.1 += table_bytes(set);
                }
            }
        }
        held
    }

    /// Records not logged again because their id was held.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// The bytes a set's table takes: hashbrown keeps buckets a power of two
/// at 7/8 load, each a 16-byte key and one control byte.
fn table_bytes(set: &Set) -> usize {
    let cap = set.capacity();
    if cap == 0 {
        0
    } else {
        (cap * 8 / 7).next_power_of_two() * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(a: Admit) -> bool {
        matches!(a, Admit::New(_))
    }

    #[test]
    fn an_id_is_admitted_once() {
        let ids = RecordIds::default();
        let Admit::New(one) = ids.admit(br#""0193a1b2-0000-7000-8000-000000000001""#) else {
            panic!("new")
        };
        // Its record not yet handed to the writer: a copy must wait.
        assert_eq!(
            ids.admit(br#""0193a1b2-0000-7000-8000-000000000001""#),
            Admit::InHand(one)
        );
        ids.handed(&[one]);
        assert_eq!(
            ids.admit(br#""0193a1b2-0000-7000-8000-000000000001""#),
            Admit::Held
        );
        assert!(new(ids.admit(br#""0193a1b2-0000-7000-8000-000000000002""#)));
        ids.note(b"42");
        assert_eq!(ids.admit(b"42"), Admit::Held);
        assert_eq!(ids.duplicates(), 3);
        assert_eq!(ids.size().0, 3);
        // Known across one new log, forgotten after two.
        ids.new_log();
        assert_eq!(ids.admit(b"42"), Admit::Held);
        ids.new_log();
        ids.new_log();
        assert!(new(ids.admit(b"42")));
        assert_eq!(ids.size().0, 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_ends_when_the_original_is_handed_over() {
        let ids = std::sync::Arc::new(RecordIds::default());
        let Admit::New(k) = ids.admit(b"7") else {
            panic!("new")
        };
        // A clear meanwhile does not make it look written.
        ids.new_log();
        assert_eq!(ids.admit(b"7"), Admit::InHand(k));
        let waiter = tokio::spawn({
            let ids = std::sync::Arc::clone(&ids);
            async move { ids.wait_handed(&[k]).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        ids.handed(&[k]);
        waiter.await.unwrap();
        ids.wait_handed(&[k]).await; // at once now
    }
}
