-- Rate-limit token buckets (see `RateLimitStore`): one row per function or
-- key, updated in place (HOT-friendly: no index on the updated columns).
CREATE TABLE rate_buckets (
    bucket       text PRIMARY KEY,
    tokens       float8 NOT NULL,
    refreshed_at timestamptz NOT NULL
) WITH (fillfactor = 70);

-- Concurrency-key slots (see `RateLimitStore::take_slots`): a row per task
-- given a slot, live while that task runs under the lease it was given with.
CREATE TABLE key_slots (
    bucket      text NOT NULL,
    task_id     uuid NOT NULL,
    lease_token uuid NOT NULL,
    PRIMARY KEY (bucket, task_id)
);
CREATE INDEX key_slots_task ON key_slots (task_id);
