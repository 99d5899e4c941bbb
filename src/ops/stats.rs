//! `stats` as the writer cannot finish it alone: a filtered `stats` gets
//! the timings of its matching records read back from the file here, on
//! the connection.

use std::collections::HashMap;
use std::fs::File;
use std::io;

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::Span;
use super::read::{Windowed, fields};
use crate::index::{self, Hist};
use crate::json::Formatter;

/// Completes filtered stats with the timings of the given records, and how
/// many timing values were left out for coming under a name past the
/// first [`index::MAX_TIMING_NAMES`] (as unfiltered stats do).
fn timings(file: &File, spans: &[Span]) -> io::Result<(Value, u64)> {
    let mut hists: HashMap<Vec<u8>, Hist> = HashMap::new();
    let mut untracked = 0u64;
    let mut skimmed = Vec::new();
    let mut inner = Formatter::new();
    let mut recs = Windowed::new(file, spans);
    while let Some(rec) = recs.next_record()? {
        let Some(t) = fields(&mut skimmed, rec, &["timings"])[0] else {
            continue;
        };
        if t.first() != Some(&b'{')
            || inner
                .validate(t, 0, crate::json::MAX_RECORD_DEPTH, true)
                .is_err()
        {
            continue;
        }
        let mut members: Vec<_> = Vec::with_capacity(inner.fields.len());
        members.extend(inner.fields.iter().filter_map(|f| {
            Some((
                index::string_bytes(&t[f.key_in.clone()])?,
                index::number(&t[f.value_in.clone()]),
            ))
        }));
        // Last one of each name first, then only numbers (see
        // `index::timing_members`).
        index::last_of_each(&mut members, |m| m.0.as_ref());
        for (name, v) in members {
            let Some(v) = v else { continue };
            // A handful of names, looked up for every record: a new key
            // only for a name not seen before.
            let full = hists.len() >= index::MAX_TIMING_NAMES;
            match hists.get_mut(name.as_ref()) {
                Some(h) => h.add(v),
                None if full => untracked += 1,
                None => hists.entry(name.into_owned()).or_default().add(v),
            }
        }
    }
    // Keys are UTF-8 (validated); byte order is code point order.
    let mut v: Vec<(String, Hist)> = hists
        .into_iter()
        .map(|(k, h)| (String::from_utf8_lossy(&k).into_owned(), h))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    let v = Value::Object(
        v.into_iter()
            .map(|(k, h)| (k, crate::query::hist_json(&h)))
            .collect(),
    );
    Ok((v, untracked))
}

/// The successful records whose `timings` complete a filtered `stats`
/// (the writer's index holds timings only in its running aggregate).
pub(crate) type TimingsFrom = Option<(std::sync::Arc<File>, Vec<Span>)>;

/// Completes `value` with the timings of the records `timings_from`
/// names, read back from the file here (on the connection, so the writer
/// does not read records); `None` leaves it as it is.
pub(super) fn complete(
    value: &mut crate::query::StatsValue,
    timings_from: TimingsFrom,
) -> io::Result<()> {
    if let Some((file, spans)) = timings_from {
        let (t, untracked) = tokio::task::block_in_place(|| timings(&file, &spans))?;
        value.value["timings"] = t;
        value.value["timings_untracked"] = untracked.into();
    }
    Ok(())
}

/// Writes a filtered `stats` answer: `value` completed with the timings of
/// the records `timings_from` names.
pub(super) async fn write<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut value: crate::query::StatsValue,
    timings_from: TimingsFrom,
) -> io::Result<()> {
    complete(&mut value, timings_from)?;
    w.write_all(&value.reply_line()).await
}

/// `{"op":"stats", filter…, "include_pending":…}`.
pub(crate) fn parse<'a>(
    f: &crate::protocol::Fields<'a, '_>,
) -> Result<super::Request<'a>, crate::protocol::ProtocolError> {
    Ok(super::Request::Query(super::Query::Stats {
        filter: f.filter()?,
        include_pending: f
            .typed::<bool>("include_pending", "a boolean")?
            .unwrap_or(false),
    }))
}

/// A filtered `stats` on the writer: the aggregate of the matching
/// records, with the successful durable ones whose timings the connection
/// reads back ([`write`]). (Unfiltered `stats` is the writer's own running
/// aggregate, cached: `writer/answer.rs`.)
pub(crate) fn run(view: &super::View<'_>, filter: &crate::query::Filter) -> super::Answer {
    answer(view, crate::query::aggregate(view.index, filter))
}

/// The answer of a filtered `stats` from its aggregate, its successful
/// matches and its retry candidates (gathered at once or by a scan).
pub(crate) fn answer(
    view: &super::View<'_>,
    gathered: (crate::index::Aggregate, Vec<u32>, u64),
) -> super::Answer {
    let (value, timings_from) = parts(view, gathered);
    super::Answer::Stats {
        value,
        timings_from,
    }
}

/// The `stats` object of a filtered `stats` (or `report`) and the durable
/// successful matches whose timings complete it.
pub(crate) fn parts(
    view: &super::View<'_>,
    (agg, successful, candidates): (crate::index::Aggregate, Vec<u32>, u64),
) -> (crate::query::StatsValue, TimingsFrom) {
    let readable: Vec<u32> = successful
        .into_iter()
        .filter(|&i| (i as usize) < view.durable)
        .collect();
    (
        crate::query::stats_json(view.index, &agg, candidates),
        Some((view.reader.clone(), view.spans(&readable))),
    )
}
