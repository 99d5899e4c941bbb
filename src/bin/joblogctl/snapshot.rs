//! `joblogctl snapshot`: a complete, consistent copy of the log, to a file
//! (never left a partial copy) or standard output.

use super::*;

pub(super) fn snapshot(
    out: &mut impl Write,
    socket: &Socket,
    path: &std::path::Path,
) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    let v = c.ask(json!({"op":"snapshot"}))?;
    let n = v["bytes"].as_u64().unwrap_or(0);
    if path.as_os_str() == "-" {
        let copied = io::copy(&mut (&mut c.r).take(n), out)?;
        out.flush()?;
        if copied != n {
            return Err(cut_short());
        }
        return Ok(());
    }
    write_aside(path, |f| {
        let copied = io::copy(&mut (&mut c.r).take(n), f)?;
        if copied != n {
            return Err(cut_short());
        }
        Ok(())
    })?;
    eprintln!(
        "wrote {} records ({n} bytes) to {}",
        v["records"],
        path.display()
    );
    Ok(())
}

fn cut_short() -> Fail {
    Fail(
        1,
        "joblogctl: the daemon closed the connection mid-snapshot".into(),
    )
}
