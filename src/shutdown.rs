//! The daemon's stop, one type for every task that must know of it.
//!
//! Stopping goes in two steps (`server::serve` drives them): the stop
//! *begins* (the listener closes; each connection reads what its client had
//! already sent, answers it and closes), and if connections are still open
//! when the grace period (`--shutdown-timeout-ms`) has passed, the *last
//! call*: they stop waiting for the byte budget and for replies nobody
//! reads, and hand over the records they have read, so that those are
//! written (or reported given up) with the rest rather than lost with the
//! task. A connection's own timing (a client that reads no replies loses
//! them after half the grace period) counts from when the stop began,
//! which [`Shutdown::begun`] tells.

use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The side that stops: held by the accept loop.
#[derive(Debug)]
pub(crate) struct Stopper {
    begun: watch::Sender<Option<Instant>>,
    last_call: watch::Sender<bool>,
    grace: Duration,
}

/// The side that is told: one per task, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    begun: watch::Receiver<Option<Instant>>,
    last_call: watch::Receiver<bool>,
    grace: Duration,
}

impl Stopper {
    /// A stop not yet begun, whose connections get `grace` to finish.
    pub(crate) fn new(grace: Duration) -> Stopper {
        Stopper {
            begun: watch::channel(None).0,
            last_call: watch::channel(false).0,
            grace,
        }
    }

    /// What a task watches.
    pub(crate) fn watch(&self) -> Shutdown {
        Shutdown {
            begun: self.begun.subscribe(),
            last_call: self.last_call.subscribe(),
            grace: self.grace,
        }
    }

    /// The stop begins now (once: a second call changes nothing).
    pub(crate) fn begin(&self) {
        self.begun.send_if_modified(|at| {
            let first = at.is_none();
            at.get_or_insert_with(Instant::now);
            first
        });
    }

    /// The grace period has run out.
    pub(crate) fn last_call(&self) {
        self.last_call.send_replace(true);
    }
}

impl Shutdown {
    /// When the stop began, if it has.
    pub(crate) fn begun(&self) -> Option<Instant> {
        *self.begun.borrow()
    }

    /// Resolves once the stop has begun (at once if it has). A stopper
    /// that is gone counts as a stop.
    pub(crate) async fn wait_begun(&mut self) {
        let _ = self.begun.wait_for(Option::is_some).await;
    }

    /// Has the grace period run out?
    pub(crate) fn is_last_call(&self) -> bool {
        *self.last_call.borrow()
    }

    /// Resolves at the last call (at once if it came). A stopper that is
    /// gone counts as one.
    pub(crate) async fn wait_last_call(&mut self) {
        let _ = self.last_call.wait_for(|l| *l).await;
    }

    /// How long connections get to finish once the stop began.
    pub(crate) fn grace(&self) -> Duration {
        self.grace
    }
}
