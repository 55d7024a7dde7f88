-- Functions' settings as operators set them over the API (`PUT /v1/functions/{name}`),
-- read by every node. Listed by name: the primary key serves it.
CREATE TABLE function_settings (
    name       TEXT PRIMARY KEY,
    -- A JSON object: the fields set.
    settings   TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
