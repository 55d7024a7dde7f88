-- The cluster's nodes as they report themselves (see `NodeStore`): one row per
-- node, rewritten every few seconds (a small table of HOT updates: no index
-- covers the columns that change). Listed by id: the primary key serves it.
CREATE TABLE nodes (
    id         text COLLATE "C" PRIMARY KEY,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL,
    report     jsonb NOT NULL
) WITH (fillfactor = 50);
