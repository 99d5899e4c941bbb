//! The registry of operations: every request the daemon knows, its name,
//! the fields it takes and its parser (in the operation's own file), and
//! the parsing of a request line's members against it.

use crate::protocol::{ErrorCode, Fields, Member, ProtocolError, invalid, type_name};

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
    /// The counters and gauges in Prometheus's text format.
    Metrics,
    /// The logs that can be read by position, oldest first.
    Logs,
    /// A question answered from the index (`stats`, `jobs` and its
    /// aliases, `export_csv`, `retry_candidates`, `snapshot`, `report`).
    Query(super::Query),
    Clear,
    /// A consumer's position (retention keeps what it has not read).
    Consumer(super::consumer::ConsumerUpdate),
    /// Follow new records as they become durable (`joblogctl tail -f`), or
    /// as they are accepted with `include_pending`.
    Subscribe {
        include_pending: bool,
        /// From this position of the log named (the live one without
        /// `log_id`): its durable records first, then the new ones.
        from: Option<(u64, Option<String>)>,
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
    "from_seq",
];

const PAGING_KEYS: &[&str] = &["limit", "offset", "order", "sort_by"];

const STATS_KEYS: &[&str] = &["subject", "worker_id", "since", "until"];

/// One operation in the registry: its name, the fields it takes besides
/// `op` (in groups, as several share the filter and paging keys), and the
/// parser in its own file under `ops/`.
pub(crate) struct Operation {
    pub name: &'static str,
    pub fields: &'static [&'static [&'static str]],
    pub parse: for<'a> fn(&Fields<'a, '_>) -> Result<Request<'a>, ProtocolError>,
}

const FILTERED: &[&[&str]] = &[FILTER_KEYS, PAGING_KEYS];

const JOBS: &[&[&str]] = &[&["fields"], FILTER_KEYS, PAGING_KEYS];

const STATS: &[&[&str]] = &[&["include_pending"], STATS_KEYS];

const LIMIT: &[&[&str]] = &[&["limit"]];

const REPORT: &[&[&str]] = &[&["recent_failures"], STATS_KEYS];

/// Every operation the daemon knows: the one list of names and shapes
/// (adding an operation is a line here, its file under `ops/`, and its
/// `Request` variant).
pub(crate) const OPERATIONS: &[Operation] = &[
    op("log", &[&["job", "ack"]], super::log::parse),
    op("log_batch", &[&["jobs", "ack"]], super::log::parse_batch),
    op("flush", &[], super::flush::parse),
    op("ping", &[], super::ping::parse),
    op("metrics", &[], super::metrics::parse),
    op("stats", STATS, super::stats::parse),
    op("jobs", JOBS, super::jobs::parse),
    op("all", JOBS, super::jobs::parse),
    op("failed", JOBS, super::jobs::parse),
    op("successful", JOBS, super::jobs::parse),
    op("by_stage", JOBS, super::jobs::parse),
    op("retry_candidates", LIMIT, super::retry_candidates::parse),
    op("export_csv", FILTERED, super::export_csv::parse),
    op("clear", &[&["confirm"]], super::clear::parse),
    op(
        "subscribe",
        &[&["include_pending", "from_seq", "log_id"]],
        super::subscribe::parse,
    ),
    op("snapshot", &[], super::snapshot::parse),
    op("report", REPORT, super::report::parse),
    op("logs", &[], super::logs::parse),
    op(
        "consumer",
        &[&["name", "log_id", "next_seq", "remove"]],
        super::consumer::parse,
    ),
    op(
        "read",
        &[&["log_id", "from_seq", "limit"]],
        super::read_records::parse,
    ),
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
    (operation.parse)(&Fields::new(&op, members))
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
        Request::Metrics => Ok(Request::Metrics),
        Request::Logs => Ok(Request::Logs),
        Request::Query(q) => Ok(Request::Query(q)),
        Request::Clear => Ok(Request::Clear),
        Request::Consumer(u) => Ok(Request::Consumer(u)),
        Request::Subscribe {
            include_pending,
            from,
        } => Ok(Request::Subscribe {
            include_pending,
            from,
        }),
        Request::Log { .. } => Err(invalid(word, "needs a job; send it as a JSON object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::bare_word;

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
