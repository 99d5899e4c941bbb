//! Integration tests: each starts the real `joblogd` binary on a socket in
//! a fresh temp dir and checks what a client sees and what lands on disk.

// Fixtures: temp dirs, the daemon process, line clients, python3 helpers.
mod util;

// The wire protocol: records, requests, replies, bad input.
mod ingest;

// The data file: Python byte-compatibility, takeover, recovery.
mod file;

// Process life: many writers, shutdown, locks, the socket file.
mod lifecycle;

// The socat examples of protocol.md and README.md, run verbatim.
mod docs;

// Queries and statistics against a python3 reference implementation.
mod query;

// Running as a service: systemd units, activation, notify, signals.
mod service;

// The Python client's unittest suite against the real daemon.
mod python;

// joblogctl, the command for humans.
mod ctl;

// joblogctl report --html: its figures against stats, escaping, Chromium.
mod report;

// SIGKILL and torn-tail trials (the joblogd-torture harness).
mod crash;

// Power-cut states of real batches (the joblogd-powercut harness).
mod powercut;

// Disk faults: ENOSPC, torn writes, failed fsync, a real full tmpfs.
mod faults;

// The commit sidecar: what a start after a crash, a clean stop or a rotation keeps.
mod commits;

// The bad-input corpus (tests/fixtures/bad_input): each case, then a good record.
mod bad_input;

// Access: socket directory, peer credentials, stamping, admins.
mod access;

// Readers during ingest; snapshots.
mod readers;

// `read`: durable records by position, for a forwarder.
mod read;

// Load with misbehaving clients.
mod load;

// The fuzz target's minimized corpus through its oracle (stable, in CI).
mod fuzz_corpus;

// Installing for operators: what `cargo install` puts in place.
mod install;

// The shipped setup's promises to root, a worker and an outsider (setup, systemd_boot).
mod shipped;

// The shipped unit's setup as real users: the daemon's, a worker's, an outsider's.
mod setup;

// Migrating: an old in-process logger writing the same file.
mod migration;

// The shipped units booted for real: systemd as PID 1 in private namespaces.
mod systemd_boot;

// The central store: `joblogctl forward` into a real PostgreSQL.
mod central;

// `record_id`: a record sent again is not written twice.
mod dedup;

// Prometheus metrics: the `metrics` op, joblogctl metrics, --metrics-textfile, promtool.
mod metrics;

// Retention: rotation at a size, archives removed by count, bytes and age, consumers.
mod retention;
