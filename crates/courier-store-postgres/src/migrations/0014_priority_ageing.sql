-- Priority ageing (see `courier_core::PriorityAgeing`): claims take pending work
-- in claim order, the due time minus priority × ageing, so a flood of
-- higher-priority work cannot starve lower priorities beyond a stated bound.
--
-- claim_at is that order in µs since the epoch. A generated column, so every
-- write of scheduled_for or priority keeps it right; bigint because
-- timestamptz - interval is not immutable. The ageing (60 s here) is the
-- store's: `priority_ageing::apply` rewrites the expression when the store is
-- opened with another `store.priority_aging`, and records it in store_settings.
CREATE TABLE store_settings (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO store_settings (name, value) VALUES ('priority_ageing_us', 60000000);

ALTER TABLE tasks ADD COLUMN claim_at bigint NOT NULL GENERATED ALWAYS AS (
    (extract(epoch FROM scheduled_for - timestamptz '1970-01-01 00:00:00+00') * 1000000)::bigint
        - priority::bigint * 60000000
) STORED;

-- The claim indexes, re-keyed on the claim order. Ties: higher priority, then
-- due time (so the due filter is checked in the index), then creation.
DROP INDEX tasks_pending_claim;
DROP INDEX tasks_pending_function;
DROP INDEX tasks_pending_timers;
CREATE INDEX tasks_pending_claim ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at)
    WHERE state = 'pending';
CREATE INDEX tasks_pending_function ON tasks (function, claim_at, priority DESC, scheduled_for, created_at)
    WHERE state = 'pending';
CREATE INDEX tasks_pending_timers ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at)
    WHERE state = 'pending' AND kind IN ('sleep', 'signal_wait');
