-- Every check's result, partitioned by day of scheduledAt so that
-- retention is dropping a partition, never a DELETE.
-- +goose Up
CREATE TABLE check_results (
    -- url_id is a hash of the Website's UID and the URL: with scheduled_at
    -- it identifies a check, so a redelivered task is stored once.
    url_id          bigint      NOT NULL,
    scheduled_at    timestamptz NOT NULL,
    website_uid     uuid        NOT NULL,
    namespace       text        NOT NULL,
    name            text        NOT NULL,
    url             text        NOT NULL,
    url_index       smallint    NOT NULL,
    trigger         smallint    NOT NULL DEFAULT 0,
    checked_at      timestamptz NOT NULL,
    -- up, down, or missed (the task reached a checker after its deadline)
    outcome         text        NOT NULL CHECK (outcome IN ('up', 'down', 'missed')),
    error_class     text,
    error_message   text,
    status_code     smallint,
    -- phase timings in microseconds; null when the phase did not happen
    dns_us          integer,
    connect_us      integer,
    tls_us          integer,
    ttfb_us         integer,
    total_us        integer,
    body_bytes      integer,
    plugins         jsonb,
    PRIMARY KEY (url_id, scheduled_at)
) PARTITION BY RANGE (scheduled_at);

-- Results too old or too new for the daily partitions land here rather
-- than being refused.
CREATE TABLE check_results_default PARTITION OF check_results DEFAULT;

CREATE INDEX check_results_website ON check_results (website_uid, scheduled_at);

-- +goose Down
DROP TABLE check_results;
