//! Wire types: requests as parsed from a line, replies as written back, and
//! the stable error codes; and [`OPERATIONS`], the registry of every
//! operation: its name, the fields it takes, and its parser, which lives in
//! the operation's own file under `ops/` ([`Fields`] gives it the shared
//! rules for filters and paging). `protocol.md` documents the same shapes.

use crate::ops;
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
    /// A question answered from the index (`stats`, `jobs` and its
    /// aliases, `export_csv`, `retry_candidates`, `snapshot`).
    Query(crate::ops::Query),
    Clear,
    /// Follow new records as they become durable (`joblogctl tail -f`), or
    /// as they are accepted with `include_pending`.
    Subscribe {
        include_pending: bool,
    },
}

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

/// One operation in the registry: its name, the fields it takes besides
/// `op` (in groups, as several share the filter and paging keys), and the
/// parser in its own file under `ops/`.
pub struct Operation {
    pub name: &'static str,
    pub fields: &'static [&'static [&'static str]],
    pub parse: for<'a> fn(&Fields<'a, '_>) -> Result<Request<'a>, ProtocolError>,
}

const FILTERED: &[&[&str]] = &[FILTER_KEYS, PAGING_KEYS];
const JOBS: &[&[&str]] = &[&["fields"], FILTER_KEYS, PAGING_KEYS];
const STATS: &[&[&str]] = &[&["include_pending"], STATS_KEYS];
const PENDING: &[&[&str]] = &[&["include_pending"]];
const LIMIT: &[&[&str]] = &[&["limit"]];

/// Every operation the daemon knows: the one list of names and shapes
/// (adding an operation is a line here, its file under `ops/`, and its
/// `Request` variant).
pub const OPERATIONS: &[Operation] = &[
    op("log", &[&["job", "ack"]], ops::log::parse),
    op("log_batch", &[&["jobs", "ack"]], ops::log::parse_batch),
    op("flush", &[], ops::flush::parse),
    op("ping", &[], ops::ping::parse),
    op("stats", STATS, ops::stats::parse),
    op("jobs", JOBS, ops::jobs::parse),
    op("all", JOBS, ops::jobs::parse),
    op("failed", JOBS, ops::jobs::parse),
    op("successful", JOBS, ops::jobs::parse),
    op("by_stage", JOBS, ops::jobs::parse),
    op("retry_candidates", LIMIT, ops::retry_candidates::parse),
    op("export_csv", FILTERED, ops::export_csv::parse),
    op("clear", &[&["confirm"]], ops::clear::parse),
    op("subscribe", PENDING, ops::subscribe::parse),
    op("snapshot", &[], ops::snapshot::parse),
];

/// An [`OPERATIONS`] entry, on one line.
const fn op(
    name: &'static str,
    fields: &'static [&'static [&'static str]],
    parse: for<'a> fn(&Fields<'a, '_>) -> Result<Request<'a>, ProtocolError>,
) -> Operation {
    Operation {
        name,
        fields,
        parse,
    }
}

/// The names of every operation, for error messages.
fn op_names() -> String {
    OPERATIONS
        .iter()
        .map(|o| o.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses a request from the members of its (already validated) top-level
/// object, one of which is `op`: finds the operation in [`OPERATIONS`],
/// checks that every field is one it takes, once, and hands the fields to
/// its parser.
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
    let Some(operation) = OPERATIONS.iter().find(|o| o.name == op) else {
        return Err(ProtocolError::new(
            ErrorCode::UnknownOp,
            format!("unknown op {op:?}; known ops: {}", op_names()),
        ));
    };
    let allowed = |k: &str| k == "op" || operation.fields.iter().any(|g| g.contains(&k));
    let mut seen: Vec<&str> = Vec::with_capacity(members.len());
    for (k, _) in members {
        if !allowed(k) {
            let all: Vec<&str> = std::iter::once("op")
                .chain(operation.fields.iter().flat_map(|g| g.iter().copied()))
                .collect();
            return Err(invalid(
                &op,
                format!(
                    "unknown field `{k}`, expected one of `{}`",
                    all.join("`, `")
                ),
            ));
        }
        if seen.contains(&k.as_str()) {
            return Err(invalid(&op, format!("duplicate field `{k}`")));
        }
        seen.push(k);
    }
    (operation.parse)(&Fields { op: &op, members })
}

/// A request's fields, for its operation's parser, with the shared rules
/// for the fields several operations take.
pub struct Fields<'a, 'm> {
    op: &'m str,
    members: &'m [Member<'a>],
}

impl<'a> Fields<'a, '_> {
    /// The operation's name, as the request spelled it (`failed`, say).
    pub fn op(&self) -> &str {
        self.op
    }

    /// The raw value of a field, if given.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// An `invalid_request` error naming the operation.
    pub fn invalid(&self, msg: impl std::fmt::Display) -> ProtocolError {
        invalid(self.op, msg)
    }

    /// The JSON type of a value, for error messages.
    pub fn type_name(v: &[u8]) -> &'static str {
        type_name(v)
    }

    /// A field parsed as `T`, or an error naming it and the expected type.
    pub fn typed<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        expected: &str,
    ) -> Result<Option<T>, ProtocolError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => serde_json::from_slice::<T>(v).map(Some).map_err(|_| {
                self.invalid(format!(
                    "field `{name}` must be {expected}, got {}",
                    String::from_utf8_lossy(v)
                ))
            }),
        }
    }

    fn time_bound(&self, name: &str) -> Result<Option<i64>, ProtocolError> {
        match self.typed::<String>(name, "an ISO date-time string")? {
            None => Ok(None),
            Some(s) => crate::time::parse_time(&s).map(Some).ok_or_else(|| {
                self.invalid(format!(
                    "field `{name}` must be an ISO date-time such as 2025-10-17T09:33:10, got {s:?}"
                ))
            }),
        }
    }

    /// The filter keys ([`FILTER_KEYS`], or the subset `stats` takes).
    pub fn filter(&self) -> Result<Filter, ProtocolError> {
        let worker_id = match self.get("worker_id") {
            None => None,
            Some(v)
                if v.first() == Some(&b'"')
                    || crate::index::number(v).is_some_and(f64::is_finite) =>
            {
                Some(crate::index::group_key(Some(v)).into_owned())
            }
            Some(v) => {
                return Err(self.invalid(format!(
                    "field `worker_id` must be a number or a string, got {}",
                    type_name(v)
                )));
            }
        };
        Ok(Filter {
            success: self.typed("success", "a boolean")?,
            stage: self.typed("stage", "a string")?,
            subject: self.typed("subject", "a string")?,
            worker_id,
            video_id: self.typed("video_id", "a string")?,
            error_type: self.typed("error_type", "a string")?,
            since: self.time_bound("since")?,
            until: self.time_bound("until")?,
            latest_per_video: self
                .typed("latest_per_video", "a boolean")?
                .unwrap_or(false),
        })
    }

    /// The paging keys ([`PAGING_KEYS`]).
    pub fn paging(&self) -> Result<Paging, ProtocolError> {
        let desc = match self
            .typed::<String>("order", "\"asc\" or \"desc\"")?
            .as_deref()
        {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(self.invalid(format!(
                    "field `order` must be \"asc\" or \"desc\", got {other:?}"
                )));
            }
        };
        let sort_by = match self.typed::<String>("sort_by", "a string")?.as_deref() {
            None => None,
            Some("processing_duration") => Some(SortBy::Duration),
            Some("logged_at") => Some(SortBy::LoggedAt),
            Some(other) => {
                return Err(self.invalid(format!(
                    "field `sort_by` must be \"processing_duration\" or \"logged_at\", got {other:?}"
                )));
            }
        };
        Ok(Paging {
            limit: self.typed("limit", "a non-negative integer")?,
            offset: self.typed("offset", "a non-negative integer")?.unwrap_or(0),
            desc,
            sort_by,
        })
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
        Request::Query(q) => Ok(Request::Query(q)),
        Request::Clear => Ok(Request::Clear),
        Request::Subscribe { include_pending } => Ok(Request::Subscribe { include_pending }),
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
