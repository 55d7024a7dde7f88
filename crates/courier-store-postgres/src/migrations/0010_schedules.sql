-- Schedules (see `ScheduleStore`) and what became of their slots.
CREATE TABLE schedules (
    id                text COLLATE "C" PRIMARY KEY,
    definition        jsonb NOT NULL,
    paused            boolean NOT NULL,
    anchor_at         timestamptz NOT NULL,
    next_slot         timestamptz,
    buffered_slot     timestamptz,
    last_slot         timestamptz,
    last_execution_id uuid,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    revision          bigint NOT NULL
);
-- The scheduler's read: the due ones, earliest first, and the ones holding a
-- buffered slot.
CREATE INDEX schedules_due ON schedules (next_slot) WHERE NOT paused;
CREATE INDEX schedules_buffered ON schedules (id) WHERE NOT paused AND buffered_slot IS NOT NULL;

CREATE TABLE schedule_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    schedule_id  text COLLATE "C" NOT NULL,
    slot         timestamptz NOT NULL,
    outcome      text NOT NULL,
    count        integer NOT NULL,
    execution_id uuid,
    reason       text NOT NULL,
    recorded_at  timestamptz NOT NULL
);
-- A schedule's runs, newest slot first.
CREATE INDEX schedule_runs_by_slot ON schedule_runs (schedule_id, slot, id);
