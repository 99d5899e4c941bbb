//! Skimming bytes that were validated before (records read back from the
//! log): the members of an object, the elements of an array, without
//! validating again.

use super::*;

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
pub(crate) type SkimmedField = (Range<usize>, Range<usize>);

/// Locates the members of a top-level object without validating it. For
/// bytes that are one valid JSON object, `out` ends up holding exactly the
/// `key_in` and `value_in` ranges that [`Formatter::validate`] puts in
/// `fields`, at a fraction of the cost: strings are skipped 8 bytes at a
/// time, nested values by counting brackets. Only for records read back from the
/// log, which were validated on their way in or by the start-up scan:
/// invalid content inside a value goes unnoticed. Returns `false` (and
/// `out` is not to be used) for bytes not even shaped like an object.
pub(crate) fn skim_object(input: &[u8], out: &mut Vec<SkimmedField>) -> bool {
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
pub(crate) fn skim_array(input: &[u8], out: &mut Vec<Range<usize>>) -> bool {
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
pub(super) fn skip_string(input: &[u8], i: usize) -> Option<usize> {
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
pub(super) fn skip_value(input: &[u8], i: usize) -> Option<usize> {
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
