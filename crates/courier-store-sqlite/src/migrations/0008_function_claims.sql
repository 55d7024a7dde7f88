-- Claims that name their functions (every node's own worker does) read each
-- function's due work from its own index, and timers, which a function filter
-- does not apply to, from theirs: a queue full of other functions' tasks, or
-- of a capped function's tasks once it is full, is never walked.
CREATE INDEX tasks_pending_function ON tasks (function, priority DESC, scheduled_for, created_at, id)
    WHERE state = 'pending';
CREATE INDEX tasks_pending_timers ON tasks (queue, priority DESC, scheduled_for, created_at, id)
    WHERE state = 'pending' AND kind IN ('sleep', 'signal_wait');
