-- check_results is read by URL (its primary key, url_id and scheduled_at)
-- and never by Website: the (website_uid, scheduled_at) index cost a
-- second B-tree insert for every result stored. A Website's results are
-- found through urls (url_id by website_uid).
-- +goose Up
DROP INDEX check_results_website;

-- +goose Down
CREATE INDEX check_results_website ON check_results (website_uid, scheduled_at);
