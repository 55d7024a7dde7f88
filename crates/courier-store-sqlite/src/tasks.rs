//! Task reads, raw task writes, and two moves many operations share: loading a
//! task's head (what fencing and events need, without decoding its JSON) and
//! waking a parent.

use std::collections::BTreeMap;

use courier_core::{
    ExecutionId, LeaseToken, QueueDepth, StoreError, TaskFilter, TaskId, TaskKind, TaskRecord, TaskState, events,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use crate::codec::{enum_at, limit, uuid_at, uuid_opt_at};
use crate::error::Result;
use crate::event_log;
use crate::rows::{insert_task, overwrite_task, task_at, task_columns};

/// The parts of a task that fencing, state moves and events need.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) rowid: i64,
    pub(crate) id: TaskId,
    pub(crate) execution_id: ExecutionId,
    pub(crate) parent_id: Option<TaskId>,
    pub(crate) step: i64,
    pub(crate) kind: TaskKind,
    pub(crate) function: String,
    pub(crate) state: TaskState,
    pub(crate) lease_token: Option<LeaseToken>,
    pub(crate) attempt: u32,
    pub(crate) wake_gen: i64,
}

fn head_at(row: &Row<'_>) -> rusqlite::Result<Head> {
    Ok(Head {
        rowid: row.get(0)?,
        id: TaskId(uuid_at(row, 1)?),
        execution_id: ExecutionId(uuid_at(row, 2)?),
        parent_id: uuid_opt_at(row, 3)?.map(TaskId),
        step: row.get(4)?,
        kind: enum_at(row, 5)?,
        function: row.get(6)?,
        state: enum_at(row, 7)?,
        lease_token: uuid_opt_at(row, 8)?.map(LeaseToken),
        attempt: row.get(9)?,
        wake_gen: row.get(10)?,
    })
}

/// The head of a task.
pub(crate) fn head(conn: &Connection, id: TaskId) -> Result<Option<Head>> {
    Ok(conn
        .prepare_cached(
            "SELECT rowid, id, execution_id, parent_id, step, kind, function, state, lease_token, attempt, wake_gen \
             FROM tasks WHERE id = ?1",
        )?
        .query_row([id.0.as_bytes()], head_at)
        .optional()?)
}

/// A whole task.
pub(crate) fn get(conn: &Connection, id: TaskId) -> Result<Option<TaskRecord>> {
    Ok(conn
        .prepare_cached(concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?1"))?
        .query_row([id.0.as_bytes()], |row| task_at(row).map(|(_, t)| t))
        .optional()?)
}

/// A whole task, by rowid (after an update, to snapshot it).
pub(crate) fn get_by_rowid(conn: &Connection, rowid: i64) -> Result<Option<TaskRecord>> {
    Ok(conn
        .prepare_cached(concat!("SELECT ", task_columns!(), " FROM tasks WHERE rowid = ?1"))?
        .query_row([rowid], |row| task_at(row).map(|(_, t)| t))
        .optional()?)
}

/// The tasks among `ids` that exist.
pub(crate) fn get_many(conn: &Connection, ids: &[TaskId]) -> Result<Vec<TaskRecord>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(task) = get(conn, *id)? {
            out.push(task);
        }
    }
    Ok(out)
}

/// The task at `step` of `execution`.
pub(crate) fn at_step(conn: &Connection, execution: ExecutionId, step: i64) -> Result<Option<TaskRecord>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            task_columns!(),
            " FROM tasks WHERE execution_id = ?1 AND step = ?2"
        ))?
        .query_row((execution.0.as_bytes(), step), |row| task_at(row).map(|(_, t)| t))
        .optional()?)
}

/// Tasks matching `filter`.
pub(crate) fn list(conn: &Connection, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
    let mut sql = String::from(concat!("SELECT ", task_columns!(), " FROM tasks WHERE 1 = 1"));
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(execution) = filter.execution_id {
        sql.push_str(" AND execution_id = ?");
        args.push(SqlValue::Blob(execution.0.as_bytes().to_vec()));
        if let Some(after) = filter.after_step {
            sql.push_str(" AND step > ?");
            args.push(SqlValue::Integer(after));
        }
    }
    if let Some(state) = filter.state {
        sql.push_str(" AND state = ?");
        args.push(SqlValue::Text(state.as_str().into()));
    }
    if let Some(queue) = &filter.queue {
        sql.push_str(" AND queue = ?");
        args.push(SqlValue::Text(queue.clone()));
    }
    sql.push_str(if filter.execution_id.is_some() {
        " ORDER BY step"
    } else {
        " ORDER BY created_at DESC, id DESC"
    });
    sql.push_str(" LIMIT ? OFFSET ?");
    args.push(SqlValue::Integer(limit(filter.limit)));
    args.push(SqlValue::Integer(i64::from(filter.offset)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |row| task_at(row).map(|(_, t)| t))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many tasks (on `queue`, in `state`).
pub(crate) fn count(conn: &Connection, queue: Option<&str>, state: Option<TaskState>) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM tasks WHERE (?1 IS NULL OR queue = ?1) AND (?2 IS NULL OR state = ?2)")?
        .query_row((queue, state.map(TaskState::as_str)), |row| row.get(0))?;
    Ok(n as u64)
}

/// Work per queue, for queues with pending or running tasks, by queue name.
pub(crate) fn queue_depths(conn: &Connection, now: i64) -> Result<Vec<QueueDepth>> {
    let mut depths: BTreeMap<String, QueueDepth> = BTreeMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT queue, sum(scheduled_for <= ?1), sum(scheduled_for > ?1) FROM tasks INDEXED BY tasks_claim \
         WHERE state = 'pending' GROUP BY queue",
    )?;
    let mut rows = stmt.query([now])?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(0)?;
        let depth = depths.entry(queue.clone()).or_insert_with(|| empty_depth(queue));
        depth.ready = row.get::<_, i64>(1)? as u64;
        depth.scheduled = row.get::<_, i64>(2)? as u64;
    }
    let mut stmt = conn.prepare_cached("SELECT queue, count(*) FROM tasks WHERE state = 'running' GROUP BY queue")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let queue: String = row.get(0)?;
        let depth = depths.entry(queue.clone()).or_insert_with(|| empty_depth(queue));
        depth.running = row.get::<_, i64>(1)? as u64;
    }
    Ok(depths.into_values().collect())
}

fn empty_depth(queue: String) -> QueueDepth {
    QueueDepth {
        queue,
        ready: 0,
        scheduled: 0,
        running: 0,
    }
}

/// Inserts task records as given (the caller's transaction makes it all or none).
pub(crate) fn create(conn: &Connection, tasks: &[TaskRecord]) -> Result<()> {
    for task in tasks {
        insert_task(conn, task)?;
    }
    Ok(())
}

/// Overwrites a task record.
pub(crate) fn update(conn: &Connection, task: &TaskRecord) -> Result<()> {
    if overwrite_task(conn, task)? {
        Ok(())
    } else {
        Err(StoreError::TaskNotFound(task.id).into())
    }
}

/// A child of `parent` settled: bump its `wake_gen` so a suspend racing this sees
/// it, and move it from `waiting` to `pending`, due now.
pub(crate) fn wake_parent(conn: &Connection, now: i64, parent: TaskId) -> Result<()> {
    let Some(p) = head(conn, parent)? else {
        return Ok(());
    };
    if p.state == TaskState::Waiting {
        conn.prepare_cached(
            "UPDATE tasks SET wake_gen = wake_gen + 1, state = 'pending', scheduled_for = ?2 WHERE rowid = ?1",
        )?
        .execute((p.rowid, now))?;
        let event = events::task_queued(p.execution_id, p.id, p.kind, &p.function, p.attempt, "woken");
        event_log::append(conn, now, &event)?;
    } else {
        conn.prepare_cached("UPDATE tasks SET wake_gen = wake_gen + 1 WHERE rowid = ?1")?
            .execute([p.rowid])?;
    }
    Ok(())
}
