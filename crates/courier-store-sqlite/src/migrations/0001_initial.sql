-- Courier's SQLite schema, version 1.
--
-- Timestamps are INTEGER microseconds since the Unix epoch (UTC); ids are 16-byte
-- BLOBs; JSON is TEXT (SQL NULL means "absent", the text 'null' a JSON null);
-- states and kinds are their lowercase spellings.

CREATE TABLE executions (
    id              BLOB PRIMARY KEY,
    function        TEXT NOT NULL,
    version         TEXT,
    state           TEXT NOT NULL,
    args            TEXT NOT NULL,
    result          TEXT,
    error           TEXT,
    queue           TEXT NOT NULL,
    tags            TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    completed_at    INTEGER,
    deadline        INTEGER
);

-- Dispatch deduplication: one execution per key.
CREATE UNIQUE INDEX executions_idempotency ON executions (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Listing by state, newest first.
CREATE INDEX executions_state_created ON executions (state, created_at);
-- Time-outs look only at unfinished executions that have a deadline.
CREATE INDEX executions_deadline ON executions (deadline)
    WHERE deadline IS NOT NULL AND state IN ('pending', 'running');
-- Cleanup finds finished executions by when they finished.
CREATE INDEX executions_completed ON executions (completed_at) WHERE completed_at IS NOT NULL;

CREATE TABLE tasks (
    id               BLOB PRIMARY KEY,
    execution_id     BLOB NOT NULL,
    parent_id        BLOB,
    step             INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    function         TEXT NOT NULL,
    version          TEXT,
    queue            TEXT NOT NULL,
    tags             TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    state            TEXT NOT NULL,
    args             TEXT NOT NULL,
    result           TEXT,
    error            TEXT,
    checkpoint       TEXT,
    attempt          INTEGER NOT NULL,
    retry            TEXT NOT NULL,
    timeout_ns       INTEGER,
    lease_owner      TEXT,
    lease_token      BLOB,
    lease_expires_at INTEGER,
    heartbeat_at     INTEGER,
    stuck_at         INTEGER,
    wake_gen         INTEGER NOT NULL,
    scheduled_for    INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    completed_at     INTEGER,
    -- One task per step: replay finds children here, and racing replayers collide here.
    UNIQUE (execution_id, step)
);

-- Claims walk this in claim order, one queue at a time, and stop after a few rows.
-- Only pending tasks are in it, so finished history never slows a claim down.
CREATE INDEX tasks_claim ON tasks (queue, priority DESC, scheduled_for, created_at, id) WHERE state = 'pending';
-- Running tasks by lease expiry: expired leases (reclaims, from the old end) and
-- live leases per function (limits; covered, so counting reads no rows).
CREATE INDEX tasks_running ON tasks (lease_expires_at, function) WHERE state = 'running';
-- Delivering a signal finds the oldest wait for its name.
CREATE INDEX tasks_signal_waits ON tasks (execution_id, function, created_at)
    WHERE kind = 'signal_wait' AND state IN ('waiting', 'pending');

CREATE TABLE signals (
    id           BLOB PRIMARY KEY,
    execution_id BLOB NOT NULL,
    name         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    consumed_by  BLOB,
    consumed_at  INTEGER
);
CREATE INDEX signals_by_name ON signals (execution_id, name, created_at);

CREATE TABLE dead_letters (
    task_id      BLOB PRIMARY KEY,
    execution_id BLOB NOT NULL,
    reason       TEXT NOT NULL,
    failed_at    INTEGER NOT NULL,
    task         TEXT NOT NULL
);
CREATE INDEX dead_letters_failed ON dead_letters (failed_at);
CREATE INDEX dead_letters_execution ON dead_letters (execution_id);

CREATE TABLE progress (
    id           INTEGER PRIMARY KEY,
    execution_id BLOB NOT NULL,
    task_id      BLOB,
    report       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
-- The rowid rides along at the end, so "latest N of an execution" is an index range.
CREATE INDEX progress_by_execution ON progress (execution_id);

CREATE TABLE execution_counters (
    execution_id BLOB NOT NULL,
    name         TEXT NOT NULL,
    value        REAL NOT NULL,
    PRIMARY KEY (execution_id, name)
) WITHOUT ROWID;

CREATE TABLE execution_state (
    execution_id BLOB NOT NULL,
    key          TEXT NOT NULL,
    value        TEXT NOT NULL,
    PRIMARY KEY (execution_id, key)
) WITHOUT ROWID;

CREATE TABLE cache (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX cache_expiry ON cache (expires_at) WHERE expires_at IS NOT NULL;

-- A row with value NULL is a reservation by owner; with a value, the work is done.
CREATE TABLE idempotency (
    key          TEXT PRIMARY KEY,
    value        TEXT,
    owner        BLOB,
    created_at   INTEGER NOT NULL,
    completed_at INTEGER
);

-- AUTOINCREMENT so that sequence numbers are never reused, even after a trim
-- deleted the newest events.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type   TEXT NOT NULL,
    execution_id BLOB,
    task_id      BLOB,
    timestamp    INTEGER NOT NULL,
    data         TEXT NOT NULL
);
CREATE INDEX events_by_execution ON events (execution_id) WHERE execution_id IS NOT NULL;
CREATE INDEX events_by_task ON events (task_id) WHERE task_id IS NOT NULL;

CREATE TABLE singletons (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
