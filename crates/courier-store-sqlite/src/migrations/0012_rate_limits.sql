-- Rate-limit token buckets (see `RateLimitStore`): one row per function or key.
CREATE TABLE rate_buckets (
    bucket       TEXT PRIMARY KEY,
    tokens       REAL NOT NULL,
    refreshed_at INTEGER NOT NULL
) WITHOUT ROWID;
