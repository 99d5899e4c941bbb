//! The processes section 7 runs, which are this program again: a writer
//! (`--writer-child SOCKET FILE`) and the line copier (`--copier-child
//! SOCKET FILE`), hidden from `--help` (see `procs.rs`).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::daemon::IO_TIMEOUT;

/// Runs a child mode if this process was started as one; returns its exit
/// code then. Checked before the command line is parsed: the modes are
/// hidden from `--help`.
pub(crate) fn child_main() -> Option<i32> {
    let args: Vec<String> = std::env::args().collect();
    let run = match args.get(1).map(String::as_str) {
        Some("--writer-child") if args.len() == 4 => writer_child(Path::new(&args[2]), &args[3]),
        Some("--copier-child") if args.len() == 4 => {
            copier_child(Path::new(&args[2]), Path::new(&args[3]))
        }
        _ => return None,
    };
    Some(match run {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("joblogd-bench child: {e}");
            1
        }
    })
}

/// A writer process: connect, report ready (`r` on stdout), wait for the
/// start (a byte on stdin), send the whole share at once, close the write
/// side, read replies until the server closes, and print how many there
/// were and the first.
fn writer_child(socket: &Path, share: &str) -> io::Result<()> {
    let data = fs::read(share)?;
    let mut conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut out = io::stdout().lock();
    out.write_all(b"r")?;
    out.flush()?;
    let mut go = [0u8; 1];
    io::stdin().read_exact(&mut go)?;
    conn.write_all(&data)?;
    conn.shutdown(Shutdown::Write)?;
    let mut replies = String::new();
    conn.read_to_string(&mut replies)?;
    let first = replies.lines().next().unwrap_or("");
    writeln!(out, "{} {first}", replies.lines().count())?;
    Ok(())
}

/// The line copier: a thread per connection, whole lines appended to one
/// file under a mutex (a line is never split by another connection's),
/// until it is killed.
fn copier_child(socket: &Path, out: &Path) -> io::Result<()> {
    let _ = fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let file = Arc::new(Mutex::new(File::create(out)?));
    for stream in listener.incoming() {
        let stream = stream?;
        let file = Arc::clone(&file);
        thread::spawn(move || copy_lines(stream, &file));
    }
    Ok(())
}

fn copy_lines(mut stream: UnixStream, file: &Mutex<File>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut held = 0;
    loop {
        if held == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match stream.read(&mut buf[held..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        held += n;
        let Some(last_nl) = buf[..held].iter().rposition(|&b| b == b'\n') else {
            continue;
        };
        let whole = last_nl + 1;
        let Ok(mut f) = file.lock() else { break };
        if f.write_all(&buf[..whole]).is_err() {
            break;
        }
        drop(f);
        buf.copy_within(whole..held, 0);
        held -= whole;
    }
    if held > 0
        && let Ok(mut f) = file.lock()
    {
        let _ = f.write_all(&buf[..held]);
    }
}
