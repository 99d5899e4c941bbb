-- joblogd's central store: every host's records, each once.
-- Created by `joblogctl forward --database URL --init` (this very text);
-- safe to run again: it only creates what is missing.

-- One row per record of each host's logs. (host_id, log_id, seq) is the
-- record's place on its host: the log it was written to (a random id that
-- a cleared or rotated log keeps in its archive) and its 0-based position
-- there. The forwarder inserts rows and moves its checkpoint in one
-- transaction, so each place is filled once, in order, with no gaps.
CREATE TABLE IF NOT EXISTS joblog_records (
    host_id       text        NOT NULL,
    log_id        uuid        NOT NULL,
    seq           bigint      NOT NULL CHECK (seq >= 0),
    -- The client's id for the record (the Python client's UUIDv7
    -- `record_id` field), when it has one: a record resent after a lost
    -- acknowledgement is stored once, across hosts too.
    record_id     text,
    -- `logged_at` (the host's local time, without an offset) converted
    -- to UTC with the host's time zone when the record was forwarded;
    -- NULL when the record has no `logged_at` that reads as a time.
    logged_at_utc timestamptz,
    -- The record as logged. jsonb keeps its values, not its key order or
    -- number text; a NUL character (which jsonb cannot hold) is stored as
    -- U+FFFD.
    record        jsonb       NOT NULL,
    forwarded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host_id, log_id, seq)
);

CREATE UNIQUE INDEX IF NOT EXISTS joblog_records_record_id
    ON joblog_records (record_id) WHERE record_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS joblog_records_logged_at
    ON joblog_records (logged_at_utc);
CREATE INDEX IF NOT EXISTS joblog_records_video
    ON joblog_records ((record->>'video_id'), logged_at_utc);

-- Where each host's forwarder is: the next record to send is seq
-- `next_seq` of log `log_id`. Moved in the transaction that stores the
-- records before it; its row is locked (SELECT ... FOR UPDATE) while a
-- forwarder works, so two forwarders of one host take turns.
CREATE TABLE IF NOT EXISTS joblog_checkpoints (
    host_id    text        PRIMARY KEY,
    log_id     uuid        NOT NULL,
    next_seq   bigint      NOT NULL CHECK (next_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
