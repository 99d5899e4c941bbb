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
/// record is accepted) and filled by the start-up scan.
#[derive(Debug, Default)]
pub(crate) struct RecordIds {
    seen: Mutex<HashSet<u128, BuildHasherDefault<Spread>>>,
    keys: (RandomState, RandomState),
    duplicates: AtomicU64,
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

    /// Notes the id of a record found in the file.
    pub(crate) fn note(&self, id: &[u8]) {
        let key = self.key(id);
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(key);
        }
    }

    /// True if the id is new (it is noted now); false if the log already
    /// holds (or has accepted) a record with it, which is counted.
    pub(crate) fn admit(&self, id: &[u8]) -> bool {
        let key = self.key(id);
        // A poisoned lock (a panic elsewhere while holding it) admits:
        // a record twice is better than a record lost.
        let new = self.seen.lock().map_or(true, |mut seen| seen.insert(key));
        if !new {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// Ids held, and the bytes their table takes.
    pub(crate) fn size(&self) -> (usize, usize) {
        self.seen.lock().map_or((0, 0), |seen| {
            let cap = seen.capacity();
            // hashbrown: buckets a power of two at 7/8 load, one control
            // byte each.
            let buckets = if cap == 0 {
                0
            } else {
                (cap * 8 / 7).next_power_of_two()
            };
            (seen.len(), buckets * 17)
        })
    }

    /// Records not logged again because their id was held.
    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_admitted_once() {
        let ids = RecordIds::default();
        assert!(ids.admit(br#""0193a1b2-0000-7000-8000-000000000001""#));
        assert!(!ids.admit(br#""0193a1b2-0000-7000-8000-000000000001""#));
        assert!(ids.admit(br#""0193a1b2-0000-7000-8000-000000000002""#));
        ids.note(b"42");
        assert!(!ids.admit(b"42"));
        assert_eq!(ids.duplicates(), 2);
        assert_eq!(ids.size().0, 3);
    }
}
