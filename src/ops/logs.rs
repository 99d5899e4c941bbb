//! `logs`: the logs this daemon can serve by position, oldest first: the
//! archives beside the live log (made by `clear`, or renamed by a
//! rotation, with their sidecars), then the live log. A forwarder that
//! starts for the first time begins at the first, so a host's history
//! before forwarding was set up is shipped too.
//!
//! The order follows the chain each archive's sidecar records
//! (`next_log_id`); archives made before that was recorded, which name no
//! successor, come first, by name (their names hold the time they were
//! made). Answered on the connection, off the writer: it lists a
//! directory.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::Request;
use crate::protocol::{ErrorCode, Fields, ProtocolError, reply_line};
use crate::store::Listed;

pub(crate) fn parse<'a>(_: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Logs)
}

/// The reply line: `{"ok":true,"logs":[{"log_id","archive","records",
/// "next_log_id"},…,{"log_id","live":true,"records"}]}`, for the live
/// log at `live` (`live_id`, `durable` records).
pub(crate) fn reply(live: &Path, live_id: &str, durable: u64, line: u64) -> Vec<u8> {
    let listed = match crate::store::list_archives(live) {
        Ok(l) => l,
        Err(e) => {
            return ProtocolError::new(
                ErrorCode::ReadFailed,
                format!(
                    "logs: the directory of {} could not be listed: {e}",
                    live.display()
                ),
            )
            .reply(line);
        }
    };
    let mut logs: Vec<serde_json::Value> = in_order(listed)
        .into_iter()
        .map(|a| {
            serde_json::json!({
                "log_id": a.log_id,
                "archive": a.path.display().to_string(),
                "records": a.records,
                "next_log_id": a.successor,
            })
        })
        .collect();
    logs.push(serde_json::json!({"log_id": live_id, "live": true, "records": durable}));
    reply_line(&serde_json::json!({"ok": true, "logs": logs}))
}

/// Archives oldest first: each chain from an archive no other one names
/// as its successor, followed link by link; what a cycle or a damaged
/// link leaves out, after, by name.
fn in_order(mut listed: Vec<Listed>) -> Vec<Listed> {
    listed.sort_by(|a, b| a.path.cmp(&b.path));
    let named: HashSet<&str> = listed
        .iter()
        .filter_map(|a| a.successor.as_deref())
        .collect();
    let by_id: HashMap<&str, usize> = listed
        .iter()
        .enumerate()
        .map(|(i, a)| (a.log_id.as_str(), i))
        .collect();
    let mut order = Vec::with_capacity(listed.len());
    let mut seen = vec![false; listed.len()];
    let roots = (0..listed.len()).filter(|&i| !named.contains(listed[i].log_id.as_str()));
    for root in roots.chain(0..listed.len()) {
        let mut at = Some(root);
        while let Some(i) = at.filter(|&i| !seen[i]) {
            seen[i] = true;
            order.push(i);
            at = listed[i]
                .successor
                .as_deref()
                .and_then(|s| by_id.get(s).copied());
        }
    }
    let mut slots: Vec<Option<Listed>> = listed.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(id: &str, path: &str, next: Option<&str>) -> Listed {
        Listed {
            log_id: id.into(),
            path: path.into(),
            records: 1,
            successor: next.map(Into::into),
        }
    }

    #[test]
    fn archives_come_in_the_order_of_their_chain() {
        let got = in_order(vec![
            a("c", "/l.3.json", Some("live")),
            a("a", "/l.9.json", Some("b")),
            a("old", "/l.0.json", None),
            a("b", "/l.1.json", Some("c")),
        ]);
        let ids: Vec<&str> = got.iter().map(|l| l.log_id.as_str()).collect();
        assert_eq!(ids, ["old", "a", "b", "c"]);
        // A cycle (a damaged sidecar) still lists each once.
        let got = in_order(vec![a("x", "/1", Some("y")), a("y", "/2", Some("x"))]);
        assert_eq!(got.len(), 2);
    }
}
