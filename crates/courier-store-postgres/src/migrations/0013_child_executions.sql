-- Child executions: a child names the parent and the parent's step that
-- started it, and what the parent's end does to it; a parent knows it has
-- children, so an execution without any pays nothing when it ends.
ALTER TABLE executions
    ADD COLUMN parent_execution_id uuid,
    ADD COLUMN parent_step bigint,
    ADD COLUMN parent_close text,
    ADD COLUMN has_children boolean NOT NULL DEFAULT false;
CREATE INDEX executions_parent ON executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
