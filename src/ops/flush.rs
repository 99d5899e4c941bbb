//! `flush`: answered once every record accepted before it is durable.

use super::Request;
use crate::protocol::{Fields, ProtocolError};

pub(crate) fn parse<'a>(_: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Flush)
}
