//! `consumer`: a reader that must not lose records to retention (the
//! central forwarder) reports where it is, so that `--keep-archives*`
//! never removes an archive it has not read all of; or an administrator
//! removes a consumer that is gone for good. Without a name, the list.
//!
//! `{"op":"consumer","name":N,"log_id":L,"next_seq":S}` → `{"ok":true,
//! "consumers":{…}}`; `{"op":"consumer","name":N,"remove":true}` (admins
//! only, like `clear`); `{"op":"consumer"}`. Kept by the writer
//! (`writer::retention`), beside the log.

use super::Request;
use crate::protocol::{Fields, ProtocolError};

/// Where a consumer is: the log it reads and the next `seq` it will read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub log_id: String,
    pub next_seq: u64,
}

/// A `consumer` request: report a position, remove a consumer, or (no
/// name) only list them.
#[derive(Debug)]
pub enum ConsumerUpdate {
    Report { name: String, at: Position },
    Remove { name: String },
    List,
}

pub(crate) fn parse<'a>(f: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    let name = f.typed::<String>("name", "a string")?;
    let log_id = f.typed::<String>("log_id", "a string")?;
    let next_seq = f.typed::<u64>("next_seq", "a non-negative integer")?;
    let remove = f.typed::<bool>("remove", "a boolean")?.unwrap_or(false);
    let update = match (name, log_id, next_seq, remove) {
        (None, None, None, false) => ConsumerUpdate::List,
        (None, ..) => return Err(f.invalid("missing field `name`")),
        (Some(n), _, _, _) if n.is_empty() || n.len() > 200 => {
            return Err(f.invalid("field `name` must be 1 to 200 bytes"));
        }
        (Some(name), None, None, true) => ConsumerUpdate::Remove { name },
        (Some(_), _, _, true) => {
            return Err(f.invalid("`remove` goes without `log_id` and `next_seq`"));
        }
        (Some(_), Some(log_id), _, false) if log_id.len() > 64 => {
            return Err(f.invalid("field `log_id` is a log's id, as `ping` gives it"));
        }
        (Some(name), Some(log_id), Some(next_seq), false) => ConsumerUpdate::Report {
            name,
            at: Position { log_id, next_seq },
        },
        (Some(_), ..) => {
            return Err(
                f.invalid("a consumer reports both `log_id` and `next_seq` (or `remove`: true)")
            );
        }
    };
    Ok(Request::Consumer(update))
}
