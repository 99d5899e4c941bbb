//! `subscribe`: new records as they become durable (or, with
//! `include_pending`, as they are accepted), until the client goes away;
//! with `from_seq`, the log's durable records from that position first
//! (read back as `read` reads them), then the new ones, each exactly once.

use super::Request;
use crate::protocol::{Fields, ProtocolError};

pub(crate) fn parse<'a>(f: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    let include_pending = f
        .typed::<bool>("include_pending", "a boolean")?
        .unwrap_or(false);
    let from_seq = f.typed::<u64>("from_seq", "a non-negative integer")?;
    let log_id = f.typed::<String>("log_id", "a string")?;
    let from = match (from_seq, log_id) {
        (None, None) => None,
        (None, Some(_)) => return Err(f.invalid("field `log_id` needs `from_seq`")),
        // Records not yet durable have no backlog to come from.
        (Some(_), _) if include_pending => {
            return Err(f.invalid(
                "`from_seq` follows durable records; it does not go with `include_pending`",
            ));
        }
        (Some(n), id) => Some((n, id)),
    };
    Ok(Request::Subscribe {
        include_pending,
        from,
    })
}
