-- Rate-limit token buckets (see `RateLimitStore`): one row per function or key.
CREATE TABLE rate_buckets (
    bucket       TEXT PRIMARY KEY,
    tokens       REAL NOT NULL,
    refreshed_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Concurrency-key slots (see `RateLimitStore::take_slots`): a row per task
-- given a slot, live while that task runs under the lease it was given with.
CREATE TABLE key_slots (
    bucket      TEXT NOT NULL,
    task_id     BLOB NOT NULL,
    lease_token BLOB NOT NULL,
    PRIMARY KEY (bucket, task_id)
) WITHOUT ROWID;
CREATE INDEX key_slots_task ON key_slots (task_id);
