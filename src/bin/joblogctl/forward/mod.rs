//! `joblogctl forward`: ships every durable record of this host's logs to
//! a central PostgreSQL, exactly once.
//!
//! The forwarder is a client of the daemon like any other (`read`, by
//! position) and of the database (tokio-postgres). Each turn is one
//! database transaction:
//!
//! 1. lock this host's checkpoint row (`SELECT … FOR UPDATE`: a second
//!    forwarder of the same host waits here, so two take turns and never
//!    send the same records);
//! 2. `read` from the daemon the records from the checkpoint on;
//! 3. insert them (one statement for the batch) and move the checkpoint
//!    past them;
//! 4. commit.
//!
//! A crash anywhere before the commit leaves both the rows and the
//! checkpoint as they were, and the next turn sends the same records
//! again; a crash after it sends the next ones. Rows are inserted with `ON
//! CONFLICT DO NOTHING`, so a checkpoint set back by hand, or a record
//! resent under the same `record_id`, is stored once all the same.
//!
//! The daemon never waits for the forwarder: it only answers `read`s of
//! what is already durable. When the database is down or unreachable the
//! forwarder retries with backoff (0.5 s doubling to 30 s) and the
//! records wait in the log; when the live log is cleared or rotated while
//! the forwarder is behind, it finishes the archive (the daemon serves
//! it by its `log_id`) and goes on with the log that followed it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::*;

mod central;
mod utc;

use central::Central;
use tokio_postgres::Transaction;

/// The central schema: `--init` runs it; also shipped as `sql/central.sql`.
pub(super) const SCHEMA: &str = include_str!("../../../../sql/central.sql");

#[derive(Debug, clap::Args)]
pub(super) struct ForwardArgs {
    /// Create the central tables (sql/central.sql) if they are missing,
    /// then exit.
    #[arg(long)]
    init: bool,
    /// This host's name in the central store [default: the host name].
    #[arg(long, value_name = "NAME")]
    host_id: Option<String>,
    /// The name this forwarder reports its position under, so that the
    /// daemon's retention keeps what it has not shipped; give each
    /// forwarder of one host to another database a name of its own
    /// [default: forward:<host id>].
    #[arg(long, value_name = "NAME")]
    consumer: Option<String>,
    /// Records per transaction (and per `read`).
    #[arg(long, default_value_t = 2000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// How long to wait before asking again when the forwarder has caught
    /// up with the log.
    #[arg(long, default_value_t = 250, value_name = "MS")]
    poll_interval_ms: u64,
    /// Forward what is durable now, then exit (for a one-off drain); the
    /// first failure ends it (exit 1) instead of being retried.
    #[arg(long)]
    once: bool,
    /// How long connecting, or one batch's transaction, may take before
    /// the connection is given up and made again (a network partition
    /// otherwise holds a connection for TCP's own timeout, many minutes).
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    db_timeout: u64,
    /// Where a host forwarded for the first time starts: `oldest`, the
    /// first of the archives beside the log (its whole history), or
    /// `live`, the live log's first record.
    #[arg(long, value_enum, default_value_t = StartAt::Oldest)]
    start_at: StartAt,
    /// Test seam: abort after inserting the Nth batch, before its commit.
    #[arg(long, hide = true, value_name = "N")]
    fault_abort_before_commit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum StartAt {
    Oldest,
    Live,
}

/// Runs the forwarder (or, with `--init`, creates the schema).
pub(super) fn forward(socket: &Socket, database: Option<&str>, a: ForwardArgs) -> Result<(), Fail> {
    let Some(url) = database else {
        return Err(Fail(
            2,
            "joblogctl forward: give the central database with --database URL (or JOBLOGD_DATABASE)"
                .into(),
        ));
    };
    let mut target = crate::pg::target(url)?;
    let limit = Duration::from_secs(a.db_timeout);
    target.bound(limit);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    if a.init {
        return rt.block_on(async {
            let c = Central::connect(&target).await.map_err(|e| Fail(1, e))?;
            c.init().await.map_err(|e| Fail(1, e))?;
            println!("joblogctl forward: the central tables are in place");
            Ok(())
        });
    }
    let host = match a.host_id.clone() {
        Some(h) if !h.is_empty() => h,
        Some(_) => return Err(Fail(2, "joblogctl forward: --host-id is empty".into())),
        None => host_name()?,
    };
    let consumer = a
        .consumer
        .clone()
        .unwrap_or_else(|| format!("forward:{host}"));
    let mut f = Forwarder {
        socket,
        daemon: None,
        consumer,
        host,
        batch: a.batch as usize,
        batches: 0,
        abort_at: a.fault_abort_before_commit,
        limit,
        start_at: a.start_at,
        prefetched: None,
        row_by_row: false,
        reported: None,
        reports: true,
    };
    rt.block_on(f.run(&target, Duration::from_millis(a.poll_interval_ms), a.once))
}

/// The host's name, the default `--host-id`.
fn host_name() -> Result<String, Fail> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => Ok(h.to_string()),
        _ => Err(Fail(
            2,
            "joblogctl forward: cannot tell this host's name; give --host-id".into(),
        )),
    }
}

/// Waits between attempts after a failure: 0.5 s, doubling to 30 s.
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MOST: Duration = Duration::from_secs(30);

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::MOST);
    }
}

/// What one turn did.
enum Turn {
    /// Records stored (or the checkpoint moved on to the next log).
    Moved,
    /// Nothing new: caught up with the live log.
    CaughtUp,
}

/// Why a turn failed, which decides what is retried.
enum Failed {
    /// The database: reconnect.
    Database(String),
    /// The daemon: connect again.
    Daemon(String),
    /// Nothing to retry (the schema is missing).
    Fatal(String),
    /// A value in the batch the database cannot store: the batch goes
    /// again, row by row (`Central::insert_each`).
    Data(String),
}

struct Forwarder<'s> {
    socket: &'s Socket,
    daemon: Option<Conn>,
    /// The name its position is reported under (`consumer`).
    consumer: String,
    host: String,
    batch: usize,
    /// Batches inserted, for the fault seam.
    batches: u64,
    abort_at: Option<u64>,
    /// `--db-timeout`: the most one turn may take.
    limit: Duration,
    start_at: StartAt,
    /// The next batch, read (and made into rows) while the database
    /// stored the one before.
    prefetched: Option<Batch>,
    /// The last batch was refused for a value in it: store the next one
    /// row by row.
    row_by_row: bool,
    /// The position last told to the daemon (`consumer`), and whether the
    /// daemon takes it (one from before retention does not).
    reported: Option<(String, u64)>,
    reports: bool,
}

/// A batch read from the daemon: from where, the reply, and its records
/// as rows for the insert.
struct Batch {
    log_id: String,
    from: u64,
    reply: ReadReply,
    rows: central::Rows,
}

/// A `read` reply.
#[derive(Deserialize)]
struct ReadReply {
    ok: bool,
    log_id: Option<String>,
    archive: Option<String>,
    next_log_id: Option<String>,
    next_seq: Option<u64>,
    durable: Option<u64>,
    #[serde(default)]
    records: Vec<Positioned>,
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct Positioned {
    seq: u64,
    record: Box<RawValue>,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl Forwarder<'_> {
    async fn run(
        &mut self,
        target: &crate::pg::Target,
        poll: Duration,
        once: bool,
    ) -> Result<(), Fail> {
        let mut backoff = Backoff(Backoff::FIRST);
        let mut central: Option<Central> = None;
        loop {
            let c = match central.as_mut() {
                Some(c) => c,
                None => match Central::connect(target).await {
                    Ok(c) => {
                        eprintln!("joblogctl forward: connected to the central database");
                        central.insert(c)
                    }
                    Err(e) if once => return Err(Fail(1, format!("joblogctl forward: {e}"))),
                    Err(e) => {
                        eprintln!("joblogctl forward: {e}; retrying");
                        backoff.wait().await;
                        continue;
                    }
                },
            };
            let limit = self.limit;
            let turn = match tokio::time::timeout(limit, self.turn(c)).await {
                Ok(t) => t,
                Err(_) => Err(Failed::Database(format!(
                    "no answer within {} s (--db-timeout)",
                    limit.as_secs()
                ))),
            };
            match turn {
                Ok(Turn::Moved) => backoff = Backoff(Backoff::FIRST),
                Ok(Turn::CaughtUp) if once => return Ok(()),
                Ok(Turn::CaughtUp) => {
                    backoff = Backoff(Backoff::FIRST);
                    tokio::time::sleep(poll).await;
                }
                Err(Failed::Fatal(e)) => return Err(Fail(1, format!("joblogctl forward: {e}"))),
                Err(Failed::Data(e)) => {
                    eprintln!(
                        "joblogctl forward: the central database refused a value in the batch \
                         ({e}); storing it again row by row"
                    );
                    self.row_by_row = true;
                }
                // A one-off drain stops at the first failure: what was
                // committed stays, and running it again goes on from there.
                Err(Failed::Database(e) | Failed::Daemon(e)) if once => {
                    return Err(Fail(1, format!("joblogctl forward: {e}")));
                }
                Err(Failed::Database(e)) => {
                    eprintln!("joblogctl forward: the central database: {e}; reconnecting");
                    central = None;
                    backoff.wait().await;
                }
                Err(Failed::Daemon(e)) => {
                    eprintln!("joblogctl forward: the daemon: {e}; retrying");
                    self.daemon = None;
                    backoff.wait().await;
                }
            }
        }
    }

    /// One transaction: lock the checkpoint, read from it, store, move it.
    async fn turn(&mut self, c: &mut Central) -> Result<Turn, Failed> {
        let tx = c.begin().await?;
        let (log_id, from) = match Central::checkpoint(&tx, &self.host).await? {
            Some(at) => at,
            None => {
                let first = match self.start_at {
                    StartAt::Oldest => self.logs()?.swap_remove(0),
                    StartAt::Live => self.live_log_id()?,
                };
                Central::start_checkpoint(&tx, &self.host, &first).await?
            }
        };
        self.report(&log_id, from)?;
        // What was read ahead, if it is still where the checkpoint is
        // (another forwarder of the host may have moved it meanwhile).
        let batch = match self.prefetched.take() {
            Some(b) if b.log_id == log_id && b.from == from => b,
            _ => self.read(&log_id, from)?,
        };
        if !batch.reply.ok {
            return self.lost(tx, batch).await;
        }
        self.store(tx, batch).await
    }

    /// The checkpoint's log is neither live nor an archive beside it: the
    /// records from there on are gone from this host (moved away,
    /// removed, or cut underneath the daemon). Says so loudly, and goes
    /// on with the live log.
    async fn lost(&mut self, tx: Transaction<'_>, batch: Batch) -> Result<Turn, Failed> {
        let e = batch.reply.error.unwrap_or(ErrorBody {
            code: "unknown".into(),
            message: String::new(),
        });
        if e.code != "log_changed" {
            return Err(Failed::Daemon(format!("{}: {}", e.code, e.message)));
        }
        // The oldest log still there, not the live one: logs between the
        // lost one and the live one must not be skipped too (going over
        // one already stored stores nothing twice).
        let oldest = match self.logs()?.into_iter().next() {
            Some(l) => l,
            None => self.live_log_id()?,
        };
        eprintln!(
            "joblogctl forward: ERROR: log {} is neither live nor an archive beside it ({}); its \
             records from seq {} on cannot be forwarded. Going on with the oldest log still \
             there, {oldest}, from seq 0.",
            batch.log_id, e.message, batch.from
        );
        Central::move_checkpoint(&tx, &self.host, &oldest, 0).await?;
        tx.commit().await.map_err(central::db)?;
        Ok(Turn::Moved)
    }

    /// Stores a batch and moves the checkpoint past it (to the next log
    /// when it drained an archive), reading the next batch meanwhile.
    async fn store(&mut self, mut tx: Transaction<'_>, batch: Batch) -> Result<Turn, Failed> {
        let Batch {
            log_id,
            from,
            reply,
            rows,
        } = batch;
        let next = reply.next_seq.unwrap_or(from);
        let drained = reply.archive.is_some() && Some(next) == reply.durable;
        let n = reply.records.len();
        // A full batch: there is likely more. Read it while the database
        // works (the daemon's connection goes along and comes back).
        let ahead = (n == self.batch && !drained).then(|| self.read_ahead(&log_id, next));
        if n > 0 {
            let stored = if std::mem::take(&mut self.row_by_row) {
                Central::insert_each(&mut tx, &self.host, &log_id, &rows).await?
            } else {
                Central::insert(&tx, &self.host, &log_id, &rows).await?
            };
            if stored < n as u64 {
                eprintln!(
                    "joblogctl forward: {} of {n} records of log {log_id} were already stored \
                     (same place, or same record_id) and were not stored again",
                    n as u64 - stored
                );
            }
            self.batches += 1;
            if self.abort_at == Some(self.batches) {
                eprintln!("joblogctl forward: fault seam: aborting before the commit");
                std::process::abort();
            }
        }
        if drained {
            let successor = self.successor(&log_id, reply.next_log_id)?;
            eprintln!(
                "joblogctl forward: archive {} (log {log_id}) is forwarded; going on with log {successor}",
                reply.archive.as_deref().unwrap_or("")
            );
            Central::move_checkpoint(&tx, &self.host, &successor, 0).await?;
        } else if n > 0 {
            Central::move_checkpoint(&tx, &self.host, &log_id, next).await?;
        }
        tx.commit().await.map_err(central::db)?;
        if let Some(ahead) = ahead
            && let Ok(Some((conn, read))) = ahead.await
        {
            self.daemon = Some(conn);
            self.prefetched = read.ok();
        }
        Ok(if n > 0 || drained {
            Turn::Moved
        } else {
            Turn::CaughtUp
        })
    }

    /// Starts reading the batch at `from` of `log_id` on a blocking
    /// thread, with the daemon's connection (handed back with the batch).
    fn read_ahead(
        &mut self,
        log_id: &str,
        from: u64,
    ) -> tokio::task::JoinHandle<Option<(Conn, Result<Batch, Failed>)>> {
        let conn = self.daemon.take();
        let (log_id, limit) = (log_id.to_string(), self.batch);
        tokio::task::spawn_blocking(move || {
            let mut c = conn?;
            let read = read_batch(&mut c, &log_id, from, limit);
            Some((c, read))
        })
    }

    /// The log after the drained archive `log_id`: the one its sidecar
    /// names, else (an archive from before successors were recorded) the
    /// next in the daemon's order (`logs`).
    fn successor(&mut self, log_id: &str, named: Option<String>) -> Result<String, Failed> {
        if let Some(s) = named {
            return Ok(s);
        }
        let logs = self.logs()?;
        let at = logs.iter().position(|l| l == log_id);
        Ok(match at.and_then(|i| logs.get(i + 1)) {
            Some(next) => next.clone(),
            None => logs.last().cloned().unwrap_or_default(),
        })
    }

    fn daemon(&mut self) -> Result<&mut Conn, Failed> {
        if self.daemon.is_none() {
            let c = Conn::open(self.socket).map_err(|Fail(_, m)| Failed::Daemon(m))?;
            // A daemon that stops answering must not hold the turn (and
            // its row lock) past --db-timeout: the read gives up, and the
            // connection is made again.
            for s in [&c.w, c.r.get_ref()] {
                let _ = s.set_read_timeout(Some(self.limit));
                let _ = s.set_write_timeout(Some(self.limit));
            }
            self.daemon = Some(c);
        }
        self.daemon
            .as_mut()
            .ok_or_else(|| Failed::Daemon("not connected".into()))
    }

    /// Tells the daemon where this host's checkpoint is (committed in the
    /// central database, so every record before it is stored there): the
    /// daemon's retention never removes an archive a consumer has not
    /// drained. Named `forward:<host id>`; a daemon that does not know the
    /// request (no retention) is told once.
    fn report(&mut self, log_id: &str, next_seq: u64) -> Result<(), Failed> {
        let at = (log_id.to_owned(), next_seq);
        if !self.reports || self.reported.as_ref() == Some(&at) {
            return Ok(());
        }
        let q = json!({"op":"consumer","name":self.consumer,"log_id":log_id,"next_seq":next_seq});
        let c = self.daemon()?;
        match tokio::task::block_in_place(|| c.ask(q)) {
            Ok(_) => self.reported = Some(at),
            Err(Fail(_, m)) if m.contains("unknown_op") => {
                eprintln!(
                    "joblogctl forward: the daemon takes no consumer positions (an older joblogd); its retention cannot know what was forwarded"
                );
                self.reports = false;
            }
            // The daemon keeps the last position it took: on the safe
            // side (it keeps more). Forwarding goes on.
            Err(Fail(_, m)) => {
                eprintln!(
                    "joblogctl forward: the daemon did not take this forwarder's position ({m})"
                );
            }
        }
        Ok(())
    }

    /// The live log's id (`ping`).
    fn live_log_id(&mut self) -> Result<String, Failed> {
        let c = self.daemon()?;
        let v = tokio::task::block_in_place(|| c.ask(json!({"op":"ping"})))
            .map_err(|Fail(_, m)| Failed::Daemon(m))?;
        v["log_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failed::Daemon("ping gave no log_id".into()))
    }

    /// The logs the daemon can serve, oldest first, the live one last.
    fn logs(&mut self) -> Result<Vec<String>, Failed> {
        let c = self.daemon()?;
        let v = tokio::task::block_in_place(|| c.ask(json!({"op":"logs"})))
            .map_err(|Fail(_, m)| Failed::Daemon(m))?;
        let ids: Vec<String> = v["logs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["log_id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(Failed::Daemon("logs named no log".into()));
        }
        Ok(ids)
    }

    fn read(&mut self, log_id: &str, from: u64) -> Result<Batch, Failed> {
        let limit = self.batch;
        let c = self.daemon()?;
        tokio::task::block_in_place(|| read_batch(c, log_id, from, limit))
    }
}

/// Reads `limit` records of `log_id` from `from` on, and makes them rows.
fn read_batch(c: &mut Conn, log_id: &str, from: u64, limit: usize) -> Result<Batch, Failed> {
    c.send(&json!({"op":"read","log_id":log_id,"from_seq":from,"limit":limit}))
        .map_err(|Fail(_, m)| Failed::Daemon(m))?;
    let mut line = String::new();
    match c.r.read_line(&mut line) {
        Ok(0) => return Err(Failed::Daemon("it closed the connection".into())),
        Ok(_) => {}
        Err(e) => return Err(Failed::Daemon(e.to_string())),
    }
    let reply: ReadReply = serde_json::from_str(&line)
        .map_err(|e| Failed::Daemon(format!("a reply that does not parse: {e}")))?;
    if reply.ok && reply.log_id.as_deref() != Some(log_id) {
        return Err(Failed::Daemon(format!(
            "asked for log {log_id}, answered with log {:?}",
            reply.log_id
        )));
    }
    let rows = central::Rows::of(&reply.records);
    Ok(Batch {
        log_id: log_id.to_string(),
        from,
        reply,
        rows,
    })
}
