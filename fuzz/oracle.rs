// The differential oracle of the `line` fuzz target, shared (with
// `include!`) by `fuzz/fuzz_targets/line.rs` and by `tests/fuzz_corpus.rs`,
// which replays a minimized corpus on the stable toolchain in CI.
//
// One line as the daemon treats it: framing trims, the one-pass formatter,
// request parsing. Against serde_json:
// - whatever serde_json accepts as an object (strict JSON) the formatter
//   must accept, and its output must parse back to the same value plus
//   `logged_at`;
// - whatever the formatter accepts must be strict JSON once printed;
// - with an output limit, a line is either stopped (nothing of it kept) or
//   printed exactly as without one;
// - nothing panics, whatever the bytes.

use joblogd::Formatter;
use joblogd::dev::{array_elements, bare_word, parse_bare, parse_request, trim_line};
use serde_json::Value;

fn has_surrogate_escape(out: &[u8]) -> bool {
    out.windows(4).any(|w| {
        w[0] == b'\\' && w[1] == b'u' && w[2] == b'd' && matches!(w[3], b'8'..=b'9' | b'a'..=b'f')
    })
}

/// Checks one input; panics on a violation.
pub fn check_line(data: &[u8]) {
    let line = trim_line(data);
    if let Some(w) = bare_word(line) {
        let _ = parse_bare(w);
    }
    let mut f = Formatter::new();
    let mut out = Vec::new();
    let ours = f.record(line, b"", b"\"T\"", &mut out);
    if ours.is_ok() {
        // With an output limit below the printed size, the same line is
        // either stopped (and nothing of it kept) or printed unchanged.
        let mut limited = Formatter::new();
        limited.output_limit = Some(out.len() / 2);
        let mut again = b"kept".to_vec();
        match limited.record(line, b"", b"\"T\"", &mut again) {
            Ok(_) => assert_eq!(&again[4..], &out[..], "a limit changed the output"),
            Err(joblogd::JsonError::TooLarge { .. }) => {
                assert_eq!(again, b"kept", "a stopped line left output behind")
            }
            Err(e) => panic!("a limit turned success into {e:?}"),
        }
    }
    let theirs: Result<Value, _> = serde_json::from_slice(line);
    match (&ours, &theirs) {
        (Ok(info), _) => {
            let printed: Value = match serde_json::from_slice(&out) {
                Ok(v) => v,
                // serde_json refuses lone UTF-16 surrogate escapes, which
                // RFC 8259's grammar allows and we keep escaped on purpose.
                Err(_) if has_surrogate_escape(&out) => return,
                // serde_json's own nesting limit is 128, like ours, but it
                // counts the document from the outside.
                Err(e) if e.to_string().contains("recursion limit") => return,
                // Numbers are copied verbatim; serde_json refuses ones that
                // overflow an f64 (Python reads them as inf).
                Err(e) if e.to_string().contains("number out of range") => return,
                Err(e) => panic!("formatter output is not JSON: {e}"),
            };
            if let (Ok(Value::Object(orig)), Value::Object(mut got)) = (&theirs, printed) {
                if !info.had_logged_at {
                    assert_eq!(got.remove("logged_at"), Some(Value::String("T".into())));
                }
                if !info.coerced {
                    // serde_json keeps the last duplicate, as we do on read.
                    assert_eq!(&got, orig, "round trip differs");
                }
            }
            // Requests parse from the members without panicking.
            let members: Vec<(String, &[u8])> = f
                .fields
                .iter()
                .filter(|t| !t.key_in.is_empty())
                .map(|t| {
                    (
                        String::from_utf8_lossy(&out[t.key_out.clone()]).into_owned(),
                        &line[t.value_in.clone()],
                    )
                })
                .collect();
            let _ = parse_request(&members);
        }
        (Err(_), Ok(Value::Object(_))) => {
            // Only depth may legitimately differ (we stop at 128 levels).
            let depth = line.iter().filter(|b| **b == b'[' || **b == b'{').count();
            assert!(
                depth > 128,
                "serde_json accepts an object we refuse: {ours:?}"
            );
        }
        _ => {}
    }
    let _ = array_elements(line);
}
