//! Dispatch: an execution and its root task, created together, or the execution
//! an idempotency key already names.

use courier_core::{Change, Dispatched, ExecutionId, NewExecution, StoreError, TaskId, TaskRef, TaskState};
use rusqlite::{Connection, OptionalExtension, params};

use crate::codec::{after, json, uuid_at};
use crate::error::Result;
use crate::rows::{NewTaskRow, insert_new_task};
use crate::{event_log, family};

/// Creates an execution and its root task, or finds the one its idempotency key names.
pub(crate) fn dispatch(
    conn: &Connection,
    now: i64,
    new: &NewExecution,
    changes: &mut Vec<Change>,
) -> Result<Dispatched> {
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
    if let Some(link) = &new.parent {
        family::link(conn, new.id, link)?;
    }
    let created = Change::ExecutionCreated {
        execution: new.id,
        function: spec.function.clone(),
        queue: spec.queue.clone(),
    };
    event_log::record(conn, now, changes, created)?;
    let created = Change::TaskCreated {
        task: TaskRef::new(new.id, root, spec.kind, spec.function.clone()),
        step: 0,
        queue: spec.queue.clone(),
        state: TaskState::Pending,
        claimable_now: spec.delay.is_none_or(|d| d.is_zero()),
    };
    event_log::record(conn, now, changes, created)?;
    Ok(Dispatched::Created(new.id))
}
