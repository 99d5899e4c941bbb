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
    write_aside(&mut c, n, path)?;
    eprintln!(
        "wrote {} records ({n} bytes) to {}",
        v["records"],
        path.display()
    );
    Ok(())
}

/// The snapshot's `n` bytes, written aside and renamed, so PATH is never a
/// partial copy.
fn write_aside(c: &mut Conn, n: u64, path: &std::path::Path) -> Result<(), Fail> {
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| cannot_write(path, &e))?;
    let copied = io::copy(&mut (&mut c.r).take(n), &mut f)?;
    if copied != n {
        let _ = std::fs::remove_file(&tmp);
        return Err(cut_short());
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path).map_err(|e| cannot_write(path, &e))?;
    Ok(())
}

fn cut_short() -> Fail {
    Fail(
        1,
        "joblogctl: the daemon closed the connection mid-snapshot".into(),
    )
}
