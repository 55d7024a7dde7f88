-- An execution changes state twice after dispatch (started, finished), and each
-- change moved its entry in the (state, created_at) index: a delete and an
-- insert apiece, about a tenth of what an execution cost the writer. Listings
-- now walk executions newest first and filter by state, as on Postgres, from an
-- index no state change touches; its key ends with the id, the listing's tie
-- break, so a page is read in order and stops at its limit (an unfiltered one
-- used to read and sort the whole table). Counting by state now reads the
-- table rather than the old index: either reads every execution.
DROP INDEX IF EXISTS executions_state_created;
CREATE INDEX executions_created ON executions (created_at, id);
