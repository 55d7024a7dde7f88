//! Signals: stored on arrival, consumed oldest first by signal waits.

use courier_core::{AttemptEnd, Change, ExecutionId, SignalRecord, SignalSent, StoreError, TaskId, TaskKind, TaskRef};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use uuid::Uuid;

use crate::codec::{enum_at, json, json_at, micros, time_at, time_opt_at, uuid_at, uuid_opt_at};
use crate::error::{Result, conflict_on};
use crate::{event_log, executions, wake};

/// Sends a signal: stores it, and delivers it to the oldest wait for its name, if any.
pub(crate) fn send(
    conn: &Connection,
    now: i64,
    execution: ExecutionId,
    name: &str,
    payload: &Value,
    changes: &mut Vec<Change>,
) -> Result<SignalSent> {
    let (state, _) = executions::require(conn, execution)?;
    if state.is_terminal() {
        return Err(StoreError::ExecutionState {
            id: execution,
            state,
            detail: format!("cannot send signal {name:?} to a finished execution"),
        }
        .into());
    }
    let payload = json(payload)?;
    // Waits with a timeout are `pending` until it comes; a running one is being
    // timed out by a worker right now and is left to it.
    let waiter: Option<(i64, TaskId, Option<TaskId>, TaskKind, u32)> = conn
        .prepare_cached(
            "SELECT rowid, id, parent_id, kind, attempt FROM tasks INDEXED BY tasks_signal_waits \
             WHERE execution_id = ?1 AND function = ?2 AND kind = 'signal_wait' AND state IN ('waiting', 'pending') \
             ORDER BY created_at, step LIMIT 1",
        )?
        .query_row((execution.0.as_bytes(), name), |row| {
            Ok((
                row.get(0)?,
                TaskId(uuid_at(row, 1)?),
                uuid_opt_at(row, 2)?.map(TaskId),
                enum_at(row, 3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    let signal_id = Uuid::now_v7();
    conn.prepare_cached(
        "INSERT INTO signals (id, execution_id, name, payload, created_at, consumed_by, consumed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        signal_id.as_bytes(),
        execution.0.as_bytes(),
        name,
        payload,
        now,
        waiter.as_ref().map(|w| *w.1.0.as_bytes()),
        waiter.as_ref().map(|_| now),
    ])?;
    let Some((rowid, task, parent, kind, attempt)) = waiter else {
        return Ok(SignalSent {
            signal_id,
            delivered_to: None,
            parent_id: None,
        });
    };
    conn.prepare_cached(
        "UPDATE tasks SET state = 'completed', result = ?2, completed_at = ?3, lease_token = NULL, \
         lease_expires_at = NULL WHERE rowid = ?1",
    )?
    .execute((rowid, &payload, now))?;
    let completed = Change::AttemptEnded {
        task: TaskRef::new(execution, task, kind, name),
        attempt,
        end: AttemptEnd::Completed,
    };
    event_log::record(conn, now, changes, completed)?;
    if let Some(parent) = parent {
        wake::wake_parent(conn, now, parent, changes)?;
    }
    Ok(SignalSent {
        signal_id,
        delivered_to: Some(task),
        parent_id: parent,
    })
}

/// The oldest unconsumed signal of `name` (rowid and payload text), for a new wait to consume.
pub(crate) fn oldest_unconsumed(
    conn: &Connection,
    execution: ExecutionId,
    name: &str,
) -> Result<Option<(i64, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT rowid, payload FROM signals WHERE execution_id = ?1 AND name = ?2 AND consumed_by IS NULL \
             ORDER BY created_at, rowid LIMIT 1",
        )?
        .query_row((execution.0.as_bytes(), name), |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?)
}

/// Marks a signal consumed by `task`.
pub(crate) fn consume(conn: &Connection, now: i64, rowid: i64, task: TaskId) -> Result<()> {
    conn.prepare_cached("UPDATE signals SET consumed_by = ?2, consumed_at = ?3 WHERE rowid = ?1")?
        .execute((rowid, task.0.as_bytes(), now))?;
    Ok(())
}

/// Inserts a signal record as given.
pub(crate) fn create(conn: &Connection, s: &SignalRecord) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO signals (id, execution_id, name, payload, created_at, consumed_by, consumed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        s.id.as_bytes(),
        s.execution_id.0.as_bytes(),
        s.name,
        json(&s.payload)?,
        micros(s.created_at),
        s.consumed_by.map(|t| *t.0.as_bytes()),
        s.consumed_at.map(micros),
    ])
    .map_err(conflict_on(s.id, "signal"))?;
    Ok(())
}

/// The latest `limit` signals of an execution, oldest first.
pub(crate) fn list(conn: &Connection, execution: ExecutionId, limit: u32) -> Result<Vec<SignalRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, execution_id, name, payload, created_at, consumed_by, consumed_at FROM (
             SELECT rowid AS n, * FROM signals WHERE execution_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2
         ) ORDER BY created_at, n",
    )?;
    let rows = stmt.query_map((execution.0.as_bytes(), i64::from(limit)), signal_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn signal_at(row: &Row<'_>) -> rusqlite::Result<SignalRecord> {
    Ok(SignalRecord {
        id: uuid_at(row, 0)?,
        execution_id: ExecutionId(uuid_at(row, 1)?),
        name: row.get(2)?,
        payload: json_at(row, 3)?,
        created_at: time_at(row, 4)?,
        consumed_by: uuid_opt_at(row, 5)?.map(TaskId),
        consumed_at: time_opt_at(row, 6)?,
    })
}

/// The oldest unconsumed signal of `name`, or else the newest consumed one.
pub(crate) fn get(conn: &Connection, execution: ExecutionId, name: &str) -> Result<Option<SignalRecord>> {
    let unconsumed = conn
        .prepare_cached(
            "SELECT id, execution_id, name, payload, created_at, consumed_by, consumed_at FROM signals \
             WHERE execution_id = ?1 AND name = ?2 AND consumed_by IS NULL ORDER BY created_at, rowid LIMIT 1",
        )?
        .query_row((execution.0.as_bytes(), name), signal_at)
        .optional()?;
    if unconsumed.is_some() {
        return Ok(unconsumed);
    }
    Ok(conn
        .prepare_cached(
            "SELECT id, execution_id, name, payload, created_at, consumed_by, consumed_at FROM signals \
             WHERE execution_id = ?1 AND name = ?2 AND consumed_by IS NOT NULL \
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )?
        .query_row((execution.0.as_bytes(), name), signal_at)
        .optional()?)
}
