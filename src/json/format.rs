//! The formatter: one pass that validates a JSON value and pretty-prints
//! it as Python's `json.dump(indent=2, ensure_ascii=False)` prints an
//! element of a top-level list, locating the top-level members on the way
//! (see the module above for what the output guarantees).

use std::ops::Range;

use super::lex::*;
use super::{Discard, JsonError, MAX_RECORD_DEPTH, Sink};

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

/// `k == word`, compared as one fixed-size value rather than by a call to
/// `memcmp`: it runs for every top-level member of every record.
#[inline(always)]
pub(crate) fn is_word<const N: usize>(k: &[u8], word: &[u8; N]) -> bool {
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

/// Where one pass of [`Formatter::value`] is: the state its per-state
/// functions share (kept in registers once they are inlined).
struct Pass<'a> {
    input: &'a [u8],
    /// The next input byte to read.
    i: usize,
    /// Output length before this value: [`Formatter::output_limit`] counts
    /// from here.
    base: usize,
    limit: usize,
    max_depth: usize,
    /// The `logged_at` value to add to a record (`None`: not a record).
    logged_at: Option<&'a [u8]>,
    coerced: bool,
    had_logged_at: bool,
    depth: usize,
    /// Start of the current top-level member's value (input, output).
    member_start: (usize, usize),
    /// The current top-level member's key (output, input).
    member_key: (Range<usize>, Range<usize>),
}

/// What the pass reads after a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// A container was opened: a value (after its key, in an object) comes
    /// next.
    Value,
    /// A value ended: separators and closing brackets come next.
    Close,
}

/// Copies nothing from the input: checks the literal `word` at `i` and
/// writes `printed` (`null` for the non-finite numbers).
#[inline(always)]
fn literal_out<S: Sink, const N: usize, const M: usize>(
    input: &[u8],
    i: usize,
    word: &[u8; N],
    printed: &[u8; M],
    out: &mut S,
) -> Result<usize, JsonError> {
    let end = literal(input, i, word)?;
    out.extend(printed);
    Ok(end)
}

/// The error for a first byte that is not `{`: tells "not JSON" from "JSON,
/// but not an object" for the reply.
#[cold]
fn not_an_object(input: &[u8], i: usize, max_depth: usize) -> JsonError {
    let first = input[i];
    if matches!(first, b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') {
        let mut probe = Formatter::new();
        let r = probe.value(input, i, &mut Discard, max_depth, false, None);
        if let Ok(f) = r
            && skip_ws(input, f.end) == input.len()
        {
            return JsonError::NotObject {
                found: kind_of(first),
            };
        }
    }
    JsonError::Syntax {
        offset: i,
        what: "expected a JSON object",
    }
}

#[cold]
fn expected_separator(frame: Frame, offset: usize) -> JsonError {
    JsonError::Syntax {
        offset,
        what: if frame == Frame::Object {
            "expected ',' or '}'"
        } else {
            "expected ',' or ']'"
        },
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
    /// [`Formatter::validate`]: a token at a time, with an explicit stack.
    /// Each state is a function of its own ([`Formatter::token`],
    /// [`Formatter::open`], [`Formatter::close`]); they are inlined into
    /// this loop, so the split costs no calls on the hot path.
    pub(super) fn value<S: Sink>(
        &mut self,
        input: &[u8],
        i: usize,
        out: &mut S,
        max_depth: usize,
        require_object: bool,
        logged_at: Option<&[u8]>,
    ) -> Result<Formatted, JsonError> {
        self.stack.clear();
        self.fields.clear();
        self.escaped_keys = false;
        let Some(&first) = input.get(i) else {
            return Err(JsonError::Incomplete);
        };
        if require_object && first != b'{' {
            return Err(not_an_object(input, i, max_depth));
        }
        let mut p = Pass {
            input,
            i,
            base: out.len(),
            limit: self.output_limit.unwrap_or(usize::MAX),
            max_depth,
            logged_at,
            coerced: false,
            had_logged_at: false,
            depth: 0,
            member_start: (0, 0),
            member_key: (0..0, 0..0),
        };
        loop {
            if self.token(&mut p, out)? == After::Value {
                continue;
            }
            if let Some(done) = self.close(&mut p, out)? {
                return Ok(done);
            }
        }
    }

    /// Reads the value that starts at `p.i`: a scalar (copied, then its
    /// frames may close) or an opening bracket.
    #[inline(always)]
    fn token<S: Sink>(&mut self, p: &mut Pass, out: &mut S) -> Result<After, JsonError> {
        let input = p.input;
        let i = p.i;
        let Some(&b) = input.get(i) else {
            return Err(JsonError::Incomplete);
        };
        p.i = match b {
            b'{' | b'[' => return self.open(p, out, b),
            b'"' => string(input, i, out)?,
            b't' => literal_out(input, i, b"true", b"true", out)?,
            b'f' => literal_out(input, i, b"false", b"false", out)?,
            b'n' => literal_out(input, i, b"null", b"null", out)?,
            b'N' => {
                p.coerced = true;
                literal_out(input, i, b"NaN", b"null", out)?
            }
            b'I' => {
                p.coerced = true;
                literal_out(input, i, b"Infinity", b"null", out)?
            }
            b'-' if input.get(i + 1) == Some(&b'I') => {
                p.coerced = true;
                literal_out(input, i, b"-Infinity", b"null", out)?
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
                end
            }
            _ => {
                return Err(JsonError::Syntax {
                    offset: i,
                    what: "expected a value",
                });
            }
        };
        Ok(After::Close)
    }

    /// An opening bracket at `p.i`: an empty container is one whole value
    /// ([`After::Close`]); otherwise the frame is pushed and, in an object,
    /// the first key read ([`After::Value`]).
    #[inline(always)]
    fn open<S: Sink>(&mut self, p: &mut Pass, out: &mut S, b: u8) -> Result<After, JsonError> {
        let (close, frame) = if b == b'{' {
            (b'}', Frame::Object)
        } else {
            (b']', Frame::Array)
        };
        if self.stack.len() >= p.max_depth {
            return Err(JsonError::TooDeep { offset: p.i });
        }
        let j = skip_ws(p.input, p.i + 1);
        let Some(&next) = p.input.get(j) else {
            return Err(JsonError::Incomplete);
        };
        if next == close {
            p.depth = p.depth.max(self.stack.len() + 1);
            p.i = j + 1;
            match p.logged_at {
                Some(ts) if self.stack.is_empty() && frame == Frame::Object => {
                    self.empty_record(out, ts);
                }
                _ => out.extend(&[b, close]),
            }
            return Ok(After::Close);
        }
        within_limit(out.len() - p.base, p.limit)?;
        self.stack.push(frame);
        p.depth = p.depth.max(self.stack.len());
        out.push(b);
        newline_indent(out, self.stack.len());
        p.i = j;
        if frame == Frame::Object {
            p.i = self.key(p.input, p.i, out, &mut p.member_key, &mut p.member_start)?;
        }
        Ok(After::Value)
    }

    /// A value just ended at `p.i`; it belongs to the frame on top of the
    /// stack. Reads separators and closing brackets until another value
    /// follows (`None`) or the outermost value is complete.
    #[inline(always)]
    fn close<S: Sink>(
        &mut self,
        p: &mut Pass,
        out: &mut S,
    ) -> Result<Option<Formatted>, JsonError> {
        loop {
            if self.stack.len() == 1 && self.stack[0] == Frame::Object {
                self.end_member(p, out);
            }
            let Some(&frame) = self.stack.last() else {
                return Ok(Some(Formatted {
                    end: p.i,
                    coerced: p.coerced,
                    had_logged_at: p.had_logged_at,
                    depth: p.depth,
                }));
            };
            p.i = skip_ws(p.input, p.i);
            let Some(&b) = p.input.get(p.i) else {
                return Err(JsonError::Incomplete);
            };
            match (frame, b) {
                (_, b',') => {
                    within_limit(out.len() - p.base, p.limit)?;
                    out.push(b',');
                    newline_indent(out, self.stack.len());
                    p.i = skip_ws(p.input, p.i + 1);
                    if frame == Frame::Object {
                        p.i =
                            self.key(p.input, p.i, out, &mut p.member_key, &mut p.member_start)?;
                    }
                    return Ok(None);
                }
                (Frame::Object, b'}') | (Frame::Array, b']') => {
                    within_limit(out.len() - p.base, p.limit)?;
                    p.i += 1;
                    self.stack.pop();
                    if self.stack.is_empty()
                        && frame == Frame::Object
                        && let Some(ts) = p.logged_at
                    {
                        self.finish_record(out, ts, p.had_logged_at);
                    }
                    newline_indent(out, self.stack.len());
                    out.push(b);
                }
                _ => return Err(expected_separator(frame, p.i)),
            }
        }
    }

    /// A top-level member's value just ended: locate it in `fields`, and
    /// note whether it was `logged_at`.
    #[inline(always)]
    fn end_member<S: Sink>(&mut self, p: &mut Pass, out: &S) {
        let f = TopField {
            key_out: p.member_key.0.clone(),
            key_in: p.member_key.1.clone(),
            value_in: p.member_start.0..p.i,
            value_out: p.member_start.1..out.len(),
        };
        // The decoded key where there is output (so an escaped spelling
        // counts), else the raw one.
        let is_logged_at = if p.logged_at.is_some() {
            is_word(out.written(f.key_out.clone()), b"logged_at")
        } else {
            is_word(&p.input[f.key_in.clone()], b"\"logged_at\"")
        };
        p.had_logged_at |= is_logged_at;
        self.fields.push(f);
    }

    /// Before a record's closing brace: the `--stamp-peer` members, then
    /// `logged_at` unless the record has its own.
    #[inline(always)]
    fn finish_record<S: Sink>(&mut self, out: &mut S, ts: &[u8], had_logged_at: bool) {
        if !self.extra.is_empty() {
            out.push(b',');
            newline_indent(out, 1);
            out.extend(&self.extra);
        }
        if !had_logged_at {
            out.push(b',');
            newline_indent(out, 1);
            self.push_logged_at(out, ts);
        }
    }

    /// A record sent as `{}`: it still gets the added members.
    fn empty_record<S: Sink>(&mut self, out: &mut S, ts: &[u8]) {
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
