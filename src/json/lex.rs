//! The tokens: whitespace, strings (validated, escaped as Python's
//! `ensure_ascii=False` writes them), numbers and literals.

use super::*;

#[inline(always)]
pub(super) fn newline_indent<S: Sink>(out: &mut S, depth: usize) {
    // An element of the top-level array sits at level 1, so depth d prints
    // 2 * (d + 1) spaces.
    out.newline_spaces(2 * (depth + 1));
}

#[inline(always)]
pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

#[inline(always)]
pub(super) fn skip_ws(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && is_ws(input[i]) {
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` that is `"`, `\` or below 0x20,
/// or `input.len()`. Eight bytes at a time: transcripts are long strings.
#[inline(always)]
pub(super) fn string_run_end(input: &[u8], mut i: usize) -> usize {
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
pub(super) fn hex4(input: &[u8], i: usize) -> Result<u32, JsonError> {
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

pub(super) const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline(always)]
pub(super) fn push_u_escape<S: Sink>(out: &mut S, cp: u32) {
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
pub(super) fn push_char<S: Sink>(out: &mut S, cp: u32) {
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
pub(super) fn string<S: Sink>(input: &[u8], i: usize, out: &mut S) -> Result<usize, JsonError> {
    string_escaped(input, i, out).map(|(end, _)| end)
}

/// [`string`], also telling whether the string held an escape.
#[inline(always)]
pub(super) fn string_escaped<S: Sink>(
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
                escaped = true;
                i = escape(input, i, out)?;
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

/// The escape sequence at `i` (its backslash), written as Python writes
/// it: short forms kept, `\/` and every `\u` that has a UTF-8 form decoded
/// (a surrogate pair into one character). Returns the offset past it.
#[inline(always)]
fn escape<S: Sink>(input: &[u8], mut i: usize, out: &mut S) -> Result<usize, JsonError> {
    let Some(&e) = input.get(i + 1) else {
        return Err(JsonError::Incomplete);
    };
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
                    push_char(out, 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00));
                    return Ok(i + 6);
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
    Ok(i)
}

#[inline(always)]
pub(super) fn digits(input: &[u8], mut i: usize) -> usize {
    while i < input.len() && input[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// One or more digits at `i` (a fraction or an exponent); returns the end.
#[inline(always)]
pub(super) fn some_digits(input: &[u8], i: usize) -> Result<usize, JsonError> {
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
pub(super) fn number(input: &[u8], start: usize) -> Result<usize, JsonError> {
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
pub(super) fn literal<const N: usize>(
    input: &[u8],
    i: usize,
    word: &[u8; N],
) -> Result<usize, JsonError> {
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

/// On a syntax error, prefers reporting invalid UTF-8 if the input has any
/// (a stray non-UTF-8 byte outside a string is first seen as bad syntax).
pub(super) fn utf8_first(input: &[u8], e: JsonError) -> JsonError {
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
