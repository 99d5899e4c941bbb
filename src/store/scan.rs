//! The start-up scan: the longest prefix of complete records, streamed.

use super::*;

pub(super) struct Scan {
    pub(super) records: u64,
    pub(super) content_end: u64,
    pub(super) scanned: u64,
    /// `None` when the file is a valid array (whitespace may follow `]`).
    pub(super) problem: Option<String>,
}

/// Bytes read per step of the start-up scan; a record larger than this
/// grows the window to hold it whole.
pub(super) const SCAN_CHUNK: usize = 1 << 20;

/// Streams through the file once, never holding more than one chunk plus
/// the record that spans it, and finds the longest prefix of complete
/// records. Accepts what Python's `json.load` accepts in a file written by
/// the Python logger (including `NaN`), at any nesting depth up to a
/// generous limit.
pub(super) fn scan(
    file: &File,
    limit: Option<u64>,
    on_record: &mut impl FnMut(ScannedRecord, &[u8], &RawMeta),
) -> io::Result<Scan> {
    /// Python's decoder recurses; this is far beyond what it reads.
    const FILE_DEPTH: usize = 10_000;
    enum State {
        Open,
        FirstOrClose,
        CommaOrClose,
        Value,
        Done,
    }
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK);
    let mut base: u64 = 0; // file offset of buf[0]
    let mut pos = 0usize; // consumed up to here in buf
    let mut eof = false;
    let mut state = State::Open;
    let mut fmt = Formatter::new();
    let mut out = Scan {
        records: 0,
        content_end: 0,
        scanned: 0,
        problem: None,
    };
    let limit = limit.unwrap_or(u64::MAX);
    let uncommitted = |at: u64| {
        format!(
            "the bytes from byte {} on were never committed, or no longer match their commit \
             (a batch the daemon was writing when it was killed or the power failed)",
            at + 1
        )
    };
    // Refills when `pos` reaches the end of what is buffered (or when a
    // value needs more bytes). Returns false at end of file.
    let fill =
        |buf: &mut Vec<u8>, base: &mut u64, pos: &mut usize, want_more: bool| -> io::Result<bool> {
            if *pos > 0 && (*pos >= buf.len() / 2 || want_more) {
                buf.drain(..*pos);
                *base += *pos as u64;
                *pos = 0;
            }
            let target = if want_more {
                buf.len().max(SCAN_CHUNK) * 2
            } else {
                SCAN_CHUNK
            };
            if buf.len() >= target {
                return Ok(true);
            }
            let old = buf.len();
            // Into spare capacity, which a File reads into without it being
            // zeroed first (zeroing cost 3% of a scan); `read_to_end` stops
            // at the limit or at the end of the file and retries EINTR.
            buf.reserve(target - old);
            file.take((target - old) as u64).read_to_end(buf)?;
            Ok(buf.len() > old)
        };
    loop {
        // Skip whitespace, refilling as needed.
        while pos < buf.len() && matches!(buf[pos], b' ' | b'\t' | b'\n' | b'\r') {
            pos += 1;
        }
        if pos == buf.len() {
            if eof || !fill(&mut buf, &mut base, &mut pos, false)? {
                eof = true;
            }
            if pos == buf.len() {
                if !eof {
                    continue;
                }
                out.scanned = base + pos as u64;
                if !matches!(state, State::Done) {
                    out.problem = Some(format!(
                        "the file ends before the array is closed (after {} complete records)",
                        out.records
                    ));
                }
                return Ok(out);
            }
            continue;
        }
        let b = buf[pos];
        let here = base + pos as u64;
        match state {
            // A UTF-8 byte order mark (an editor's, or Python's `utf-8-sig`)
            // is kept and skipped, as jq and `json.loads(bytes)` skip it:
            // treating it as damage would take the whole history out of
            // the live file.
            State::Open if here == 0 && buf[pos..].starts_with(b"\xEF\xBB\xBF") => pos += 3,
            State::Open => {
                if b != b'[' {
                    out.problem = Some(format!(
                        "byte {} is not the '[' that opens an array",
                        here + 1
                    ));
                    out.scanned = here;
                    return Ok(out);
                }
                pos += 1;
                out.content_end = here + 1;
                state = State::FirstOrClose;
            }
            State::FirstOrClose | State::CommaOrClose if b == b']' => {
                pos += 1;
                state = State::Done;
            }
            State::FirstOrClose | State::CommaOrClose if here >= limit => {
                out.problem = Some(uncommitted(here));
                out.scanned = here;
                return Ok(out);
            }
            State::FirstOrClose => state = State::Value,
            State::CommaOrClose => {
                if b != b',' {
                    out.problem = Some(format!("expected ',' or ']' at byte {}", here + 1));
                    out.scanned = here;
                    return Ok(out);
                }
                pos += 1;
                state = State::Value;
            }
            State::Value => match fmt.validate(&buf, pos, FILE_DEPTH, false) {
                Ok(f) if here + (f.end - pos) as u64 > limit => {
                    out.problem = Some(uncommitted(out.content_end));
                    out.scanned = here;
                    return Ok(out);
                }
                Ok(f) => {
                    let rec = ScannedRecord {
                        offset: here,
                        len: (f.end - pos) as u64,
                    };
                    let meta = RawMeta::from_scanned(&buf, &fmt, pos);
                    on_record(rec, &buf[pos..f.end], &meta);
                    out.records += 1;
                    out.content_end = here + rec.len;
                    pos = f.end;
                    state = State::CommaOrClose;
                }
                Err(JsonError::Incomplete) if !eof => {
                    if !fill(&mut buf, &mut base, &mut pos, true)? {
                        eof = true;
                    }
                }
                Err(e) => {
                    let n = out.records + 1;
                    out.problem = Some(match e {
                        JsonError::Incomplete => {
                            format!("record {n} is cut short by the end of the file")
                        }
                        JsonError::Syntax { offset, what } => {
                            format!(
                                "record {n} is damaged: {what} at byte {}",
                                base + offset as u64 + 1
                            )
                        }
                        JsonError::Utf8 { offset } => {
                            format!(
                                "record {n} is damaged: invalid UTF-8 at byte {}",
                                base + offset as u64 + 1
                            )
                        }
                        JsonError::TooDeep { offset } => {
                            format!(
                                "record {n} is nested too deeply at byte {}",
                                base + offset as u64 + 1
                            )
                        }
                        JsonError::NotObject { .. } => format!("record {n} is damaged"),
                        // The scan validates without output, so no output
                        // limit applies; kept for a total match.
                        JsonError::TooLarge { limit } => {
                            format!("record {n} is larger than {limit} bytes")
                        }
                    });
                    out.scanned = here;
                    return Ok(out);
                }
            },
            State::Done => {
                out.problem = Some(format!(
                    "unexpected bytes after the closing ']' at byte {}",
                    here + 1
                ));
                out.scanned = here;
                return Ok(out);
            }
        }
    }
}
