//! The in-memory index: one compact [`Entry`] per record (where it is in the
//! file plus the few fields queries filter on), interned strings, the
//! newest record of each video, and statistics maintained incrementally so
//! that an unfiltered `stats` costs the same at 100 records and at 10
//! million.
//!
//! Whole records are never kept: queries read them back from the file.
//! Owned by the batcher task alone (no lock), which updates it as records
//! are *accepted* (so answers include records not yet flushed) and rebuilds
//! it from the start-up scan.
//!
//! Semantics follow the Python `JobLogger` exactly where it defined them
//! (successful = truthy `success`; error type = text before the first `:`;
//! see `protocol.md`), and never crash where it did (a null `error`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;

use crate::json::{Formatter, TopField, is_word};

/// Top-level keys the index reads. The order is the index into
/// [`RawMeta::ranges`].
pub const KEYS: [&str; 12] = [
    "video_id",
    "success",
    "stage",
    "subject",
    "worker_id",
    "error",
    "processing_duration",
    "total_files",
    "logged_at",
    "is_retryable",
    "timings",
    "op",
];
const VIDEO_ID: usize = 0;
const SUCCESS: usize = 1;
const STAGE: usize = 2;
const SUBJECT: usize = 3;
const WORKER_ID: usize = 4;
const ERROR: usize = 5;
const DURATION: usize = 6;
const TOTAL_FILES: usize = 7;
const LOGGED_AT: usize = 8;
const IS_RETRYABLE: usize = 9;
const TIMINGS: usize = 10;
/// Not indexed: it tells a request from a record, in the same pass.
const OP: usize = 11;

/// Where the indexed fields' values are inside one record's bytes
/// (`start..start+len`, len 0 = absent). Found by the formatter while it
/// prints or validates the record, so no second parse is needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawMeta {
    pub ranges: [(u32, u32); KEYS.len()],
}

impl RawMeta {
    /// Collects the known keys from `(key, value range)` pairs, ranges
    /// relative to the record's first byte. The last duplicate wins, as in
    /// `json.load`.
    pub fn collect<'k>(pairs: impl Iterator<Item = (&'k [u8], Range<usize>)>) -> RawMeta {
        let mut m = RawMeta::default();
        for (key, v) in pairs {
            // Length and first byte pick the one candidate, which is then
            // compared as a fixed-size value: this runs for every member of
            // every record, and most keys are rejected by the first step.
            let k = match (key.len(), key.first()) {
                (8, Some(b'v')) if is_word(key, b"video_id") => VIDEO_ID,
                (7, Some(b's')) if is_word(key, b"success") => SUCCESS,
                (5, Some(b's')) if is_word(key, b"stage") => STAGE,
                (7, Some(b's')) if is_word(key, b"subject") => SUBJECT,
                (9, Some(b'w')) if is_word(key, b"worker_id") => WORKER_ID,
                (5, Some(b'e')) if is_word(key, b"error") => ERROR,
                (19, Some(b'p')) if is_word(key, b"processing_duration") => DURATION,
                (11, Some(b't')) if is_word(key, b"total_files") => TOTAL_FILES,
                (9, Some(b'l')) if is_word(key, b"logged_at") => LOGGED_AT,
                (12, Some(b'i')) if is_word(key, b"is_retryable") => IS_RETRYABLE,
                (7, Some(b't')) if is_word(key, b"timings") => TIMINGS,
                (2, Some(b'o')) if is_word(key, b"op") => OP,
                _ => continue,
            };
            m.ranges[k] = (v.start as u32, (v.end - v.start) as u32);
        }
        m
    }

    /// From the formatter's output-side fields; `rec_start` is where the
    /// record begins in `out`.
    pub fn from_output(out: &[u8], fields: &[TopField], rec_start: usize) -> RawMeta {
        Self::collect(fields.iter().map(|f| {
            (
                &out[f.key_out.clone()],
                f.value_out.start - rec_start..f.value_out.end - rec_start,
            )
        }))
    }

    /// From the formatter's input-side fields (start-up scan of the file):
    /// keys compared as spelled. See [`RawMeta::from_scanned`].
    pub fn from_input(input: &[u8], fields: &[TopField], rec_start: usize) -> RawMeta {
        Self::collect(fields.iter().map(|f| {
            let k =
                &input[f.key_in.start + 1..f.key_in.end.saturating_sub(1).max(f.key_in.start + 1)];
            (k, f.value_in.start - rec_start..f.value_in.end - rec_start)
        }))
    }

    /// [`RawMeta::from_input`] for the value `fmt` just validated: a key
    /// written with escapes (`"\u0073uccess"`, which the daemon never
    /// writes but a hand-made file may hold) is decoded first, as
    /// `json.load` reads it. The formatter noted whether there was any, so
    /// other records (all but hand-made ones) cost nothing more.
    pub fn from_scanned(input: &[u8], fmt: &Formatter, rec_start: usize) -> RawMeta {
        if !fmt.escaped_keys {
            return Self::from_input(input, &fmt.fields, rec_start);
        }
        let decoded: Vec<(std::borrow::Cow<'_, [u8]>, Range<usize>)> = fmt
            .fields
            .iter()
            .map(|f| {
                let quoted = &input[f.key_in.clone()];
                let key = match string_bytes(quoted) {
                    Some(k) => k,
                    None => quoted[1..quoted.len().saturating_sub(1).max(1)].into(),
                };
                (
                    key,
                    f.value_in.start - rec_start..f.value_in.end - rec_start,
                )
            })
            .collect();
        Self::collect(decoded.iter().map(|(k, v)| (k.as_ref(), v.clone())))
    }

    /// The object has a top-level `op`: it is a request, not a record.
    pub fn has_op(&self) -> bool {
        self.ranges[OP].1 > 0
    }

    fn get<'a>(&self, rec: &'a [u8], k: usize) -> Option<&'a [u8]> {
        let (s, l) = self.ranges[k];
        (l > 0)
            .then(|| rec.get(s as usize..(s + l) as usize))
            .flatten()
    }
}

/// An interned string's id.
pub type Sym = u32;

/// FxHash (rustc's): a multiply-rotate hash, several times cheaper than
/// SipHash for the short keys here. No DoS concern: the maps are keyed by
/// interned ids and low-cardinality strings, and an attacker able to write
/// records could only slow its own `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

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
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// `HashMap` hasher state for [`FxHasher`].
pub type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// A map keyed by interned id.
pub type SymMap<V> = HashMap<Sym, V, FxBuild>;

/// Small-cardinality strings (stages, subjects, workers, error types,
/// timing names) stored once.
#[derive(Debug, Default)]
pub struct Interner {
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

/// Distinct spellings each map of [`Interner::by_hash`] remembers; past it
/// (unique error messages, say) values take the decoding path uncached, so
/// the maps never grow with the log.
const RAW_CACHE_MAX: usize = 4096;

/// A name's hash to its symbol and spelling.
type SpellingMap = HashMap<u64, (Sym, Box<[u8]>), FixedState>;

/// Longest spelling [`Interner::by_hash`] keeps.
const RAW_CACHE_SPELLING: usize = 256;

/// Which meaning a name has: [`group_key`] or [`error_type`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Group = 0,
    Error = 1,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        let name: std::sync::Arc<str> = s.into();
        self.names.push(std::sync::Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }

    /// [`Interner::resolve`] for a name already known, `None` for a new one
    /// (which is then not interned).
    fn resolve_known(&self, kind: NameKind, n: NameRef, rec: &[u8]) -> Option<Sym> {
        let raw = n.spelling(rec);
        self.cached(kind, n.hash, raw)
            .or_else(|| self.get(&decoded(kind, raw)))
    }

    /// The symbol [`Interner::by_hash`] remembers for this spelling.
    fn cached(&self, kind: NameKind, hash: u64, raw: &[u8]) -> Option<Sym> {
        self.by_hash[kind as usize]
            .get(&hash)
            .filter(|(_, spelling)| **spelling == *raw)
            .map(|(id, _)| *id)
    }

    /// The symbol of a name of record `rec`: its group key or its error
    /// type. The record's bytes are read only the first time a spelling is
    /// seen.
    fn resolve(&mut self, kind: NameKind, n: NameRef, rec: &[u8]) -> Sym {
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

    pub fn name(&self, id: Sym) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

/// A raw name as the interner keeps it: its group key or its error type.
fn decoded(kind: NameKind, raw: &[u8]) -> std::borrow::Cow<'_, str> {
    match kind {
        NameKind::Group => group_key(Some(raw)),
        NameKind::Error => error_type(Some(raw)),
    }
}

/// Entry flags.
pub const F_SUCCESS: u8 = 1;
/// `is_retryable` is exactly `false`.
pub const F_NOT_RETRYABLE: u8 = 2;
/// The record has a string `video_id` (hashed into `video`).
pub const F_HAS_VIDEO: u8 = 4;
/// `processing_duration` is a truthy number.
pub const F_HAS_DURATION: u8 = 8;

/// A raw JSON value that names a group (or an error), located in its record
/// (`start`, `len` relative to the record's first byte; `len` 0 = absent,
/// which reads as `null`) and hashed where the record was formatted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameRef {
    pub hash: u64,
    pub start: u32,
    pub len: u32,
    /// The spelling itself, when at most [`INLINE_SPELLING`] bytes long (as
    /// stages, subjects, worker ids and timing names are): the writer then
    /// checks a name against the interner without reading the record,
    /// whose bytes another core wrote (a cache miss per name).
    inline: [u8; INLINE_SPELLING],
}

/// Longest spelling a [`NameRef`] carries with it.
const INLINE_SPELLING: usize = 24;

impl NameRef {
    fn new(rec: &[u8], (start, len): (u32, u32)) -> NameRef {
        let range = start as usize..start as usize + len as usize;
        let mut n = NameRef {
            // Out of the record reads as absent (`null`).
            len: if rec.get(range.clone()).is_some() {
                len
            } else {
                0
            },
            start,
            ..NameRef::default()
        };
        if let Some(raw) = rec.get(range).filter(|r| r.len() <= INLINE_SPELLING) {
            n.inline[..raw.len()].copy_from_slice(raw);
        }
        n.hash = name_hash(n.spelling(rec));
        n
    }

    /// The raw JSON text it refers to in `rec` (`null` when absent).
    fn spelling<'a>(&'a self, rec: &'a [u8]) -> &'a [u8] {
        match self.len as usize {
            0 => b"null",
            len if len <= INLINE_SPELLING => &self.inline[..len],
            len => rec
                .get(self.start as usize..self.start as usize + len)
                .unwrap_or(b"null"),
        }
    }
}

/// Hash of a name's raw spelling: FxHash (cheap for these short strings)
/// started from a random per-process seed and closed with the length, so
/// which spellings collide cannot be known in advance; a chance collision
/// at 64 bits is negligible. Then mixed (`fmix64`): FxHash's low bits
/// depend only on the low bytes of each word, so spellings that differ
/// only past their first bytes (`"t1_0"`, `"t2_0"`, …) shared low bits, and
/// the maps keyed by this hash (whose slot comes from the low bits) turned
/// into long chains: a client sending many distinct names made every
/// lookup slower, quadratically.
fn name_hash(raw: &[u8]) -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64));
    let mut h = FxHasher(seed);
    h.write(raw);
    h.write_usize(raw.len());
    fmix64(h.finish())
}

/// MurmurHash3's finaliser: every output bit depends on every input bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// What one record contributes to the index, computed from its bytes alone
/// ([`facts`]) where the record was formatted: on the connection's task,
/// in parallel and while the bytes are still in that core's cache, or by the
/// start-up scan. The single writer then only resolves names to symbols
/// and pushes the entry ([`Index::push_facts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Facts {
    pub logged_at: i64,
    pub duration: f64,
    pub video: u64,
    pub total_files: f32,
    pub flags: u8,
    /// `stage`, `subject`, `worker_id` and (failed records only) `error`.
    pub names: [NameRef; 4],
    /// This record's timings: a range of the list passed along with it.
    pub timings: (u32, u32),
}

/// One named timing of a successful record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimingFact {
    /// The timing's key (a JSON string), located in the record.
    pub name: NameRef,
    pub value: f64,
}

/// Computes the [`Facts`] of record `rec` (its fields located in `meta`),
/// appending its timings to `timings`. `scratch` parses the `timings`
/// object.
pub fn facts(
    rec: &[u8],
    meta: &RawMeta,
    scratch: &mut Formatter,
    timings: &mut Vec<TimingFact>,
) -> Facts {
    let get = |k| meta.get(rec, k);
    let success = get(SUCCESS).is_some_and(truthy);
    let mut flags = 0u8;
    if success {
        flags |= F_SUCCESS;
    }
    if get(IS_RETRYABLE) == Some(b"false") {
        flags |= F_NOT_RETRYABLE;
    }
    let mut video = 0;
    if let Some(v) = get(VIDEO_ID).and_then(string_bytes) {
        video = hash_video(&v);
        flags |= F_HAS_VIDEO;
    }
    let duration = get(DURATION).and_then(number).unwrap_or(f64::NAN);
    if duration.is_finite() && duration != 0.0 {
        flags |= F_HAS_DURATION;
    }
    let name = |k: usize| NameRef::new(rec, meta.ranges[k]);
    let names = [
        name(STAGE),
        name(SUBJECT),
        name(WORKER_ID),
        if success {
            NameRef::default()
        } else {
            name(ERROR)
        },
    ];
    let logged_at = get(LOGGED_AT)
        .and_then(string_bytes)
        .and_then(|s| parse_time_bytes(&s))
        .unwrap_or(i64::MIN);
    let first = timings.len();
    if success && let Some(t) = get(TIMINGS).filter(|t| t.first() == Some(&b'{')) {
        let base = meta.ranges[TIMINGS].0;
        // Ranges within `t` → a fact located in the record.
        let fact = |k: Range<usize>, value| TimingFact {
            name: NameRef::new(rec, (base + k.start as u32, (k.end - k.start) as u32)),
            value,
        };
        let mark = timings.len();
        if !flat_numbers(t, |k, v| timings.push(fact(k, v))) {
            timings.truncate(mark);
            timing_members(t, scratch, |k, v| timings.push(fact(k, v)));
        }
    }
    Facts {
        logged_at,
        duration,
        video,
        total_files: get(TOTAL_FILES).and_then(number).unwrap_or(0.0) as f32,
        flags,
        names,
        timings: (first as u32, timings.len() as u32),
    }
}

/// [`facts`] for a record whose bytes are not kept: the spellings longer
/// than a [`NameRef`] carries are copied to the end of `spellings` and
/// located there, so [`Index::push_facts_at`] can take `spellings` in
/// place of the record. Copying a few names costs less than copying a
/// large record.
pub fn facts_detached(
    rec: &[u8],
    meta: &RawMeta,
    scratch: &mut Formatter,
    timings: &mut Vec<TimingFact>,
    spellings: &mut Vec<u8>,
) -> Facts {
    let mut f = facts(rec, meta, scratch, timings);
    let first = f.timings.0 as usize;
    let names = f
        .names
        .iter_mut()
        .chain(timings[first..].iter_mut().map(|t| &mut t.name));
    for n in names {
        let len = n.len as usize;
        if len > INLINE_SPELLING {
            // Past 4 GiB of spellings the name reads as absent (null).
            let Ok(at) = u32::try_from(spellings.len()) else {
                n.len = 0;
                continue;
            };
            spellings.extend_from_slice(n.spelling(rec));
            n.start = at;
        }
    }
    f
}

/// One record: 64 bytes (checked by a test).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Byte offset of the record's `{` in the file.
    pub offset: u64,
    /// `logged_at` as naive microseconds since 1970 (no time zone, as
    /// Python's isoformat is naive), `i64::MIN` if missing or unparseable.
    pub logged_at: i64,
    /// `processing_duration` if a number, else NaN.
    pub duration: f64,
    /// 64-bit hash of the `video_id` string (see [`F_HAS_VIDEO`]).
    pub video: u64,
    pub len: u32,
    pub stage: Sym,
    pub subject: Sym,
    pub worker: Sym,
    /// Error type (failed records only; meaningless for successful ones).
    pub error_type: Sym,
    /// `total_files` if a number, else 0.
    pub total_files: f32,
    pub flags: u8,
}

impl Entry {
    pub fn success(&self) -> bool {
        self.flags & F_SUCCESS != 0
    }
}

/// Python truthiness of a JSON value.
pub fn truthy(v: &[u8]) -> bool {
    match v.first() {
        None | Some(b'n' | b'f') => false,
        Some(b't') => true,
        Some(b'"') => v.len() > 2,
        Some(b'[' | b'{') => v[1..]
            .iter()
            .any(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b']' | b'}')),
        Some(_) => number(v).is_some_and(|n| n != 0.0),
    }
}

/// The members of the `timings` object `t` that count: those with a number
/// value and a key that decodes (a lone surrogate escape does not, and is
/// skipped, as the filtered `stats` path skips it), with the key's range
/// (quotes included). The general path behind [`flat_numbers`].
fn timing_members(t: &[u8], scratch: &mut Formatter, mut each: impl FnMut(Range<usize>, f64)) {
    // As deep as a record may be: a deeply nested member must not cost the
    // others (a limit of 64 dropped every timing of such a record).
    if scratch
        .validate(t, 0, crate::json::MAX_RECORD_DEPTH, true)
        .is_err()
    {
        return;
    }
    // The last member of each name wins before values are judged: a name
    // whose last value is not a number does not count, as `json.load`
    // keeps only that last value.
    let mut members: Vec<_> = scratch
        .fields
        .iter()
        .filter_map(|f| {
            let name = string(&t[f.key_in.clone()])?;
            Some((name, f.key_in.clone(), number(&t[f.value_in.clone()])))
        })
        .collect();
    last_of_each(&mut members, |m| m.0.as_ref());
    for (_, key, value) in members {
        if let Some(value) = value {
            each(key, value);
        }
    }
}

/// The members of `t`, a JSON object already known to be valid, when
/// every key is free of escapes and every value is a number: `each` gets
/// the key's range (quotes included) and the value, in order, duplicates
/// included. Returns false as soon as anything else turns up (the caller
/// then takes the general parser, which also handles those). This is the
/// shape of nearly every `timings` object, and a tenth of the cost of a
/// validating parse.
fn flat_numbers(t: &[u8], mut each: impl FnMut(Range<usize>, f64)) -> bool {
    let ws = |mut i: usize| {
        while t
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            i += 1;
        }
        i
    };
    if t.first() != Some(&b'{') {
        return false;
    }
    let mut i = ws(1);
    if t.get(i) == Some(&b'}') {
        return true;
    }
    loop {
        if t.get(i) != Some(&b'"') {
            return false;
        }
        // The closing quote, in one pass that also rules out escapes.
        let mut close = i + 1;
        loop {
            match t.get(close) {
                Some(b'"') => break,
                Some(b'\\') | None => return false,
                Some(_) => close += 1,
            }
        }
        let key = i..close + 1;
        i = ws(close + 1);
        if t.get(i) != Some(&b':') {
            return false;
        }
        let v = ws(i + 1);
        let mut end = v;
        while t
            .get(end)
            .is_some_and(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            end += 1;
        }
        let Some(value) = number(&t[v..end]) else {
            return false;
        };
        each(key, value);
        i = ws(end);
        match t.get(i) {
            Some(b',') => i = ws(i + 1),
            Some(b'}') => return true,
            _ => return false,
        }
    }
}

/// A JSON number's value.
pub fn number(v: &[u8]) -> Option<f64> {
    match v.first() {
        Some(b'-' | b'0'..=b'9') => {
            simple_decimal(v).or_else(|| std::str::from_utf8(v).ok()?.parse().ok())
        }
        _ => None,
    }
}

/// Powers of ten that are exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The common case of [`number`] (`45.2`, `1697543210.123`, `4`): at most
/// 15 digits and no exponent. The digits then form an integer that an f64
/// holds exactly, and dividing it by an exact power of ten is one correctly
/// rounded operation, so the result is the same as a full parse (Clinger's
/// fast path). `None` for anything else (the caller parses it fully).
fn simple_decimal(v: &[u8]) -> Option<f64> {
    let (neg, digits) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let mut mantissa = 0u64;
    let mut count = 0usize;
    let mut fraction = None;
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                count += 1;
                if count > 15 {
                    // Past what the fast path handles (and before the
                    // mantissa could overflow).
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
            }
            b'.' if fraction.is_none() => fraction = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    let x = mantissa as f64 / POW10[fraction.unwrap_or(0)];
    Some(if neg { -x } else { x })
}

/// A JSON string's content, decoded; `None` if `v` is not a string.
pub fn string(v: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    if v.first() != Some(&b'"') || v.len() < 2 {
        return None;
    }
    let inner = &v[1..v.len() - 1];
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner)
            .ok()
            .map(std::borrow::Cow::Borrowed);
    }
    serde_json::from_slice::<String>(v)
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// A JSON string's content as bytes, decoded only when it holds an escape;
/// `None` if `v` is not a string. The content of a string the formatter
/// accepted is valid UTF-8, so no check is repeated here.
pub fn string_bytes(v: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if v.first() != Some(&b'"') || v.len() < 2 {
        return None;
    }
    let inner = &v[1..v.len() - 1];
    if memchr::memchr(b'\\', inner).is_none() {
        return Some(std::borrow::Cow::Borrowed(inner));
    }
    string(v).map(|s| std::borrow::Cow::Owned(s.into_owned().into_bytes()))
}

/// How a value names a group (`stages`, `by_subject`, `by_worker`): a
/// string's content, anything else its JSON text (compact), missing or null
/// `"null"` — as Python's `json.dumps` turns dict keys into strings.
pub fn group_key(v: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    match v {
        None => "null".into(),
        Some(v) => match string(v) {
            Some(s) => s,
            None => String::from_utf8_lossy(&minify(v)).into_owned().into(),
        },
    }
}

/// The error type of a failed record: the text before the first `:` (not
/// trimmed), the whole text without one, `"Unknown error"` when missing or
/// null, and the JSON text of a non-string.
pub fn error_type(v: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
    match v {
        None | Some(b"null") => "Unknown error".into(),
        Some(v) => match string(v) {
            Some(std::borrow::Cow::Borrowed(s)) => s.split(':').next().unwrap_or(s).into(),
            Some(std::borrow::Cow::Owned(s)) => {
                s.split(':').next().unwrap_or(&s).to_string().into()
            }
            None => String::from_utf8_lossy(&minify(v)).into_owned().into(),
        },
    }
}

/// JSON text without the whitespace between tokens.
pub fn minify(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    minify_into(v, &mut out);
    out
}

/// Appends `v` without the whitespace between tokens (strings untouched,
/// but for raw control bytes, which only a damaged record holds: escaped).
/// The output never holds a raw newline, whatever `v` is.
pub fn minify_into(v: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let start = i;
                i += 1;
                while i < v.len() {
                    match v[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let string = &v[start..i.min(v.len())];
                if string.iter().any(|&b| b < 0x20) {
                    // Only in a record damaged underneath the daemon (valid
                    // JSON never holds one): escaped, so that a raw newline
                    // cannot split the one-line reply this goes into.
                    for &b in string {
                        if b < 0x20 {
                            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                        } else {
                            out.push(b);
                        }
                    }
                } else {
                    out.extend_from_slice(string);
                }
            }
            _ => {
                let start = i;
                while i < v.len() && !matches!(v[i], b' ' | b'\t' | b'\n' | b'\r' | b'"') {
                    i += 1;
                }
                let run = &v[start..i];
                // Outside strings only `NaN` and `Infinity` hold these
                // letters: a file written by Python's json.dump may have
                // them (the daemon writes them as null), and a reply must
                // stay strict JSON.
                if run.iter().any(|&b| b == b'N' || b == b'I') {
                    non_finite_as_null(run, out);
                } else {
                    out.extend_from_slice(run);
                }
            }
        }
    }
}

/// Copies `run` (bytes outside strings) with `NaN`, `Infinity` and
/// `-Infinity` written as `null`.
fn non_finite_as_null(run: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < run.len() {
        let rest = &run[i..];
        let word: &[u8] = if rest.starts_with(b"-Infinity") {
            b"-Infinity"
        } else if rest.starts_with(b"Infinity") {
            b"Infinity"
        } else if rest.starts_with(b"NaN") {
            b"NaN"
        } else {
            out.push(run[i]);
            i += 1;
            continue;
        };
        out.extend_from_slice(b"null");
        i += word.len();
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY-MM-DD[THH:MM[:SS[.ffffff]]]` (what Python's isoformat
/// prints; a space may stand for `T`; anything after, such as an offset, is
/// ignored) into naive microseconds since 1970.
pub fn parse_time(s: &str) -> Option<i64> {
    parse_time_bytes(s.as_bytes())
}

/// [`parse_time`] on bytes (a record's `logged_at` content, not re-checked
/// as UTF-8: only ASCII digits and separators are accepted anyway).
pub fn parse_time_bytes(b: &[u8]) -> Option<i64> {
    let num = |r: Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if b.len() > 10 && b.len() < 16 {
        return None;
    }
    let mut micros = days_from_civil(y, mo, d) * 86_400_000_000;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b' ') || b.get(13) != Some(&b':') {
            return None;
        }
        let (h, mi) = (num(11..13)?, num(14..16)?);
        let mut sec = 0;
        let mut frac = 0;
        let mut end = 16;
        if b.get(16) == Some(&b':') {
            sec = num(17..19)?;
            end = 19;
            if b.get(19) == Some(&b'.') {
                let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let mut f = 0i64;
                for k in 0..6 {
                    let d = if k < digits { b[20 + k] - b'0' } else { 0 };
                    f = f * 10 + i64::from(d);
                }
                frac = f;
                end = 20 + digits;
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        // What may follow: nothing, or an offset as Python prints it (`Z`,
        // `+HH:MM[…]`), which a naive comparison ignores.
        let rest = &b[end..];
        let offset_ok = rest.is_empty()
            || rest == b"Z"
            || (rest.len() >= 6
                && matches!(rest[0], b'+' | b'-')
                && rest[1..3].iter().all(u8::is_ascii_digit)
                && rest[3] == b':');
        if !offset_ok {
            return None;
        }
        micros += ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac;
    }
    Some(micros)
}

/// Formats naive microseconds as Python's `isoformat()`.
pub fn format_time(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = rest / 1_000_000;
    let us = rest % 1_000_000;
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if us != 0 {
        s.push_str(&format!(".{us:06}"));
    }
    s
}

/// A log-linear histogram: 128 buckets per power of two, so a percentile
/// read from it (the mean of its bucket) is within 0.8% of the exact value, at a memory cost that
/// does not grow with the number of values. Mean and max are exact.
#[derive(Debug, Clone, Default)]
pub struct Hist {
    /// Per bucket: how many values, and their sum (so a bucket reads back
    /// as the mean of its values: exact when they are all equal). Sparse:
    /// a timing name seen once costs one bucket.
    buckets: BTreeMap<i64, (u64, f64)>,
    pub count: u64,
    pub sum: f64,
    pub max: f64,
    pub min: f64,
}

impl Hist {
    /// Buckets in the order of their values: zero alone (exact), then by
    /// sign and the top 7 bits of the mantissa, so a bucket spans at most
    /// 2^-7 of its values (within 0.8%). Negative values (not expected for
    /// durations, but any number can be sent) mirror the positive ones:
    /// sharing one bucket with zero made percentiles read back as the mean
    /// of unrelated values.
    fn bucket(v: f64) -> i64 {
        let key = |m: f64| (m.to_bits() >> (52 - 7)) as i64 + 1;
        if v > 0.0 {
            key(v)
        } else if v < 0.0 {
            -key(-v)
        } else {
            0
        }
    }

    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.max = v;
            self.min = v;
        } else {
            self.max = self.max.max(v);
            self.min = self.min.min(v);
        }
        self.count += 1;
        self.sum += v;
        let b = self.buckets.entry(Self::bucket(v)).or_insert((0, 0.0));
        b.0 += 1;
        b.1 += v;
    }

    /// Nearest-rank percentile `p` in 0..=100, or None when empty.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(n, sum) in self.buckets.values() {
            seen += n;
            if seen >= rank {
                return Some((sum / n as f64).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// Keeps only the last of the items with the same `key`: a name given
/// twice in one `timings` object counts once, with its last value, as
/// Python's `json.load` (and so the Python logger's statistics) keeps it.
/// Linear: a record may repeat one name hundreds of thousands of times
/// (a quadratic pass over such a record held the writer for 30 s).
pub fn last_of_each<T, K: std::hash::Hash + Eq + ?Sized>(
    items: &mut Vec<T>,
    key: impl Fn(&T) -> &K,
) {
    // The usual handful of timings: comparing is cheaper than hashing.
    if items.len() <= 16 {
        let mut i = 0;
        while i < items.len() {
            if items[i + 1..]
                .iter()
                .any(|later| key(later) == key(&items[i]))
            {
                items.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut keep = vec![false; items.len()];
        for (i, item) in items.iter().enumerate().rev() {
            keep[i] = seen.insert(key(item));
        }
        keep
    };
    let mut k = keep.iter();
    items.retain(|_| k.next().copied().unwrap_or(true));
}

/// Counters for [`Aggregate`]'s `by_subject` / `by_worker`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub total: u64,
    pub successful: u64,
}

/// Distinct timing names `stats` keeps figures for. Timing names are a
/// pipeline's stages (a handful); a client that puts ids into them (`"t_<video
/// id>"`) would otherwise grow the index by a histogram and a name per
/// record, and every `stats` reply with it. Values under later names are
/// counted in `timings_untracked` instead.
pub const MAX_TIMING_NAMES: usize = 1024;

/// Everything `stats` reports, over some set of records.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub total: u64,
    pub successful: u64,
    /// Sum and count of truthy durations of successful records.
    pub duration_sum: f64,
    pub duration_count: u64,
    pub files: f64,
    pub error_types: SymMap<u64>,
    pub stages: SymMap<u64>,
    pub by_subject: SymMap<Tally>,
    pub by_worker: SymMap<Tally>,
    /// Per timing name, over successful records; at most
    /// [`MAX_TIMING_NAMES`] names.
    pub timings: SymMap<Hist>,
    /// Timing values not counted because their name came after the first
    /// [`MAX_TIMING_NAMES`].
    pub timings_untracked: u64,
    /// `processing_duration` of successful records.
    pub duration: Hist,
    pub first_logged_at: Option<i64>,
    pub last_logged_at: Option<i64>,
}

impl Aggregate {
    /// Adds one record. `timings` are the record's `(name, value)` pairs
    /// (only used for successful records).
    pub fn add(&mut self, e: &Entry, timings: &[(Sym, f64)]) {
        self.total += 1;
        *self.stages.entry(e.stage).or_insert(0) += 1;
        let ok = u64::from(e.success());
        let s = self.by_subject.entry(e.subject).or_default();
        s.total += 1;
        s.successful += ok;
        let w = self.by_worker.entry(e.worker).or_default();
        w.total += 1;
        w.successful += ok;
        if e.success() {
            self.successful += 1;
            if e.flags & F_HAS_DURATION != 0 {
                self.duration_sum += e.duration;
                self.duration_count += 1;
            }
            if e.duration.is_finite() {
                self.duration.add(e.duration);
            }
            self.files += f64::from(e.total_files);
            for &(name, v) in timings {
                if self.timings.len() < MAX_TIMING_NAMES {
                    self.timings.entry(name).or_default().add(v);
                } else if let Some(h) = self.timings.get_mut(&name) {
                    h.add(v);
                } else {
                    self.timings_untracked += 1;
                }
            }
        } else {
            *self.error_types.entry(e.error_type).or_insert(0) += 1;
        }
        if e.logged_at != i64::MIN {
            self.first_logged_at = Some(
                self.first_logged_at
                    .map_or(e.logged_at, |f| f.min(e.logged_at)),
            );
            self.last_logged_at = Some(
                self.last_logged_at
                    .map_or(e.logged_at, |l| l.max(e.logged_at)),
            );
        }
    }
}

/// A fast, fixed hasher for video ids (the index must be reproducible from
/// the file, so no random seed is needed; collisions at 64 bits are
/// negligible and a `video_id` filter re-checks the record itself).
fn hash_video(s: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(s);
    h.finish() | 1
}

/// The index of one log file.
#[derive(Debug, Default)]
pub struct Index {
    pub entries: Vec<Entry>,
    /// Newest record (entry number) of each video.
    pub latest: HashMap<VideoKey, u32, FixedState>,
    pub syms: Interner,
    /// Over every record.
    pub all: Aggregate,
    /// Videos whose newest record failed and is not `is_retryable: false`.
    pub retry_candidates: u64,
    fmt_scratch: Option<Box<Formatter>>,
    timings_scratch: Vec<(Sym, f64)>,
    facts_scratch: Vec<TimingFact>,
}

/// `BuildHasher` with no per-process seed (see [`hash_video`]): the keys are
/// already hashes.
#[derive(Debug, Default, Clone, Copy)]
pub struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// Passes a u64 key through: the keys are hashes already.
#[derive(Debug, Default)]
pub struct IdentityHasher(u64);

/// A `video_id` hash as the key of [`Index::latest`]: two `u32` halves, so
/// a map slot (key and entry number) is 12 bytes rather than the 16 a
/// `(u64, u32)` pads to. With a slot per video that is 4 bytes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoKey([u32; 2]);

impl VideoKey {
    pub fn new(hash: u64) -> Self {
        VideoKey([hash as u32, (hash >> 32) as u32])
    }
}

impl std::hash::Hash for VideoKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.0[0]) | (u64::from(self.0[1]) << 32));
    }
}

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub fn is_candidate(e: &Entry) -> bool {
    !e.success() && e.flags & F_NOT_RETRYABLE == 0
}

impl Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the record at `offset` whose bytes are `rec` (read only to name
    /// a stage, subject, worker, error or timing not seen before) and whose
    /// facts were computed by [`facts`]; `timings` is its range of the list.
    pub fn push_facts(&mut self, offset: u64, rec: &[u8], f: &Facts, timings: &[TimingFact]) {
        let len = u32::try_from(rec.len()).unwrap_or(u32::MAX);
        self.push_facts_at(offset, len, rec, f, timings);
    }

    /// [`Index::push_facts`] for a record `len` bytes long whose long name
    /// spellings are in `spellings` (see [`facts_detached`]), not in its
    /// own bytes.
    pub fn push_facts_at(
        &mut self,
        offset: u64,
        len: u32,
        rec: &[u8],
        f: &Facts,
        timings: &[TimingFact],
    ) {
        let success = f.flags & F_SUCCESS != 0;
        let group = |syms: &mut Interner, k: usize| syms.resolve(NameKind::Group, f.names[k], rec);
        let stage = group(&mut self.syms, 0);
        let subject = group(&mut self.syms, 1);
        let worker = group(&mut self.syms, 2);
        let error_type = if success {
            0
        } else {
            self.syms.resolve(NameKind::Error, f.names[3], rec)
        };
        let mut named = std::mem::take(&mut self.timings_scratch);
        named.clear();
        for t in timings {
            // Past the limit a new name is not even interned (see
            // MAX_TIMING_NAMES); `Aggregate::add` counts it as untracked.
            let sym = if self.all.timings.len() < MAX_TIMING_NAMES {
                Some(self.syms.resolve(NameKind::Group, t.name, rec))
            } else {
                self.syms.resolve_known(NameKind::Group, t.name, rec)
            };
            match sym {
                Some(s) => named.push((s, t.value)),
                None if success => self.all.timings_untracked += 1,
                None => {}
            }
        }
        last_of_each(&mut named, |a| &a.0);
        let e = Entry {
            offset,
            logged_at: f.logged_at,
            duration: f.duration,
            video: f.video,
            len,
            stage,
            subject,
            worker,
            error_type,
            total_files: f.total_files,
            flags: f.flags,
        };
        self.push(e, &named);
        self.timings_scratch = named;
    }

    /// Adds a record at `offset` in the file (the start-up scan).
    pub fn add(&mut self, offset: u64, rec: &[u8], meta: &RawMeta) {
        let mut fmt = self.fmt_scratch.take().unwrap_or_default();
        let mut timings = std::mem::take(&mut self.facts_scratch);
        timings.clear();
        let f = facts(rec, meta, &mut fmt, &mut timings);
        self.push_facts(offset, rec, &f, &timings);
        self.fmt_scratch = Some(fmt);
        self.facts_scratch = timings;
    }

    pub fn push(&mut self, e: Entry, timings: &[(Sym, f64)]) {
        let idx = self.entries.len() as u32;
        self.all.add(&e, timings);
        if e.flags & F_HAS_VIDEO != 0 {
            if let Some(prev) = self.latest.insert(VideoKey::new(e.video), idx)
                && is_candidate(&self.entries[prev as usize])
            {
                self.retry_candidates -= 1;
            }
            if is_candidate(&e) {
                self.retry_candidates += 1;
            }
        }
        self.entries.push(e);
    }

    /// Is entry `idx` the newest record of its video (or has no video)?
    pub fn is_latest(&self, idx: usize) -> bool {
        let e = &self.entries[idx];
        e.flags & F_HAS_VIDEO == 0
            || self.latest.get(&VideoKey::new(e.video)) == Some(&(idx as u32))
    }

    /// Bytes of memory held, roughly: for the `ping` and the bench.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.latest.capacity() * (std::mem::size_of::<(VideoKey, u32)>() + 1)
    }

    pub fn video_hash(id: &str) -> u64 {
        hash_video(id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps keyed by a name's hash take their slot from its low bits, so
    /// names that differ only past their first bytes must not share them
    /// (they did before the final mix: a few dozen distinct values over
    /// 10,000 names, and lookups degraded to long chains).
    #[test]
    fn name_hashes_differ_in_their_low_bits() {
        let mut low = std::collections::HashSet::new();
        for i in 0..10_000 {
            low.insert(name_hash(format!("\"t{i}_0\"").as_bytes()) & 0xfff);
        }
        // 10,000 random values over 4,096 slots fill about 92% of them.
        assert!(low.len() > 3_500, "{} distinct low 12 bits", low.len());
    }

    /// Past MAX_TIMING_NAMES names, new names are neither interned nor
    /// given a histogram; their values are counted as untracked, and names
    /// already tracked keep counting.
    #[test]
    fn timing_names_past_the_limit_are_counted_not_kept() {
        let mut ix = Index::default();
        let mut fmt = Formatter::new();
        for i in 0..MAX_TIMING_NAMES + 10 {
            let rec = format!(r#"{{"success": true, "timings": {{"n{i}": 1.5, "n0": 2}}}}"#);
            let f = fmt.validate(rec.as_bytes(), 0, 64, true).expect("valid");
            assert!(f.end > 0);
            let meta = RawMeta::from_input(rec.as_bytes(), &fmt.fields, 0);
            ix.add(0, rec.as_bytes(), &meta);
        }
        assert_eq!(ix.all.timings.len(), MAX_TIMING_NAMES);
        assert_eq!(ix.all.timings_untracked, 10);
        let n0 = ix.syms.get("n0").expect("n0 tracked");
        assert_eq!(ix.all.timings[&n0].count, (MAX_TIMING_NAMES + 10) as u64);
        assert!(ix.syms.get(&format!("n{}", MAX_TIMING_NAMES + 5)).is_none());
    }

    /// The fast path for `timings` objects either declines or finds exactly
    /// what the general parser finds, however the object is spelled.
    #[test]
    fn flat_timings_agree_with_the_general_parser() {
        let cases: &[(&str, bool)] = &[
            (r#"{"fetch_transcript": 5.2, "generate_notes": 25.0}"#, true),
            ("{\n      \"a\": 1,\n      \"b\": -2.5e3\n    }", true),
            (r#"{"a":1,"a":2}"#, true),
            (r#"{}"#, true),
            ("{ \t\r\n }", true),
            (r#"{"a" : 0 , "b":1E-2}"#, true),
            (r#"{"a": 1, "b": "slow", "c": 3}"#, false),
            (r#"{"a": 1, "b": null}"#, false),
            (r#"{"a": {"x": 1}, "b": 2}"#, false),
            (r#"{"a": [1, 2]}"#, false),
            (r#"{"esc\"aped": 1}"#, false),
            (r#"{"\ud800": 1, "b": 2}"#, false),
            (r#"{"a": true}"#, false),
        ];
        for &(t, flat) in cases {
            let t = t.as_bytes();
            let mut fast = Vec::new();
            let took = flat_numbers(t, |k, v| fast.push((k, v.to_bits())));
            assert_eq!(took, flat, "{}", String::from_utf8_lossy(t));
            let mut general = Vec::new();
            timing_members(t, &mut Formatter::new(), |k, v| {
                general.push((k, v.to_bits()))
            });
            if took {
                // The general parser applies "last one wins" itself; the
                // fast path leaves that to the index (by symbol).
                last_of_each(&mut fast, |m| &t[m.0.clone()]);
                assert_eq!(fast, general, "{}", String::from_utf8_lossy(t));
            }
        }
    }

    #[test]
    fn a_latest_slot_is_twelve_bytes_and_keys_round_trip() {
        assert_eq!(std::mem::size_of::<(VideoKey, u32)>(), 12);
        let h = 0x0123_4567_89ab_cdefu64;
        let mut hasher = FixedState.build_hasher();
        std::hash::Hash::hash(&VideoKey::new(h), &mut hasher);
        assert_eq!(hasher.finish(), h, "the map sees the video hash itself");
    }

    #[test]
    fn simple_decimals_parse_exactly_as_the_full_parser() {
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "4",
            "45.2",
            "1697543210.123",
            "0.1",
            "0.3",
            "-12.5",
            "123456789012345",
            "1234567890.12345",
            "9.999999999999999",
            "0.000000000000001",
            "25.0",
            "1.7976931348",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 10_u64.pow((x % 15 + 1) as u32)).to_string();
            let point = (x >> 40) as usize % (digits.len() + 1);
            let s = if point == digits.len() {
                digits
            } else {
                format!("{}.{}", &digits[..point.max(1)], &digits[point.max(1)..])
            };
            cases.push(s.trim_end_matches('.').to_string());
        }
        for c in &cases {
            let want: f64 = c.parse().unwrap();
            let got = number(c.as_bytes()).unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
        }
        let huge = "9".repeat(400);
        for long in [
            "1234567890123456",
            "1e5",
            "1.5E-3",
            "12345678901234567890",
            &huge,
        ] {
            assert_eq!(simple_decimal(long.as_bytes()), None, "{long}");
            assert_eq!(number(long.as_bytes()), long.parse().ok(), "{long}");
        }
    }

    #[test]
    fn colliding_name_hashes_never_merge_names() {
        let mut syms = Interner::default();
        let rec = br#"{"a":"upload-1","b":"uploadm9"}"#;
        let at = |needle: &[u8]| {
            let i = rec.windows(needle.len()).position(|w| w == needle).unwrap();
            NameRef {
                hash: 42, // the same hash for both: a forced collision
                ..NameRef::new(rec, (i as u32, needle.len() as u32))
            }
        };
        let (x, y) = (at(br#""upload-1""#), at(br#""uploadm9""#));
        let sx = syms.resolve(NameKind::Group, x, rec);
        let sy = syms.resolve(NameKind::Group, y, rec);
        assert_ne!(sx, sy);
        assert_eq!(syms.name(sx), "upload-1");
        assert_eq!(syms.name(sy), "uploadm9");
        assert_eq!(syms.resolve(NameKind::Group, x, rec), sx);
        assert_eq!(syms.resolve(NameKind::Group, y, rec), sy);
    }

    #[test]
    fn truthiness_is_pythons() {
        for t in [
            &b"true"[..],
            b"1",
            b"-0.5",
            b"\"x\"",
            b"[1]",
            b"{\"a\":1}",
            b"[\n  0\n]",
        ] {
            assert!(truthy(t), "{:?}", String::from_utf8_lossy(t));
        }
        for f in [
            &b"false"[..],
            b"null",
            b"0",
            b"0.0",
            b"-0",
            b"\"\"",
            b"[]",
            b"{}",
            b"[ ]",
            b"0e5",
        ] {
            assert!(!truthy(f), "{:?}", String::from_utf8_lossy(f));
        }
    }

    #[test]
    fn error_types_follow_the_python_logger() {
        assert_eq!(
            error_type(Some(br#""API rate limit exceeded: 429""#)),
            "API rate limit exceeded"
        );
        assert_eq!(error_type(Some(br#""Network timeout""#)), "Network timeout");
        assert_eq!(error_type(Some(br#"" lead: x""#)), " lead");
        assert_eq!(error_type(Some(b"null")), "Unknown error");
        assert_eq!(error_type(None), "Unknown error");
        assert_eq!(error_type(Some(b"{\n  \"a\": 1\n}")), "{\"a\":1}");
        assert_eq!(error_type(Some(br#""caf\u00e9: x""#)), "café");
    }

    #[test]
    fn times_round_trip_in_isoformat() {
        for s in [
            "2025-10-17T09:33:10.187500",
            "2025-10-17T09:33:10",
            "1969-12-31T23:59:59.000001",
            "2400-02-29T00:00:00",
        ] {
            assert_eq!(format_time(parse_time(s).unwrap()), s);
        }
        assert_eq!(
            format_time(parse_time("2025-10-17").unwrap()),
            "2025-10-17T00:00:00"
        );
        assert!(parse_time("2025-10-17T09:33:10") < parse_time("2025-10-17T09:33:10.5"));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2025-02-30"), None);
        assert_eq!(parse_time("2025-01-01T25:99:99"), None);
        assert_eq!(parse_time("2025-01-01T10:00:00junk"), None);
        assert!(parse_time("2024-02-29T10:00:00+02:00").is_some());
        assert_eq!(parse_time("2025-13-01"), None);
    }

    #[test]
    fn histogram_percentiles_are_within_one_percent() {
        let mut h = Hist::default();
        let vals: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 0.37).collect();
        for v in &vals {
            h.add(*v);
        }
        for p in [50.0, 95.0, 99.0] {
            let exact = vals[((p / 100.0) * 1000.0_f64).ceil() as usize - 1];
            let got = h.percentile(p).unwrap();
            assert!((got - exact).abs() / exact < 0.01, "p{p}: {got} vs {exact}");
        }
        assert_eq!(h.max, 370.0);
        h.add(0.0);
        assert_eq!(h.percentile(0.0), Some(0.0));
    }

    #[test]
    fn entry_stays_compact() {
        assert!(std::mem::size_of::<Entry>() <= 64);
    }

    #[test]
    fn minify_writes_non_finite_numbers_as_null_outside_strings() {
        assert_eq!(
            minify(b"{\"a\": NaN, \"b\": [Infinity, -Infinity, 1], \"NaN\": \"-Infinity\"}"),
            b"{\"a\":null,\"b\":[null,null,1],\"NaN\":\"-Infinity\"}"
        );
    }

    #[test]
    fn minify_keeps_strings() {
        assert_eq!(
            minify(b"{\n  \"a b\": [1, \"x \\\" y\"]\n}"),
            b"{\"a b\":[1,\"x \\\" y\"]}"
        );
    }

    #[test]
    fn retry_candidates_follow_the_newest_record_per_video() {
        let mut ix = Index::default();
        let mut f = Formatter::new();
        let mut add = |ix: &mut Index, rec: &str| {
            f.validate(rec.as_bytes(), 0, 100, true).unwrap();
            let m = RawMeta::from_input(rec.as_bytes(), &f.fields, 0);
            ix.add(0, rec.as_bytes(), &m);
        };
        add(&mut ix, r#"{"video_id":"a","success":false}"#);
        add(
            &mut ix,
            r#"{"video_id":"b","success":false,"is_retryable":false}"#,
        );
        assert_eq!(ix.retry_candidates, 1);
        add(&mut ix, r#"{"video_id":"a","success":true}"#);
        assert_eq!(ix.retry_candidates, 0);
        add(&mut ix, r#"{"video_id":"c","success":0}"#);
        assert_eq!(ix.retry_candidates, 1);
        assert!(!ix.is_latest(0));
        assert!(ix.is_latest(2));
        assert_eq!(ix.all.total, 4);
        assert_eq!(ix.all.successful, 1);
    }

    #[test]
    fn minify_keeps_strings_and_never_outputs_a_raw_newline() {
        assert_eq!(
            minify(b"{ \"a\" : [1, 2],\n  \"b\": \"x y\\\"\\n\" }"),
            b"{\"a\":[1,2],\"b\":\"x y\\\"\\n\"}".to_vec()
        );
        // A damaged record: raw control bytes inside a string are escaped.
        let out = minify(b"{\"a\": \"l1\nl2\tend\"}");
        assert_eq!(out, b"{\"a\":\"l1\\u000al2\\u0009end\"}".to_vec());
        assert!(!minify(b"\"\\\n\" \"\n").contains(&b'\n'));
    }

    /// Nearest-rank percentiles from the histogram: exact for repeated
    /// values, within 0.8% otherwise, whatever the signs.
    #[test]
    fn percentiles_hold_for_negative_values_and_zero() {
        let hist = |vals: &[f64]| {
            let mut h = Hist::default();
            for &v in vals {
                h.add(v);
            }
            h
        };
        for (vals, p50, p95) in [
            (&[-5.0, 0.0, 0.0, 10.0, 20.0][..], 0.0, 20.0),
            (&[-100.0, 0.0, 0.0, 0.0, 0.0001][..], 0.0, 0.0001),
            (&[0.0, 0.0, 0.0, -1.0, -2.0][..], 0.0, 0.0),
            (&[-3.0, -2.0, -1.0][..], -2.0, -1.0),
        ] {
            let h = hist(vals);
            assert_eq!(h.percentile(50.0), Some(p50), "{vals:?}");
            assert_eq!(h.percentile(95.0), Some(p95), "{vals:?}");
        }
        let vals: Vec<f64> = (0..2_000).map(|i| (i as f64 - 1_000.0) * 1.37).collect();
        let h = hist(&vals);
        let mut sorted = vals.clone();
        sorted.sort_by(f64::total_cmp);
        for p in [1.0, 10.0, 25.0, 50.0, 75.0, 95.0, 99.0] {
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            let exact = sorted[rank - 1];
            let got = h.percentile(p).unwrap();
            assert!(
                (got - exact).abs() <= 0.008 * exact.abs(),
                "p{p}: got {got}, exact {exact}"
            );
        }
    }

    /// A `timings` name given twice in one record counts once, with its
    /// last value (also when spelled with an escape), as `json.load` reads it.
    #[test]
    fn duplicate_timing_names_count_once_with_the_last_value() {
        let mut ix = Index::default();
        let mut f = Formatter::new();
        for rec in [
            r#"{"success":true,"timings":{"fetch":100,"fetch":1}}"#,
            r#"{"success":true,"timings":{"fetch":2,"\u0066etch":3,"notes":4}}"#,
        ] {
            f.validate(rec.as_bytes(), 0, 100, true).unwrap();
            let m = RawMeta::from_input(rec.as_bytes(), &f.fields, 0);
            ix.add(0, rec.as_bytes(), &m);
        }
        let got: Vec<(String, u64, f64)> = ix
            .all
            .timings
            .iter()
            .map(|(&k, h)| (ix.syms.name(k).to_owned(), h.count, h.max))
            .collect();
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [("fetch".to_owned(), 2, 3.0), ("notes".to_owned(), 1, 4.0)]
        );
        let mut v = vec![1, 2, 1, 3, 2];
        last_of_each(&mut v, |a| a);
        assert_eq!(v, [1, 3, 2]);
        // The hashed path, past the handful.
        let mut v: Vec<u32> = (0..100).map(|i| i % 7).collect();
        last_of_each(&mut v, |a| a);
        assert_eq!(v, [93, 94, 95, 96, 97, 98, 99].map(|i| i % 7));
    }
}
