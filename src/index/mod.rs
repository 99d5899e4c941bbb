//! The in-memory index: one compact [`Entry`] per record (where it is in the
//! file plus the few fields queries filter on), interned strings, the
//! newest record of each video, and statistics maintained incrementally so
//! that an unfiltered `stats` costs the same at 100 records and at 10
//! million.
//!
//! Whole records are never kept: queries read them back from the file.
//! Owned by the writer task alone (no lock), which updates it as records
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

mod ids;
mod interner;
mod python;
mod record;
mod stats;

pub(crate) use ids::{Admit, RecordIds};
pub(crate) use interner::{FxHasher, Interner, Sym, SymMap};
pub(crate) use python::{
    error_type, group_key, int_or_number, number, string, string_bytes, truthy,
};
pub(crate) use record::{
    F_HAS_DURATION, F_HAS_VIDEO, F_NOT_RETRYABLE, F_SUCCESS, Facts, NameRef, RawMeta, TimingFact,
    facts, facts_detached,
};
pub(crate) use stats::{Aggregate, Counts, Hist, MAX_TIMING_NAMES, Tally, last_of_each};

// Shared by the submodules (each takes `super::*`).
use crate::json::minify;
use crate::time::parse_time_bytes;
use interner::NameKind;

/// One record: 64 bytes (checked by a test).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
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
    pub(crate) fn success(&self) -> bool {
        self.flags & F_SUCCESS != 0
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
pub(crate) struct Index {
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

/// Bytes a hash map's table takes: hashbrown keeps a power of two of
/// buckets at most 7/8 full, each a slot and a control byte.
pub(crate) fn map_bytes<K, V, S>(m: &HashMap<K, V, S>) -> usize {
    if m.capacity() == 0 {
        return 0;
    }
    let buckets = (m.capacity() * 8 / 7).next_power_of_two();
    buckets * (std::mem::size_of::<(K, V)>() + 1)
}

/// Bytes one heap allocation of `n` bytes takes with glibc's malloc (its
/// 8-byte header, 16-byte granules, 32 bytes at least).
pub(crate) fn alloc_bytes(n: usize) -> usize {
    ((n + 8).div_ceil(16) * 16).max(32)
}

/// `BuildHasher` with no per-process seed (see [`hash_video`]): the keys are
/// already hashes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FixedState;

impl BuildHasher for FixedState {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// Passes a u64 key through: the keys are hashes already.
#[derive(Debug, Default)]
pub(crate) struct IdentityHasher(u64);

/// A `video_id` hash as the key of [`Index::latest`]: two `u32` halves, so
/// a map slot (key and entry number) is 12 bytes rather than the 16 a
/// `(u64, u32)` pads to. With a slot per video that is 4 bytes per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VideoKey([u32; 2]);

impl VideoKey {
    pub(crate) fn new(hash: u64) -> Self {
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

pub(crate) fn is_candidate(e: &Entry) -> bool {
    !e.success() && e.flags & F_NOT_RETRYABLE == 0
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the record at `offset` whose bytes are `rec` (read only to name
    /// a stage, subject, worker, error or timing not seen before) and whose
    /// facts were computed by [`facts`]; `timings` is its range of the list.
    pub(crate) fn push_facts(
        &mut self,
        offset: u64,
        rec: &[u8],
        f: &Facts,
        timings: &[TimingFact],
    ) {
        let len = u32::try_from(rec.len()).unwrap_or(u32::MAX);
        self.push_facts_at(offset, len, rec, f, timings);
    }

    /// [`Index::push_facts`] for a record `len` bytes long whose long name
    /// spellings are in `spellings` (see [`facts_detached`]), not in its
    /// own bytes.
    pub(crate) fn push_facts_at(
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
    pub(crate) fn add(&mut self, offset: u64, rec: &[u8], meta: &RawMeta) {
        let mut fmt = self.fmt_scratch.take().unwrap_or_default();
        let mut timings = std::mem::take(&mut self.facts_scratch);
        timings.clear();
        let f = facts(rec, meta, &mut fmt, &mut timings);
        self.push_facts(offset, rec, &f, &timings);
        self.fmt_scratch = Some(fmt);
        self.facts_scratch = timings;
    }

    pub(crate) fn push(&mut self, e: Entry, timings: &[(Sym, f64)]) {
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
    pub(crate) fn is_latest(&self, idx: usize) -> bool {
        let e = &self.entries[idx];
        e.flags & F_HAS_VIDEO == 0
            || self.latest.get(&VideoKey::new(e.video)) == Some(&(idx as u32))
    }

    /// Bytes of memory held, roughly: for the `ping` and the bench.
    /// What the index holds in memory, as the allocator sees it: the
    /// entries, the newest-per-video map, every name kept (its text and its
    /// slots in the maps that find it) and the aggregates' per-name
    /// tallies. `ping`'s `index_bytes`; the bench holds it to the daemon's
    /// VmRSS growth (section 8). Names are what grows past the entries
    /// when every record brings new ones.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + map_bytes(&self.latest)
            + self.syms.memory_bytes()
            + self.all.memory_bytes()
    }

    pub(crate) fn video_hash(id: &str) -> u64 {
        hash_video(id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::python::simple_decimal;
    use super::record::{flat_numbers, name_hash, timing_members};
    use super::*;
    use crate::time::{format_time, parse_time};

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

    /// `error_types` and `stages` keep the order names were first counted
    /// in (not the interner's: "b" is interned as a stage before it is
    /// an error type); a bool in `total_files` or `processing_duration`
    /// counts as Python's int.
    #[test]
    fn counts_keep_first_seen_order_and_bools_count_as_ints() {
        let mut ix = Index::default();
        let mut f = Formatter::new();
        for rec in [
            r#"{"success":false,"stage":"b","error":"z: 1"}"#,
            r#"{"success":true,"total_files":true,"processing_duration":true}"#,
            r#"{"success":false,"stage":"a","error":"b"}"#,
            r#"{"success":false,"stage":"b","error":"z"}"#,
            r#"{"success":true,"stage":"a","total_files":4.5,"processing_duration":false}"#,
        ] {
            f.validate(rec.as_bytes(), 0, 100, true).unwrap();
            let m = RawMeta::from_input(rec.as_bytes(), &f.fields, 0);
            ix.add(0, rec.as_bytes(), &m);
        }
        let names = |c: &Counts| -> Vec<(String, u64)> {
            c.iter()
                .map(|(s, n)| (ix.syms.name(s).to_owned(), n))
                .collect()
        };
        let owned = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
        };
        assert_eq!(names(&ix.all.error_types), owned(&[("z", 2), ("b", 1)]));
        assert_eq!(
            names(&ix.all.stages),
            owned(&[("b", 2), ("null", 1), ("a", 2)])
        );
        assert_eq!(ix.all.files, 5.5);
        assert_eq!((ix.all.duration_sum, ix.all.duration_count), (1.0, 1));
        assert_eq!(ix.all.duration.count, 2);
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
