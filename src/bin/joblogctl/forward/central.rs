//! The central database's side of forwarding: the connection, the
//! checkpoint row and the batch insert (schema in `sql/central.sql`).

use tokio_postgres::{Client, Transaction};

use super::{Failed, Positioned};

/// A database error, with what PostgreSQL said.
pub(super) fn db(e: tokio_postgres::Error) -> Failed {
    let missing = e
        .code()
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::UNDEFINED_TABLE);
    let text = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    };
    if missing {
        return Failed::Fatal(format!(
            "{text}; create the central tables first: joblogctl forward --database URL --init"
        ));
    }
    // Class 22, a data exception: a value PostgreSQL cannot store (a
    // number beyond numeric's range, say). Retrying the same batch would
    // fail the same way for ever.
    if e.code().is_some_and(|c| c.code().starts_with("22")) {
        return Failed::Data(text);
    }
    Failed::Database(text)
}

pub(super) struct Central {
    client: Client,
}

impl Central {
    /// Connects to `target`.
    pub(super) async fn connect(target: &crate::pg::Target) -> Result<Central, String> {
        Ok(Central {
            client: target.connect().await?,
        })
    }

    /// Creates what is missing of the schema.
    pub(super) async fn init(&self) -> Result<(), String> {
        self.client
            .batch_execute(super::SCHEMA)
            .await
            .map_err(|e| format!("joblogctl forward --init: {e}"))
    }

    pub(super) async fn begin(&mut self) -> Result<Transaction<'_>, Failed> {
        self.client.transaction().await.map_err(db)
    }

    /// This host's checkpoint, locked until the transaction ends.
    pub(super) async fn checkpoint(
        tx: &Transaction<'_>,
        host: &str,
    ) -> Result<Option<(String, u64)>, Failed> {
        let row = tx
            .query_opt(
                "SELECT replace(log_id::text, '-', ''), next_seq FROM joblog_checkpoints \
                 WHERE host_id = $1 FOR UPDATE",
                &[&host],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64)))
    }

    /// The first checkpoint of a host: the live log from its first record
    /// (unless another forwarder made one meanwhile), locked.
    pub(super) async fn start_checkpoint(
        tx: &Transaction<'_>,
        host: &str,
        live: &str,
    ) -> Result<(String, u64), Failed> {
        tx.execute(
            "INSERT INTO joblog_checkpoints (host_id, log_id, next_seq) \
             VALUES ($1, $2::text::uuid, 0) ON CONFLICT (host_id) DO NOTHING",
            &[&host, &live],
        )
        .await
        .map_err(db)?;
        Self::checkpoint(tx, host)
            .await?
            .ok_or_else(|| Failed::Database("the checkpoint row vanished".into()))
    }

    pub(super) async fn move_checkpoint(
        tx: &Transaction<'_>,
        host: &str,
        log_id: &str,
        next_seq: u64,
    ) -> Result<(), Failed> {
        tx.execute(
            "UPDATE joblog_checkpoints SET log_id = $2::text::uuid, next_seq = $3, \
             updated_at = now() WHERE host_id = $1",
            &[&host, &log_id, &(next_seq as i64)],
        )
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Inserts a batch in one statement; returns how many rows were new.
    pub(super) async fn insert(
        tx: &Transaction<'_>,
        host: &str,
        log_id: &str,
        rows: &Rows,
    ) -> Result<u64, Failed> {
        tx.execute(
            "INSERT INTO joblog_records (host_id, log_id, seq, record_id, logged_at_utc, record) \
             SELECT $1, $2::text::uuid, u.seq, u.record_id, u.at::timestamptz, u.record::jsonb \
             FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[]) \
                  AS u(seq, record_id, at, record) \
             ON CONFLICT DO NOTHING",
            &[
                &host,
                &log_id,
                &rows.seq,
                &rows.record_id,
                &rows.logged_at_utc,
                &rows.record,
            ],
        )
        .await
        .map_err(db)
    }

    /// Inserts a batch that PostgreSQL refused as a whole for a value it
    /// cannot store: row by row, each in a savepoint, and a row that is
    /// refused again is stored as `{"joblogd_unstorable": <its JSON
    /// text>, "reason": <PostgreSQL's message>}` at its place, so no
    /// position is left empty and the forwarder goes on. Returns the rows
    /// stored.
    pub(super) async fn insert_each(
        tx: &mut Transaction<'_>,
        host: &str,
        log_id: &str,
        rows: &Rows,
    ) -> Result<u64, Failed> {
        let mut stored = 0;
        for i in 0..rows.seq.len() {
            let one = rows.one(i);
            let sp = tx.savepoint("joblog_row").await.map_err(db)?;
            match Self::insert(&sp, host, log_id, &one).await {
                Ok(n) => {
                    sp.commit().await.map_err(db)?;
                    stored += n;
                }
                Err(Failed::Data(reason)) => {
                    sp.rollback().await.map_err(db)?;
                    eprintln!(
                        "joblogctl forward: record {} of log {log_id} cannot be stored as jsonb \
                         ({reason}); stored as its text under \"joblogd_unstorable\"",
                        one.seq[0]
                    );
                    stored += tx
                        .execute(
                            "INSERT INTO joblog_records \
                             (host_id, log_id, seq, record_id, logged_at_utc, record) \
                             VALUES ($1, $2::text::uuid, $3, NULL, NULL, \
                             jsonb_build_object('joblogd_unstorable', $4::text, 'reason', $5::text)) \
                             ON CONFLICT DO NOTHING",
                            &[&host, &log_id, &one.seq[0], &one.record[0], &reason],
                        )
                        .await
                        .map_err(db)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(stored)
    }
}

/// A batch as columns, for one `unnest` insert.
#[derive(Default)]
pub(super) struct Rows {
    seq: Vec<i64>,
    record_id: Vec<Option<String>>,
    logged_at_utc: Vec<Option<String>>,
    record: Vec<String>,
}

/// The two fields the central table keeps apart from the record.
#[derive(serde::Deserialize)]
struct Keys {
    #[serde(default)]
    logged_at: Option<serde_json::Value>,
    #[serde(default)]
    record_id: Option<serde_json::Value>,
}

impl Rows {
    /// Row `i` alone.
    fn one(&self, i: usize) -> Rows {
        Rows {
            seq: vec![self.seq[i]],
            record_id: vec![self.record_id[i].clone()],
            logged_at_utc: vec![self.logged_at_utc[i].clone()],
            record: vec![self.record[i].clone()],
        }
    }

    pub(super) fn of(records: &[Positioned]) -> Rows {
        let mut rows = Rows::default();
        for p in records {
            let text = p.record.get();
            let keys: Option<Keys> = serde_json::from_str(text).ok();
            let (logged_at, record_id) = keys.map_or((None, None), |k| (k.logged_at, k.record_id));
            rows.seq.push(p.seq as i64);
            // A text column cannot hold NUL either.
            rows.record_id
                .push(record_id.and_then(|v| v.as_str().map(|s| s.replace('\0', "\u{fffd}"))));
            rows.logged_at_utc.push(
                logged_at
                    .as_ref()
                    .and_then(serde_json::Value::as_str)
                    .and_then(super::utc::to_utc),
            );
            rows.record.push(for_jsonb(text));
        }
        rows
    }
}

/// jsonb cannot hold U+0000, nor a lone surrogate (`\ud800` without its
/// pair, which Python writes for a file name that is not UTF-8): each
/// becomes `\ufffd`, the only change made to a record's values on its way
/// to the central store (a value that still cannot be stored is handled by
/// `Central::insert_each`).
fn for_jsonb(json: &str) -> String {
    if !json.contains("\\u") {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i..];
        let unit = |s: &str| {
            s.strip_prefix("\\u")
                .and_then(|h| h.get(..4))
                .and_then(|h| u16::from_str_radix(h, 16).ok())
        };
        match unit(esc) {
            Some(0) => {
                out.push_str("\\ufffd");
                rest = &esc[6..];
            }
            Some(0xD800..=0xDBFF) if matches!(unit(&esc[6..]), Some(0xDC00..=0xDFFF)) => {
                out.push_str(&esc[..12]);
                rest = &esc[12..];
            }
            Some(0xD800..=0xDFFF) => {
                out.push_str("\\ufffd");
                rest = &esc[6..];
            }
            _ => {
                // Any other escape, including `\\`, is kept whole.
                let n = esc.chars().nth(1).map_or(1, |c| 1 + c.len_utf8());
                out.push_str(&esc[..n]);
                rest = &esc[n..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_lone_surrogates_are_replaced_and_nothing_else() {
        let cases = [
            (r#"{"a":"x\u0000y"}"#, r#"{"a":"x\ufffdy"}"#),
            (r#"{"a":"\\u0000"}"#, r#"{"a":"\\u0000"}"#),
            (r#"{"a":"\\\u0000\n"}"#, r#"{"a":"\\\ufffd\n"}"#),
            (r#"{"a":"é"}"#, r#"{"a":"é"}"#),
            (r#"{"a":"caf\udce9"}"#, r#"{"a":"caf\ufffd"}"#),
            (r#"{"a":"\ud83d\ude00"}"#, r#"{"a":"\ud83d\ude00"}"#),
            (r#"{"a":"\ud83d"}"#, r#"{"a":"\ufffd"}"#),
            (r#"{"a":"\u00e9"}"#, r#"{"a":"\u00e9"}"#),
        ];
        for (given, stored) in cases {
            assert_eq!(for_jsonb(given), stored, "{given}");
        }
    }
}
