-- Webhooks: registrations, one delivery per (event, webhook), the attempts made
-- for each delivery, and the dispatcher's position in the event log.

CREATE TABLE webhooks (
    id              uuid PRIMARY KEY,
    url             text NOT NULL,
    -- Empty means every type.
    event_types     text[] NOT NULL DEFAULT '{}',
    execution_id    uuid,
    task_id         uuid,
    headers         jsonb NOT NULL DEFAULT '{}',
    secret          text NOT NULL,
    description     text,
    enabled         boolean NOT NULL,
    disabled_reason text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
-- Listing oldest first.
CREATE INDEX webhooks_created ON webhooks (created_at, id);

CREATE TABLE webhook_deliveries (
    id           uuid PRIMARY KEY,
    webhook_id   uuid NOT NULL,
    event_seq    bigint NOT NULL,
    event_type   text NOT NULL,
    -- The execution that makes the attempts (cleanup deletes the delivery with it).
    execution_id uuid NOT NULL,
    state        text NOT NULL,
    attempts     bigint NOT NULL DEFAULT 0,
    last_status  int,
    last_error   text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
-- A webhook's deliveries newest first (and deleting them with the webhook).
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
-- Cleanup finds the deliveries of the executions it deletes.
CREATE INDEX webhook_deliveries_execution ON webhook_deliveries (execution_id);

CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL,
    attempt     bigint NOT NULL,
    status      int,
    latency_ms  bigint NOT NULL,
    response    text,
    error       text,
    at          timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- One row: the last event seq the dispatcher has turned into deliveries. Nodes
-- move it only by compare-and-set (UPDATE ... WHERE last = the value they read),
-- and the row lock makes racers wait for the winner's commit and then miss.
CREATE TABLE webhook_cursor (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL
);
INSERT INTO webhook_cursor (id, last) VALUES (true, 0);
