-- What the checkers need besides the raw results: the URLs and the state
-- each settled on, per-URL rollups that make uptime and latency cheap to
-- read, and the history that stateful plugins keep.
-- +goose Up

-- Every URL webmon has checked. state is the last state a checker settled
-- on; state_scheduled_at is the scheduledAt of the check that settled it,
-- so that an older result never overrides a newer one.
CREATE TABLE urls (
    url_id             bigint      PRIMARY KEY,
    website_uid        uuid        NOT NULL,
    namespace          text        NOT NULL,
    name               text        NOT NULL,
    url                text        NOT NULL,
    state              text        NOT NULL DEFAULT 'Pending' CHECK (state IN ('Pending', 'Up', 'Down')),
    state_since        timestamptz,
    state_scheduled_at timestamptz,
    first_seen         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX urls_website ON urls (website_uid);
CREATE INDEX urls_name ON urls (namespace, name);

-- Results stored but not yet counted in the rollups: appended in the same
-- transaction as the results (only those actually inserted, so a
-- redelivery is never counted twice) and emptied by the rollup job. No
-- index, so appending costs little.
CREATE TABLE rollup_pending (
    website_uid  uuid        NOT NULL,
    url_id       bigint      NOT NULL,
    scheduled_at timestamptz NOT NULL,
    outcome      text        NOT NULL,
    total_us     integer
);

-- Per-URL rollups per minute and per hour (UTC), partitioned by day like
-- check_results. checks counts up and down results; missed ones are apart.
-- latency_le[i] counts the checks whose latency was at most the i-th bound
-- of the store's LatencyBounds (cumulative, as Prometheus buckets).
CREATE TABLE rollups_minute (
    website_uid    uuid        NOT NULL,
    bucket         timestamptz NOT NULL,
    url_id         bigint      NOT NULL,
    checks         integer     NOT NULL,
    up             integer     NOT NULL,
    missed         integer     NOT NULL,
    latency_count  integer     NOT NULL,
    latency_sum_us bigint      NOT NULL,
    latency_le     integer[]   NOT NULL,
    PRIMARY KEY (website_uid, bucket, url_id)
) PARTITION BY RANGE (bucket);
CREATE TABLE rollups_minute_default PARTITION OF rollups_minute DEFAULT;

CREATE TABLE rollups_hour (LIKE rollups_minute INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    PRIMARY KEY (website_uid, bucket, url_id)
) PARTITION BY RANGE (bucket);
CREATE TABLE rollups_hour_default PARTITION OF rollups_hour DEFAULT;

-- webmon_add_counts adds two latency_le arrays element by element.
-- +goose StatementBegin
CREATE FUNCTION webmon_add_counts(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a ELSE
        (SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i) FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i))
    END
$$;
-- +goose StatementEnd
CREATE AGGREGATE webmon_sum_counts(integer[]) (SFUNC = webmon_add_counts, STYPE = integer[]);

-- The history a stateful plugin (html-stats) keeps per URL.
-- scheduled_at is that of the newest check counted in it.
CREATE TABLE plugin_state (
    url_id       bigint      NOT NULL,
    plugin       text        NOT NULL,
    state        jsonb       NOT NULL,
    scheduled_at timestamptz NOT NULL,
    PRIMARY KEY (url_id, plugin)
);

-- +goose Down
DROP TABLE plugin_state;
DROP AGGREGATE webmon_sum_counts(integer[]);
DROP FUNCTION webmon_add_counts(integer[], integer[]);
DROP TABLE rollups_hour;
DROP TABLE rollups_minute;
DROP TABLE rollup_pending;
DROP TABLE urls;
