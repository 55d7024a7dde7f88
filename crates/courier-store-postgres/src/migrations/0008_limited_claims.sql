-- Claims of a function with a cluster-wide cap (`max_concurrent`, the webhook
-- dispatcher's deliveries among them) take that function's due work in claim
-- order. Without this index they read every pending task of the queue and sort
-- it for each claim, so draining a backlog cost time in proportion to the
-- backlog at every claim.
CREATE INDEX tasks_pending_function ON tasks (function, priority DESC, scheduled_for, created_at)
    WHERE state = 'pending';

-- The same index serves claims that name their functions (every node's own
-- worker does): each function's due work is read from it, and timers, which a
-- function filter does not apply to, from their own small index.
CREATE INDEX tasks_pending_timers ON tasks (queue, priority DESC, scheduled_for, created_at)
    WHERE state = 'pending' AND kind IN ('sleep', 'signal_wait');
