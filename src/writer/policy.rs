//! The flush policy: when the batch the writer gathers is written. A pure
//! function of the batch, the limits and the clock ([`Policy::decide`]),
//! so that it is tested on its own, and the writer's loop only does what
//! it says (start a write, or sleep until the instant it names).
//!
//! The clock is a parameter (`now`), so the tests say what time it is and
//! need no real waiting and no paused runtime clock (tokio's `test-util`
//! would, as a dev-dependency, also be compiled into the examples' build
//! of the daemon, and it slows every `Instant::now` there).
//!
//! A batch is written when the first of these comes: a client waits for it
//! (an `ack`, a `flush`, a query that needs durable records), it holds
//! `--batch-max-records` records or `--batch-max-bytes` bytes, its first
//! record is `--flush-interval-ms` old, or the writer is closing. Never
//! while a write is in flight (one at a time, in order), and not before
//! the backoff after a failed write has passed.

use std::time::{Duration, Instant};

/// The limits a batch is written at (from the options).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub flush_interval: Duration,
    pub max_records: u64,
    pub max_bytes: usize,
}

/// What the policy looks at of the batch being gathered.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Gathered {
    pub(super) records: u64,
    pub(super) bytes: usize,
    /// A client waits for these records to be durable.
    pub(super) waited_for: bool,
    /// When its first record arrived.
    pub(super) since: Option<Instant>,
}

/// What the writer is doing besides gathering.
#[derive(Debug, Clone, Copy)]
pub(super) struct Writing {
    /// A write is in flight.
    pub(super) in_flight: bool,
    /// A failed write is backing off until then.
    pub(super) retry_at: Option<Instant>,
    /// The writer is closing: everything gathered goes now.
    pub(super) closing: bool,
}

/// What to do about the batch now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing to write, or a write in flight: wait for something else.
    Wait,
    /// Write the batch now.
    Write,
    /// Nothing is due before this instant; wake then.
    WakeAt(Instant),
}

impl Policy {
    pub(super) fn decide(&self, batch: &Gathered, writing: &Writing, now: Instant) -> Decision {
        if writing.in_flight || batch.records == 0 {
            return Decision::Wait;
        }
        if let Some(t) = writing.retry_at
            && now < t
        {
            return Decision::WakeAt(t);
        }
        let deadline = batch.since.map(|s| s + self.flush_interval);
        let due = writing.closing
            || batch.waited_for
            || batch.records >= self.max_records
            || batch.bytes >= self.max_bytes
            || deadline.is_some_and(|d| now >= d);
        match deadline {
            _ if due => Decision::Write,
            Some(d) => Decision::WakeAt(d),
            None => Decision::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        flush_interval: Duration::from_millis(10),
        max_records: 100,
        max_bytes: 1 << 20,
    };

    const IDLE: Writing = Writing {
        in_flight: false,
        retry_at: None,
        closing: false,
    };

    fn gathered(records: u64, since: Instant) -> Gathered {
        Gathered {
            records,
            bytes: 100 * records as usize,
            waited_for: false,
            since: Some(since),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The tests' clock: it moves only when told to.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Clock {
            Clock(Instant::now())
        }
        fn now(&self) -> Instant {
            self.0
        }
        fn advance(&mut self, by: Duration) {
            self.0 += by;
        }
    }

    /// A batch waits for its interval from its first record, then goes.
    #[test]
    fn a_batch_goes_when_its_first_record_is_an_interval_old() {
        let mut clock = Clock::new();
        let t0 = clock.now();
        let b = gathered(1, t0);
        assert_eq!(POLICY.decide(&b, &IDLE, t0), Decision::WakeAt(t0 + ms(10)));
        clock.advance(ms(9));
        let now = clock.now();
        assert_eq!(POLICY.decide(&b, &IDLE, now), Decision::WakeAt(t0 + ms(10)));
        clock.advance(ms(1));
        assert_eq!(POLICY.decide(&b, &IDLE, clock.now()), Decision::Write);
        // Records arriving later do not postpone it.
        let b = gathered(50, t0);
        assert_eq!(POLICY.decide(&b, &IDLE, clock.now()), Decision::Write);
    }

    /// A full batch, or one a client waits for, goes at once.
    #[test]
    fn a_full_or_awaited_batch_goes_at_once() {
        let clock = Clock::new();
        let t0 = clock.now();
        assert_eq!(
            POLICY.decide(&gathered(100, t0), &IDLE, t0),
            Decision::Write
        );
        assert_eq!(
            POLICY.decide(&gathered(99, t0), &IDLE, t0),
            Decision::WakeAt(t0 + ms(10))
        );
        let big = Gathered {
            bytes: 1 << 20,
            ..gathered(1, t0)
        };
        assert_eq!(POLICY.decide(&big, &IDLE, t0), Decision::Write);
        let awaited = Gathered {
            waited_for: true,
            ..gathered(1, t0)
        };
        assert_eq!(POLICY.decide(&awaited, &IDLE, t0), Decision::Write);
        let closing = Writing {
            closing: true,
            ..IDLE
        };
        assert_eq!(
            POLICY.decide(&gathered(1, t0), &closing, t0),
            Decision::Write
        );
    }

    /// One write at a time: nothing starts while one is in flight, however
    /// due; an empty batch never starts one.
    #[test]
    fn nothing_starts_while_a_write_is_in_flight_or_nothing_is_gathered() {
        let mut clock = Clock::new();
        let t0 = clock.now();
        let busy = Writing {
            in_flight: true,
            closing: true,
            ..IDLE
        };
        clock.advance(ms(50));
        assert_eq!(
            POLICY.decide(&gathered(500, t0), &busy, clock.now()),
            Decision::Wait
        );
        let empty = Gathered {
            waited_for: true,
            ..Gathered::default()
        };
        let closing = Writing {
            closing: true,
            ..IDLE
        };
        assert_eq!(POLICY.decide(&empty, &closing, clock.now()), Decision::Wait);
    }

    /// After a failed write the batch waits out the backoff, even when a
    /// client waits for it or the writer is closing, then goes.
    #[test]
    fn a_failed_write_is_retried_only_after_its_backoff() {
        let mut clock = Clock::new();
        let t0 = clock.now();
        let backing_off = Writing {
            retry_at: Some(t0 + ms(50)),
            closing: true,
            ..IDLE
        };
        let awaited = Gathered {
            waited_for: true,
            ..gathered(100, t0)
        };
        assert_eq!(
            POLICY.decide(&awaited, &backing_off, t0),
            Decision::WakeAt(t0 + ms(50))
        );
        clock.advance(ms(49));
        assert_eq!(
            POLICY.decide(&awaited, &backing_off, clock.now()),
            Decision::WakeAt(t0 + ms(50))
        );
        clock.advance(ms(1));
        assert_eq!(
            POLICY.decide(&awaited, &backing_off, clock.now()),
            Decision::Write
        );
    }
}
