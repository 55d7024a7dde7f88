-- Notifications for people, who dismissed them, users' subscriptions to sources,
-- how far expiry has deleted, and values every node of a cluster shares.
--
-- Spelling as in version 1: INTEGER microseconds, BLOB ids, JSON as TEXT.

CREATE TABLE notifications (
    id          BLOB PRIMARY KEY,
    -- The seq of its notification.sent event: the SSE id, in commit order.
    seq         INTEGER NOT NULL,
    target_kind TEXT NOT NULL,
    target_key  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    mode        TEXT NOT NULL,
    grp         TEXT,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
-- Replays: a target's notifications in order.
CREATE INDEX notifications_target ON notifications (target_kind, target_key, seq);
-- One live notification per target and group (a new one replaces it).
CREATE UNIQUE INDEX notifications_group ON notifications (target_kind, target_key, grp) WHERE grp IS NOT NULL;
-- The expiry sweep.
CREATE INDEX notifications_expiry ON notifications (expires_at);
-- Inspection, newest first.
CREATE INDEX notifications_seq ON notifications (seq);

CREATE TABLE notification_dismissals (
    notification_id BLOB NOT NULL,
    -- user:<id> or session:<id>
    subscriber      TEXT NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (notification_id, subscriber)
);

CREATE TABLE notification_subscriptions (
    user_id    TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, source)
);

-- The newest timeseries notification expiry has deleted (one row).
CREATE TABLE notification_watermark (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    max_seq        INTEGER NOT NULL,
    max_created_at INTEGER NOT NULL
);
INSERT INTO notification_watermark (id, max_seq, max_created_at) VALUES (1, 0, 0);

CREATE TABLE cluster_values (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
