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

mod lex;
mod sink;
mod skim;
mod value;

pub use sink::{Discard, Sink};
pub use skim::{SkimmedField, array_elements, skim_array, skim_object};

// Shared by the submodules (each takes `super::*`).
use lex::*;

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

#[cfg(test)]
mod tests {
    use super::sink::scan_run;
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
