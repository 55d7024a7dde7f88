-- Rate-limit token buckets (see `RateLimitStore`): one row per function or
-- key, updated in place (HOT-friendly: no index on the updated columns).
CREATE TABLE rate_buckets (
    bucket       text PRIMARY KEY,
    tokens       float8 NOT NULL,
    refreshed_at timestamptz NOT NULL
) WITH (fillfactor = 70);
