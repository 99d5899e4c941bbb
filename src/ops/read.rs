//! Reading records back for answers: from the file, in order (`pread` on
//! a handle the writer gave us, valid even if the file is archived
//! meanwhile; neighbours share a read of at most [`READ_WINDOW`]), and
//! serialized as they are read, so the daemon's memory does not grow with
//! the size of an answer. Shared by the operations that answer with
//! records (`jobs`, `retry_candidates`, `export_csv`, filtered `stats`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Span;
use crate::index;
use crate::json::minify_into;
use crate::json::{Formatter, MAX_RECORD_DEPTH, SkimmedField, skim_object};

pub(super) use crate::config::tuning::{READ_GAP, READ_WINDOW, STREAM_CHUNK};

/// The records of `spans`, in the order given, read with as few `pread`s as
/// their places allow: following spans that lie ahead within [`READ_GAP`]
/// of each other are fetched together, up to [`READ_WINDOW`] bytes. A
/// filter matching every eighth small record thus reads the file front to
/// back in 256 KiB pieces rather than one record per system call (filtered
/// `stats` at 1M records: see docs/performance.md). The file only grows,
/// so a span once durable stays valid; a span past its end (the file cut
/// underneath the daemon) is an I/O error, never a panic.
pub(super) struct Windowed<'a> {
    file: &'a File,
    spans: &'a [Span],
    /// Index of the next span to hand out.
    next: usize,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: u64,
    /// Spans before this index (from `next` on) are in `buf`.
    to: usize,
}

impl<'a> Windowed<'a> {
    pub(super) fn new(file: &'a File, spans: &'a [Span]) -> Self {
        Self {
            file,
            spans,
            next: 0,
            buf: Vec::new(),
            at: 0,
            to: 0,
        }
    }

    /// The next record's bytes, or `None` after the last.
    pub(super) fn next_record(&mut self) -> io::Result<Option<&[u8]>> {
        let Some(&span) = self.spans.get(self.next) else {
            return Ok(None);
        };
        if self.next >= self.to {
            self.fill()?;
        }
        self.next += 1;
        let from = usize::try_from(span.offset - self.at).map_err(io::Error::other)?;
        self.buf
            .get(from..from + span.len as usize)
            .map(Some)
            .ok_or_else(|| io::Error::other("record outside the bytes read"))
    }

    /// Reads the window that starts with span `next`.
    pub(super) fn fill(&mut self) -> io::Result<()> {
        let past_eof = || io::Error::from(io::ErrorKind::UnexpectedEof);
        let first = self.spans[self.next];
        let start = first.offset;
        let mut end = start
            .checked_add(u64::from(first.len))
            .ok_or_else(past_eof)?;
        let mut to = self.next + 1;
        while let Some(s) = self.spans.get(to) {
            let s_end = s
                .offset
                .checked_add(u64::from(s.len))
                .ok_or_else(past_eof)?;
            // Behind (a sorted answer), too far ahead, or too much at once.
            if s.offset < end || s.offset - end > READ_GAP || s_end - start > READ_WINDOW {
                break;
            }
            end = s_end;
            to += 1;
        }
        let len = usize::try_from(end - start).map_err(io::Error::other)?;
        self.buf.resize(len, 0);
        self.file.read_exact_at(&mut self.buf, start)?;
        self.at = start;
        self.to = to;
        Ok(())
    }
}

/// The raw value of each of `names` in the record (last duplicate wins).
///
/// Records come from the log, validated on their way in or by the start-up
/// scan, so their members are located by [`skim_object`] (a third of the
/// cost of a validating parse, which filtered `stats` pay for every
/// matching record); bytes not shaped like an object give no fields.
pub(super) fn fields<'a>(
    skimmed: &mut Vec<SkimmedField>,
    rec: &'a [u8],
    names: &[&str],
) -> Vec<Option<&'a [u8]>> {
    let mut out = vec![None; names.len()];
    if !skim_object(rec, skimmed) {
        return out;
    }
    for (key_in, value_in) in skimmed.iter() {
        let raw = &rec[key_in.clone()];
        // Fast path: a key spelled without escapes equals a name (that has
        // no backslash) exactly when its bytes between the quotes do.
        let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
        // A key without a backslash has no escape to decode.
        let i = match names
            .iter()
            .position(|n| n.as_bytes() == inner && !n.contains('\\'))
        {
            None if inner.contains(&b'\\') => index::string_bytes(raw)
                .and_then(|k| names.iter().position(|n| n.as_bytes() == &*k)),
            i => i,
        };
        if let Some(i) = i {
            out[i] = Some(&rec[value_in.clone()]);
        }
    }
    out
}

/// `{"a":…,"b":…}` with the named fields, `null` where missing (as jq's
/// `{a, b}` does). Each value is validated before it is copied: fields are
/// only skimmed, and a record damaged underneath the daemon could
/// otherwise put a raw newline into the reply and split its line. Such a
/// value is written as `null`.
pub(super) fn project(
    skimmed: &mut Vec<SkimmedField>,
    check: &mut Formatter,
    rec: &[u8],
    names: &[&str],
    out: &mut Vec<u8>,
) {
    let vals = fields(skimmed, rec, names);
    out.push(b'{');
    for (i, (name, v)) in names.iter().zip(vals).enumerate() {
        // A name asked for twice is written once, as jq's `{a, b, a}` does
        // (`fields` finds a record's value for the first of them only).
        if names[..i].contains(name) {
            continue;
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&serde_json::to_vec(name).unwrap_or_default());
        out.push(b':');
        match v {
            Some(v) if check.validate(v, 0, MAX_RECORD_DEPTH, false).is_ok() => {
                minify_into(v, out);
            }
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Streams `head`, the records of `spans` (minified whole, or projected to
/// `names`), then `]}` and a newline, in pieces of about [`STREAM_CHUNK`].
pub(super) async fn records<W: AsyncWrite + Unpin>(
    w: &mut W,
    head: String,
    file: &File,
    spans: &[Span],
    names: Option<&[&str]>,
) -> io::Result<()> {
    let mut out = head.into_bytes();
    let mut recs = Windowed::new(file, spans);
    let mut skimmed = Vec::new();
    let mut check = Formatter::new();
    let mut first = true;
    // A read of up to READ_WINDOW bytes may go to the disk.
    while let Some(rec) = tokio::task::block_in_place(|| recs.next_record())? {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        match names {
            None => minify_into(rec, &mut out),
            Some(names) => project(&mut skimmed, &mut check, rec, names, &mut out),
        }
        if out.len() >= STREAM_CHUNK {
            w.write_all(&out).await?;
            out.clear();
        }
    }
    out.extend_from_slice(b"]}\n");
    w.write_all(&out).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record `i` of the test file: distinct bytes, some records larger
    /// than a whole window.
    fn record(i: usize) -> Vec<u8> {
        let len = match i % 7 {
            0 => 3,
            3 => READ_WINDOW as usize + 5,
            _ => 100 + i * 37 % 9_000,
        };
        (0..len).map(|k| b'a' + ((i * 31 + k) % 26) as u8).collect()
    }

    #[test]
    fn windowed_reads_return_exactly_each_span_in_the_order_given() {
        let path = std::env::temp_dir().join(format!("joblogd-windowed-{}", std::process::id()));
        let mut data = Vec::new();
        let mut all = Vec::new();
        for i in 0..60 {
            // Gaps below and above READ_GAP between records.
            data.resize(
                data.len()
                    + if i % 5 == 0 {
                        READ_GAP as usize + 1
                    } else {
                        i * 11
                    },
                b' ',
            );
            let rec = record(i);
            all.push(Span {
                offset: data.len() as u64,
                len: rec.len() as u32,
            });
            data.extend_from_slice(&rec);
        }
        std::fs::write(&path, &data).expect("write test file");
        let file = File::open(&path).expect("open test file");
        let _ = std::fs::remove_file(&path);

        let every_other: Vec<Span> = all.iter().copied().step_by(2).collect();
        let backwards: Vec<Span> = all.iter().rev().copied().collect();
        let repeated: Vec<Span> = [all[4], all[4], all[5], all[1]].to_vec();
        for (what, spans) in [
            ("all", &all),
            ("every other", &every_other),
            ("backwards", &backwards),
            ("repeated", &repeated),
        ] {
            let mut got = Vec::new();
            let mut recs = Windowed::new(&file, spans);
            while let Some(rec) = recs.next_record().expect("read") {
                got.push(rec.to_vec());
            }
            let want: Vec<Vec<u8>> = spans
                .iter()
                .map(|s| data[s.offset as usize..][..s.len as usize].to_vec())
                .collect();
            assert!(got == want, "{what}: records differ");
        }

        // Neighbours share a read: the first window holds records 0..3
        // (small gaps) and stops before record 3, larger than a window.
        let mut recs = Windowed::new(&file, &all);
        recs.next_record().expect("read");
        assert_eq!(recs.to, 3, "record 3 is larger than a window");
        let mut recs = Windowed::new(&file, &all[1..3]);
        recs.next_record().expect("read");
        assert_eq!(recs.to, 2, "records 1 and 2 share one read");

        // Every eighth of a run of pretty-printed small records (about
        // 1.5 KB each): many share each read.
        let small: Vec<Span> = (0..800u64)
            .map(|i| Span {
                offset: i * 1_504,
                len: 1_500,
            })
            .step_by(8)
            .collect();
        let mut recs = Windowed::new(&file, &small);
        recs.next_record().expect("read");
        assert!(recs.to > 10, "only {} records in the first read", recs.to);
    }

    #[test]
    fn fields_match_keys_by_their_decoded_text_and_the_last_duplicate_wins() {
        let mut skimmed = Vec::new();
        let rec = br#"{"a\u0062": 1, "ab": 2, "x\\y": 3, "\u00e9": 4, "c\"d": 5}"#;
        let got = fields(
            &mut skimmed,
            rec,
            &["ab", "x\\y", "é", "c\"d", "x\\\\y", "nope"],
        );
        let want: Vec<Option<&[u8]>> =
            vec![Some(b"2"), Some(b"3"), Some(b"4"), Some(b"5"), None, None];
        assert_eq!(got, want);
        let rec = br#"{"ab": 2, "a\u0062": 1}"#;
        assert_eq!(fields(&mut skimmed, rec, &["ab"]), vec![Some(&b"1"[..])]);
        assert_eq!(fields(&mut skimmed, b"[1]", &["ab"]), vec![None]);
    }

    /// A record damaged underneath the daemon is only skimmed: its projected
    /// values are checked, so the reply stays one valid JSON line.
    #[test]
    fn a_damaged_value_is_projected_as_null_and_never_splits_the_reply() {
        let mut skimmed = Vec::new();
        let mut check = Formatter::new();
        let mut out = Vec::new();
        let rec = b"{\"video_id\":\"a\nb\",\"error\":tru\"e,\"stage\":\"x\"}";
        project(
            &mut skimmed,
            &mut check,
            rec,
            &["video_id", "error", "stage"],
            &mut out,
        );
        assert!(!out.contains(&b'\n'), "{}", String::from_utf8_lossy(&out));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({"video_id": null, "error": null, "stage": "x"})
        );
    }

    #[test]
    fn a_field_asked_for_twice_is_written_once_with_its_value() {
        let mut out = Vec::new();
        project(
            &mut Vec::new(),
            &mut Formatter::new(),
            br#"{"video_id":"a","success":true}"#,
            &["video_id", "success", "video_id"],
            &mut out,
        );
        assert_eq!(out, br#"{"video_id":"a","success":true}"#.to_vec());
    }
}
