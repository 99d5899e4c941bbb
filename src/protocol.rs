//! Wire types shared by every operation: the stable error codes, error and
//! reply lines, a request's members ([`Fields`], with the shared rules for
//! filters and paging), the bare-word shorthand (`ping` for
//! `{"op":"ping"}`) and the one rule that tells a request from a record
//! ([`is_request`]). Which operations exist, and their shapes, is the
//! registry's (`ops/registry.rs`); `protocol.md` documents the same.

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
    /// `read` named a log that is no longer the live one.
    LogChanged,
    /// `read` named an archived log that could not be read back.
    ReadFailed,
}

impl ErrorCode {
    /// Every code, in declaration order (`ALL[c as usize] == c`): the
    /// metrics count refusals in an array indexed by code, and list every
    /// code, so a series exists (at 0) before its first refusal.
    pub(crate) const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidUtf8,
        ErrorCode::NotAnObject,
        ErrorCode::TooDeep,
        ErrorCode::LineTooLong,
        ErrorCode::RecordTooLarge,
        ErrorCode::UnknownOp,
        ErrorCode::InvalidRequest,
        ErrorCode::ConfirmationRequired,
        ErrorCode::Forbidden,
        ErrorCode::WriteFailed,
        ErrorCode::ShuttingDown,
        ErrorCode::LogChanged,
        ErrorCode::ReadFailed,
    ];

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
            ErrorCode::LogChanged => "log_changed",
            ErrorCode::ReadFailed => "read_failed",
        }
    }
}

/// An error that becomes a reply; the connection always goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    /// With `log_changed`: the live log's id, as a field of the error, so
    /// that a reader need not parse the message (which may change).
    pub log_id: Option<String>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            log_id: None,
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
        let mut error = serde_json::json!({"code": self.code.as_str(), "message": self.message});
        if let Some(id) = &self.log_id {
            error["log_id"] = id.as_str().into();
        }
        reply_line(&serde_json::json!({"ok": false, "error": error, "line": line}))
    }
}

/// Serializes a reply value as one line.
pub(crate) fn reply_line(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    out
}

/// One member of the request object: decoded key, raw value bytes.
pub(crate) type Member<'a> = (String, &'a [u8]);

pub(crate) fn invalid(op: &str, msg: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::new(ErrorCode::InvalidRequest, format!("{op}: {msg}"))
}

/// The JSON type of a raw value, by its first byte, for error messages.
pub(crate) fn type_name(v: &[u8]) -> &'static str {
    match v.first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A request's fields, for its operation's parser, with the shared rules
/// for the fields several operations take.
pub(crate) struct Fields<'a, 'm> {
    op: &'m str,
    members: &'m [Member<'a>],
}

impl<'a, 'm> Fields<'a, 'm> {
    /// The members of a request for the operation `op`.
    pub(crate) fn new(op: &'m str, members: &'m [Member<'a>]) -> Self {
        Fields { op, members }
    }

    /// The operation's name, as the request spelled it (`failed`, say).
    pub(crate) fn op(&self) -> &str {
        self.op
    }

    /// The raw value of a field, if given.
    pub(crate) fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.members
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// An `invalid_request` error naming the operation.
    pub(crate) fn invalid(&self, msg: impl std::fmt::Display) -> ProtocolError {
        invalid(self.op, msg)
    }

    /// The JSON type of a value, for error messages.
    pub(crate) fn type_name(v: &[u8]) -> &'static str {
        type_name(v)
    }

    /// A field parsed as `T`, or an error naming it and the expected type.
    pub(crate) fn typed<T: serde::de::DeserializeOwned>(
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
    pub(crate) fn filter(&self) -> Result<Filter, ProtocolError> {
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
            from_seq: self.typed("from_seq", "a non-negative integer")?,
        })
    }

    /// The paging keys ([`PAGING_KEYS`]).
    pub(crate) fn paging(&self) -> Result<Paging, ProtocolError> {
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

/// The one rule that tells a request from a record: a line is a request
/// when it is a bare word ([`bare_word`]) or a JSON object with a
/// top-level `op` member (its key as decoded, so `"\u006fp"` counts);
/// everything else is a record. What the protocol ignores around a line
/// (`trim_line`: a byte order mark, a `\r`) is ignored here too.
///
/// The daemon applies this rule on its hot path through the members the
/// formatter located while printing the line (`RawMeta::has_op`), not by
/// a second pass; the tests below hold the two to the same answer on
/// every line the daemon accepts. `joblogctl log` uses this function, so
/// it never sends as a record what the daemon would take for a request.
/// A line that is not even an object is no request (the daemon refuses
/// it as a record).
pub fn is_request(line: &[u8]) -> bool {
    let line = crate::conn::lines::trim_line(line);
    if bare_word(line).is_some() {
        return true;
    }
    let mut fields = Vec::new();
    crate::json::skim_object(line, &mut fields)
        && fields.iter().any(|(k, _)| {
            crate::index::string_bytes(&line[k.clone()]).is_some_and(|s| *s == *b"op")
        })
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
    use crate::index::RawMeta;
    use crate::json::{Formatter, MAX_RECORD_DEPTH};

    /// What the daemon's read half decides for `line` (`conn::read`):
    /// `None` when it refuses the line as JSON.
    fn daemon_takes_for_request(line: &[u8]) -> Option<bool> {
        let line = crate::conn::lines::trim_line(line);
        if bare_word(line).is_some() {
            return Some(true);
        }
        let mut fmt = Formatter::new();
        let mut out = Vec::new();
        let prefix = b",\n  ";
        fmt.record_within(line, prefix, b"\"t\"", &mut out, MAX_RECORD_DEPTH + 2)
            .ok()?;
        Some(RawMeta::from_output(&out, &fmt.fields, prefix.len()).has_op())
    }

    #[test]
    fn every_error_code_is_listed_at_its_own_index_once() {
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{}", c.as_str());
        }
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        // A code added to the enum is added to protocol.md's table too:
        // the two lists are the same.
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol.md"))
            .expect("protocol.md");
        let errors = doc.split("\n## Errors").nth(1).expect("an Errors section");
        let mut documented: Vec<&str> = errors
            .split("\n## ")
            .next()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        documented.sort_unstable();
        assert_eq!(names, documented);
    }

    #[test]
    fn is_request_agrees_with_the_daemon_on_every_line_it_accepts() {
        let lines: &[&[u8]] = &[
            b"ping",
            b"  flush  ",
            b"retry-candidates",
            b"\xEF\xBB\xBFping\r",
            b"true",
            b"null",
            b"NaN",
            b"{}",
            b"{\"op\":\"ping\"}",
            b"{\"op\":1}",
            b"{\"video_id\":\"a\",\"op\":\"stats\"}",
            b"{\"\\u006fp\":\"ping\"}",
            b"{\"ops\":\"ping\"}",
            b"{\"o\":\"p\",\"x\":{\"op\":\"ping\"}}",
            b"{\"success\":true,\"timings\":{\"op\":1.5}}",
            b"\xEF\xBB\xBF{\"op\":\"flush\"}\r",
            b"{\"video_id\":\"op\"}",
            b"[{\"op\":\"ping\"}]",
            b"\"op\"",
            b"{\"op\":\"ping\"",
        ];
        let mut compared = 0;
        let variants: Vec<Vec<u8>> = lines
            .iter()
            .flat_map(|l| [b"".as_slice(), b"\n", b"\r\n"].map(|end| [*l, end].concat()))
            .collect();
        for line in variants.iter().map(Vec::as_slice) {
            let ours = is_request(line);
            if let Some(daemon) = daemon_takes_for_request(line) {
                compared += 1;
                assert_eq!(ours, daemon, "{}", String::from_utf8_lossy(line));
            } else {
                assert!(!ours, "{}", String::from_utf8_lossy(line));
            }
        }
        assert_eq!(compared, 3 * 14, "lines the daemon accepts");
        assert!(is_request(b"{\"\\u006fp\":\"ping\"}"));
        assert!(!is_request(b"{\"success\":true,\"timings\":{\"op\":1.5}}"));
    }
}
