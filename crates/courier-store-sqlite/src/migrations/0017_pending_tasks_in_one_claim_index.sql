-- Every pending task sat in two claim indexes: by queue (tasks_claim) and by
-- function (tasks_pending_function), so dispatching a task and claiming it
-- each wrote both. Workers that name their functions (the runtime's own)
-- read functions' work by function and only timers by queue, so each pending
-- task now goes in one of them:
--
-- * a function's work (orchestrator and activity tasks) by function, with its
--   queue last in the key (after the unique id, so the order is unchanged) so
--   that a queue filter and the queue depths read the index alone;
-- * everything else (timers, effects) by queue.
--
-- A claim that names no function walks the functions with pending work as it
-- walks the queues. Kept in step with `priority_ageing::rebuild_sql`.
DROP INDEX tasks_claim;
DROP INDEX tasks_pending_function;
CREATE INDEX tasks_claim ON tasks (queue, claim_at, priority DESC, scheduled_for, created_at, id)
    WHERE state = 'pending' AND kind NOT IN ('orchestrator', 'activity');
CREATE INDEX tasks_pending_function ON tasks (function, claim_at, priority DESC, scheduled_for, created_at, id, queue)
    WHERE state = 'pending' AND kind IN ('orchestrator', 'activity');
