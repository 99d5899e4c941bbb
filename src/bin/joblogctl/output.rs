//! Writing to the terminal or a pipe: tables, bold, a closed pipe that
//! ends the command quietly.

use super::*;

/// Standard output, closed by its reader (a broken pipe).
#[derive(Debug)]
pub(super) struct OutputClosed;

impl std::fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Standard output, whose broken pipe ends joblogctl quietly and with
/// success (as `head` expects), while a broken pipe to the daemon stays an
/// error.
pub(super) struct Stdout<W>(pub(super) W);

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

pub(super) fn closed(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::other(OutputClosed)
    } else {
        e
    }
}

pub(super) fn tty() -> bool {
    io::stdout().is_terminal()
}

pub(super) fn bold(s: &str) -> String {
    if tty() {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Renders rows as aligned columns.
pub(super) fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count()).min(60);
        }
    }
    let cell = |s: &str, w: usize| {
        let mut t: String = s.chars().take(w).collect();
        if s.chars().count() > w {
            t.pop();
            t.push('…');
        }
        format!("{t:<w$}")
    };
    let mut out = String::new();
    let head: Vec<String> = headers
        .iter()
        .zip(&widths)
        .map(|(h, w)| cell(h, *w))
        .collect();
    out.push_str(&bold(head.join("  ").trim_end()));
    out.push('\n');
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| cell(c, *w)).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A table cell: one line, no control characters (a tab or a carriage
/// return in a value would break the columns, an escape sequence the
/// terminal).
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
        other => other.to_string(),
    }
}

/// A file joblogctl cannot write, named in the message.
pub(super) fn cannot_write(path: &std::path::Path, e: &io::Error) -> Fail {
    Fail(
        1,
        format!("joblogctl: cannot write {}: {e}", path.display()),
    )
}
