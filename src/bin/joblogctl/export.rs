//! `joblogctl export-csv`: the daemon's CSV export, written by joblogctl
//! (with the user's permissions) to a file (aside, then renamed over it:
//! never a partial export) or standard output.

use super::*;

pub(super) fn export_csv(
    out: &mut impl Write,
    socket: &Socket,
    path: &std::path::Path,
) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    let v = c.ask(json!({"op":"export_csv"}))?;
    let n = v["bytes"].as_u64().unwrap_or(0) as usize;
    let mut body = vec![0u8; n];
    c.r.read_exact(&mut body)?;
    if path.as_os_str() == "-" {
        out.write_all(&body)?;
        out.flush()?;
        return Ok(());
    }
    write_aside(path, |f| {
        f.write_all(&body).map_err(|e| cannot_write(path, &e))
    })?;
    eprintln!("wrote {n} bytes to {}", path.display());
    Ok(())
}
