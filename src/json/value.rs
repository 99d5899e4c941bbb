//! Value helpers: minifying a record's bytes, and writing non-finite
//! numbers as `null`, as the file and the answers need them.

/// JSON text without the whitespace between tokens.
pub(crate) fn minify(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    minify_into(v, &mut out);
    out
}

/// Appends `v` without the whitespace between tokens (strings untouched,
/// but for raw control bytes, which only a damaged record holds: escaped).
/// The output never holds a raw newline, whatever `v` is.
pub(crate) fn minify_into(v: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let start = i;
                i += 1;
                while i < v.len() {
                    match v[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                let string = &v[start..i.min(v.len())];
                if string.iter().any(|&b| b < 0x20) {
                    // Only in a record damaged underneath the daemon (valid
                    // JSON never holds one): escaped, so that a raw newline
                    // cannot split the one-line reply this goes into.
                    for &b in string {
                        if b < 0x20 {
                            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                        } else {
                            out.push(b);
                        }
                    }
                } else {
                    out.extend_from_slice(string);
                }
            }
            _ => {
                let start = i;
                while i < v.len() && !matches!(v[i], b' ' | b'\t' | b'\n' | b'\r' | b'"') {
                    i += 1;
                }
                let run = &v[start..i];
                // Outside strings only `NaN` and `Infinity` hold these
                // letters: a file written by Python's json.dump may have
                // them (the daemon writes them as null), and a reply must
                // stay strict JSON.
                if run.iter().any(|&b| b == b'N' || b == b'I') {
                    non_finite_as_null(run, out);
                } else {
                    out.extend_from_slice(run);
                }
            }
        }
    }
}

/// Copies `run` (bytes outside strings) with `NaN`, `Infinity` and
/// `-Infinity` written as `null`.
pub(super) fn non_finite_as_null(run: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < run.len() {
        let rest = &run[i..];
        let word: &[u8] = if rest.starts_with(b"-Infinity") {
            b"-Infinity"
        } else if rest.starts_with(b"Infinity") {
            b"Infinity"
        } else if rest.starts_with(b"NaN") {
            b"NaN"
        } else {
            out.push(run[i]);
            i += 1;
            continue;
        };
        out.extend_from_slice(b"null");
        i += word.len();
    }
}
