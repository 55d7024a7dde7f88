-- Every event appended paid for an entry in the index by type, under the event
-- log's head lock (appends run one at a time). Reads by type now walk the log in
-- seq order from their cursor, a bounded stretch at a time.
DROP INDEX IF EXISTS events_type_seq;
