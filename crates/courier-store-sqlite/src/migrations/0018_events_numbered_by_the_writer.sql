-- The writer numbers events itself (it holds the write lock for the whole of
-- a transaction), so the log no longer needs AUTOINCREMENT, which read and
-- rewrote sqlite_sequence at every insert. What AUTOINCREMENT promised, that a
-- deleted event's number is never handed out again, is kept by the floor:
-- every delete of events raises it to the head first. It starts where
-- sqlite_sequence stood, which is above the newest event if the newest were
-- trimmed.
CREATE TABLE event_log_floor (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO event_log_floor (id, seq)
    VALUES (1, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0));

CREATE TABLE events_numbered (
    seq          INTEGER PRIMARY KEY,
    event_type   TEXT NOT NULL,
    execution_id BLOB,
    task_id      BLOB,
    timestamp    INTEGER NOT NULL,
    data         TEXT NOT NULL,
    internal     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO events_numbered (seq, event_type, execution_id, task_id, timestamp, data, internal)
    SELECT seq, event_type, execution_id, task_id, timestamp, data, internal FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_numbered RENAME TO events;
CREATE INDEX events_by_execution ON events (execution_id) WHERE execution_id IS NOT NULL;
CREATE INDEX events_by_task ON events (task_id) WHERE task_id IS NOT NULL;
