-- Webhooks: registrations, one delivery per (event, webhook), the attempts made
-- for each delivery, and the dispatcher's position in the event log.
--
-- Spelling as in version 1: INTEGER microseconds, BLOB ids, JSON as TEXT.

CREATE TABLE webhooks (
    id              BLOB PRIMARY KEY,
    url             TEXT NOT NULL,
    -- A JSON array of event type spellings; empty means every type.
    event_types     TEXT NOT NULL,
    execution_id    BLOB,
    task_id         BLOB,
    -- A JSON object of header name to value.
    headers         TEXT NOT NULL,
    secret          TEXT NOT NULL,
    description     TEXT,
    enabled         INTEGER NOT NULL,
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- Listing oldest first.
CREATE INDEX webhooks_created ON webhooks (created_at, id);

CREATE TABLE webhook_deliveries (
    id           BLOB PRIMARY KEY,
    webhook_id   BLOB NOT NULL,
    event_seq    INTEGER NOT NULL,
    event_type   TEXT NOT NULL,
    -- The execution that makes the attempts (cleanup deletes the delivery with it).
    execution_id BLOB NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    last_status  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- A webhook's deliveries newest first (and deleting them with the webhook).
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
-- Cleanup finds the deliveries of the executions it deletes.
CREATE INDEX webhook_deliveries_by_execution ON webhook_deliveries (execution_id);

CREATE TABLE webhook_attempts (
    delivery_id BLOB NOT NULL,
    attempt     INTEGER NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    response    TEXT,
    error       TEXT,
    at          INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

-- One row: the last event seq the dispatcher has turned into deliveries. Moved
-- only by compare-and-set, so each event is enqueued once.
CREATE TABLE webhook_cursor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO webhook_cursor (id, last) VALUES (1, 0);
