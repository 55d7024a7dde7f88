-- Event log hardening: which events belong to Courier's own executions, an
-- index for reads filtered by type, and one for trimming idempotency keys.

-- Set on append from the execution's function (`courier.*`), so that public
-- feeds can leave them out in the query; existing events are marked here.
-- (A constant default adds the column without rewriting the table.)
ALTER TABLE events ADD COLUMN internal boolean NOT NULL DEFAULT false;
UPDATE events SET internal = true
    WHERE execution_id IN (SELECT id FROM executions WHERE starts_with(function, 'courier.'));

-- Reads filtered by type walk one type's events in seq order.
CREATE INDEX events_type_seq ON events (type, seq);

-- Retention deletes keys whose work finished long ago, a chunk at a time.
CREATE INDEX idempotency_finished ON idempotency (updated_at) WHERE result IS NOT NULL;
