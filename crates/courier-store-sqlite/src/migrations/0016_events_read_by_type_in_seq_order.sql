-- The index by type cost each commit a write in as many places of its b-tree
-- as the commit had event types (each type's newest entries sit apart), about a
-- fifth of what a one-execution commit wrote. Reads by type now walk the log in
-- seq order from their cursor, a bounded stretch at a time.
DROP INDEX IF EXISTS events_by_type;
