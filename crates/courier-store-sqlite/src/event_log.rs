//! The event log: each change's event, appended in the same transaction as the
//! change; reading after a cursor; the head; trimming.
//!
//! Sequence numbers are handed out by the writer, which holds the file's write
//! lock for the whole of each transaction: it reads the log's head once when a
//! transaction first appends, then numbers that transaction's events from it
//! ([`Numbering`]). Commit order is therefore seq order, a rolled-back
//! transaction (or job) gives its numbers back, and another process writing the
//! same file between two transactions is seen by the next one.
//!
//! The head is the newest event's number, or the log's floor if that is higher:
//! deleting events (trimming, cleaning up an execution) first raises the floor
//! to the head, so the numbers of deleted events are never handed out again.
//! The log used to keep that promise with `AUTOINCREMENT`, which reads and
//! rewrites `sqlite_sequence` at every insert: about 3% of the instructions an
//! execution cost the writer.

use std::cell::Cell;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{Change, Event, EventFilter, EventHead, EventPage, EventStore, ExecutionId, StoreResult, TaskId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use crate::codec::{enum_at, json, json_at, limit, time_at, uuid_opt_at};
use crate::error::Result;
use crate::{SqliteStore, codec::micros};

/// The head as an SQL expression: the newest event's number, or the floor.
macro_rules! head {
    () => {
        "max(coalesce((SELECT max(seq) FROM events), 0), (SELECT seq FROM event_log_floor WHERE id = 1))"
    };
}

/// An event's columns, in [`event_at`]'s order.
macro_rules! event_columns {
    () => {
        "seq, event_type, execution_id, task_id, timestamp, data, internal"
    };
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn read_events(&self, filter: &EventFilter) -> StoreResult<EventPage> {
        let filter = filter.clone();
        self.read(move |conn, _| read(conn, &filter)).await
    }

    async fn last_event_seq(&self) -> StoreResult<i64> {
        self.read(|conn, _| last_seq(conn)).await
    }

    async fn trim_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        let older_than = micros(older_than);
        let end = self.read(move |conn, _| trim_end(conn, older_than)).await?;
        // One write per chunk, so a long backlog never holds the writer (and the
        // file's write lock) for one huge delete.
        let mut trimmed = 0;
        loop {
            let n = self.write(move |conn, _| trim(conn, end, TRIM_CHUNK)).await?;
            trimmed += n;
            if n < TRIM_CHUNK {
                return Ok(trimmed);
            }
        }
    }
}

/// Records a change a write made: appends its event (stamped `now`), tells the
/// change its sequence number, and adds it to `changes`, which the write
/// reports. Returns the sequence number (0 for a change without an event).
pub(crate) fn record(conn: &Connection, now: i64, changes: &mut Vec<Change>, mut change: Change) -> Result<i64> {
    let mut seq = 0;
    if let Some((head, data)) = change.event_text() {
        seq = append(conn, now, &head, &data)?;
        change.set_seq(seq);
    }
    changes.push(change);
    Ok(seq)
}

/// Where this thread's appends get their next sequence number.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Not inside the writer's transaction: each append reads the head.
    Unnumbered,
    /// Inside it, before its first append (or after a job's rollback).
    Unread,
    /// Inside it: the number the next event gets.
    Seq(i64),
}

thread_local! {
    static NEXT: Cell<Next> = const { Cell::new(Next::Unnumbered) };
}

/// The writer's numbering of one transaction's events: begun once the
/// transaction holds the write lock, rewound when a job's savepoint is rolled
/// back, over when dropped (whether the transaction committed or not).
pub(crate) struct Numbering(());

impl Numbering {
    /// Begins numbering on this thread, for a transaction that has just taken
    /// the write lock.
    pub(crate) fn begin() -> Numbering {
        NEXT.set(Next::Unread);
        Numbering(())
    }

    /// Forgets the numbers handed out since the head was read: some of the
    /// events they went to were rolled back.
    pub(crate) fn rewind(&self) {
        NEXT.set(Next::Unread);
    }
}

impl Drop for Numbering {
    fn drop(&mut self) {
        NEXT.set(Next::Unnumbered);
    }
}

/// Appends one event stamped `now`, its data the JSON text `data`; returns its
/// sequence number.
fn append(conn: &Connection, now: i64, event: &EventHead, data: &str) -> Result<i64> {
    let next = NEXT.get();
    let seq = match next {
        Next::Seq(seq) => seq,
        Next::Unread | Next::Unnumbered => last_seq(conn)? + 1,
    };
    let params = (
        seq,
        event.event_type.as_str(),
        event.execution_id.map(|e| *e.0.as_bytes()),
        event.task_id.map(|t| *t.0.as_bytes()),
        now,
        data,
    );
    match event.internal {
        // Most events say it themselves; looking the execution up for each
        // was about a sixth of an event's cost.
        Some(internal) => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO events (seq, event_type, execution_id, task_id, timestamp, data, internal) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            stmt.execute((params.0, params.1, params.2, params.3, params.4, params.5, internal))?;
        }
        None => {
            let mut stmt = conn.prepare_cached(
                "INSERT INTO events (seq, event_type, execution_id, task_id, timestamp, data, internal) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                 coalesce((SELECT substr(function, 1, 8) = 'courier.' FROM executions WHERE id = ?3), 0))",
            )?;
            stmt.execute(params)?;
        }
    }
    if !matches!(next, Next::Unnumbered) {
        NEXT.set(Next::Seq(seq + 1));
    }
    Ok(seq)
}

/// Events matching `filter`, oldest first, up to the filter's bound of the head
/// as read first (what is appended after that is left to the next read, whose
/// cursor this page's `through` does not pass).
fn read(conn: &Connection, filter: &EventFilter) -> Result<EventPage> {
    let head = last_seq(conn)?;
    let bound = filter.bound(head);
    let (sql, args) = read_statement(filter, bound)?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), event_at)?;
    let events = rows.collect::<rusqlite::Result<_>>()?;
    Ok(EventPage::read(filter, events, bound, head))
}

/// The event numbered `seq`, unless it was trimmed (or never appended).
pub(crate) fn get(conn: &Connection, seq: i64) -> Result<Option<Event>> {
    Ok(conn
        .prepare_cached(concat!("SELECT ", event_columns!(), " FROM events WHERE seq = ?1"))?
        .query_row([seq], event_at)
        .optional()?)
}

/// An event from a row of `event_columns!()`.
fn event_at(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: row.get(0)?,
        event_type: enum_at(row, 1)?,
        execution_id: uuid_opt_at(row, 2)?.map(ExecutionId),
        task_id: uuid_opt_at(row, 3)?.map(TaskId),
        timestamp: time_at(row, 4)?,
        data: json_at(row, 5)?,
        internal: row.get(6)?,
    })
}

/// The statement reading `filter`'s page up to `bound`: keyset paging from
/// `after` in seq order, so a page costs its own rows whatever its depth. Reads
/// by type walk the log itself (an index by type would cost every append a
/// write in as many places of its b-tree as the commit has types), which the
/// bound keeps short.
fn read_statement(filter: &EventFilter, bound: i64) -> Result<(String, Vec<SqlValue>)> {
    let mut sql = String::from(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events WHERE seq > ? AND seq <= ?"
    ));
    let mut args: Vec<SqlValue> = vec![SqlValue::Integer(filter.after), SqlValue::Integer(bound)];
    if !filter.include_internal {
        sql.push_str(" AND internal = 0");
    }
    if let Some(ExecutionId(id)) = filter.execution_id {
        sql.push_str(" AND execution_id = ?");
        args.push(SqlValue::Blob(id.as_bytes().to_vec()));
    }
    if let Some(TaskId(id)) = filter.task_id {
        sql.push_str(" AND task_id = ?");
        args.push(SqlValue::Blob(id.as_bytes().to_vec()));
    }
    if !filter.types.is_empty() {
        sql.push_str(" AND event_type IN (SELECT value FROM json_each(?))");
        args.push(SqlValue::Text(json(&filter.types)?));
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(SqlValue::Integer(limit(filter.limit)));
    Ok((sql, args))
}

/// The highest sequence number ever assigned, surviving deletions of the
/// newest events (see the module documentation).
fn last_seq(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached(concat!("SELECT ", head!()))?
        .query_row([], |row| row.get(0))?)
}

/// Raises the log's floor to its head. Every statement that deletes events runs
/// this first, in its transaction, so that the numbers it deletes are never
/// handed out again.
pub(crate) fn raise_floor(conn: &Connection) -> Result<()> {
    conn.prepare_cached(concat!("UPDATE event_log_floor SET seq = ", head!(), " WHERE id = 1"))?
        .execute([])?;
    Ok(())
}

/// Events deleted per statement when trimming.
pub(crate) const TRIM_CHUNK: u64 = 10_000;

/// Where trimming events appended before `older_than` stops: the first event
/// appended at or after it, or else the first sequence number not yet handed
/// out when this was read (what is appended later is not trimmed this time).
///
/// The log has no index by time (every append would pay for it): events are
/// appended as time goes, so the ones to trim are the log's oldest, found by
/// walking the log from its start, once per trim. Should the clock have
/// stepped back, the events after the step wait for the one before it; none
/// appended at or after `older_than` is deleted.
fn trim_end(conn: &Connection, older_than: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT coalesce((SELECT seq FROM events WHERE timestamp >= ?1 ORDER BY seq LIMIT 1), ",
            head!(),
            " + 1)"
        ))?
        .query_row([older_than], |row| row.get(0))?)
}

/// Deletes up to `chunk` of the oldest events before sequence number `end` that
/// the webhook dispatcher has read (while any webhook is enabled: events after
/// its cursor still owe deliveries). The floor keeps their sequence numbers
/// from being handed out again.
fn trim(conn: &Connection, end: i64, chunk: u64) -> Result<u64> {
    raise_floor(conn)?;
    let n = conn
        .prepare_cached(
            "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE seq < ?1 \
             AND (seq <= (SELECT last FROM webhook_cursor WHERE id = 1) \
             OR NOT EXISTS (SELECT 1 FROM webhooks WHERE enabled)) ORDER BY seq LIMIT ?2)",
        )?
        .execute((end, chunk as i64))?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_core::EventType;

    use crate::writer::Writer;

    /// An event with nothing to look up, named by `queue`.
    fn paused(queue: &str) -> Change {
        Change::QueuePaused {
            queue: queue.into(),
            paused: true,
        }
    }

    /// Every event's (seq, queue), in seq order.
    fn numbered(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn
            .prepare("SELECT seq, json_extract(data, '$.queue') FROM events ORDER BY seq")
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// A log whose newest events were trimmed while it was numbered by
    /// AUTOINCREMENT goes on numbering after them once upgraded: their numbers
    /// are never handed out again.
    #[test]
    fn an_upgraded_log_numbers_past_the_events_trimmed_before_the_upgrade() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate_through(&conn, 17).unwrap();
        // Appended as that version did: numbered by AUTOINCREMENT.
        for queue in ["a", "b", "c"] {
            conn.execute(
                "INSERT INTO events (event_type, timestamp, data, internal) \
                 VALUES ('queue.paused', 1, json_object('queue', ?1), 0)",
                [queue],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM events WHERE seq >= 2", []).unwrap();
        assert_eq!(numbered(&conn), vec![(1, "a".to_string())]);

        crate::migrations::migrate(&mut conn, 2, courier_core::PriorityAgeing::DEFAULT).unwrap();
        assert_eq!(last_seq(&conn).unwrap(), 3, "the head survives the upgrade");
        assert_eq!(record(&conn, 3, &mut Vec::new(), paused("d")).unwrap(), 4);
        assert_eq!(numbered(&conn), vec![(1, "a".to_string()), (4, "d".to_string())]);
        let sql: String = conn
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'events'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
    }

    /// Deleting the newest events (trimming, cleaning up their execution)
    /// leaves their numbers behind: the next event is numbered after them.
    #[test]
    fn deleting_the_newest_events_never_gives_their_numbers_back() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn, 0, courier_core::PriorityAgeing::DEFAULT).unwrap();
        for queue in ["a", "b", "c"] {
            record(&conn, 1, &mut Vec::new(), paused(queue)).unwrap();
        }
        assert_eq!(trim(&conn, 4, 10).unwrap(), 3);
        assert_eq!(last_seq(&conn).unwrap(), 3);
        assert_eq!(record(&conn, 2, &mut Vec::new(), paused("d")).unwrap(), 4);
    }

    /// In one group commit, a job that appends and is then refused gives its
    /// numbers back: the jobs around it number their events without a gap.
    #[tokio::test]
    async fn a_refused_job_in_a_group_leaves_no_gap_in_the_numbers() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn, 0, courier_core::PriorityAgeing::DEFAULT).unwrap();
        let writer = std::sync::Arc::new(Writer::start(conn).unwrap());
        // Holds the thread so that the three jobs queue up and share a group.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let writer = std::sync::Arc::clone(&writer);
            tokio::spawn(async move {
                writer
                    .run(move |_| {
                        held.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let append = |queue: &'static str, refuse: bool| {
            let writer = std::sync::Arc::clone(&writer);
            tokio::spawn(async move {
                writer
                    .run_isolated(move |conn| {
                        record(conn, 1, &mut Vec::new(), paused(queue))?;
                        if refuse {
                            return Err(courier_core::StoreError::Invalid(format!("refusing {queue}")).into());
                        }
                        Ok(())
                    })
                    .await
            })
        };
        let first = append("a", false);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let refused = append("b", true);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let last = append("c", false);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        first.await.unwrap().unwrap();
        assert!(refused.await.unwrap().is_err());
        last.await.unwrap().unwrap();
        let events = writer.run(|conn| Ok(numbered(conn))).await.unwrap();
        // The holder's, the three jobs' and (if counted yet) the read's.
        let transactions = writer.load().transactions;
        assert!(
            transactions <= 3,
            "the three jobs shared one transaction ({transactions} in all)"
        );
        assert_eq!(events, vec![(1, "a".to_string()), (2, "c".to_string())]);
        writer.shutdown().await;
    }

    /// How SQLite plans `filter`'s read, one line per step.
    fn plan(conn: &Connection, filter: &EventFilter) -> String {
        let (sql, args) = read_statement(filter, filter.bound(1_000_000)).unwrap();
        crate::query_plan::steps(conn, &sql, args).join("\n")
    }

    /// Every shape of filtered read searches from its cursor (keyset paging),
    /// never the whole log: one execution's or one task's events by their index,
    /// the rest by seq between the cursor and the read's bound.
    #[test]
    fn every_filtered_read_searches_from_its_cursor() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::migrate(&mut conn, 0, courier_core::PriorityAgeing::DEFAULT).unwrap();
        let by_seq = "INTEGER PRIMARY KEY (rowid>? AND rowid<?)";
        let by_type = EventFilter::after(41).types([EventType::TaskCompleted]).limit(100);
        let plan_of_type = plan(&conn, &by_type);
        assert!(plan_of_type.contains(by_seq), "{plan_of_type}");
        let public = plan(&conn, &EventFilter::after(41).internal(false));
        assert!(public.contains(by_seq), "{public}");
        let execution = EventFilter {
            execution_id: Some(ExecutionId::new()),
            ..EventFilter::after(41)
        };
        assert!(
            plan(&conn, &execution).contains("USING INDEX events_by_execution"),
            "{}",
            plan(&conn, &execution)
        );
        let task = EventFilter {
            task_id: Some(TaskId::root_of(ExecutionId::new())),
            ..EventFilter::after(41)
        };
        assert!(
            plan(&conn, &task).contains("USING INDEX events_by_task"),
            "{}",
            plan(&conn, &task)
        );
        let everything = plan(&conn, &EventFilter::after(41));
        assert!(everything.contains(by_seq), "{everything}");
        for filter in [by_type, execution, task, EventFilter::after(41)] {
            let plan = plan(&conn, &filter);
            assert!(!plan.lines().any(|step| step.starts_with("SCAN events")), "{plan}");
        }
    }
}
