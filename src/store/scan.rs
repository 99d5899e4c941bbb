//! The start-up scan: the longest prefix of complete records, streamed.

use super::*;

pub(super) struct Scan {
    pub(super) records: u64,
    pub(super) content_end: u64,
    pub(super) scanned: u64,
    /// `None` when the file is a valid array (whitespace may follow `]`).
    pub(super) problem: Option<String>,
}

pub(super) use crate::config::tuning::SCAN_CHUNK;

/// The scan's window on the file: `buf` holds the bytes from file offset
/// `base`; `pos` is how far they are consumed.
struct Window {
    buf: Vec<u8>,
    base: u64,
    pos: usize,
    eof: bool,
}

impl Window {
    /// File offset of the next byte.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads more when `pos` reaches the end of what is buffered (or, with
    /// `want_more`, when a value needs more bytes than the window holds),
    /// dropping what was consumed; notes the end of the file.
    fn fill(&mut self, file: &File, want_more: bool) -> io::Result<()> {
        if self.pos > 0 && (self.pos >= self.buf.len() / 2 || want_more) {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let target = if want_more {
            self.buf.len().max(SCAN_CHUNK) * 2
        } else {
            SCAN_CHUNK
        };
        if self.buf.len() >= target {
            return Ok(());
        }
        let old = self.buf.len();
        // Into spare capacity, which a File reads into without it being
        // zeroed first (zeroing cost 3% of a scan); `read_to_end` stops at
        // the limit or at the end of the file and retries EINTR.
        self.buf.reserve(target - old);
        file.take((target - old) as u64)
            .read_to_end(&mut self.buf)?;
        if self.buf.len() == old {
            self.eof = true;
        }
        Ok(())
    }

    /// The next byte that is not whitespace (not consumed), refilling as
    /// needed; `None` at the end of the file.
    fn next_byte(&mut self, file: &File) -> io::Result<Option<u8>> {
        loop {
            while self.pos < self.buf.len()
                && matches!(self.buf[self.pos], b' ' | b'\t' | b'\n' | b'\r')
            {
                self.pos += 1;
            }
            if self.pos < self.buf.len() {
                return Ok(Some(self.buf[self.pos]));
            }
            if self.eof {
                return Ok(None);
            }
            self.fill(file, false)?;
        }
    }
}

enum State {
    Open,
    FirstOrClose,
    CommaOrClose,
    Value,
    Done,
}

use crate::config::tuning::FILE_DEPTH;

/// Streams through the file once, never holding more than one chunk plus
/// the record that spans it, and finds the longest prefix of complete
/// records, ending no later than `limit` (what the commit sidecar vouches
/// for). Accepts what Python's `json.load` accepts in a file written by
/// the Python logger (including `NaN`), at any nesting depth up to a
/// generous limit.
pub(super) fn scan(
    file: &File,
    limit: Option<u64>,
    on_record: &mut impl FnMut(ScannedRecord, &[u8], &RawMeta),
) -> io::Result<Scan> {
    let mut w = Window {
        buf: Vec::with_capacity(SCAN_CHUNK),
        base: 0,
        pos: 0,
        eof: false,
    };
    let mut state = State::Open;
    let mut fmt = Formatter::new();
    let mut out = Scan {
        records: 0,
        content_end: 0,
        scanned: 0,
        problem: None,
    };
    let limit = limit.unwrap_or(u64::MAX);
    loop {
        let Some(b) = w.next_byte(file)? else {
            out.scanned = w.offset();
            if !matches!(state, State::Done) {
                out.problem = Some(format!(
                    "the file ends before the array is closed (after {} complete records)",
                    out.records
                ));
            }
            return Ok(out);
        };
        let here = w.offset();
        let problem = if matches!(state, State::Value) {
            let taken = value(file, &mut w, &mut fmt, limit, &mut out, on_record)?;
            if taken {
                state = State::CommaOrClose;
            }
            out.problem.take()
        } else {
            between(&mut state, b, &mut w, limit, &mut out.content_end)
        };
        if let Some(problem) = problem {
            out.problem = Some(problem);
            out.scanned = here;
            return Ok(out);
        }
    }
}

/// One step of the array's punctuation (every state but [`State::Value`]):
/// the byte `b` at the window's position moves `state` on, or is the
/// problem returned.
fn between(
    state: &mut State,
    b: u8,
    w: &mut Window,
    limit: u64,
    content_end: &mut u64,
) -> Option<String> {
    let here = w.offset();
    match *state {
        // A UTF-8 byte order mark (an editor's, or Python's `utf-8-sig`)
        // is kept and skipped, as jq and `json.loads(bytes)` skip it:
        // treating it as damage would take the whole history out of the
        // live file.
        State::Open if here == 0 && w.buf[w.pos..].starts_with(b"\xEF\xBB\xBF") => {
            w.pos += 3;
            None
        }
        State::Open if b != b'[' => Some(format!(
            "byte {} is not the '[' that opens an array",
            here + 1
        )),
        State::Open => {
            w.pos += 1;
            *content_end = here + 1;
            *state = State::FirstOrClose;
            None
        }
        State::FirstOrClose | State::CommaOrClose if b == b']' => {
            w.pos += 1;
            *state = State::Done;
            None
        }
        State::FirstOrClose | State::CommaOrClose if here >= limit => Some(uncommitted(here)),
        State::FirstOrClose => {
            *state = State::Value;
            None
        }
        State::CommaOrClose if b != b',' => {
            Some(format!("expected ',' or ']' at byte {}", here + 1))
        }
        State::CommaOrClose => {
            w.pos += 1;
            *state = State::Value;
            None
        }
        // Read by `value`, never passed here.
        State::Value => None,
        State::Done => Some(format!(
            "unexpected bytes after the closing ']' at byte {}",
            here + 1
        )),
    }
}

/// One record at the window's position: validated, handed to `on_record`
/// and counted (true); or more bytes read when it runs past the window
/// (false, nothing consumed); or, when it is damaged, cut short or past
/// `limit`, the problem left in `out.problem` (false).
fn value(
    file: &File,
    w: &mut Window,
    fmt: &mut Formatter,
    limit: u64,
    out: &mut Scan,
    on_record: &mut impl FnMut(ScannedRecord, &[u8], &RawMeta),
) -> io::Result<bool> {
    let here = w.offset();
    match fmt.validate(&w.buf, w.pos, FILE_DEPTH, false) {
        Ok(f) if here + (f.end - w.pos) as u64 > limit => {
            out.problem = Some(uncommitted(out.content_end));
            Ok(false)
        }
        Ok(f) => {
            let rec = ScannedRecord {
                offset: here,
                len: (f.end - w.pos) as u64,
            };
            let meta = RawMeta::from_scanned(&w.buf, fmt, w.pos);
            on_record(rec, &w.buf[w.pos..f.end], &meta);
            out.records += 1;
            out.content_end = here + rec.len;
            w.pos = f.end;
            Ok(true)
        }
        Err(JsonError::Incomplete) if !w.eof => {
            w.fill(file, true)?;
            Ok(false)
        }
        Err(e) => {
            out.problem = Some(damaged(&e, out.records + 1, w.base));
            Ok(false)
        }
    }
}

/// Why record `n` cannot be kept, for the warning (`base`: the file offset
/// of the window the error's offset counts from).
fn damaged(e: &JsonError, n: u64, base: u64) -> String {
    let at = |offset: usize| base + offset as u64 + 1;
    match e {
        JsonError::Incomplete => format!("record {n} is cut short by the end of the file"),
        JsonError::Syntax { offset, what } => {
            format!("record {n} is damaged: {what} at byte {}", at(*offset))
        }
        JsonError::Utf8 { offset } => {
            format!(
                "record {n} is damaged: invalid UTF-8 at byte {}",
                at(*offset)
            )
        }
        JsonError::TooDeep { offset } => {
            format!("record {n} is nested too deeply at byte {}", at(*offset))
        }
        JsonError::NotObject { .. } => format!("record {n} is damaged"),
        // The scan validates without output, so no output limit applies;
        // kept for a total match.
        JsonError::TooLarge { limit } => format!("record {n} is larger than {limit} bytes"),
    }
}

/// Why the bytes from `at` on are not kept after a crash.
fn uncommitted(at: u64) -> String {
    format!(
        "the bytes from byte {} on were never committed, or no longer match their commit \
         (a batch the daemon was writing when it was killed or the power failed)",
        at + 1
    )
}
