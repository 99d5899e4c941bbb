//! Newline framing with a maximum line length. Bytes only: no JSON here.
//!
//! [`Lines`] owns a connection's read buffer. The caller reads socket bytes
//! into [`Lines::space`] and takes complete lines with [`Lines::next`]. A
//! line longer than the limit is reported once as [`Frame::TooLong`] and the
//! rest of it is thrown away as it arrives, never buffered, so a client can
//! cost at most `max_line` bytes of memory however long it talks.

use memchr::memchr;

pub(crate) use crate::config::tuning::READ_CHUNK;

/// One framed unit of input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A line without its `\n` (a trailing `\r` is still there).
    Line { no: u64, bytes: &'a [u8] },
    /// A line over the limit; its bytes are being discarded.
    TooLong { no: u64 },
}

/// A connection's line buffer.
#[derive(Debug)]
pub(crate) struct Lines {
    buf: Vec<u8>,
    /// Start of the first unconsumed byte.
    start: usize,
    /// Bytes from `start` already searched for a newline.
    searched: usize,
    max_line: usize,
    /// Throwing away the rest of an over-long line until its newline.
    discarding: bool,
    /// 1-based number of the last line handed out.
    line_no: u64,
}

impl Lines {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            searched: 0,
            max_line,
            discarding: false,
            line_no: 0,
        }
    }

    /// The buffer to read into (append at its end). Consumed bytes are
    /// dropped first, and room for one more read is reserved.
    pub(crate) fn space(&mut self) -> &mut Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Bytes buffered and not yet part of a returned line (the tests hold
    /// an over-long line to a bounded buffer with it).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete line, or an over-long line report, or `None` when
    /// more bytes are needed.
    #[allow(clippy::should_implement_trait)] // borrows self: not an Iterator
    pub(crate) fn next(&mut self) -> Option<Frame<'_>> {
        loop {
            let pending = &self.buf[self.start + self.searched..];
            match memchr(b'\n', pending) {
                Some(i) => {
                    let end = self.start + self.searched + i;
                    let begin = self.start;
                    self.start = end + 1;
                    self.searched = 0;
                    if self.discarding {
                        // The tail of an over-long line: already reported.
                        self.discarding = false;
                        continue;
                    }
                    if end - begin > self.max_line {
                        self.line_no += 1;
                        return Some(Frame::TooLong { no: self.line_no });
                    }
                    self.line_no += 1;
                    return Some(Frame::Line {
                        no: self.line_no,
                        bytes: &self.buf[begin..end],
                    });
                }
                None => {
                    self.searched = self.buf.len() - self.start;
                    if self.searched > self.max_line {
                        // Over the limit with no newline in sight: drop what
                        // we hold and skip the rest as it comes.
                        self.buf.clear();
                        self.start = 0;
                        self.searched = 0;
                        if !self.discarding {
                            self.discarding = true;
                            self.line_no += 1;
                            return Some(Frame::TooLong { no: self.line_no });
                        }
                    }
                    return None;
                }
            }
        }
    }

    /// At end of input: the last line if it had no newline.
    pub(crate) fn finish(&mut self) -> Option<Frame<'_>> {
        if self.discarding {
            self.discarding = false;
            self.buf.clear();
            self.start = 0;
            return None;
        }
        if self.start == self.buf.len() {
            return None;
        }
        let begin = self.start;
        self.start = self.buf.len();
        self.searched = 0;
        self.line_no += 1;
        Some(Frame::Line {
            no: self.line_no,
            bytes: &self.buf[begin..],
        })
    }
}

/// Strips what the protocol ignores around a line: a trailing `\r` (CRLF
/// line ends) and a UTF-8 byte-order mark at the start.
pub fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &mut Lines, bytes: &[u8]) -> Vec<String> {
        lines.space().extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(f) = lines.next() {
            out.push(match f {
                Frame::Line { no, bytes } => format!("{no}:{}", String::from_utf8_lossy(bytes)),
                Frame::TooLong { no } => format!("{no}:TOO LONG"),
            });
        }
        out
    }

    #[test]
    fn splits_lines_across_reads_and_numbers_them() {
        let mut l = Lines::new(100);
        assert_eq!(feed(&mut l, b"ab"), Vec::<String>::new());
        assert_eq!(feed(&mut l, b"c\n\nde\r\nf"), vec!["1:abc", "2:", "3:de\r"]);
        assert_eq!(l.finish(), Some(Frame::Line { no: 4, bytes: b"f" }));
        assert_eq!(l.finish(), None);
    }

    #[test]
    fn over_long_line_is_reported_once_and_skipped_without_buffering() {
        let mut l = Lines::new(10);
        assert_eq!(
            feed(&mut l, b"ok\n0123456789AB"),
            vec!["1:ok", "2:TOO LONG"]
        );
        assert!(l.buffered() == 0);
        for _ in 0..100 {
            assert_eq!(feed(&mut l, &[b'x'; 1000]), Vec::<String>::new());
            assert!(l.buffered() <= 1000);
        }
        assert_eq!(feed(&mut l, b"yy\nnext\n"), vec!["3:next"]);
        // A long line whose newline arrives in the same read.
        assert_eq!(
            feed(&mut l, b"0123456789ABC\nz\n"),
            vec!["4:TOO LONG", "5:z"]
        );
        // Exactly at the limit is fine.
        assert_eq!(feed(&mut l, b"0123456789\n"), vec!["6:0123456789"]);
    }

    #[test]
    fn trims_crlf_and_bom() {
        assert_eq!(trim_line(b"\xEF\xBB\xBF{}\r"), b"{}");
        assert_eq!(trim_line(b"{}"), b"{}");
    }
}
