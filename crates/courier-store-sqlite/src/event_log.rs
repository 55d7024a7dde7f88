//! The event log: appended in the same transaction as the change it describes.

use courier_core::{Event, EventFilter, ExecutionId, NewEvent, TaskId};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use crate::codec::{enum_at, json, json_at, limit, time_at, uuid_opt_at};
use crate::error::Result;

/// Appends one event stamped `now`; returns its sequence number.
pub(crate) fn append(conn: &Connection, now: i64, event: &NewEvent) -> Result<i64> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO events (event_type, execution_id, task_id, timestamp, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    stmt.execute((
        event.event_type.as_str(),
        event.execution_id.map(|e| *e.0.as_bytes()),
        event.task_id.map(|t| *t.0.as_bytes()),
        now,
        json(&event.data)?,
    ))?;
    Ok(conn.last_insert_rowid())
}

/// Events matching `filter`, oldest first.
pub(crate) fn read(conn: &Connection, filter: &EventFilter) -> Result<Vec<Event>> {
    let mut sql =
        String::from("SELECT seq, event_type, execution_id, task_id, timestamp, data FROM events WHERE seq > ?");
    let mut args: Vec<SqlValue> = vec![SqlValue::Integer(filter.after)];
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
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |row| {
        Ok(Event {
            seq: row.get(0)?,
            event_type: enum_at(row, 1)?,
            execution_id: uuid_opt_at(row, 2)?.map(ExecutionId),
            task_id: uuid_opt_at(row, 3)?.map(TaskId),
            timestamp: time_at(row, 4)?,
            data: json_at(row, 5)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The highest sequence number ever assigned, surviving trims of the newest events.
pub(crate) fn last_seq(conn: &Connection) -> Result<i64> {
    let seq = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
        .query_row([], |row| row.get::<_, i64>(0))
        .optional()?;
    Ok(seq.unwrap_or(0))
}
