//! Names kept once: the interner that maps a subject, stage, worker or
//! error type to a `Sym`, and the hasher its maps use.

use super::*;

/// An interned string's id.
pub(crate) type Sym = u32;

/// FxHash (rustc's): a multiply-rotate hash, several times cheaper than
/// SipHash for the short keys here. No DoS concern: the maps are keyed by
/// interned ids and low-cardinality strings, and an attacker able to write
/// records could only slow its own `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(pub(super) u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

impl FxHasher {
    #[inline]
    pub(super) fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// `HashMap` hasher state for [`FxHasher`].
pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// A map keyed by interned id.
pub(crate) type SymMap<V> = HashMap<Sym, V, FxBuild>;

/// Small-cardinality strings (stages, subjects, workers, error types,
/// timing names) stored once.
///
/// Every name's text is kept once, end to end in one string (`text`, with
/// each name's end in `ends`), and found by a 64-bit keyed hash of it
/// (`by_name`): about 40 bytes besides the text, where a string of its own
/// and a map keyed by it took about 115. That matters when every record
/// brings new names (a worker id or an error text per record).
#[derive(Debug, Default)]
pub(crate) struct Interner {
    /// Every name, end to end; name `i` is `text[ends[i - 1]..ends[i]]`.
    text: String,
    ends: Vec<u64>,
    /// By the keyed hash of the decoded name. SipHash (std's seeded
    /// default), not FxHash: the names come from clients, and a client
    /// must not be able to make two names share a hash. A name whose hash
    /// is already another's (by chance: 2^-64 a pair) goes to `collided`.
    by_name: HashMap<u64, Sym, FixedState>,
    collided: HashMap<Box<str>, Sym>,
    keys: std::collections::hash_map::RandomState,
    /// Names already resolved, by [`NameRef::hash`] of their raw JSON
    /// spelling: `[group keys, error types]`. The common case (the same few
    /// stages, subjects, workers, timing names and errors in every record)
    /// is then one lookup in a small map, with no decoding and without
    /// reading the record's bytes at all.
    /// The spelling is kept and compared on every hit, so names that
    /// collide (by chance or by design) are never merged; spellings longer
    /// than [`RAW_CACHE_SPELLING`] are not kept (they are decoded each time).
    by_hash: [SpellingMap; 2],
}

pub(super) use crate::config::tuning::RAW_CACHE_MAX;

/// A name's hash to its symbol and spelling.
pub(super) type SpellingMap = HashMap<u64, (Sym, Box<[u8]>), FixedState>;

pub(super) use crate::config::tuning::RAW_CACHE_SPELLING;

/// Which meaning a name has: [`group_key`] or [`error_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKind {
    Group = 0,
    Error = 1,
}

impl Interner {
    pub(crate) fn intern(&mut self, s: &str) -> Sym {
        let h = self.keys.hash_one(s);
        if let Some(id) = self.find(h, s) {
            return id;
        }
        let id = self.ends.len() as Sym;
        self.text.push_str(s);
        self.ends.push(self.text.len() as u64);
        match self.by_name.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collided.insert(s.into(), id);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
        }
        id
    }

    /// The symbol of `s`, whose keyed hash is `h`.
    fn find(&self, h: u64, s: &str) -> Option<Sym> {
        match self.by_name.get(&h) {
            Some(&id) if self.name(id) == s => Some(id),
            Some(_) => self.collided.get(s).copied(),
            None => None,
        }
    }

    /// Bytes held: the names' text, their ends, the maps that find them,
    /// and the spelling caches.
    pub(crate) fn memory_bytes(&self) -> usize {
        let collided: usize = self
            .collided
            .keys()
            .map(|k| super::alloc_bytes(k.len()))
            .sum();
        let spellings: usize = self
            .by_hash
            .iter()
            .map(|m| {
                super::map_bytes(m)
                    + m.values()
                        .map(|(_, s)| super::alloc_bytes(s.len()))
                        .sum::<usize>()
            })
            .sum();
        self.text.capacity()
            + self.ends.capacity() * std::mem::size_of::<u64>()
            + super::map_bytes(&self.by_name)
            + super::map_bytes(&self.collided)
            + collided
            + spellings
    }

    pub(crate) fn get(&self, s: &str) -> Option<Sym> {
        self.find(self.keys.hash_one(s), s)
    }

    /// [`Interner::resolve`] for a name already known, `None` for a new one
    /// (which is then not interned).
    pub(super) fn resolve_known(&self, kind: NameKind, n: NameRef, rec: &[u8]) -> Option<Sym> {
        let raw = n.spelling(rec);
        self.cached(kind, n.hash, raw)
            .or_else(|| self.get(&decoded(kind, raw)))
    }

    /// The symbol [`Interner::by_hash`] remembers for this spelling.
    pub(super) fn cached(&self, kind: NameKind, hash: u64, raw: &[u8]) -> Option<Sym> {
        self.by_hash[kind as usize]
            .get(&hash)
            .filter(|(_, spelling)| **spelling == *raw)
            .map(|(id, _)| *id)
    }

    /// The symbol of a name of record `rec`: its group key or its error
    /// type. The record's bytes are read only the first time a spelling is
    /// seen.
    pub(super) fn resolve(&mut self, kind: NameKind, n: NameRef, rec: &[u8]) -> Sym {
        let raw = n.spelling(rec);
        if let Some(id) = self.cached(kind, n.hash, raw) {
            return id;
        }
        let id = self.intern(&decoded(kind, raw));
        let map = &mut self.by_hash[kind as usize];
        if map.len() < RAW_CACHE_MAX && raw.len() <= RAW_CACHE_SPELLING {
            // A colliding spelling already there keeps its place.
            map.entry(n.hash).or_insert_with(|| (id, raw.into()));
        }
        id
    }

    pub(crate) fn name(&self, id: Sym) -> &str {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        // `i - 1` is in range: `ends` holds `i`.
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start as usize..end as usize).unwrap_or("")
    }
}

/// A raw name as the interner keeps it: its group key or its error type.
pub(super) fn decoded(kind: NameKind, raw: &[u8]) -> std::borrow::Cow<'_, str> {
    match kind {
        NameKind::Group => group_key(Some(raw)),
        NameKind::Error => error_type(Some(raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are found again by their text, and two names whose hashes
    /// meet are both kept apart (the second in `collided`).
    #[test]
    fn names_are_kept_once_and_colliding_hashes_stay_apart() {
        let mut ix = Interner::default();
        let a = ix.intern("alpha");
        let e = ix.intern("");
        assert_eq!(ix.intern("alpha"), a);
        assert_eq!((ix.name(a), ix.name(e)), ("alpha", ""));
        assert_eq!(ix.get("beta"), None);
        // Make "beta" hash where "alpha" already is.
        let h = ix.keys.hash_one("beta");
        ix.by_name.insert(h, a);
        let b = ix.intern("beta");
        assert_ne!(a, b);
        assert_eq!(ix.get("beta"), Some(b));
        assert_eq!(ix.intern("beta"), b);
        assert_eq!(ix.name(b), "beta");
        assert_eq!(ix.collided.len(), 1);
        assert_eq!(ix.name(99), "");
    }
}
