//! Wire types: requests as parsed from a line, replies as written back, and
//! the stable error codes. The only place that knows the request JSON
//! shapes; `protocol.md` documents the same.

use crate::query::{Filter, Paging, SortBy};

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
    /// Pretty-printed, larger than `--max-record-bytes` (bounds the memory
    /// one line can take; indentation can multiply a nested line's size).
    RecordTooLarge,
    /// `op` names no operation.
    UnknownOp,
    /// A known op with missing, unknown or wrongly typed fields.
    InvalidRequest,
    /// `clear` without `"confirm": true`.
    ConfirmationRequired,
    /// The peer is not allowed (to connect, or to `clear`).
    Forbidden,
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
            ErrorCode::RecordTooLarge => "record_too_large",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::ConfirmationRequired => "confirmation_required",
            ErrorCode::Forbidden => "forbidden",
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
            JsonError::TooLarge { .. } => ErrorCode::RecordTooLarge,
            JsonError::Incomplete | JsonError::Syntax { .. } => ErrorCode::InvalidJson,
        };
        if code == ErrorCode::RecordTooLarge {
            // Printing was stopped at 3 × --max-record-bytes.
            return Self::new(
                code,
                format!("{e} (3 × --max-record-bytes); nothing of the line was logged"),
            );
        }
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
    /// Over durable records only, unless `include_pending` (records
    /// accepted but not yet in the file, which a crash would take away).
    Stats {
        filter: Filter,
        include_pending: bool,
    },
    /// `jobs` and its aliases `all`, `failed`, `successful`, `by_stage`.
    Jobs {
        filter: Filter,
        paging: Paging,
        fields: Option<Vec<String>>,
    },
    ExportCsv {
        filter: Filter,
        paging: Paging,
    },
    RetryCandidates {
        limit: Option<usize>,
    },
    Clear,
    /// Follow new records as they become durable (`joblogctl tail -f`), or
    /// as they are accepted with `include_pending`.
    Subscribe {
        include_pending: bool,
    },
    /// A complete, consistent copy of the log as it is on disk now.
    Snapshot,
}

/// Every op name, for bare-word requests and error messages.
pub const OPS: &[&str] = &[
    "log",
    "log_batch",
    "flush",
    "ping",
    "stats",
    "jobs",
    "all",
    "failed",
    "successful",
    "by_stage",
    "retry_candidates",
    "export_csv",
    "clear",
    "subscribe",
    "snapshot",
];

/// Filter keys every record query takes.
const FILTER_KEYS: &[&str] = &[
    "success",
    "stage",
    "subject",
    "worker_id",
    "video_id",
    "error_type",
    "since",
    "until",
    "latest_per_video",
];
const PAGING_KEYS: &[&str] = &["limit", "offset", "order", "sort_by"];
const STATS_KEYS: &[&str] = &["subject", "worker_id", "since", "until"];

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
    let allowed: Vec<&str> = match op.as_str() {
        "log" => vec!["op", "job", "ack"],
        "log_batch" => vec!["op", "jobs", "ack"],
        "flush" | "ping" => vec!["op"],
        "stats" => [&["op", "include_pending"][..], STATS_KEYS].concat(),
        "jobs" | "all" | "failed" | "successful" | "by_stage" => {
            [&["op", "fields"][..], FILTER_KEYS, PAGING_KEYS].concat()
        }
        "export_csv" => [&["op"][..], FILTER_KEYS, PAGING_KEYS].concat(),
        "retry_candidates" => vec!["op", "limit"],
        "clear" => vec!["op", "confirm"],
        "subscribe" => vec!["op", "include_pending"],
        "snapshot" => vec!["op"],
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
        "stats" => Ok(Request::Stats {
            filter: filter(&op, &field)?,
            include_pending: typed::<bool>(&op, &field, "include_pending", "a boolean")?
                .unwrap_or(false),
        }),
        "jobs" | "all" | "failed" | "successful" | "by_stage" => {
            let mut filter = filter(&op, &field)?;
            let implied = match op.as_str() {
                "failed" => Some(("success", filter.success.replace(false).is_some())),
                "successful" => Some(("success", filter.success.replace(true).is_some())),
                "by_stage" => {
                    if filter.stage.is_none() {
                        return Err(invalid(&op, "missing field `stage`"));
                    }
                    None
                }
                _ => None,
            };
            if let Some((key, true)) = implied {
                return Err(invalid(
                    &op,
                    format!("field `{key}` is implied by the op; use `jobs`"),
                ));
            }
            let fields = match field("fields") {
                None => None,
                Some(v) => Some(
                    serde_json::from_slice::<Vec<String>>(v)
                        .map_err(|_| invalid(&op, "field `fields` must be a list of strings"))?,
                ),
            };
            Ok(Request::Jobs {
                filter,
                paging: paging(&op, &field)?,
                fields,
            })
        }
        "export_csv" => Ok(Request::ExportCsv {
            filter: filter(&op, &field)?,
            paging: paging(&op, &field)?,
        }),
        "retry_candidates" => Ok(Request::RetryCandidates {
            limit: typed::<usize>(&op, &field, "limit", "a non-negative integer")?,
        }),
        "subscribe" => Ok(Request::Subscribe {
            include_pending: typed::<bool>(&op, &field, "include_pending", "a boolean")?
                .unwrap_or(false),
        }),
        "snapshot" => Ok(Request::Snapshot),
        "clear" => match typed::<bool>(&op, &field, "confirm", "a boolean")? {
            Some(true) => Ok(Request::Clear),
            _ => Err(ProtocolError::new(
                ErrorCode::ConfirmationRequired,
                "clear renames the log file aside and starts an empty one; send {\"op\":\"clear\",\"confirm\":true}",
            )),
        },
        _ => unreachable_op(&op),
    }
}

fn unreachable_op<T>(op: &str) -> Result<T, ProtocolError> {
    // Every op accepted by `allowed` above has an arm; this is a guard for
    // the two lists drifting apart.
    Err(ProtocolError::new(
        ErrorCode::UnknownOp,
        format!("unknown op {op:?}"),
    ))
}

/// A field parsed as `T`, or an error naming it and the expected type.
fn typed<'a, T: serde::de::DeserializeOwned>(
    op: &str,
    field: &dyn Fn(&str) -> Option<&'a [u8]>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, ProtocolError> {
    match field(name) {
        None => Ok(None),
        Some(v) => serde_json::from_slice::<T>(v).map(Some).map_err(|_| {
            invalid(
                op,
                format!(
                    "field `{name}` must be {expected}, got {}",
                    String::from_utf8_lossy(v)
                ),
            )
        }),
    }
}

fn time_bound<'a>(
    op: &str,
    field: &dyn Fn(&str) -> Option<&'a [u8]>,
    name: &str,
) -> Result<Option<i64>, ProtocolError> {
    match typed::<String>(op, field, name, "an ISO date-time string")? {
        None => Ok(None),
        Some(s) => crate::time::parse_time(&s).map(Some).ok_or_else(|| {
            invalid(
                op,
                format!(
                    "field `{name}` must be an ISO date-time such as 2025-10-17T09:33:10, got {s:?}"
                ),
            )
        }),
    }
}

fn filter<'a>(op: &str, field: &dyn Fn(&str) -> Option<&'a [u8]>) -> Result<Filter, ProtocolError> {
    let worker_id = match field("worker_id") {
        None => None,
        Some(v)
            if v.first() == Some(&b'"') || crate::index::number(v).is_some_and(f64::is_finite) =>
        {
            Some(crate::index::group_key(Some(v)).into_owned())
        }
        Some(v) => {
            return Err(invalid(
                op,
                format!(
                    "field `worker_id` must be a number or a string, got {}",
                    type_name(v)
                ),
            ));
        }
    };
    Ok(Filter {
        success: typed(op, field, "success", "a boolean")?,
        stage: typed(op, field, "stage", "a string")?,
        subject: typed(op, field, "subject", "a string")?,
        worker_id,
        video_id: typed(op, field, "video_id", "a string")?,
        error_type: typed(op, field, "error_type", "a string")?,
        since: time_bound(op, field, "since")?,
        until: time_bound(op, field, "until")?,
        latest_per_video: typed(op, field, "latest_per_video", "a boolean")?.unwrap_or(false),
    })
}

fn paging<'a>(op: &str, field: &dyn Fn(&str) -> Option<&'a [u8]>) -> Result<Paging, ProtocolError> {
    let desc = match typed::<String>(op, field, "order", "\"asc\" or \"desc\"")?.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(invalid(
                op,
                format!("field `order` must be \"asc\" or \"desc\", got {other:?}"),
            ));
        }
    };
    let sort_by = match typed::<String>(op, field, "sort_by", "a string")?.as_deref() {
        None => None,
        Some("processing_duration") => Some(SortBy::Duration),
        Some("logged_at") => Some(SortBy::LoggedAt),
        Some(other) => {
            return Err(invalid(
                op,
                format!(
                    "field `sort_by` must be \"processing_duration\" or \"logged_at\", got {other:?}"
                ),
            ));
        }
    };
    Ok(Paging {
        limit: typed(op, field, "limit", "a non-negative integer")?,
        offset: typed(op, field, "offset", "a non-negative integer")?.unwrap_or(0),
        desc,
        sort_by,
    })
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
        Request::Stats {
            filter,
            include_pending,
        } => Ok(Request::Stats {
            filter,
            include_pending,
        }),
        Request::Jobs {
            filter,
            paging,
            fields,
        } => Ok(Request::Jobs {
            filter,
            paging,
            fields,
        }),
        Request::ExportCsv { filter, paging } => Ok(Request::ExportCsv { filter, paging }),
        Request::RetryCandidates { limit } => Ok(Request::RetryCandidates { limit }),
        Request::Clear => Ok(Request::Clear),
        Request::Subscribe { include_pending } => Ok(Request::Subscribe { include_pending }),
        Request::Snapshot => Ok(Request::Snapshot),
        Request::Log { .. } => Err(invalid(word, "needs a job; send it as a JSON object")),
    }
}

/// A bare word on its own line (`ping`, `flush`…) stands for `{"op":word}`.
/// Returns the word when the trimmed line is one (see below), and not a
/// JSON literal.
pub fn bare_word(line: &[u8]) -> Option<&str> {
    let w = line.trim_ascii();
    // Any word (a letter or `_`, then letters, digits, `_` or `-`) is taken for
    // one, so that `PING` or joblogctl's `retry-candidates` typed into
    // socat get `unknown_op` rather than `invalid_json`; JSON's own words
    // (and Python's non-finite numbers) stay values.
    if !w
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        || matches!(w, b"true" | b"false" | b"null" | b"NaN" | b"Infinity")
        || !w
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
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
            .filter(|t| !t.key_in.is_empty())
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
        assert_eq!(bare_word(b"NaN"), None);
        assert_eq!(bare_word(b"42"), None);
        assert_eq!(bare_word(b"two words"), None);
        // Words that name no op are still words (answered unknown_op).
        assert_eq!(bare_word(b"Ping"), Some("Ping"));
        assert_eq!(bare_word(b"retry-candidates"), Some("retry-candidates"));
        assert!(matches!(parse_bare("Ping"), Err(e) if e.code == ErrorCode::UnknownOp));
        assert_eq!(bare_word(b"{}"), None);
    }
}
