//! Python's `str()` of a JSON value as `json.load` reads it: what the old
//! logger's `csv` module wrote in a cell (`csv.writer` calls `str()` on
//! every value that is not a string). `True`/`False`/`None`, integers as
//! their digits, floats as `repr()` gives them (`1e+16`, `100000.0`),
//! lists and dicts as `[1, 2.5, True, None]` and `{'k': 'v'}`, with
//! strings inside them in `repr()`'s quotes and escapes. A key given twice
//! in one object keeps its first place and its last value, as in the dict
//! `json.load` makes.
//!
//! `repr()` leaves a character as it is when `str.isprintable()` says so
//! (the table in `not_printable.rs`).

use std::io::Write;

mod not_printable;

use not_printable::NOT_PRINTABLE;

/// Python's `str()` of the JSON value `v` (a valid JSON text, possibly
/// with the `NaN`/`Infinity` a Python log may hold), appended to `out`.
/// A top-level string is written as its content (`str()` of a str).
pub(crate) fn str_of(v: &[u8], out: &mut Vec<u8>) {
    let mut p = Parser { b: v, i: 0 };
    p.ws();
    if p.peek() == Some(b'"') {
        let s = p.string();
        for c in s {
            push_char(out, c);
        }
    } else {
        p.value(out);
    }
}

/// Python's `repr()` of a float.
pub(crate) fn float_repr(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(b"nan");
        return;
    }
    if x.is_sign_negative() {
        out.push(b'-');
    }
    let x = x.abs();
    if x.is_infinite() {
        out.extend_from_slice(b"inf");
        return;
    }
    if x == 0.0 {
        out.extend_from_slice(b"0.0");
        return;
    }
    let (digits, nd, exp) = shortest_digits(x);
    place_point(&digits[..nd], exp, out);
}

/// The shortest digits that read back as `x` (positive, finite, not
/// zero), the closest to it of those, as Python's repr finds them:
/// serde_json's (Ryū) writing (`912686054474985.2`, `1e16`, `1e-5`), taken
/// apart into significant digits (`digits[..n]`, no leading or trailing
/// zeros) and the power of ten of the first one. (`format!("{x:e}")` does
/// not always pick the closest: `…985.3` there.)
fn shortest_digits(x: f64) -> ([u8; 40], usize, i32) {
    let mut text = [0u8; 40];
    let n = {
        let mut w = &mut text[..];
        let _ = serde_json::to_writer(&mut w, &x);
        40 - w.len()
    };
    let text = &text[..n];
    let e_at = text
        .iter()
        .position(|&b| b == b'e' || b == b'E')
        .unwrap_or(n);
    let exp10: i32 = std::str::from_utf8(&text[(e_at + 1).min(n)..])
        .ok()
        .and_then(|e| e.trim_start_matches('+').parse().ok())
        .unwrap_or(0);
    let mantissa = &text[..e_at];
    let int_len = mantissa
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(mantissa.len());
    let mut all = [0u8; 40];
    let mut nd = 0;
    for &b in mantissa {
        if b != b'.' {
            all[nd] = b;
            nd += 1;
        }
    }
    let lead = all[..nd].iter().take_while(|&&b| b == b'0').count();
    let mut end = nd;
    while end > lead + 1 && all[end - 1] == b'0' {
        end -= 1;
    }
    let mut digits = [0u8; 40];
    digits[..end - lead].copy_from_slice(&all[lead..end]);
    // `digits[0]` is the digit for 10^exp.
    let exp = int_len as i32 - lead as i32 - 1 + exp10;
    (digits, end - lead, exp)
}

/// Writes the digits `d` (`d[0]` for 10^exp) as Python's repr places the
/// point: exponent form below 1e-4 and from 1e16 on, else plain with at
/// least one decimal.
fn place_point(d: &[u8], exp: i32, out: &mut Vec<u8>) {
    let decpt = exp + 1;
    if decpt <= -4 || decpt > 16 {
        out.push(d[0]);
        if d.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    } else if decpt <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-decpt) as usize));
        out.extend_from_slice(d);
    } else {
        let decpt = decpt as usize;
        if decpt < d.len() {
            out.extend_from_slice(&d[..decpt]);
            out.push(b'.');
            out.extend_from_slice(&d[decpt..]);
        } else {
            out.extend_from_slice(d);
            out.extend(std::iter::repeat_n(b'0', decpt - d.len()));
            out.extend_from_slice(b".0");
        }
    }
}

/// Python's `str()` of the JSON number `t`: an integer's digits (`-0` is
/// `0`), a float's `repr()`.
pub(crate) fn number_str(t: &[u8], out: &mut Vec<u8>) {
    if t.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        let x: f64 = std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(f64::NAN);
        float_repr(x, out);
    } else if t.iter().all(|b| matches!(b, b'-' | b'0')) {
        out.push(b'0');
    } else {
        out.extend_from_slice(t);
    }
}

fn push_char(out: &mut Vec<u8>, c: u32) {
    match char::from_u32(c) {
        Some(ch) => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        }
        // A lone surrogate: no UTF-8 for it (Python could not have
        // written it either).
        None => out.extend_from_slice("\u{fffd}".as_bytes()),
    }
}

fn printable(c: u32) -> bool {
    if c < 0x80 {
        return (0x20..0x7f).contains(&c);
    }
    NOT_PRINTABLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_err()
}

/// Python's `repr()` of a str.
fn str_repr(s: &[u32], out: &mut Vec<u8>) {
    let sq = s.contains(&u32::from(b'\''));
    let dq = s.contains(&u32::from(b'"'));
    let quote = if sq && !dq { b'"' } else { b'\'' };
    out.push(quote);
    for &c in s {
        match c {
            _ if c == u32::from(quote) || c == u32::from(b'\\') => {
                out.push(b'\\');
                out.push(c as u8);
            }
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0d => out.extend_from_slice(b"\\r"),
            _ if printable(c) => push_char(out, c),
            0..=0xff => {
                let _ = write!(out, "\\x{c:02x}");
            }
            0x100..=0xffff => {
                let _ = write!(out, "\\u{c:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{c:08x}");
            }
        }
    }
    out.push(quote);
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string's code points (the parser at its opening quote); a lone
    /// surrogate escape stays one code point, as Python keeps it.
    fn string(&mut self) -> Vec<u32> {
        self.i += 1;
        let mut s = Vec::new();
        let hex4 = |p: &mut Self| -> u32 {
            let h = p.b.get(p.i..p.i + 4).unwrap_or(b"0000");
            p.i += 4;
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .unwrap_or(0xfffd)
        };
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    let e = self.b.get(self.i + 1).copied().unwrap_or(b'\\');
                    self.i += 2;
                    let c = match e {
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => 10,
                        b'r' => 13,
                        b't' => 9,
                        b'u' => {
                            let hi = hex4(self);
                            if (0xd800..0xdc00).contains(&hi)
                                && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = hex4(self);
                                if (0xdc00..0xe000).contains(&lo) {
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    self.i = save;
                                    hi
                                }
                            } else {
                                hi
                            }
                        }
                        other => u32::from(other),
                    };
                    s.push(c);
                }
                _ => {
                    let end = self.b[self.i..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\')
                        .map_or(self.b.len(), |n| self.i + n);
                    s.extend(
                        String::from_utf8_lossy(&self.b[self.i..end])
                            .chars()
                            .map(u32::from),
                    );
                    self.i = end;
                }
            }
        }
        s
    }

    /// `str()` of the value here (the parser past whitespace), which for
    /// a string inside a container is its `repr()`.
    fn value(&mut self, out: &mut Vec<u8>) {
        match self.peek() {
            Some(b'{') => self.object(out),
            Some(b'[') => {
                self.i += 1;
                out.push(b'[');
                self.ws();
                let mut first = true;
                while !matches!(self.peek(), Some(b']') | None) {
                    if !first {
                        out.extend_from_slice(b", ");
                    }
                    first = false;
                    self.ws();
                    self.value(out);
                    self.ws();
                    if self.peek() == Some(b',') {
                        self.i += 1;
                    }
                    self.ws();
                }
                self.i += 1;
                out.push(b']');
            }
            Some(b'"') => {
                let s = self.string();
                str_repr(&s, out);
            }
            _ => self.scalar(out),
        }
    }

    fn scalar(&mut self, out: &mut Vec<u8>) {
        let start = self.i;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
        ) {
            self.i += 1;
        }
        let t = &self.b[start..self.i];
        match t {
            b"true" => out.extend_from_slice(b"True"),
            b"false" => out.extend_from_slice(b"False"),
            b"null" => out.extend_from_slice(b"None"),
            b"NaN" => out.extend_from_slice(b"nan"),
            b"Infinity" => out.extend_from_slice(b"inf"),
            b"-Infinity" => out.extend_from_slice(b"-inf"),
            _ => number_str(t, out),
        }
    }

    fn object(&mut self, out: &mut Vec<u8>) {
        self.i += 1;
        // (key's repr, value's str): a key seen again keeps its first
        // place and takes the new value.
        let mut members: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut at: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        self.ws();
        while self.peek() == Some(b'"') {
            let mut k = Vec::new();
            let key = self.string();
            str_repr(&key, &mut k);
            self.ws();
            if self.peek() == Some(b':') {
                self.i += 1;
            }
            self.ws();
            let mut v = Vec::new();
            self.value(&mut v);
            match at.get(&k) {
                Some(&j) => members[j].1 = v,
                None => {
                    at.insert(k.clone(), members.len());
                    members.push((k, v));
                }
            }
            self.ws();
            if self.peek() == Some(b',') {
                self.i += 1;
            }
            self.ws();
        }
        self.i += 1;
        out.push(b'{');
        for (n, (k, v)) in members.iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(k);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        str_of(v.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values_read_as_python_writes_them() {
        assert_eq!(
            s(r#"{"nested": [1, 2.5, true, null]}"#),
            "{'nested': [1, 2.5, True, None]}"
        );
        assert_eq!(s("{\n  \"a\": {},\n  \"b\": []\n}"), "{'a': {}, 'b': []}");
        assert_eq!(s(r#"{"a":1,"b":2,"a":3}"#), "{'a': 3, 'b': 2}");
        assert_eq!(
            s(r#"["it's", "say \"hi\"", "both '\""]"#),
            r#"["it's", 'say "hi"', 'both \'"']"#
        );
        assert_eq!(
            s(
                r#"["tab\there", "caf\u00e9", "\u200b", "\ud800", "\ud83d\ude00", "\u0000\u007f\u0085"]"#
            ),
            "['tab\\there', 'café', '\\u200b', '\\ud800', '😀', '\\x00\\x7f\\x85']"
        );
        assert_eq!(s(r#""top level: raw""#), "top level: raw");
        assert_eq!(
            s(
                "[1E5, 1e16, 0.00001, 0.0001, -0, -0.0, 12345678901234567890, 1e400, NaN, -Infinity]"
            ),
            "[100000.0, 1e+16, 1e-05, 0.0001, 0, -0.0, 12345678901234567890, inf, nan, -inf]"
        );
    }
}
