-- Event log hardening: which events belong to Courier's own executions, an
-- index for reads filtered by type, and one for trimming idempotency keys.

-- Set on append from the execution's function (`courier.*`), so that public
-- feeds can leave them out in the query; existing events are marked here.
ALTER TABLE events ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
UPDATE events SET internal = 1
    WHERE execution_id IN (SELECT id FROM executions WHERE substr(function, 1, 8) = 'courier.');

-- Reads filtered by type walk one type's events in seq order.
CREATE INDEX events_by_type ON events (event_type, seq);
-- Trimming by age, a chunk at a time.
CREATE INDEX events_by_time ON events (timestamp);

-- Retention deletes keys whose work finished long ago, a chunk at a time.
CREATE INDEX idempotency_completed ON idempotency (completed_at) WHERE completed_at IS NOT NULL;
