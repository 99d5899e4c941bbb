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

-- For SQL users: the answers `joblogctl --database` gives, as views. The
-- rules are the Python logger's (and the daemon's): a value counts as a
-- success when Python would call it true; an error's type is the text
-- before its first ':'; a video is a retry candidate when its newest
-- record (by logged_at_utc, across hosts) failed and does not say
-- "is_retryable": false.
CREATE OR REPLACE FUNCTION joblog_truthy(v jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'boolean' THEN v::text::boolean
        WHEN 'number' THEN v::text::numeric <> 0
        WHEN 'string' THEN v #>> '{}' <> ''
        WHEN 'array' THEN jsonb_array_length(v) > 0
        WHEN 'object' THEN v <> '{}'::jsonb
        ELSE false
    END
$$;

CREATE OR REPLACE FUNCTION joblog_error_type(v jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN v IS NULL OR jsonb_typeof(v) = 'null' THEN 'Unknown error'
        WHEN jsonb_typeof(v) = 'string' THEN split_part(v #>> '{}', ':', 1)
        ELSE v::text
    END
$$;

CREATE OR REPLACE VIEW joblog_stats_by_host AS
    SELECT host_id,
           count(*) AS total_jobs,
           count(*) FILTER (WHERE joblog_truthy(record->'success')) AS successful,
           count(*) FILTER (WHERE NOT joblog_truthy(record->'success')) AS failed,
           min(logged_at_utc) AS first_logged_at_utc,
           max(logged_at_utc) AS last_logged_at_utc
    FROM joblog_records GROUP BY host_id;

CREATE OR REPLACE VIEW joblog_error_types AS
    SELECT joblog_error_type(record->'error') AS error_type, count(*) AS count
    FROM joblog_records WHERE NOT joblog_truthy(record->'success')
    GROUP BY 1;

CREATE OR REPLACE VIEW joblog_latest_per_video AS
    SELECT DISTINCT ON (record->>'video_id') *
    FROM joblog_records WHERE record ? 'video_id'
    ORDER BY record->>'video_id', logged_at_utc DESC NULLS LAST, host_id DESC, log_id DESC, seq DESC;

CREATE OR REPLACE VIEW joblog_retry_candidates AS
    SELECT host_id, record->>'video_id' AS video_id, record->>'url' AS url,
           record->>'stage' AS stage, record->'error' AS error, logged_at_utc
    FROM joblog_latest_per_video
    WHERE NOT joblog_truthy(record->'success')
      AND record->'is_retryable' IS DISTINCT FROM 'false'::jsonb;
