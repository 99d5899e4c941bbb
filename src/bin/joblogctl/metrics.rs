//! `joblogctl metrics`: the daemon's counters and gauges in Prometheus's
//! text exposition format, the very text `joblogd --metrics-textfile`
//! writes (to check what node_exporter will see, or to feed a collector
//! of one's own).

use super::*;

pub(super) fn metrics(out: &mut impl Write, socket: &Socket) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    let v = c.ask(json!({"op":"metrics"}))?;
    let n = v["bytes"].as_u64().unwrap_or(0);
    let copied = io::copy(&mut (&mut c.r).take(n), out)?;
    out.flush()?;
    if copied != n {
        return Err(Fail(
            1,
            "joblogctl: the daemon closed the connection mid-answer".into(),
        ));
    }
    Ok(())
}
