//! `log` (one job) and `log_batch` (many): records sent as a request, so
//! that `ack` can be asked for (plain record lines are the usual way).

use super::Request;
use crate::protocol::{Fields, ProtocolError};

/// `ack`, which only these two take.
fn ack(f: &Fields<'_, '_>) -> Result<bool, ProtocolError> {
    match f.get("ack") {
        None | Some(b"false") => Ok(false),
        Some(b"true") => Ok(true),
        Some(v) => Err(f.invalid(format!(
            "field `ack` must be a boolean, got {}",
            Fields::type_name(v)
        ))),
    }
}

/// `{"op":"log","job":{…},"ack":…}`.
pub(crate) fn parse<'a>(f: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    let ack = ack(f)?;
    match f.get("job") {
        Some(v) if v.first() == Some(&b'{') => Ok(Request::Log { jobs: vec![v], ack }),
        Some(v) => Err(f.invalid(format!(
            "field `job` must be an object, got {}",
            Fields::type_name(v)
        ))),
        None => Err(f.invalid("missing field `job`")),
    }
}

/// `{"op":"log_batch","jobs":[…],"ack":…}`.
pub(crate) fn parse_batch<'a>(f: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    let ack = ack(f)?;
    match f.get("jobs") {
        Some(v) if v.first() == Some(&b'[') => {
            let ranges = crate::json::array_elements(v)
                .map_err(|e| f.invalid(format!("field `jobs`: {e}")))?;
            Ok(Request::Log {
                jobs: ranges.into_iter().map(|r| &v[r]).collect(),
                ack,
            })
        }
        Some(v) => Err(f.invalid(format!(
            "field `jobs` must be an array, got {}",
            Fields::type_name(v)
        ))),
        None => Err(f.invalid("missing field `jobs`")),
    }
}
