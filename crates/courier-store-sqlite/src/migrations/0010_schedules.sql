-- Schedules (see `ScheduleStore`) and what became of their slots.
CREATE TABLE schedules (
    id                TEXT PRIMARY KEY,
    -- A JSON object: the `ScheduleDefinition`.
    definition        TEXT NOT NULL,
    paused            INTEGER NOT NULL,
    anchor_at         INTEGER NOT NULL,
    next_slot         INTEGER,
    buffered_slot     INTEGER,
    last_slot         INTEGER,
    last_execution_id BLOB,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    revision          INTEGER NOT NULL
);
-- The scheduler's read: the due ones, earliest first, and the ones holding a
-- buffered slot.
CREATE INDEX schedules_due ON schedules (next_slot) WHERE paused = 0;
CREATE INDEX schedules_buffered ON schedules (id) WHERE paused = 0 AND buffered_slot IS NOT NULL;

CREATE TABLE schedule_runs (
    id           INTEGER PRIMARY KEY,
    schedule_id  TEXT NOT NULL,
    slot         INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    count        INTEGER NOT NULL,
    execution_id BLOB,
    reason       TEXT NOT NULL,
    recorded_at  INTEGER NOT NULL
);
-- A schedule's runs, newest slot first.
CREATE INDEX schedule_runs_by_slot ON schedule_runs (schedule_id, slot, id);
