-- Functions' settings as operators set them over the API (`PUT /v1/functions/{name}`),
-- read by every node. Listed by name (in byte order): the primary key serves it.
CREATE TABLE function_settings (
    name       text COLLATE "C" PRIMARY KEY,
    -- The fields set.
    settings   jsonb NOT NULL,
    revision   bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
