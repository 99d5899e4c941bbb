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

/// `--no-pager` not given.
static PAGING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

pub(super) fn set_pager(on: bool) {
    let _ = PAGING.set(on);
}

/// A pager for long output on a terminal: `$PAGER` (run by the shell),
/// else `less -FRX` (quits at once when the output fits one screen, keeps
/// colour, leaves the text on the screen). None when paging is off or the
/// pager cannot start: the output then goes to the terminal itself.
pub(super) struct Pager(Option<std::process::Child>);

impl Pager {
    pub(super) fn start() -> Pager {
        if !PAGING.get().copied().unwrap_or(true) {
            return Pager(None);
        }
        let mut cmd = match std::env::var("PAGER") {
            Ok(p) if p.trim().is_empty() || p.trim() == "cat" => return Pager(None),
            Ok(p) => {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", &p]);
                c
            }
            Err(_) => {
                let mut c = std::process::Command::new("less");
                c.arg("-FRX");
                c
            }
        };
        Pager(cmd.stdin(std::process::Stdio::piped()).spawn().ok())
    }

    pub(super) fn input(&mut self) -> Option<std::process::ChildStdin> {
        self.0.as_mut().and_then(|c| c.stdin.take())
    }

    /// Waits for the reader to quit the pager.
    pub(super) fn wait(mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.wait();
        }
    }
}

/// Whether to write colour and bold, decided once at start.
static COLOR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `--color`: `always` and `never` as said; `auto` is off with `NO_COLOR`
/// set (no-color.org) or `TERM=dumb`, on with `CLICOLOR_FORCE` set (not
/// `0`), else on when standard output is a terminal.
pub(super) fn set_color(c: Color) {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let on = match c {
        Color::Always => true,
        Color::Never => false,
        Color::Auto if set("NO_COLOR") => false,
        Color::Auto
            if set("CLICOLOR_FORCE") && std::env::var_os("CLICOLOR_FORCE") != Some("0".into()) =>
        {
            true
        }
        Color::Auto if std::env::var_os("TERM").is_some_and(|t| t == "dumb") => false,
        Color::Auto => tty(),
    };
    let _ = COLOR.set(on);
}

fn color() -> bool {
    *COLOR.get_or_init(tty)
}

pub(super) fn bold(s: &str) -> String {
    if color() {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

/// Renders rows as aligned columns.
pub(super) fn table(headers: &[String], rows: &[Vec<String>]) -> String {
    table_marked(headers, rows, &[])
}

/// [`table`], with the rows `failed` marks in red when colour is on.
pub(super) fn table_marked(headers: &[String], rows: &[Vec<String>], failed: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    table_rows(headers, rows, failed, &mut widths, true)
}

/// A table's `rows`, under its header if `header`, each column as wide as
/// `widths` says or its widest cell (60 at most); `widths` is widened to
/// match, so the next rows of a followed table line up with these.
pub(super) fn table_rows(
    headers: &[String],
    rows: &[Vec<String>],
    failed: &[bool],
    widths: &mut [usize],
    header: bool,
) -> String {
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count().min(60));
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
    if header {
        let head: Vec<String> = headers
            .iter()
            .zip(widths.iter())
            .map(|(h, w)| cell(h, *w))
            .collect();
        out.push_str(&bold(head.join("  ").trim_end()));
        out.push('\n');
    }
    for (i, r) in rows.iter().enumerate() {
        let line: Vec<String> = r
            .iter()
            .zip(widths.iter())
            .map(|(c, w)| cell(c, *w))
            .collect();
        let line = line.join("  ");
        if failed.get(i) == Some(&true) && color() {
            out.push_str(&format!("\x1b[31m{}\x1b[0m", line.trim_end()));
        } else {
            out.push_str(line.trim_end());
        }
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
        Value::String(s) => safe(s),
        other => other.to_string(),
    }
}

/// Text from a record made safe for a terminal: control characters (C0,
/// DEL, C1: the start of every escape sequence, BEL, a line break) and
/// the bidirectional overrides that reorder what is shown are written as
/// escapes (`\n`, `\u001b`), so a record cannot clear the screen, set the
/// title or hide text, and one cell stays one line.
pub(super) fn safe(s: &str) -> String {
    let risky =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(risky) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if risky(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// A file joblogctl cannot write, named in the message.
pub(super) fn cannot_write(path: &std::path::Path, e: &io::Error) -> Fail {
    Fail(
        1,
        format!("joblogctl: cannot write {}: {e}", path.display()),
    )
}

/// Writes a file the user asked for (`export-csv`, `snapshot`, `report`)
/// the way that never leaves a partial one at `path`: `fill` writes it
/// under a temporary name beside it, which is synced and then renamed
/// over `path` (a reader, or a browser reloading the page, sees the old
/// file or the new one whole); on any failure the temporary file is
/// removed and `path` is as it was.
pub(super) fn write_aside(
    path: &std::path::Path,
    fill: impl FnOnce(&mut File) -> Result<(), Fail>,
) -> Result<(), Fail> {
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| cannot_write(path, &e))?;
        fill(&mut f)?;
        f.sync_all().map_err(|e| cannot_write(path, &e))?;
        std::fs::rename(&tmp, path).map_err(|e| cannot_write(path, &e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
