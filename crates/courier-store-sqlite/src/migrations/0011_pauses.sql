-- Paused executions and queues (see `PauseStore`): claims leave their tasks.
-- Kept apart from `executions` and `tasks` so a pause is one row and a claim
-- reads the (usually empty) set once per statement.
CREATE TABLE paused_executions (
    execution_id BLOB PRIMARY KEY,
    paused_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE paused_queues (
    queue     TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
) WITHOUT ROWID;
