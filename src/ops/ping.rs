//! `ping`: the daemon's counters, after every earlier request on the
//! connection is answered.

use super::Request;
use crate::protocol::{Fields, ProtocolError};

pub(crate) fn parse<'a>(_: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Ping)
}
