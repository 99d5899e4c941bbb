//! `subscribe`: new records as they become durable (or, with
//! `include_pending`, as they are accepted), until the client goes away.

use super::Request;
use crate::protocol::{Fields, ProtocolError};

pub(crate) fn parse<'a>(f: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Subscribe {
        include_pending: f
            .typed::<bool>("include_pending", "a boolean")?
            .unwrap_or(false),
    })
}
