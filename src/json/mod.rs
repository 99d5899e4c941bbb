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

mod format;
mod lex;
mod sink;
mod skim;
mod value;

pub use format::Formatter;
pub(crate) use format::{TopField, is_word};
pub(crate) use sink::{Discard, Sink};
pub use skim::array_elements;
pub(crate) use skim::{SkimmedField, skim_array, skim_object};

// Shared by the submodules (each takes `super::*`).
use lex::*;

pub(crate) use value::{minify, minify_into};

pub(crate) use crate::config::tuning::MAX_RECORD_DEPTH;

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
        assert_eq!(array_elements(b"[]").unwrap(), Vec::<Range<usize>>::new());
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
