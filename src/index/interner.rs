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
#[derive(Debug, Default)]
pub(crate) struct Interner {
    /// By decoded name. SipHash (std's seeded default), not FxHash: the
    /// names come from clients, and FxHash of strings that differ only
    /// past their first bytes collides in the low bits that pick a slot.
    ids: HashMap<std::sync::Arc<str>, Sym>,
    /// By symbol. The same allocation as the map's key: a name is kept
    /// once (many distinct error texts each cost their text once).
    names: Vec<std::sync::Arc<str>>,
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
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        let name: std::sync::Arc<str> = s.into();
        self.names.push(std::sync::Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    /// Bytes held: each name's text once (an `Arc<str>`: two counts and
    /// the text, one allocation), the list and the map that find it, and
    /// the spelling caches.
    pub(crate) fn memory_bytes(&self) -> usize {
        let texts: usize = self
            .names
            .iter()
            .map(|n| super::alloc_bytes(16 + n.len()))
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
        texts
            + self.names.capacity() * std::mem::size_of::<std::sync::Arc<str>>()
            + super::map_bytes(&self.ids)
            + spellings
    }

    pub(crate) fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
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
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// A raw name as the interner keeps it: its group key or its error type.
pub(super) fn decoded(kind: NameKind, raw: &[u8]) -> std::borrow::Cow<'_, str> {
    match kind {
        NameKind::Group => group_key(Some(raw)),
        NameKind::Error => error_type(Some(raw)),
    }
}
