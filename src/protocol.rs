//! Wire types: requests as parsed from a line, replies as written back, and
//! the stable error codes. The only place that knows the request JSON
//! shapes; `protocol.md` documents the same.

/// Stable, machine-readable error codes (`error.code` in replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON (syntax error, truncated, trailing bytes).
    InvalidJson,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// JSON, but not an object (records and requests are objects).
    NotAnObject,
    /// Nested deeper than the record limit.
    TooDeep,
    /// Longer than `--max-line-bytes`; the rest of the line was discarded.
    LineTooLong,
    /// `op` names no operation.
    UnknownOp,
    /// A known op with missing, unknown or wrongly typed fields.
    InvalidRequest,
    /// Known, but not built yet.
    Unimplemented,
    /// The records could not be made durable (disk failing at shutdown).
    WriteFailed,
    /// The daemon is stopping and no longer takes this request.
    ShuttingDown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidUtf8 => "invalid_utf8",
            ErrorCode::NotAnObject => "not_an_object",
            ErrorCode::TooDeep => "too_deep",
            ErrorCode::LineTooLong => "line_too_long",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unimplemented => "unimplemented",
            ErrorCode::WriteFailed => "write_failed",
            ErrorCode::ShuttingDown => "shutting_down",
        }
    }
}

/// An error that becomes a reply; the connection always goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Maps a record-formatting error to a reply.
    pub fn from_json(e: &crate::json::JsonError) -> Self {
        use crate::json::JsonError;
        let code = match e {
            JsonError::Utf8 { .. } => ErrorCode::InvalidUtf8,
            JsonError::NotObject { .. } => ErrorCode::NotAnObject,
            JsonError::TooDeep { .. } => ErrorCode::TooDeep,
            JsonError::Incomplete | JsonError::Syntax { .. } => ErrorCode::InvalidJson,
        };
        Self::new(code, e.to_string())
    }

    /// The reply line: `{"ok":false,"error":{"code":…,"message":…},"line":N}`.
    pub fn reply(&self, line: u64) -> Vec<u8> {
        let v = serde_json::json!({
            "ok": false,
            "error": {"code": self.code.as_str(), "message": self.message},
            "line": line,
        });
        reply_line(&v)
    }
}

/// Serializes a reply value as one line.
pub fn reply_line(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    out
}

/// A parsed request. Records are kept as raw JSON slices of the line, to be
/// formatted by [`crate::json`] without building a DOM (and so that `NaN`,
/// which Python clients send, is accepted inside jobs as in plain records).
#[derive(Debug)]
pub enum Request<'a> {
    /// `log` (one job) and `log_batch` (many).
    Log {
        jobs: Vec<&'a [u8]>,
        ack: bool,
    },
    Flush,
    Ping,
    Stats,
}

/// Every op name, for bare-word requests and error messages.
pub const OPS: &[&str] = &["log", "log_batch", "flush", "ping", "stats"];

/// One member of the request object: decoded key, raw value bytes.
pub type Member<'a> = (String, &'a [u8]);

fn invalid(op: &str, msg: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidRequest, format!("{op}: {msg}"))
}

/// The JSON type of a raw value, by its first byte, for error messages.
fn type_name(v: &[u8]) -> &'static str {
    match v.first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// Parses a request from the members of its (already validated) top-level
/// object, one of which is `op`.
///
/// # Errors
/// `unknown_op`, or `invalid_request` naming the op and the field.
pub fn parse_request<'a>(members: &[Member<'a>]) -> Result<Request<'a>, ProtocolError> {
    let Some((_, op_raw)) = members.iter().find(|(k, _)| k == "op") else {
        return Err(invalid("request", "missing field `op`"));
    };
    let op: String = match op_raw.first() {
        Some(b'"') => serde_json::from_slice(op_raw).map_err(|e| invalid("request", e))?,
        _ => {
            return Err(invalid(
                "request",
                format!("field `op` must be a string, got {}", type_name(op_raw)),
            ));
        }
    };
    let allowed: &[&str] = match op.as_str() {
        "log" => &["op", "job", "ack"],
        "log_batch" => &["op", "jobs", "ack"],
        "flush" | "ping" | "stats" => &["op"],
        other => {
            return Err(ProtocolError::new(
                ErrorCode::UnknownOp,
                format!("unknown op {other:?}; known ops: {}", OPS.join(", ")),
            ));
        }
    };
    let mut seen: Vec<&str> = Vec::with_capacity(members.len());
    for (k, _) in members {
        if !allowed.contains(&k.as_str()) {
            return Err(invalid(
                &op,
                format!(
                    "unknown field `{k}`, expected one of `{}`",
                    allowed.join("`, `")
                ),
            ));
        }
        if seen.contains(&k.as_str()) {
            return Err(invalid(&op, format!("duplicate field `{k}`")));
        }
        seen.push(k);
    }
    let field = |name: &str| members.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let ack = match field("ack") {
        None => false,
        Some(b"true") => true,
        Some(b"false") => false,
        Some(v) => {
            return Err(invalid(
                &op,
                format!("field `ack` must be a boolean, got {}", type_name(v)),
            ));
        }
    };
    match op.as_str() {
        "log" => match field("job") {
            Some(v) if v.first() == Some(&b'{') => Ok(Request::Log { jobs: vec![v], ack }),
            Some(v) => Err(invalid(
                &op,
                format!("field `job` must be an object, got {}", type_name(v)),
            )),
            None => Err(invalid(&op, "missing field `job`")),
        },
        "log_batch" => match field("jobs") {
            Some(v) if v.first() == Some(&b'[') => {
                let ranges = crate::json::array_elements(v)
                    .map_err(|e| invalid(&op, format!("field `jobs`: {e}")))?;
                Ok(Request::Log {
                    jobs: ranges.into_iter().map(|r| &v[r]).collect(),
                    ack,
                })
            }
            Some(v) => Err(invalid(
                &op,
                format!("field `jobs` must be an array, got {}", type_name(v)),
            )),
            None => Err(invalid(&op, "missing field `jobs`")),
        },
        "flush" => Ok(Request::Flush),
        "ping" => Ok(Request::Ping),
        _ => Ok(Request::Stats),
    }
}

/// The request a bare word stands for (`ping` is `{"op":"ping"}`).
///
/// # Errors
/// As [`parse_request`] for `{"op": word}`.
pub fn parse_bare(word: &str) -> Result<Request<'static>, ProtocolError> {
    let quoted = format!("\"{word}\"");
    // Re-built rather than returned, because the result may not borrow
    // `quoted`; bare requests carry no fields.
    match parse_request(&[("op".to_string(), quoted.as_bytes())])? {
        Request::Flush => Ok(Request::Flush),
        Request::Ping => Ok(Request::Ping),
        Request::Stats => Ok(Request::Stats),
        Request::Log { .. } => Err(invalid(word, "needs a job; send it as a JSON object")),
    }
}

/// A bare word on its own line (`ping`, `flush`…) stands for `{"op":word}`.
/// Returns the word when the trimmed line is one: lowercase letters and `_`
/// only, and not a JSON literal.
pub fn bare_word(line: &[u8]) -> Option<&str> {
    let w = line.trim_ascii();
    if w.is_empty()
        || matches!(w, b"true" | b"false" | b"null")
        || !w.iter().all(|b| b.is_ascii_lowercase() || *b == b'_')
    {
        return None;
    }
    std::str::from_utf8(w).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(line: &str) -> Vec<Member<'_>> {
        let mut f = crate::json::Formatter::new();
        let mut out = Vec::new();
        f.record(line.as_bytes(), b"", b"0", &mut out).unwrap();
        f.fields
            .iter()
            .map(|t| {
                (
                    String::from_utf8(out[t.key_out.clone()].to_vec()).unwrap(),
                    &line.as_bytes()[t.value_in.clone()],
                )
            })
            .collect()
    }

    #[test]
    fn parses_log_and_batch() {
        let m = members(r#"{"op":"log","job":{"a":NaN},"ack":true}"#);
        let Request::Log { jobs, ack } = parse_request(&m).unwrap() else {
            panic!("not a log")
        };
        assert!(ack);
        assert_eq!(jobs, vec![&br#"{"a":NaN}"#[..]]);
        let m = members(r#"{"jobs":[{}, {"b":[]} ],"op":"log_batch"}"#);
        let Request::Log { jobs, ack } = parse_request(&m).unwrap() else {
            panic!("not a log")
        };
        assert!(!ack);
        assert_eq!(jobs, vec![&b"{}"[..], br#"{"b":[]}"#]);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse_request(&members(r#"{"op":"nope"}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownOp);
        let e = parse_request(&members(r#"{"op":5}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("`op` must be a string"), "{}", e.message);
        let e = parse_request(&members(r#"{"op":"log","job":{},"ack":"yes"}"#)).unwrap_err();
        assert_eq!(
            e.message,
            "log: field `ack` must be a boolean, got a string"
        );
        let e = parse_request(&members(r#"{"op":"ping","extra":1}"#)).unwrap_err();
        assert!(e.message.contains("unknown field `extra`"), "{}", e.message);
        let e = parse_request(&members(r#"{"op":"log_batch","jobs":{}}"#)).unwrap_err();
        assert_eq!(
            e.message,
            "log_batch: field `jobs` must be an array, got an object"
        );
        let e = parse_request(&members(r#"{"op":"log","job":[1]}"#)).unwrap_err();
        assert_eq!(
            e.message,
            "log: field `job` must be an object, got an array"
        );
        let e = parse_request(&members(r#"{"op":"log"}"#)).unwrap_err();
        assert_eq!(e.message, "log: missing field `job`");
        assert!(parse_bare("log").is_err());
        assert!(matches!(parse_bare("ping"), Ok(Request::Ping)));
    }

    #[test]
    fn bare_words() {
        assert_eq!(bare_word(b" ping "), Some("ping"));
        assert_eq!(bare_word(b"log_batch"), Some("log_batch"));
        assert_eq!(bare_word(b"null"), None);
        assert_eq!(bare_word(b"Ping"), None);
        assert_eq!(bare_word(b"{}"), None);
    }
}
