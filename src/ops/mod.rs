//! The operations, one file each: how its request is parsed (the `parse`
//! that [`OPERATIONS`], the registry in `registry.rs`, names), and, for those answered
//! from the index, what it asks the writer ([`Query`]), what the writer
//! hands back ([`Answer`]), and how that answer is written to the client
//! (`stats.rs`, `jobs.rs`, `export_csv.rs`, `retry_candidates.rs`,
//! `snapshot.rs`, `report.rs`; `read.rs` reads records back for them).
//!
//! An answer carries everything its writing needs (a `jobs` answer its
//! `fields`, a CSV answer only its records), so there is one enum between
//! the writer and the connection, not an answer paired with a separate
//! description of how to print it.
//!
//! A query's `run` takes a [`View`] of the writer's index and file; the
//! writer hands every query to [`run`] (`writer/answer.rs`), so a new query
//! operation touches only this folder: its file, its `Query` and `Answer`
//! variants, and a line each in [`run`], [`write`] and the registry.
//!
//! What a request does on the connection (hand the records read before it
//! to the writer, queue a reply that waits for durability or for the
//! writer's answer) is the connection's machinery, one function per
//! operation in `conn/requests.rs`: it works on the session's chunk and
//! reply queue, and `ops` depends on neither `conn` nor `writer`, so the
//! writer and the connections can both use it without a cycle.

use std::fs::File;
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::query::{Filter, Paging};

mod registry;

pub(crate) use registry::Request;
pub use registry::{parse_bare, parse_request};
pub(crate) use scan::Scan;

pub(crate) mod clear;
pub(crate) mod consumer;
pub(crate) mod export_csv;
pub(crate) mod flush;
pub(crate) mod jobs;
pub(crate) mod log;
pub(crate) mod logs;
pub(crate) mod metrics;
pub(crate) mod offline;
pub(crate) mod ping;
mod pystr;
mod read;
pub(crate) mod read_records;
pub(crate) mod report;
pub(crate) mod retry_candidates;
mod scan;
pub(crate) mod snapshot;
pub(crate) mod stats;
pub(crate) mod subscribe;

/// The records an answer covers: the first `durable` records of the log
/// `log_id`, told with `jobs` so that a follower asks next `from_seq` there
/// (and starts again if the log was replaced meanwhile).
#[derive(Debug)]
pub(crate) struct Covered {
    pub(crate) log_id: String,
    pub(crate) durable: u64,
}

impl Covered {
    /// The first `covered` records of the log `view` shows.
    pub(crate) fn of(view: &View<'_>, covered: usize) -> Covered {
        Covered {
            log_id: view.log_id.to_owned(),
            durable: covered.min(view.index.len()) as u64,
        }
    }
}

/// A record's place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub offset: u64,
    pub len: u32,
}

/// What an operation reads on the writer: the index, and the file as the
/// writer has it (the connection reads records back through `reader`).
pub(crate) struct View<'w> {
    pub index: &'w crate::index::Index,
    pub reader: &'w Arc<File>,
    /// Records in the file and durable: index entries from here on are
    /// accepted but not yet written, and are never read back.
    pub durable: usize,
    /// Where the durable records end in the file.
    pub durable_end: u64,
    /// The live log's id (`ping`'s `log_id`).
    pub log_id: &'w str,
}

impl View<'_> {
    /// Where the records `idxs` are in the file.
    pub(crate) fn spans(&self, idxs: &[u32]) -> Vec<Span> {
        idxs.iter()
            .map(|&i| {
                let e = &self.index.entries[i as usize];
                Span {
                    offset: e.offset,
                    len: e.len,
                }
            })
            .collect()
    }
}

/// Questions answered from the index, on the writer.
#[derive(Debug)]
pub enum Query {
    Stats {
        filter: Filter,
        /// Over every accepted record, not only the durable ones (which
        /// the writer makes everything accepted before answering).
        include_pending: bool,
    },
    /// `jobs` and its aliases; `fields` projects each record.
    Jobs {
        filter: Filter,
        paging: Paging,
        fields: Option<Vec<String>>,
    },
    ExportCsv {
        filter: Filter,
        paging: Paging,
    },
    RetryCandidates {
        limit: Option<usize>,
    },
    /// The durable prefix of the file, to copy.
    Snapshot,
    /// Durable records by position (`read`).
    Read {
        log_id: Option<String>,
        from_seq: u64,
        limit: usize,
    },
    /// What `joblogctl report` draws: `stats`, failures over time and by
    /// stage, the newest failures.
    Report {
        filter: Filter,
        recent_failures: usize,
    },
}

impl Query {
    /// Whether the writer makes every accepted record durable before it
    /// answers (a `stats` without `include_pending`, a `report`): the
    /// answer then counts exactly the records in the file, and the index
    /// holds no pending entry while it is computed.
    pub(crate) fn flushes_first(&self) -> bool {
        matches!(
            self,
            Query::Stats {
                include_pending: false,
                ..
            } | Query::Report { .. }
        )
    }
}

/// What a query returns. Records are returned as spans of the file plus a
/// read handle, so the connection streams them without the writer holding
/// their bytes.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The whole reply line of an unfiltered `stats`, shared with the cache.
    StatsLine(Arc<[u8]>),
    Stats {
        /// The `stats` object (timings missing when `timings_from` is set).
        value: crate::query::StatsValue,
        /// Filtered stats: the successful matching records whose `timings`
        /// the connection reads back to complete the object.
        timings_from: Option<(Arc<File>, Vec<Span>)>,
    },
    Jobs {
        reader: Arc<File>,
        spans: Vec<Span>,
        /// Matches before paging.
        total: usize,
        fields: Option<Vec<String>>,
        at: Covered,
    },
    Csv {
        reader: Arc<File>,
        spans: Vec<Span>,
        at: Covered,
    },
    Candidates {
        reader: Arc<File>,
        spans: Vec<Span>,
        /// Candidates before `limit`.
        total: usize,
    },
    /// Bytes `0..end` of the file are complete records, immutable from now
    /// on (appends only ever write past them); close the array after them.
    Snapshot {
        reader: Arc<File>,
        end: u64,
        records: u64,
    },
    /// The question could not be answered as asked (durable-only `stats`
    /// while writes fail): the message, for a `write_failed` reply.
    Failed(String),
    /// The question is refused as asked (`read` of a log no longer live):
    /// the error to reply.
    Refused(crate::protocol::ProtocolError),
    /// `read`: records from position `from_seq` on.
    Read {
        reader: Arc<File>,
        spans: Vec<Span>,
        from_seq: u64,
        log_id: String,
        durable: u64,
        /// Set when served from an archive, not the live log.
        archive: Option<read_records::ArchiveNote>,
    },
    Report(Box<report::Report>),
}

/// Answers a query over the writer's index and file: each operation's
/// `run`. (The writer answers an unfiltered `stats` itself, from its
/// running aggregate and cache, before it gets here.)
pub(crate) fn run(view: &View<'_>, q: Query) -> Answer {
    match q {
        Query::Stats { filter, .. } => stats::run(view, &filter),
        Query::Jobs {
            filter,
            paging,
            fields,
        } => jobs::run(view, &filter, &paging, fields),
        Query::ExportCsv { filter, paging } => export_csv::run(view, &filter, &paging),
        Query::RetryCandidates { limit } => retry_candidates::run(view, limit),
        Query::Snapshot => snapshot::run(view),
        Query::Read {
            log_id,
            from_seq,
            limit,
        } => read_records::run(view, log_id.as_deref(), from_seq, limit),
        Query::Report {
            filter,
            recent_failures,
        } => report::run(view, &filter, recent_failures),
    }
}

/// Writes a whole answer: one JSON line, or for CSV and snapshots a JSON
/// line followed by exactly the announced number of bytes.
///
/// # Errors
/// Reading the file or writing to the client failed; the connection cannot
/// carry on in a known state. A [`Answer::Failed`] is the caller's to
/// reply to (with its line number); here it is an error.
pub(crate) async fn write<W: AsyncWrite + Unpin>(w: &mut W, answer: Answer) -> std::io::Result<()> {
    match answer {
        Answer::StatsLine(line) => w.write_all(&line).await,
        Answer::Stats {
            value,
            timings_from,
        } => stats::write(w, value, timings_from).await,
        Answer::Jobs {
            reader,
            spans,
            total,
            fields,
            at,
        } => jobs::write(w, &reader, &spans, total, fields.as_deref(), &at).await,
        Answer::Csv { reader, spans, at } => export_csv::write(w, &reader, &spans, &at).await,
        Answer::Candidates {
            reader,
            spans,
            total,
        } => retry_candidates::write(w, &reader, &spans, total).await,
        Answer::Snapshot {
            reader,
            end,
            records,
        } => snapshot::write(w, &reader, end, records).await,
        Answer::Read {
            reader,
            spans,
            from_seq,
            log_id,
            durable,
            archive,
        } => {
            let at = (from_seq, &*log_id, durable);
            read_records::write(w, &reader, &spans, at, archive.as_ref()).await
        }
        Answer::Report(r) => report::write(w, *r).await,
        Answer::Failed(msg) => Err(std::io::Error::other(msg)),
        Answer::Refused(e) => Err(std::io::Error::other(e.message)),
    }
}
