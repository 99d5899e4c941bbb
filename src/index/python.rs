//! The Python logger's rules for values, which queries and statistics
//! follow: what counts as true (`truthy`), a number, a string, a group
//! key, an error type (the text before the first `:`).

use super::*;

/// Python truthiness of a JSON value.
pub(crate) fn truthy(v: &[u8]) -> bool {
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

/// A JSON number's value.
pub(crate) fn number(v: &[u8]) -> Option<f64> {
    match v.first() {
        Some(b'-' | b'0'..=b'9') => {
            simple_decimal(v).or_else(|| std::str::from_utf8(v).ok()?.parse().ok())
        }
        _ => None,
    }
}

/// A number as Python's arithmetic sees it: a JSON number's value, and
/// `true` and `false` as 1 and 0 (Python's `bool` is an `int`: the old
/// logger's `sum()` of `total_files` counted `True` as 1). For
/// `processing_duration` and `total_files`.
pub(crate) fn int_or_number(v: &[u8]) -> Option<f64> {
    match v {
        b"true" => Some(1.0),
        b"false" => Some(0.0),
        _ => number(v),
    }
}

/// Powers of ten that are exact in an f64.
pub(super) const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The common case of [`number`] (`45.2`, `1697543210.123`, `4`): at most
/// 15 digits and no exponent. The digits then form an integer that an f64
/// holds exactly, and dividing it by an exact power of ten is one correctly
/// rounded operation, so the result is the same as a full parse (Clinger's
/// fast path). `None` for anything else (the caller parses it fully).
pub(super) fn simple_decimal(v: &[u8]) -> Option<f64> {
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
pub(crate) fn string(v: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
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
pub(crate) fn string_bytes(v: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
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
pub(crate) fn group_key(v: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
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
pub(crate) fn error_type(v: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
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
