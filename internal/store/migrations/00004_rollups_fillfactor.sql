-- The rollups are updated in place by every rollup run: pages left 30%
-- free let PostgreSQL write a row's new version on its own page (a HOT
-- update, with no index entry to add). New daily partitions are created
-- so (partitionStorage); this sets the partitions that exist, for the
-- pages they fill from now on.
-- +goose Up
-- +goose StatementBegin
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i
        WHERE i.inhparent IN ('rollups_minute'::regclass, 'rollups_hour'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 70)', part);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT i.inhrelid::regclass FROM pg_inherits i
        WHERE i.inhparent IN ('rollups_minute'::regclass, 'rollups_hour'::regclass)
    LOOP
        EXECUTE format('ALTER TABLE %s RESET (fillfactor)', part);
    END LOOP;
END
$$;
-- +goose StatementEnd
