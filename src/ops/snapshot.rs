//! `snapshot`: a complete, consistent copy of the log as it is on disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::read::STREAM_CHUNK;

/// Writes a JSON line announcing the copy's size, then bytes `0..end` of
/// the file (complete records, never rewritten: appends only write past
/// them, so the copy is consistent whatever is appended meanwhile) and the
/// array's close.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    reader: &File,
    end: u64,
    records: u64,
) -> io::Result<()> {
    let tail: &[u8] = if records == 0 { b"]" } else { b"\n]" };
    let size = end + tail.len() as u64;
    let head = format!(
        "{{\"ok\":true,\"content_type\":\"application/json\",\"records\":{records},\"bytes\":{size}}}\n"
    );
    w.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; STREAM_CHUNK];
    let mut at = 0u64;
    while at < end {
        let n = (end - at).min(STREAM_CHUNK as u64) as usize;
        tokio::task::block_in_place(|| reader.read_exact_at(&mut buf[..n], at))?;
        w.write_all(&buf[..n]).await?;
        at += n as u64;
    }
    w.write_all(tail).await
}

/// `{"op":"snapshot"}`.
pub(crate) fn parse<'a>(
    _: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, crate::protocol::ProtocolError> {
    Ok(super::Request::Query(super::Query::Snapshot))
}

/// The durable prefix of the file, on the writer.
pub(crate) fn run(view: &super::View<'_>) -> super::Answer {
    super::Answer::Snapshot {
        reader: view.reader.clone(),
        end: view.durable_end,
        records: view.durable as u64,
    }
}
