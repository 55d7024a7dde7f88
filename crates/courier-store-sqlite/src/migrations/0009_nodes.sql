-- The cluster's nodes as they report themselves (see `NodeStore`): one row per
-- node, rewritten every few seconds. Listed by id: the primary key serves it.
CREATE TABLE nodes (
    id         TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    -- A JSON object: the node's `NodeReport`.
    report     TEXT NOT NULL
);
