//! `flush`: answered once every record accepted before it is durable.

use crate::protocol::{Fields, ProtocolError, Request};

pub fn parse<'a>(_: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Flush)
}
