-- Notifications for people, who dismissed them, users' subscriptions to sources,
-- how far expiry has deleted, and values every node of a cluster shares.

CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    -- The seq of its notification.sent event: the SSE id, in commit order. Written
    -- right after the event is appended, in the same transaction (0 until then).
    seq         bigint NOT NULL,
    target_kind text NOT NULL,
    target_key  text NOT NULL,
    kind        text NOT NULL,
    mode        text NOT NULL,
    grp         text,
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
-- Replays: a target's notifications of one mode in order (queued ones, or
-- timeseries ones after a cursor); inspection by target.
CREATE INDEX notifications_target ON notifications (target_kind, target_key, mode, seq);
-- One live notification per target and group (a new one replaces it, under an
-- advisory lock per target and group).
CREATE UNIQUE INDEX notifications_group ON notifications (target_kind, target_key, grp) WHERE grp IS NOT NULL;
-- The expiry sweep.
CREATE INDEX notifications_expiry ON notifications (expires_at);
-- Inspection, newest first.
CREATE INDEX notifications_seq ON notifications (seq);

CREATE TABLE notification_dismissals (
    notification_id uuid NOT NULL,
    -- user:<id> or session:<id>
    subscriber      text NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (notification_id, subscriber)
);

CREATE TABLE notification_subscriptions (
    user_id    text NOT NULL,
    source     text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, source)
);

-- One row: the newest timeseries notification expiry has deleted, so that a
-- replay from a cursor before it can say it may be incomplete.
CREATE TABLE notification_watermark (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    max_seq        bigint NOT NULL,
    max_created_at timestamptz NOT NULL
);
INSERT INTO notification_watermark (id, max_seq, max_created_at) VALUES (true, 0, '-infinity');

CREATE TABLE cluster_values (
    name  text PRIMARY KEY,
    value text NOT NULL
);
