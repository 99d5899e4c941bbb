//! `clear`: the log archived beside itself and a new, empty one started;
//! only with `"confirm": true`.

use super::Request;
use crate::protocol::{ErrorCode, Fields, ProtocolError};

pub(crate) fn parse<'a>(f: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    match f.typed::<bool>("confirm", "a boolean")? {
        Some(true) => Ok(Request::Clear),
        _ => Err(ProtocolError::new(
            ErrorCode::ConfirmationRequired,
            "clear renames the log file aside and starts an empty one; send {\"op\":\"clear\",\"confirm\":true}",
        )),
    }
}
