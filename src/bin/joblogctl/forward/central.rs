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
    pub(super) fn of(records: &[Positioned]) -> Rows {
        let mut rows = Rows::default();
        for p in records {
            let text = p.record.get();
            let keys: Option<Keys> = serde_json::from_str(text).ok();
            let (logged_at, record_id) = keys.map_or((None, None), |k| (k.logged_at, k.record_id));
            rows.seq.push(p.seq as i64);
            rows.record_id
                .push(record_id.and_then(|v| v.as_str().map(str::to_owned)));
            rows.logged_at_utc.push(
                logged_at
                    .as_ref()
                    .and_then(serde_json::Value::as_str)
                    .and_then(super::utc::to_utc),
            );
            rows.record.push(without_nul(text));
        }
        rows
    }
}

/// jsonb cannot hold U+0000: `\u0000` escapes become `\ufffd` (the only
/// change made to a record on its way to the central store).
fn without_nul(json: &str) -> String {
    if !json.contains("\\u0000") {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let esc = &rest[i..];
        if let Some(after) = esc.strip_prefix("\\u0000") {
            out.push_str("\\ufffd");
            rest = after;
        } else {
            // Any other escape, including `\\`, is kept whole.
            let n = esc.chars().nth(1).map_or(1, |c| 1 + c.len_utf8());
            out.push_str(&esc[..n]);
            rest = &esc[n..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_replaced_and_nothing_else() {
        assert_eq!(without_nul(r#"{"a":"x\u0000y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(without_nul(r#"{"a":"\\u0000"}"#), r#"{"a":"\\u0000"}"#);
        assert_eq!(
            without_nul(r#"{"a":"\\\u0000\n"}"#),
            r#"{"a":"\\\ufffd\n"}"#
        );
        assert_eq!(without_nul(r#"{"a":"é"}"#), r#"{"a":"é"}"#);
    }
}
