-- Courier's first schema: executions, tasks and everything they own, the event
-- log, and the bookkeeping tables. Unqualified names land in the schema that
-- search_path names (the store's configured schema, or the database default).

-- Executions change state twice after dispatch (started, finished). No index
-- mentions a column those updates change, and pages keep room for new row
-- versions, so the updates are HOT (no index entries written). That is why
-- there is no (state, created_at) index: listings by state walk created_at and
-- filter, and time-outs keep their own table below.
CREATE TABLE executions (
    id              uuid PRIMARY KEY,
    function        text NOT NULL,
    version         text,
    state           text NOT NULL,
    args            jsonb NOT NULL,
    result          jsonb,
    error           jsonb,
    queue           text NOT NULL,
    tags            text[] NOT NULL DEFAULT '{}',
    priority        int NOT NULL DEFAULT 0,
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    started_at      timestamptz,
    completed_at    timestamptz,
    deadline        timestamptz
) WITH (fillfactor = 60);
CREATE UNIQUE INDEX executions_idempotency_key ON executions (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Newest-first listings, and cleanup (an execution finished before a cutoff was
-- created before it).
CREATE INDEX executions_created ON executions (created_at);

-- The deadlines of unfinished executions: a row from dispatch (with an expiry)
-- until the execution finishes, so time-outs read only what may time out.
CREATE TABLE execution_deadlines (
    execution_id uuid PRIMARY KEY,
    deadline     timestamptz NOT NULL
);
CREATE INDEX execution_deadlines_due ON execution_deadlines (deadline);

CREATE TABLE tasks (
    id               uuid PRIMARY KEY,
    execution_id     uuid NOT NULL,
    parent_id        uuid,
    step             bigint NOT NULL,
    kind             text NOT NULL,
    function         text NOT NULL,
    version          text,
    queue            text NOT NULL,
    tags             text[] NOT NULL DEFAULT '{}',
    priority         int NOT NULL DEFAULT 0,
    state            text NOT NULL,
    args             jsonb NOT NULL,
    result           jsonb,
    error            jsonb,
    checkpoint       jsonb,
    attempt          int NOT NULL DEFAULT 0,
    retry            jsonb NOT NULL,
    timeout_us       bigint,
    lease_owner      text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    heartbeat_at     timestamptz,
    stuck_at         timestamptz,
    wake_gen         bigint NOT NULL DEFAULT 0,
    scheduled_for    timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    completed_at     timestamptz
);
CREATE UNIQUE INDEX tasks_execution_step ON tasks (execution_id, step);
-- Claims read pending work one queue at a time in claim order; the partial index
-- holds only pending rows, so finished history never slows a claim.
CREATE INDEX tasks_pending_claim ON tasks (queue, priority DESC, scheduled_for, created_at) WHERE state = 'pending';
-- Expired leases (reclaim) and stuck-task detection.
CREATE INDEX tasks_running_lease ON tasks (lease_expires_at) WHERE state = 'running';
-- Concurrency limits count live leases per function.
CREATE INDEX tasks_running_function ON tasks (function, lease_expires_at) WHERE state = 'running';

-- The event log. seq is assigned from courier_event_head in commit order (see
-- event_log.rs), not from a sequence, so it has no gaps and never goes backwards.
CREATE TABLE courier_event_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL
);
INSERT INTO courier_event_head (id, last) VALUES (true, 0);

CREATE TABLE events (
    seq          bigint PRIMARY KEY,
    type         text NOT NULL,
    execution_id uuid,
    task_id      uuid,
    ts           timestamptz NOT NULL,
    data         jsonb NOT NULL
);
CREATE INDEX events_execution_seq ON events (execution_id, seq) WHERE execution_id IS NOT NULL;
CREATE INDEX events_task_seq ON events (task_id, seq) WHERE task_id IS NOT NULL;
-- Trimming by age: events arrive roughly in time order, which BRIN summarises cheaply.
CREATE INDEX events_ts ON events USING brin (ts);

CREATE TABLE signals (
    id           uuid PRIMARY KEY,
    -- Breaks ties between signals sent in one transaction (same created_at).
    position     bigint GENERATED ALWAYS AS IDENTITY,
    execution_id uuid NOT NULL,
    name         text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    consumed_by  uuid,
    consumed_at  timestamptz
);
CREATE INDEX signals_unconsumed ON signals (execution_id, name, created_at, position) WHERE consumed_by IS NULL;
CREATE INDEX signals_execution ON signals (execution_id, name);

CREATE TABLE dead_letters (
    task_id      uuid PRIMARY KEY,
    execution_id uuid NOT NULL,
    reason       text NOT NULL,
    failed_at    timestamptz NOT NULL,
    task         jsonb NOT NULL
);
CREATE INDEX dead_letters_failed_at ON dead_letters (failed_at);
CREATE INDEX dead_letters_execution ON dead_letters (execution_id);

CREATE TABLE progress (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id uuid NOT NULL,
    task_id      uuid,
    step         text,
    status       text,
    percent      float8,
    message      text,
    detail       jsonb,
    created_at   timestamptz NOT NULL
);
CREATE INDEX progress_execution ON progress (execution_id, id);

CREATE TABLE execution_counters (
    execution_id uuid NOT NULL,
    name         text NOT NULL,
    value        float8 NOT NULL,
    PRIMARY KEY (execution_id, name)
);

CREATE TABLE execution_state (
    execution_id uuid NOT NULL,
    key          text NOT NULL,
    value        jsonb NOT NULL,
    PRIMARY KEY (execution_id, key)
);

CREATE TABLE cache (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX cache_expires ON cache (expires_at) WHERE expires_at IS NOT NULL;

-- A row is a reservation (owner set, no result) or a recorded result.
CREATE TABLE idempotency (
    key        text PRIMARY KEY,
    result     jsonb,
    owner      uuid,
    updated_at timestamptz NOT NULL
);

CREATE TABLE courier_singletons (
    name       text PRIMARY KEY,
    owner      text NOT NULL,
    expires_at timestamptz NOT NULL
);
