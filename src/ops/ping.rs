//! `ping`: the daemon's counters, after every earlier request on the
//! connection is answered.

use crate::protocol::{Fields, ProtocolError, Request};

pub fn parse<'a>(_: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Ping)
}
