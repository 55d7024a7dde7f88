-- Paused executions and queues (see `PauseStore`): claims leave their tasks.
-- Kept apart from `executions` and `tasks` so a pause is one row and a claim's
-- check against it is one probe of a (usually empty) primary key.
CREATE TABLE paused_executions (
    execution_id uuid PRIMARY KEY,
    paused_at    timestamptz NOT NULL
);

CREATE TABLE paused_queues (
    queue     text COLLATE "C" PRIMARY KEY,
    paused_at timestamptz NOT NULL
);
