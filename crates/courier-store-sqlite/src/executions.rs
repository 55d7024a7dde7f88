//! Executions: dispatch, reads, raw writes, and the moves that end one (finish,
//! cancel, time out).

use courier_core::{
    Cancelled, Dispatched, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, NewExecution, StoreError,
    TaskError, TaskId, TaskKind, TaskRecord, TaskState, events,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::codec::{after, enum_at, json, limit, uuid_at};
use crate::error::Result;
use crate::event_log;
use crate::rows::{
    NewTaskRow, execution_at, execution_columns, insert_execution, insert_new_task, overwrite_execution,
};

/// Creates an execution and its root task, or finds the one its idempotency key names.
pub(crate) fn dispatch(conn: &Connection, now: i64, new: &NewExecution) -> Result<Dispatched> {
    if let Some(key) = &new.idempotency_key {
        let existing = conn
            .prepare_cached("SELECT id FROM executions WHERE idempotency_key = ?1")?
            .query_row([key], |row| uuid_at(row, 0))
            .optional()?;
        if let Some(id) = existing {
            return Ok(Dispatched::Existing(ExecutionId(id)));
        }
    }
    let spec = &new.spec;
    let args = json(&spec.args)?;
    let tags = json(&spec.tags)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO executions (id, function, version, state, args, queue, tags, priority, idempotency_key, \
             created_at, updated_at, deadline) VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10) \
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            new.id.0.as_bytes(),
            spec.function,
            spec.version,
            args,
            spec.queue,
            tags,
            spec.priority,
            new.idempotency_key,
            now,
            new.expiry.map(|e| after(now, e)),
        ])?;
    let taken = || StoreError::Conflict {
        id: new.id.to_string(),
        detail: "an execution with this id already exists".into(),
    };
    if inserted == 0 {
        return Err(taken().into());
    }
    let root = TaskId::root_of(new.id);
    let row = NewTaskRow {
        id: root,
        execution_id: new.id,
        parent_id: None,
        step: 0,
        spec,
        args: &args,
        tags: &tags,
        state: TaskState::Pending,
        result: None,
        scheduled_for: after(now, spec.delay.unwrap_or_default()),
        now,
        completed_at: None,
    };
    if !insert_new_task(conn, &row)? {
        // Refusals leave nothing behind.
        conn.prepare_cached("DELETE FROM executions WHERE id = ?1")?
            .execute([new.id.0.as_bytes()])?;
        return Err(taken().into());
    }
    event_log::append(
        conn,
        now,
        &events::execution_created(new.id, &spec.function, &spec.queue),
    )?;
    let created = events::task_created(new.id, root, spec.kind, &spec.function, 0, &spec.queue);
    event_log::append(conn, now, &created)?;
    Ok(Dispatched::Created(new.id))
}

/// Inserts an execution record as given.
pub(crate) fn create(conn: &Connection, record: &ExecutionRecord) -> Result<()> {
    insert_execution(conn, record)
}

/// Inserts an execution and its root task as given (the caller's transaction makes
/// it both or neither).
pub(crate) fn create_with_root(conn: &Connection, record: &ExecutionRecord, task: &TaskRecord) -> Result<()> {
    insert_execution(conn, record)?;
    crate::rows::insert_task(conn, task)
}

/// Overwrites an execution record.
pub(crate) fn update(conn: &Connection, record: &ExecutionRecord) -> Result<()> {
    if overwrite_execution(conn, record)? {
        Ok(())
    } else {
        Err(StoreError::ExecutionNotFound(record.id).into())
    }
}

/// One execution.
pub(crate) fn get(conn: &Connection, id: ExecutionId) -> Result<Option<ExecutionRecord>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            execution_columns!(),
            " FROM executions WHERE id = ?1"
        ))?
        .query_row([id.0.as_bytes()], execution_at)
        .optional()?)
}

/// An execution's state and function, if it exists.
pub(crate) fn state_of(conn: &Connection, id: ExecutionId) -> Result<Option<(ExecutionState, String)>> {
    Ok(conn
        .prepare_cached("SELECT state, function FROM executions WHERE id = ?1")?
        .query_row([id.0.as_bytes()], |row| Ok((enum_at(row, 0)?, row.get(1)?)))
        .optional()?)
}

/// Refuses with `ExecutionNotFound` unless the execution exists.
pub(crate) fn require(conn: &Connection, id: ExecutionId) -> Result<(ExecutionState, String)> {
    state_of(conn, id)?.ok_or_else(|| StoreError::ExecutionNotFound(id).into())
}

/// Executions matching `filter`, newest first.
pub(crate) fn list(conn: &Connection, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>> {
    let mut sql = String::from(concat!("SELECT ", execution_columns!(), " FROM executions WHERE 1 = 1"));
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(state) = filter.state {
        sql.push_str(" AND state = ?");
        args.push(SqlValue::Text(state.as_str().into()));
    }
    if let Some(function) = &filter.function {
        sql.push_str(" AND function = ?");
        args.push(SqlValue::Text(function.clone()));
    }
    if !filter.include_internal {
        sql.push_str(" AND function NOT LIKE 'courier.%'");
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?");
    args.push(SqlValue::Integer(limit(filter.limit)));
    args.push(SqlValue::Integer(i64::from(filter.offset)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), execution_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many executions (in `state`).
pub(crate) fn count(conn: &Connection, state: Option<ExecutionState>) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM executions WHERE ?1 IS NULL OR state = ?1")?
        .query_row([state.map(ExecutionState::as_str)], |row| row.get(0))?;
    Ok(n as u64)
}

/// Moves an unfinished execution to the terminal `state`; whether it moved (an
/// execution already finished is left alone).
///
/// One guarded UPDATE rather than a look-up first, and no `RETURNING`: SQLite runs
/// RETURNING as a trigger, which costs the statement a statement journal.
pub(crate) fn finish(
    conn: &Connection,
    now: i64,
    id: ExecutionId,
    state: ExecutionState,
    result: Option<&str>,
    error: Option<&TaskError>,
) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET state = ?2, result = ?3, error = ?4, completed_at = ?5, updated_at = ?5 \
             WHERE id = ?1 AND state IN ('pending', 'running')",
        )?
        .execute(params![
            id.0.as_bytes(),
            state.as_str(),
            result,
            error.map(json).transpose()?,
            now
        ])?;
    Ok(changed > 0)
}

/// Moves a pending execution to `running` when its root task is first claimed;
/// whether it moved.
pub(crate) fn start(conn: &Connection, now: i64, id: ExecutionId) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE executions SET state = 'running', started_at = coalesce(started_at, ?2), updated_at = ?2 \
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute((id.0.as_bytes(), now))?;
    Ok(changed > 0)
}

/// Cancels every unfinished task of an execution (running ones lose their lease).
fn cancel_tasks(conn: &Connection, now: i64, execution: ExecutionId, reason: &str) -> Result<Vec<TaskId>> {
    let victims: Vec<(i64, TaskId, TaskKind, String)> = conn
        .prepare_cached(
            "SELECT rowid, id, kind, function FROM tasks \
             WHERE execution_id = ?1 AND state IN ('pending', 'running', 'waiting') ORDER BY step",
        )?
        .query_map([execution.0.as_bytes()], |row| {
            Ok((row.get(0)?, TaskId(uuid_at(row, 1)?), enum_at(row, 2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut cancel = conn.prepare_cached(
        "UPDATE tasks SET state = 'cancelled', completed_at = ?2, lease_token = NULL, lease_expires_at = NULL \
         WHERE rowid = ?1",
    )?;
    let mut ids = Vec::with_capacity(victims.len());
    for (rowid, id, kind, function) in victims {
        cancel.execute((rowid, now))?;
        event_log::append(
            conn,
            now,
            &events::task_cancelled(execution, id, kind, &function, reason),
        )?;
        ids.push(id);
    }
    Ok(ids)
}

/// Cancels an execution and its unfinished tasks.
pub(crate) fn cancel(conn: &Connection, now: i64, id: ExecutionId, reason: &str) -> Result<Cancelled> {
    let (previous, function) = require(conn, id)?;
    if previous.is_terminal() {
        return Ok(Cancelled {
            execution_id: id,
            previous,
            tasks: Vec::new(),
        });
    }
    let tasks = cancel_tasks(conn, now, id, reason)?;
    let error = TaskError::new(TaskError::CANCELLED, reason);
    finish(conn, now, id, ExecutionState::Cancelled, None, Some(&error))?;
    event_log::append(conn, now, &events::execution_cancelled(id, &function, reason))?;
    Ok(Cancelled {
        execution_id: id,
        previous,
        tasks,
    })
}

/// Times out up to `max` unfinished executions whose deadline has come.
pub(crate) fn time_out(conn: &Connection, now: i64, max: u32) -> Result<Vec<Cancelled>> {
    let due: Vec<(ExecutionId, ExecutionState, String)> = conn
        .prepare_cached(
            "SELECT id, state, function FROM executions INDEXED BY executions_deadline \
             WHERE deadline IS NOT NULL AND state IN ('pending', 'running') AND deadline <= ?1 \
             ORDER BY deadline LIMIT ?2",
        )?
        .query_map((now, i64::from(max)), |row| {
            Ok((ExecutionId(uuid_at(row, 0)?), enum_at(row, 1)?, row.get(2)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let error = TaskError::new(TaskError::TIMEOUT, "the execution outlived its expiry");
    let mut out = Vec::with_capacity(due.len());
    for (id, previous, function) in due {
        let tasks = cancel_tasks(conn, now, id, "execution timed out")?;
        finish(conn, now, id, ExecutionState::TimedOut, None, Some(&error))?;
        event_log::append(conn, now, &events::execution_timed_out(id, &function))?;
        out.push(Cancelled {
            execution_id: id,
            previous,
            tasks,
        });
    }
    Ok(out)
}
