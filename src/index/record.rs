//! One record's facts for the index: where its top-level fields are
//! (`RawMeta`, found while it is formatted or scanned), and the `Facts`
//! computed from them (flags, times, name hashes) without parsing the
//! record again, on the connection's task or the writer's.

use super::*;

/// Top-level keys the index reads. The order is the index into
/// [`RawMeta::ranges`].
pub(crate) const KEYS: [&str; 13] = [
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
    "record_id",
];

pub(super) const VIDEO_ID: usize = 0;

pub(super) const SUCCESS: usize = 1;

pub(super) const STAGE: usize = 2;

pub(super) const SUBJECT: usize = 3;

pub(super) const WORKER_ID: usize = 4;

pub(super) const ERROR: usize = 5;

pub(super) const DURATION: usize = 6;

pub(super) const TOTAL_FILES: usize = 7;

pub(super) const LOGGED_AT: usize = 8;

pub(super) const IS_RETRYABLE: usize = 9;

pub(super) const TIMINGS: usize = 10;

/// Not indexed: it tells a request from a record, in the same pass.
pub(super) const OP: usize = 11;

/// Not indexed either: a record the log already holds is not written
/// twice (see [`super::RecordIds`]).
pub(super) const RECORD_ID: usize = 12;

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
                (9, Some(b'r')) if is_word(key, b"record_id") => RECORD_ID,
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

    /// The raw value of the record's top-level `record_id` (its JSON text,
    /// quotes included), if it has one; `record` is the record's bytes.
    pub fn record_id<'r>(&self, record: &'r [u8]) -> Option<&'r [u8]> {
        let (start, len) = self.ranges[RECORD_ID];
        (len > 0).then(|| record.get(start as usize..(start + len) as usize))?
    }

    /// The object has a top-level `op`: it is a request, not a record.
    pub fn has_op(&self) -> bool {
        self.ranges[OP].1 > 0
    }

    pub(super) fn get<'a>(&self, rec: &'a [u8], k: usize) -> Option<&'a [u8]> {
        let (s, l) = self.ranges[k];
        (l > 0)
            .then(|| rec.get(s as usize..(s + l) as usize))
            .flatten()
    }
}

/// Entry flags.
pub(crate) const F_SUCCESS: u8 = 1;

/// `is_retryable` is exactly `false`.
pub(crate) const F_NOT_RETRYABLE: u8 = 2;

/// The record has a string `video_id` (hashed into `video`).
pub(crate) const F_HAS_VIDEO: u8 = 4;

/// `processing_duration` is a truthy number.
pub(crate) const F_HAS_DURATION: u8 = 8;

/// A raw JSON value that names a group (or an error), located in its record
/// (`start`, `len` relative to the record's first byte; `len` 0 = absent,
/// which reads as `null`) and hashed where the record was formatted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NameRef {
    pub hash: u64,
    pub start: u32,
    pub len: u32,
    /// The spelling itself, when at most [`INLINE_SPELLING`] bytes long (as
    /// stages, subjects, worker ids and timing names are): the writer then
    /// checks a name against the interner without reading the record,
    /// whose bytes another core wrote (a cache miss per name).
    pub(super) inline: [u8; INLINE_SPELLING],
}

pub(super) use crate::config::tuning::INLINE_SPELLING;

impl NameRef {
    pub(super) fn new(rec: &[u8], (start, len): (u32, u32)) -> NameRef {
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
    pub(super) fn spelling<'a>(&'a self, rec: &'a [u8]) -> &'a [u8] {
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
pub(super) fn name_hash(raw: &[u8]) -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64));
    let mut h = FxHasher(seed);
    h.write(raw);
    h.write_usize(raw.len());
    fmix64(h.finish())
}

/// MurmurHash3's finaliser: every output bit depends on every input bit.
pub(super) fn fmix64(mut h: u64) -> u64 {
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
pub(crate) struct Facts {
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
pub(crate) struct TimingFact {
    /// The timing's key (a JSON string), located in the record.
    pub name: NameRef,
    pub value: f64,
}

/// Computes the [`Facts`] of record `rec` (its fields located in `meta`),
/// appending its timings to `timings`. `scratch` parses the `timings`
/// object.
pub(crate) fn facts(
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
    let duration = get(DURATION).and_then(int_or_number).unwrap_or(f64::NAN);
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
        total_files: get(TOTAL_FILES).and_then(int_or_number).unwrap_or(0.0) as f32,
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
pub(crate) fn facts_detached(
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

/// The members of the `timings` object `t` that count: those with a number
/// value and a key that decodes (a lone surrogate escape does not, and is
/// skipped, as the filtered `stats` path skips it), with the key's range
/// (quotes included). The general path behind [`flat_numbers`].
pub(super) fn timing_members(
    t: &[u8],
    scratch: &mut Formatter,
    mut each: impl FnMut(Range<usize>, f64),
) {
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
pub(super) fn flat_numbers(t: &[u8], mut each: impl FnMut(Range<usize>, f64)) -> bool {
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
