//! Byte-level JSON for the hot path: validate one value and, in the same pass,
//! pretty-print it exactly as Python's `json.dump(obj, f, indent=2,
//! ensure_ascii=False)` prints an element of a top-level list.
//!
//! Why not serde_json: building a `Value` per record and printing it again
//! costs several times more than the socket and the disk together (see the
//! measurements in docs/performance.md). This module never allocates per token; it
//! walks the bytes once with an explicit stack (no recursion, so hostile
//! nesting cannot overflow the thread's stack) and writes into a caller-owned
//! buffer.
//!
//! What it guarantees about its output, for any input it accepts:
//! - the output is strict JSON (RFC 8259) and valid UTF-8;
//! - numbers are copied as sent, key order and duplicate keys are kept;
//! - strings are re-escaped as Python's `ensure_ascii=False` escapes them:
//!   only `"`, `\` and U+0000..U+001F, with `\b \f \n \r \t` short forms and
//!   lowercase `\u00xx` otherwise; every other `\u` escape is decoded to UTF-8,
//!   except lone surrogates, which stay escaped (`\udxxx`) because they have
//!   no UTF-8 form;
//! - `NaN`, `Infinity` and `-Infinity` (which Python's `json.dumps` emits by
//!   default) are written as `null` and reported in [`Formatted::coerced`].

use std::ops::Range;

mod value;

pub use value::{minify, minify_into};

/// Deepest nesting accepted in a record received from a client. Python's own
/// decoder gives up near 1000; 128 matches serde_json's limit used for
/// requests, and keeps the indentation of the output bounded.
pub const MAX_RECORD_DEPTH: usize = 128;

/// Why a value was refused. `offset` is a byte offset into the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// The input ended inside a value. On a line this is a syntax error; in
    /// the start-up file scan it means "read more bytes".
    Incomplete,
    /// A syntax error at `offset`.
    Syntax { offset: usize, what: &'static str },
    /// Valid JSON so far, but nested deeper than the limit.
    TooDeep { offset: usize },
    /// A well-formed value that is not an object where an object is required.
    NotObject { found: &'static str },
    /// Bytes that are not UTF-8 inside a string.
    Utf8 { offset: usize },
    /// Pretty-printed, the value would pass [`Formatter::output_limit`]
    /// bytes (indentation can multiply a deeply nested line's size).
    TooLarge { limit: usize },
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonError::Incomplete => write!(f, "unexpected end of input"),
            JsonError::Syntax { offset, what } => write!(f, "{what} at byte {}", offset + 1),
            JsonError::TooDeep { offset } => write!(
                f,
                "nesting deeper than {MAX_RECORD_DEPTH} levels at byte {}",
                offset + 1
            ),
            JsonError::NotObject { found } => write!(f, "expected a JSON object, found {found}"),
            JsonError::Utf8 { offset } => write!(f, "invalid UTF-8 at byte {}", offset + 1),
            JsonError::TooLarge { limit } => {
                write!(f, "pretty-printed, the line takes more than {limit} bytes")
            }
        }
    }
}

/// Where the printer writes. `Vec<u8>` collects the pretty-printed bytes;
/// [`Discard`] validates only (the start-up scan of an existing file).
pub trait Sink {
    fn push(&mut self, b: u8);
    fn extend(&mut self, s: &[u8]);
    fn len(&self) -> usize;
    fn truncate(&mut self, len: usize);
    /// Bytes written so far in `r` (empty for a sink that keeps nothing).
    fn written(&self, r: Range<usize>) -> &[u8];
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies the run of plain string bytes at `i` (up to the first `"`,
    /// `\` or byte below 0x20, or the end of the input) and returns where it
    /// ends and whether it holds bytes >= 0x80 (to be checked as UTF-8).
    fn string_run(&mut self, input: &[u8], i: usize) -> (usize, bool);
    /// Writes `input[r]` (a short token, such as a number).
    fn extend_from(&mut self, input: &[u8], r: Range<usize>);
    /// Writes a newline and `n` spaces.
    fn newline_spaces(&mut self, n: usize);
}

/// A newline and spaces: indentation is sliced from here (deeper levels
/// are written in pieces).
const NL_SPACES: &[u8; 257] = &{
    let mut a = [b' '; 257];
    a[0] = b'\n';
    a
};

/// Copies exactly 32 bytes from `src` to the end of `out`'s initialised
/// part and exposes `n <= 32` of them: a fixed-size copy compiles to two
/// vector moves, where a copy of a variable length is a call.
#[inline(always)]
fn overcopy32(out: &mut Vec<u8>, src: &[u8; 32], n: usize) {
    debug_assert!(n <= 32);
    out.reserve(32);
    let len = out.len();
    // SAFETY: `reserve` made room for 32 bytes past `len`, all initialised
    // by the copy; only the first `n <= 32` are exposed.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().add(len), 32);
        out.set_len(len + n.min(32));
    }
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn push(&mut self, b: u8) {
        Vec::push(self, b)
    }
    #[inline(always)]
    fn extend(&mut self, s: &[u8]) {
        // Not `extend_from_slice`, which the compiler keeps out of line:
        // inlined, the many constant-length pieces (`": "`, `true`, an
        // indentation) become a few moves instead of a call each.
        self.reserve(s.len());
        let len = self.len();
        // SAFETY: `reserve` made room for `s.len()` more bytes past `len`;
        // they are initialised by the copy before `set_len` exposes them,
        // and `s` cannot overlap our spare capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.as_mut_ptr().add(len), s.len());
            self.set_len(len + s.len());
        }
    }
    #[inline(always)]
    fn string_run(&mut self, input: &[u8], i: usize) -> (usize, bool) {
        scan_run::<true>(self, input, i)
    }
    #[inline(always)]
    fn extend_from(&mut self, input: &[u8], r: Range<usize>) {
        match input.get(r.start..r.start + 32) {
            Some(block) if r.len() <= 32 => {
                if let Ok(block) = <&[u8; 32]>::try_from(block) {
                    overcopy32(self, block, r.len());
                }
            }
            _ => Sink::extend(self, &input[r]),
        }
    }
    #[inline(always)]
    fn newline_spaces(&mut self, n: usize) {
        if n < 32 {
            if let Ok(block) = <&[u8; 32]>::try_from(&NL_SPACES[..32]) {
                overcopy32(self, block, n + 1);
            }
        } else {
            Vec::push(self, b'\n');
            let mut n = n;
            while n > 0 {
                let k = n.min(NL_SPACES.len() - 1);
                Sink::extend(self, &NL_SPACES[1..=k]);
                n -= k;
            }
        }
    }
    #[inline(always)]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline(always)]
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len)
    }
    fn written(&self, r: Range<usize>) -> &[u8] {
        self.get(r).unwrap_or_default()
    }
}

/// A sink that keeps nothing: validation only.
#[derive(Default)]
pub struct Discard;

impl Sink for Discard {
    #[inline(always)]
    fn push(&mut self, _: u8) {}
    #[inline(always)]
    fn extend(&mut self, _: &[u8]) {}
    #[inline(always)]
    fn len(&self) -> usize {
        0
    }
    #[inline(always)]
    fn truncate(&mut self, _: usize) {}
    fn written(&self, _: Range<usize>) -> &[u8] {
        &[]
    }
    #[inline(always)]
    fn string_run(&mut self, input: &[u8], i: usize) -> (usize, bool) {
        scan_run::<false>(&mut Vec::new(), input, i)
    }
    #[inline(always)]
    fn extend_from(&mut self, _: &[u8], _: Range<usize>) {}
    #[inline(always)]
    fn newline_spaces(&mut self, _: usize) {}
}

/// [`Sink::string_run`]: sixteen bytes at a time, and with `COPY` each block
/// is stored to `out` whole before it is examined (the bytes past the stop
/// are then cut off by the length), so a short key or value costs one
/// load, one store and a few compares instead of a scan plus a `memcpy`.
/// The end of the input is handled a byte at a time.
#[inline(always)]
fn scan_run<const COPY: bool>(out: &mut Vec<u8>, input: &[u8], mut i: usize) -> (usize, bool) {
    let mut high = false;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8, _mm_storeu_si128,
        };
        while i + 16 <= input.len() {
            if COPY {
                out.reserve(16);
            }
            // SAFETY: SSE2 is part of the x86_64 baseline. The load reads
            // input[i..i + 16], in bounds by the loop condition. The store
            // writes 16 bytes of spare capacity that `reserve` guaranteed;
            // `set_len` then exposes only bytes this store initialised.
            unsafe {
                let v = _mm_loadu_si128(input.as_ptr().add(i).cast::<__m128i>());
                if COPY {
                    _mm_storeu_si128(out.as_mut_ptr().add(out.len()).cast::<__m128i>(), v);
                }
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Unsigned v <= 0x1f  <=>  max(v, 0x1f) == 0x1f.
                let low = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
                let stop =
                    _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32;
                let hi = _mm_movemask_epi8(v) as u32;
                if stop != 0 {
                    let n = stop.trailing_zeros() as usize;
                    high |= hi & ((1u32 << n) - 1) != 0;
                    if COPY {
                        out.set_len(out.len() + n);
                    }
                    return (i + n, high);
                }
                high |= hi != 0;
                if COPY {
                    out.set_len(out.len() + 16);
                }
            }
            i += 16;
        }
    }
    let start = i;
    let end = string_run_end(input, i);
    let run = &input[start..end];
    if COPY {
        Sink::extend(out, run);
    }
    (end, high || !run.is_ascii())
}

/// A member of the top-level object, located in both the input and the
/// output, so that the index can read a few fields without a second parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopField {
    /// The decoded key, as printed (without quotes), in output coordinates.
    pub key_out: Range<usize>,
    /// The raw key in input coordinates (with quotes).
    pub key_in: Range<usize>,
    /// The value in input coordinates.
    pub value_in: Range<usize>,
    /// The value in output coordinates.
    pub value_out: Range<usize>,
}

/// What a successful format reports besides the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formatted {
    /// Byte offset just past the value in the input (trailing whitespace not
    /// included).
    pub end: usize,
    /// The value held `NaN`, `Infinity` or `-Infinity`, written as `null`.
    pub coerced: bool,
    /// A top-level `logged_at` key was present (so none was added).
    pub had_logged_at: bool,
    /// Deepest nesting reached (the top-level object is 1; empty
    /// containers count).
    pub depth: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Object,
    Array,
}

/// Reusable formatter state: the nesting stack and the top-level fields of
/// the last value, kept between calls so the hot path does not allocate.
#[derive(Debug, Default)]
pub struct Formatter {
    stack: Vec<Frame>,
    /// Pre-rendered members (`"key": value`, at record indentation) that
    /// [`Formatter::record`] appends to every record, before an added
    /// `logged_at` (used by `--stamp-peer`).
    pub extra: Vec<u8>,
    /// Members of the last formatted top-level object, in order.
    pub fields: Vec<TopField>,
    /// Output size at which printing one value stops with
    /// [`JsonError::TooLarge`] (`None`: no limit): a bound on memory, not a
    /// size rule (the caller judges the finished record). Indentation is
    /// the only thing that makes the output larger than the input, and it
    /// grows with depth times element count: a 16 MiB line of small array
    /// elements 100 levels down prints to 2 GB. The check runs where
    /// indentation is written (before each opening bracket, comma and
    /// closing bracket), so the output passes the limit by at most one
    /// member (or element) and one indentation before it stops. A sink
    /// that keeps nothing never trips it.
    pub output_limit: Option<usize>,
    /// A top-level key of the last value was written with an escape
    /// (`"\u0073uccess"`): its raw spelling is not its name.
    pub escaped_keys: bool,
}

/// [`Formatter::output_limit`]'s check, where indentation is written.
#[inline(always)]
fn within_limit(printed: usize, limit: usize) -> Result<(), JsonError> {
    if printed > limit {
        Err(JsonError::TooLarge { limit })
    } else {
        Ok(())
    }
}

#[inline(always)]
fn newline_indent<S: Sink>(out: &mut S, depth: usize) {
    // An element of the top-level array sits at level 1, so depth d prints
    // 2 * (d + 1) spaces.
    out.newline_spaces(2 * (depth + 1));
}

#[inline(always)]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline(always)]
fn skip_ws(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && is_ws(input[i]) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is `"`, `\` or below 0x20,
/// or `input.len()`. Eight bytes at a time: transcripts are long strings.
#[inline(always)]
fn string_run_end(input: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while i + 8 <= input.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&input[i..i + 8]);
        let v = u64::from_le_bytes(word);
        let quote = v ^ (LO * u64::from(b'"'));
        let backslash = v ^ (LO * u64::from(b'\\'));
        // Classic "has zero byte" and "has byte < n" tricks; bytes >= 0x80
        // are excluded by `!v` so UTF-8 continuation bytes never match.
        let hit = ((quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (v.wrapping_sub(LO * 0x20) & !v))
            & HI;
        if hit != 0 {
            return i + (hit.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < input.len() {
        let b = input[i];
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

#[inline(always)]
fn hex4(input: &[u8], i: usize) -> Result<u32, JsonError> {
    if i + 4 > input.len() {
        return Err(JsonError::Incomplete);
    }
    let mut v = 0u32;
    for (k, &b) in input[i..i + 4].iter().enumerate() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => {
                return Err(JsonError::Syntax {
                    offset: i + k,
                    what: "invalid \\u escape",
                });
            }
        };
        v = v * 16 + u32::from(d);
    }
    Ok(v)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline(always)]
fn push_u_escape<S: Sink>(out: &mut S, cp: u32) {
    out.extend(&[
        b'\\',
        b'u',
        HEX[(cp >> 12) as usize & 0xf],
        HEX[(cp >> 8) as usize & 0xf],
        HEX[(cp >> 4) as usize & 0xf],
        HEX[cp as usize & 0xf],
    ]);
}

/// Writes code point `cp` as Python's ensure_ascii=False encoder would.
#[inline(always)]
fn push_char<S: Sink>(out: &mut S, cp: u32) {
    match cp {
        0x22 => out.extend(b"\\\""),
        0x5c => out.extend(b"\\\\"),
        0x08 => out.extend(b"\\b"),
        0x0c => out.extend(b"\\f"),
        0x0a => out.extend(b"\\n"),
        0x0d => out.extend(b"\\r"),
        0x09 => out.extend(b"\\t"),
        0..=0x1f => push_u_escape(out, cp),
        // Lone surrogates have no UTF-8 form: keep them escaped.
        0xd800..=0xdfff => push_u_escape(out, cp),
        _ => match char::from_u32(cp) {
            Some(c) => {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).as_bytes());
            }
            None => push_u_escape(out, cp),
        },
    }
}

/// Parses the string whose opening quote is at `i`, writing it re-escaped.
/// Returns the offset after the closing quote.
#[inline(always)]
fn string<S: Sink>(input: &[u8], i: usize, out: &mut S) -> Result<usize, JsonError> {
    string_escaped(input, i, out).map(|(end, _)| end)
}

/// [`string`], also telling whether the string held an escape.
#[inline(always)]
fn string_escaped<S: Sink>(
    input: &[u8],
    mut i: usize,
    out: &mut S,
) -> Result<(usize, bool), JsonError> {
    debug_assert_eq!(input[i], b'"');
    let mut escaped = false;
    out.push(b'"');
    i += 1;
    loop {
        let (run_end, non_ascii) = out.string_run(input, i);
        if non_ascii {
            // Validate only runs that hold non-ASCII bytes. A run can end
            // in the middle of a multi-byte character only at the end of
            // the input (the stop bytes are all ASCII). On an error the
            // caller discards the output.
            if let Err(e) = std::str::from_utf8(&input[i..run_end]) {
                if e.error_len().is_none() && run_end == input.len() {
                    return Err(JsonError::Incomplete);
                }
                return Err(JsonError::Utf8 {
                    offset: i + e.valid_up_to(),
                });
            }
        }
        i = run_end;
        let Some(&b) = input.get(i) else {
            return Err(JsonError::Incomplete);
        };
        match b {
            b'"' => {
                out.push(b'"');
                return Ok((i + 1, escaped));
            }
            b'\\' => {
                let Some(&e) = input.get(i + 1) else {
                    return Err(JsonError::Incomplete);
                };
                escaped = true;
                i += 2;
                match e {
                    b'"' => out.extend(b"\\\""),
                    b'\\' => out.extend(b"\\\\"),
                    b'/' => out.push(b'/'),
                    b'b' => out.extend(b"\\b"),
                    b'f' => out.extend(b"\\f"),
                    b'n' => out.extend(b"\\n"),
                    b'r' => out.extend(b"\\r"),
                    b't' => out.extend(b"\\t"),
                    b'u' => {
                        let cp = hex4(input, i)?;
                        i += 4;
                        if (0xd800..0xdc00).contains(&cp)
                            && input.get(i) == Some(&b'\\')
                            && input.get(i + 1) == Some(&b'u')
                        {
                            let lo = hex4(input, i + 2)?;
                            if (0xdc00..0xe000).contains(&lo) {
                                i += 6;
                                push_char(out, 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00));
                                continue;
                            }
                        }
                        push_char(out, cp);
                    }
                    _ => {
                        return Err(JsonError::Syntax {
                            offset: i - 1,
                            what: "invalid escape in string",
                        });
                    }
                }
            }
            _ => {
                return Err(JsonError::Syntax {
                    offset: i,
                    what: "control character in string",
                });
            }
        }
    }
}

#[inline(always)]
fn digits(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && input[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// One or more digits at `i` (a fraction or an exponent); returns the end.
#[inline(always)]
fn some_digits(input: &[u8], i: usize) -> Result<usize, JsonError> {
    let j = digits(input, i);
    if j > i {
        Ok(j)
    } else if j == input.len() {
        Err(JsonError::Incomplete)
    } else {
        Err(JsonError::Syntax {
            offset: j,
            what: "invalid number",
        })
    }
}

/// Validates the number starting at `i`; returns its end. Copied verbatim.
#[inline(always)]
fn number(input: &[u8], start: usize) -> Result<usize, JsonError> {
    let mut i = start;
    if input.get(i) == Some(&b'-') {
        i += 1;
    }
    match input.get(i) {
        None => return Err(JsonError::Incomplete),
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(input, i + 1),
        Some(_) => {
            return Err(JsonError::Syntax {
                offset: i,
                what: "invalid number",
            });
        }
    }
    if input.get(i) == Some(&b'.') {
        i = some_digits(input, i + 1)?;
    }
    if matches!(input.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(input.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = some_digits(input, i)?;
    }
    // At the end of the input a number may go on in bytes not yet read.
    if i == input.len() {
        return Err(JsonError::Incomplete);
    }
    Ok(i)
}

/// Matches `word` at `i`, distinguishing a prefix cut by the end of the
/// input (incomplete) from a mismatch.
#[inline(always)]
fn literal<const N: usize>(input: &[u8], i: usize, word: &[u8; N]) -> Result<usize, JsonError> {
    // The whole word is there (the common case): one fixed-size compare.
    if let Some(there) = input.get(i..i + N) {
        return if is_word(there, word) {
            Ok(i + N)
        } else {
            Err(JsonError::Syntax {
                offset: i,
                what: "invalid literal",
            })
        };
    }
    let avail = &input[i..input.len().min(i + N)];
    if avail != &word[..avail.len()] {
        return Err(JsonError::Syntax {
            offset: i,
            what: "invalid literal",
        });
    }
    if avail.len() < word.len() {
        return Err(JsonError::Incomplete);
    }
    Ok(i + word.len())
}

/// `k == word`, compared as one fixed-size value rather than by a call to
/// `memcmp`: it runs for every top-level member of every record.
#[inline(always)]
pub fn is_word<const N: usize>(k: &[u8], word: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(k).is_ok_and(|k| k == word)
}

fn kind_of(b: u8) -> &'static str {
    match b {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

impl Formatter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Formats one record: a JSON object, alone on its line apart from
    /// whitespace. Appends `prefix`, then the pretty-printed object (adding
    /// `"logged_at": <logged_at>` as its last key when it has none; pass the
    /// value already quoted) to `out`. On error `out` is left as it was.
    ///
    /// # Errors
    /// Any [`JsonError`]; [`JsonError::Incomplete`] means the line ended
    /// inside the value.
    pub fn record(
        &mut self,
        input: &[u8],
        prefix: &[u8],
        logged_at: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Formatted, JsonError> {
        self.record_within(input, prefix, logged_at, out, MAX_RECORD_DEPTH)
    }

    /// [`Formatter::record`] with another depth limit: a line may be a
    /// request whose jobs sit two levels down (`{"jobs":[{…}]}`), so lines
    /// are formatted with room for that and a record is then held to
    /// [`MAX_RECORD_DEPTH`] by the caller, using [`Formatted::depth`].
    ///
    /// # Errors
    /// As [`Formatter::record`].
    pub fn record_within(
        &mut self,
        input: &[u8],
        prefix: &[u8],
        logged_at: &[u8],
        out: &mut Vec<u8>,
        max_depth: usize,
    ) -> Result<Formatted, JsonError> {
        let mark = out.len();
        out.extend_from_slice(prefix);
        let res = self.value(
            input,
            skip_ws(input, 0),
            out,
            max_depth,
            true,
            Some(logged_at),
        );
        let res = res.and_then(|f| {
            let rest = skip_ws(input, f.end);
            if rest != input.len() {
                Err(JsonError::Syntax {
                    offset: rest,
                    what: "unexpected bytes after the object",
                })
            } else {
                Ok(f)
            }
        });
        let res = res.map_err(|e| utf8_first(input, e));
        if res.is_err() {
            out.truncate(mark);
        }
        res
    }

    /// Pretty-prints one JSON value as an element of the top-level array
    /// (Python's `indent=2`, one level in), adding nothing: how `joblogctl`
    /// shows records as a JSON array. On error `out` is left as it was.
    ///
    /// # Errors
    /// Any [`JsonError`].
    pub fn pretty(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Formatted, JsonError> {
        let mark = out.len();
        let res = self.value(
            input,
            skip_ws(input, 0),
            out,
            4 * MAX_RECORD_DEPTH,
            false,
            None,
        );
        if res.is_err() {
            out.truncate(mark);
        }
        res
    }

    /// Validates the value starting at `start` (after any whitespace) without
    /// keeping output; top-level members are still located in `fields`.
    ///
    /// # Errors
    /// Any [`JsonError`] except `NotObject` unless `require_object`.
    pub fn validate(
        &mut self,
        input: &[u8],
        start: usize,
        max_depth: usize,
        require_object: bool,
    ) -> Result<Formatted, JsonError> {
        self.value(
            input,
            skip_ws(input, start),
            &mut Discard,
            max_depth,
            require_object,
            None,
        )
    }

    /// The single pass behind [`Formatter::record`] and
    /// [`Formatter::validate`].
    fn value<S: Sink>(
        &mut self,
        input: &[u8],
        mut i: usize,
        out: &mut S,
        max_depth: usize,
        require_object: bool,
        logged_at: Option<&[u8]>,
    ) -> Result<Formatted, JsonError> {
        self.stack.clear();
        self.fields.clear();
        self.escaped_keys = false;
        let base = out.len();
        let limit = self.output_limit.unwrap_or(usize::MAX);
        let mut coerced = false;
        let mut had_logged_at = false;
        let mut depth = 0usize;
        let Some(&first) = input.get(i) else {
            return Err(JsonError::Incomplete);
        };
        if require_object && first != b'{' {
            // Tell "not JSON" from "JSON, but not an object" for the reply.
            if matches!(first, b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') {
                let mut probe = Formatter::new();
                let r = probe.value(input, i, &mut Discard, max_depth, false, None);
                if let Ok(f) = r
                    && skip_ws(input, f.end) == input.len()
                {
                    return Err(JsonError::NotObject {
                        found: kind_of(first),
                    });
                }
            }
            return Err(JsonError::Syntax {
                offset: i,
                what: "expected a JSON object",
            });
        }
        // Start of the current top-level member's value (input, output).
        let mut member_start = (0usize, 0usize);
        let mut member_key = (0..0, 0..0);
        'value: loop {
            let Some(&b) = input.get(i) else {
                return Err(JsonError::Incomplete);
            };
            match b {
                b'{' | b'[' => {
                    let (open, close, frame) = if b == b'{' {
                        (b'{', b'}', Frame::Object)
                    } else {
                        (b'[', b']', Frame::Array)
                    };
                    let j = skip_ws(input, i + 1);
                    let Some(&next) = input.get(j) else {
                        return Err(JsonError::Incomplete);
                    };
                    if next == close {
                        if self.stack.len() >= max_depth {
                            return Err(JsonError::TooDeep { offset: i });
                        }
                        depth = depth.max(self.stack.len() + 1);
                        i = j + 1;
                        if self.stack.is_empty() && frame == Frame::Object {
                            if let Some(ts) = logged_at {
                                out.push(b'{');
                                newline_indent(out, 1);
                                if !self.extra.is_empty() {
                                    out.extend(&self.extra);
                                    out.push(b',');
                                    newline_indent(out, 1);
                                }
                                self.push_logged_at(out, ts);
                                newline_indent(out, 0);
                                out.push(b'}');
                            } else {
                                out.extend(b"{}");
                            }
                        } else {
                            out.extend(&[open, close]);
                        }
                    } else {
                        if self.stack.len() >= max_depth {
                            return Err(JsonError::TooDeep { offset: i });
                        }
                        within_limit(out.len() - base, limit)?;
                        self.stack.push(frame);
                        depth = depth.max(self.stack.len());
                        out.push(open);
                        newline_indent(out, self.stack.len());
                        i = j;
                        if frame == Frame::Object {
                            i = self.key(input, i, out, &mut member_key, &mut member_start)?;
                        }
                        continue 'value;
                    }
                }
                b'"' => i = string(input, i, out)?,
                b't' => {
                    i = literal(input, i, b"true")?;
                    out.extend(b"true");
                }
                b'f' => {
                    i = literal(input, i, b"false")?;
                    out.extend(b"false");
                }
                b'n' => {
                    i = literal(input, i, b"null")?;
                    out.extend(b"null");
                }
                b'N' => {
                    i = literal(input, i, b"NaN")?;
                    out.extend(b"null");
                    coerced = true;
                }
                b'I' => {
                    i = literal(input, i, b"Infinity")?;
                    out.extend(b"null");
                    coerced = true;
                }
                b'-' if input.get(i + 1) == Some(&b'I') => {
                    i = literal(input, i, b"-Infinity")?;
                    out.extend(b"null");
                    coerced = true;
                }
                b'-' | b'0'..=b'9' => {
                    let end = match number(input, i) {
                        // A number that ends the whole input is complete only
                        // when it is the whole value.
                        Err(JsonError::Incomplete) if self.stack.is_empty() => {
                            let probe = [&input[i..], b" "].concat();
                            number(&probe, 0)? + i
                        }
                        r => r?,
                    };
                    out.extend_from(input, i..end);
                    i = end;
                }
                _ => {
                    return Err(JsonError::Syntax {
                        offset: i,
                        what: "expected a value",
                    });
                }
            }
            // A value just ended; it belongs to the frame on top of the stack.
            loop {
                if self.stack.len() == 1 && self.stack[0] == Frame::Object {
                    let f = TopField {
                        key_out: member_key.0.clone(),
                        key_in: member_key.1.clone(),
                        value_in: member_start.0..i,
                        value_out: member_start.1..out.len(),
                    };
                    // The decoded key where there is output (so an escaped
                    // spelling counts), else the raw one.
                    let is_logged_at = if logged_at.is_some() {
                        is_word(out.written(f.key_out.clone()), b"logged_at")
                    } else {
                        is_word(&input[f.key_in.clone()], b"\"logged_at\"")
                    };
                    had_logged_at |= is_logged_at;
                    self.fields.push(f);
                }
                let Some(&frame) = self.stack.last() else {
                    return Ok(Formatted {
                        end: i,
                        coerced,
                        had_logged_at,
                        depth,
                    });
                };
                i = skip_ws(input, i);
                let Some(&b) = input.get(i) else {
                    return Err(JsonError::Incomplete);
                };
                match (frame, b) {
                    (_, b',') => {
                        within_limit(out.len() - base, limit)?;
                        out.push(b',');
                        newline_indent(out, self.stack.len());
                        i = skip_ws(input, i + 1);
                        if frame == Frame::Object {
                            i = self.key(input, i, out, &mut member_key, &mut member_start)?;
                        }
                        continue 'value;
                    }
                    (Frame::Object, b'}') | (Frame::Array, b']') => {
                        within_limit(out.len() - base, limit)?;
                        i += 1;
                        self.stack.pop();
                        if self.stack.is_empty()
                            && frame == Frame::Object
                            && logged_at.is_some()
                            && !self.extra.is_empty()
                        {
                            out.push(b',');
                            newline_indent(out, 1);
                            out.extend(&self.extra);
                        }
                        if self.stack.is_empty()
                            && frame == Frame::Object
                            && !had_logged_at
                            && let Some(ts) = logged_at
                        {
                            out.push(b',');
                            newline_indent(out, 1);
                            self.push_logged_at(out, ts);
                        }
                        newline_indent(out, self.stack.len());
                        out.push(b);
                    }
                    _ => {
                        return Err(JsonError::Syntax {
                            offset: i,
                            what: if frame == Frame::Object {
                                "expected ',' or '}'"
                            } else {
                                "expected ',' or ']'"
                            },
                        });
                    }
                }
            }
        }
    }

    /// Writes the added `"logged_at": ts` member and records it among the
    /// top-level fields (output coordinates only: it has no input).
    fn push_logged_at<S: Sink>(&mut self, out: &mut S, ts: &[u8]) {
        let k = out.len();
        out.extend(b"\"logged_at\": ");
        let v = out.len();
        out.extend(ts);
        self.fields.push(TopField {
            key_out: k + 1..k + 10,
            key_in: 0..0,
            value_in: 0..0,
            value_out: v..out.len(),
        });
    }

    /// Parses `"key" :` at `i` (after whitespace), writes `"key": `, and
    /// returns the offset of the value (after whitespace).
    #[inline(always)]
    fn key<S: Sink>(
        &mut self,
        input: &[u8],
        i: usize,
        out: &mut S,
        member_key: &mut (Range<usize>, Range<usize>),
        member_start: &mut (usize, usize),
    ) -> Result<usize, JsonError> {
        match input.get(i) {
            None => return Err(JsonError::Incomplete),
            Some(b'"') => {}
            Some(_) => {
                return Err(JsonError::Syntax {
                    offset: i,
                    what: "expected a string key",
                });
            }
        }
        let out_start = out.len();
        let (end, escaped) = string_escaped(input, i, out)?;
        if self.stack.len() == 1 {
            // A discarding sink has no output coordinates.
            let key_out = if out.len() > out_start {
                out_start + 1..out.len() - 1
            } else {
                0..0
            };
            *member_key = (key_out, i..end);
            self.escaped_keys |= escaped;
        }
        let j = skip_ws(input, end);
        match input.get(j) {
            None => return Err(JsonError::Incomplete),
            Some(b':') => {}
            Some(_) => {
                return Err(JsonError::Syntax {
                    offset: j,
                    what: "expected ':'",
                });
            }
        }
        out.extend(b": ");
        let v = skip_ws(input, j + 1);
        if self.stack.len() == 1 {
            *member_start = (v, out.len());
        }
        Ok(v)
    }
}

/// On a syntax error, prefers reporting invalid UTF-8 if the input has any
/// (a stray non-UTF-8 byte outside a string is first seen as bad syntax).
fn utf8_first(input: &[u8], e: JsonError) -> JsonError {
    match e {
        JsonError::Syntax { .. } | JsonError::NotObject { .. } => {
            match std::str::from_utf8(input) {
                Err(u) => JsonError::Utf8 {
                    offset: u.valid_up_to(),
                },
                Ok(_) => e,
            }
        }
        e => e,
    }
}

/// The byte ranges of the elements of the JSON array `input` (which must
/// be exactly one array, whitespace around it allowed). Elements are
/// validated with the record rules (objects or not, `NaN` accepted).
///
/// # Errors
/// The array is not well-formed.
pub fn array_elements(input: &[u8]) -> Result<Vec<Range<usize>>, JsonError> {
    let mut i = skip_ws(input, 0);
    if input.get(i) != Some(&b'[') {
        return Err(JsonError::Syntax {
            offset: i,
            what: "expected an array",
        });
    }
    let mut fmt = Formatter::new();
    let mut out = Vec::new();
    i = skip_ws(input, i + 1);
    if input.get(i) == Some(&b']') {
        return Ok(out);
    }
    loop {
        let start = skip_ws(input, i);
        let f = fmt.value(input, start, &mut Discard, MAX_RECORD_DEPTH, false, None)?;
        out.push(start..f.end);
        i = skip_ws(input, f.end);
        match input.get(i) {
            Some(b',') => i += 1,
            Some(b']') => return Ok(out),
            None => return Err(JsonError::Incomplete),
            Some(_) => {
                return Err(JsonError::Syntax {
                    offset: i,
                    what: "expected ',' or ']'",
                });
            }
        }
    }
}

/// A top-level member found by [`skim_object`]: the raw key (with its
/// quotes) and the value, in input coordinates, like [`TopField::key_in`]
/// and [`TopField::value_in`].
pub type SkimmedField = (Range<usize>, Range<usize>);

/// Locates the members of a top-level object without validating it. For
/// bytes that are one valid JSON object, `out` ends up holding exactly the
/// `key_in` and `value_in` ranges that [`Formatter::validate`] puts in
/// `fields`, at a fraction of the cost: strings are skipped 8 bytes at a
/// time, nested values by counting brackets. Only for records read back from the
/// log, which were validated on their way in or by the start-up scan:
/// invalid content inside a value goes unnoticed. Returns `false` (and
/// `out` is not to be used) for bytes not even shaped like an object.
pub fn skim_object(input: &[u8], out: &mut Vec<SkimmedField>) -> bool {
    out.clear();
    let mut i = skip_ws(input, 0);
    if input.get(i) != Some(&b'{') {
        return false;
    }
    i = skip_ws(input, i + 1);
    if input.get(i) == Some(&b'}') {
        return true;
    }
    loop {
        if input.get(i) != Some(&b'"') {
            return false;
        }
        let Some(key_end) = skip_string(input, i) else {
            return false;
        };
        let key = i..key_end;
        i = skip_ws(input, key_end);
        if input.get(i) != Some(&b':') {
            return false;
        }
        i = skip_ws(input, i + 1);
        let Some(value_end) = skip_value(input, i) else {
            return false;
        };
        out.push((key, i..value_end));
        i = skip_ws(input, value_end);
        match input.get(i) {
            Some(b',') => i = skip_ws(input, i + 1),
            Some(b'}') => return true,
            _ => return false,
        }
    }
}

/// Locates the elements of an array without validating it, as
/// [`skim_object`] locates an object's members (same caveats). Returns
/// `false` for bytes not shaped like an array.
pub fn skim_array(input: &[u8], out: &mut Vec<Range<usize>>) -> bool {
    out.clear();
    let mut i = skip_ws(input, 0);
    if input.get(i) != Some(&b'[') {
        return false;
    }
    i = skip_ws(input, i + 1);
    if input.get(i) == Some(&b']') {
        return true;
    }
    loop {
        let Some(end) = skip_value(input, i) else {
            return false;
        };
        out.push(i..end);
        i = skip_ws(input, end);
        match input.get(i) {
            Some(b',') => i = skip_ws(input, i + 1),
            Some(b']') => return true,
            _ => return false,
        }
    }
}

/// `input[i]` is an opening quote: the index just past its closing quote.
fn skip_string(input: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        // Most strings are short: the formatter's 8-bytes-at-a-time scan
        // beats a `memchr2` call, whose set-up costs more than the search.
        let k = string_run_end(input, j);
        match input.get(k)? {
            b'"' => return Some(k + 1),
            // An escape: the byte after the backslash is never a closing
            // quote (the hex digits of a \u escape are plain bytes).
            b'\\' => j = k + 2,
            // A control byte (raw in a string only in damaged input).
            _ => j = k + 1,
        }
    }
}

/// The index just past the value starting at `input[i]`.
fn skip_value(input: &[u8], i: usize) -> Option<usize> {
    match *input.get(i)? {
        b'"' => skip_string(input, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *input.get(j)? {
                    b'"' => {
                        j = skip_string(input, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let end = input[i..]
                .iter()
                .position(|&b| matches!(b, b',' | b'}' | b']') || is_ws(b))
                .map_or(input.len(), |n| i + n);
            (end > i).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(input: &str) -> Result<String, JsonError> {
        let mut f = Formatter::new();
        let mut out = Vec::new();
        f.record(input.as_bytes(), b"", b"\"T\"", &mut out)?;
        Ok(String::from_utf8(out).expect("formatter output is UTF-8"))
    }

    #[test]
    fn pretty_prints_like_python_indent_2() {
        assert_eq!(
            fmt(r#"{"a":1,"b":[1,{"c":null}],"d":{},"e":[],"logged_at":"x"}"#).unwrap(),
            "{\n    \"a\": 1,\n    \"b\": [\n      1,\n      {\n        \"c\": null\n      }\n    ],\n    \"d\": {},\n    \"e\": [],\n    \"logged_at\": \"x\"\n  }"
        );
    }

    #[test]
    fn adds_logged_at_last_when_missing() {
        assert_eq!(fmt("{}").unwrap(), "{\n    \"logged_at\": \"T\"\n  }");
        assert_eq!(
            fmt(r#" {"a" : true} "#).unwrap(),
            "{\n    \"a\": true,\n    \"logged_at\": \"T\"\n  }"
        );
    }

    #[test]
    fn escapes_like_ensure_ascii_false() {
        let s = fmt(r#"{"s":"\u00e9\u0000\u001f\b\/\"\\\ud83d\ude00\ud800x\u007f","logged_at":1}"#)
            .unwrap();
        assert_eq!(
            s,
            "{\n    \"s\": \"é\\u0000\\u001f\\b/\\\"\\\\😀\\ud800x\u{7f}\",\n    \"logged_at\": 1\n  }"
        );
    }

    #[test]
    fn coerces_non_finite_numbers() {
        let mut f = Formatter::new();
        let mut out = Vec::new();
        let r = f
            .record(
                br#"{"a":NaN,"b":[Infinity,-Infinity],"logged_at":0}"#,
                b"",
                b"",
                &mut out,
            )
            .unwrap();
        assert!(r.coerced);
        assert!(r.had_logged_at);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n    \"a\": null,\n    \"b\": [\n      null,\n      null\n    ],\n    \"logged_at\": 0\n  }"
        );
    }

    /// A deeply nested line of small elements prints to many times its
    /// size; past the output limit the formatter stops (leaving `out` as it
    /// was) instead of printing on; within the limit the output is the
    /// same as without one.
    #[test]
    fn output_limit_stops_an_expanding_record() {
        let depth = 60;
        let line = format!(
            "{{\"a\":{}{}0{}}}",
            "[".repeat(depth),
            "0,".repeat(2000),
            "]".repeat(depth)
        );
        let mut f = Formatter::new();
        let mut full = Vec::new();
        f.record(line.as_bytes(), b"", b"\"T\"", &mut full)
            .expect("no limit");
        assert!(
            full.len() > 50 * line.len(),
            "{} from {}",
            full.len(),
            line.len()
        );

        for limit in [0, 1, 1000, 100_000, full.len() - 200] {
            f.output_limit = Some(limit);
            let mut out = b"kept".to_vec();
            let e = f.record(line.as_bytes(), b",\n  ", b"\"T\"", &mut out);
            assert_eq!(e, Err(JsonError::TooLarge { limit }));
            assert_eq!(out, b"kept", "output rolled back");
        }
        // At or above the printed size the record passes, unchanged.
        for limit in [full.len(), full.len() + 1] {
            f.output_limit = Some(limit);
            let mut out = Vec::new();
            f.record(line.as_bytes(), b"", b"\"T\"", &mut out)
                .expect("within the limit");
            assert_eq!(out, full);
        }
    }

    #[test]
    fn numbers_are_verbatim_and_validated() {
        assert!(fmt(r#"{"n":-0.5e+10}"#).unwrap().contains("-0.5e+10"));
        let big = format!("{{\"n\":{}}}", "9".repeat(400));
        assert!(fmt(&big).unwrap().contains(&"9".repeat(400)));
        for bad in [
            r#"{"n":01}"#,
            r#"{"n":1.}"#,
            r#"{"n":-}"#,
            r#"{"n":1e}"#,
            r#"{"n":+1}"#,
        ] {
            assert!(fmt(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_what_python_rejects() {
        for bad in [
            "",
            "{",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":"x"#,
            "{\"a\":\"\t\"}",
            r#"{"a":tru}"#,
            r#"{"a":1}x"#,
            r#"{'a':1}"#,
            r#"{"a":"\x"}"#,
        ] {
            assert!(fmt(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reports_non_objects() {
        for (input, found) in [
            ("[1]", "an array"),
            ("\"s\"", "a string"),
            ("12", "a number"),
            ("null", "null"),
        ] {
            assert_eq!(fmt(input), Err(JsonError::NotObject { found }), "{input}");
        }
    }

    #[test]
    fn invalid_utf8_in_key_and_value() {
        let mut f = Formatter::new();
        let mut out = vec![1, 2];
        assert!(matches!(
            f.record(b"{\"a\xff\":1}", b"", b"", &mut out),
            Err(JsonError::Utf8 { .. })
        ));
        assert!(matches!(
            f.record(b"{\"a\":\"\xc3\"}", b"", b"", &mut out),
            Err(JsonError::Utf8 { .. })
        ));
        assert_eq!(out, vec![1, 2], "output untouched on error");
    }

    #[test]
    fn depth_is_bounded_without_recursion() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(fmt(&deep), Err(JsonError::TooDeep { .. })));
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(fmt(&ok).is_ok());
    }

    #[test]
    fn top_fields_are_located() {
        let mut f = Formatter::new();
        let mut out = Vec::new();
        let input = br#"{"video_id": "v1", "success" :false,"t":{"x":[1]}}"#;
        f.record(input, b",\n  ", b"\"T\"", &mut out).unwrap();
        let keys: Vec<&[u8]> = f.fields.iter().map(|t| &out[t.key_out.clone()]).collect();
        assert_eq!(keys, vec![&b"video_id"[..], b"success", b"t", b"logged_at"]);
        // The added logged_at has no input side.
        assert!(f.fields[3].key_in.is_empty());
        assert_eq!(&out[f.fields[3].value_out.clone()], b"\"T\"");
        assert_eq!(&input[f.fields[1].value_in.clone()], b"false");
        assert_eq!(&out[f.fields[0].value_out.clone()], b"\"v1\"");
        assert_eq!(&input[f.fields[2].value_in.clone()], br#"{"x":[1]}"#);
    }

    #[test]
    fn validate_reports_incomplete_for_cut_input() {
        let full = r#"{"a": [1, 2.5, "xé"], "b": {"c": null}}"#.as_bytes();
        let mut f = Formatter::new();
        assert!(f.validate(full, 0, 1000, true).is_ok());
        for cut in 1..full.len() {
            assert_eq!(
                f.validate(&full[..cut], 0, 1000, true),
                Err(JsonError::Incomplete),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn splits_array_elements() {
        let input = br#" [ {"a":[1,2]} , 3 ,"x", {} ] "#;
        let got: Vec<&[u8]> = array_elements(input)
            .unwrap()
            .into_iter()
            .map(|r| &input[r])
            .collect();
        assert_eq!(got, vec![&br#"{"a":[1,2]}"#[..], b"3", b"\"x\"", b"{}"]);
        assert_eq!(array_elements(b"[]").unwrap(), vec![]);
        assert!(array_elements(b"[1,]").is_err());
        assert!(array_elements(b"[1 2]").is_err());
    }

    #[test]
    fn block_scan_copies_exactly_the_run_and_flags_non_ascii() {
        for len in 0..70 {
            for pos in 0..=len {
                for stop in [None, Some(b'"'), Some(b'\\'), Some(0x00), Some(0x1f)] {
                    for high in [None, Some(0xc3u8)] {
                        let mut input = vec![b'a'; len];
                        if let Some(st) = stop
                            && pos < len
                        {
                            input[pos] = st;
                        }
                        if let Some(h) = high
                            && pos > 0
                        {
                            input[pos - 1] = h;
                        }
                        let want_end = string_run_end(&input, 0);
                        let mut out = b"prefix".to_vec();
                        let (end, non_ascii) = scan_run::<true>(&mut out, &input, 0);
                        assert_eq!(end, want_end, "len {len} pos {pos} stop {stop:?}");
                        assert_eq!(&out[6..], &input[..end]);
                        assert_eq!(non_ascii, !input[..end].is_ascii());
                        let (end2, non_ascii2) = Discard.string_run(&input, 0);
                        assert_eq!((end2, non_ascii2), (end, non_ascii));
                    }
                }
            }
        }
    }

    #[test]
    fn short_copies_and_indentation_write_exactly_their_bytes() {
        let input: Vec<u8> = (0..100u8).collect();
        for start in 0..60 {
            for n in 0..40 {
                if start + n > input.len() {
                    continue;
                }
                let mut out = vec![7u8];
                out.extend_from(&input, start..start + n);
                assert_eq!(&out[1..], &input[start..start + n]);
            }
        }
        for n in [0, 1, 30, 31, 32, 33, 255, 256, 257, 600] {
            let mut out = Vec::new();
            out.newline_spaces(n);
            assert_eq!(out.len(), n + 1);
            assert_eq!(out[0], b'\n');
            assert!(out[1..].iter().all(|&b| b == b' '));
        }
    }

    #[test]
    fn swar_scan_finds_stop_bytes_anywhere() {
        for pos in 0..20 {
            for stop in [b'"', b'\\', 0x01, 0x1f] {
                let mut v = vec![b'a'; 20];
                v[pos] = stop;
                assert_eq!(string_run_end(&v, 0), pos);
            }
            let mut v = "é".repeat(10).into_bytes();
            v.push(b'"');
            assert_eq!(string_run_end(&v, 0), 20);
        }
    }

    /// `skim_object` against the validating parse, on every valid object of
    /// the fuzz corpus and on hand-made tricky ones.
    #[test]
    fn skim_object_finds_what_validate_finds_in_every_valid_object() {
        let corpus = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/fuzz_line.bin"
        ));
        let mut inputs: Vec<&[u8]> = vec![
            br#"{}"#,
            br#" { } "#,
            br#"{"a":1}"#,
            br#"{ "a" : "x" , "b\"c" : [1, {"}":"]"}, "\\"] ,"d":-1.5e3,"e":true,"f":null}"#,
            br#"{"k\u0022":{"x":[[]]},"":"","t":"a\\","u":"\\\"{"}"#,
            "{\"\u{e9}\":\"\u{1F600}\",\"n\":NaN,\"i\":-Infinity}".as_bytes(),
            b"{\t\"a\"\r\n:\n0\n}",
        ];
        let mut at = &corpus[..];
        while let Some((len, tail)) = at.split_first_chunk::<4>() {
            let (input, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            inputs.push(input);
            at = tail;
        }
        let mut f = Formatter::new();
        let mut skimmed = Vec::new();
        let mut compared = 0;
        for input in inputs {
            if f.validate(input, 0, 10_000, true).is_err() {
                continue;
            }
            // validate takes one value and ignores what follows; so does
            // skim_object.
            let want: Vec<SkimmedField> = f
                .fields
                .iter()
                .map(|t| (t.key_in.clone(), t.value_in.clone()))
                .collect();
            assert!(
                skim_object(input, &mut skimmed),
                "skim refused {:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(skimmed, want, "{:?}", String::from_utf8_lossy(input));
            compared += 1;
        }
        // The corpus holds 286 valid objects (most of it is invalid input).
        assert!(compared > 250, "only {compared} valid objects compared");
    }
}
