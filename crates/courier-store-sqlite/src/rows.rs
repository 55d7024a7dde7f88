//! Row ↔ record mapping for the two big tables, and the raw inserts and
//! overwrites of whole records.

use courier_core::{ExecutionId, ExecutionRecord, LeaseToken, ParentLink, TaskId, TaskRecord, TaskSpec, TaskState};
use rusqlite::{Connection, Row, params};

use crate::codec::{
    enum_at, json, json_at, json_opt, json_opt_at, micros, nanos, retry_at, retry_text, time_at, time_opt_at, uuid_at,
    uuid_opt_at,
};
use crate::error::{Result, conflict_on};

/// The columns of `tasks` (with `rowid` first), in the order [`task_at`] reads them.
/// A macro so that queries are assembled with `concat!` at compile time.
macro_rules! task_columns {
    () => {
        "rowid, id, execution_id, parent_id, step, kind, function, version, queue, tags, priority, state, args, \
         result, error, checkpoint, attempt, retry, timeout_ns, lease_owner, lease_token, lease_expires_at, \
         heartbeat_at, stuck_at, wake_gen, scheduled_for, created_at, started_at, completed_at"
    };
}
pub(crate) use task_columns;

/// Reads a task selected with [`task_columns!`]; returns its rowid too.
pub(crate) fn task_at(row: &Row<'_>) -> rusqlite::Result<(i64, TaskRecord)> {
    let timeout: Option<i64> = row.get(18)?;
    let record = TaskRecord {
        id: TaskId(uuid_at(row, 1)?),
        execution_id: ExecutionId(uuid_at(row, 2)?),
        parent_id: uuid_opt_at(row, 3)?.map(TaskId),
        step: row.get(4)?,
        kind: enum_at(row, 5)?,
        function: row.get(6)?,
        version: row.get(7)?,
        queue: row.get(8)?,
        tags: json_at(row, 9)?,
        priority: row.get(10)?,
        state: enum_at(row, 11)?,
        args: json_at(row, 12)?,
        result: json_opt_at(row, 13)?,
        error: json_opt_at(row, 14)?,
        checkpoint: json_opt_at(row, 15)?,
        attempt: row.get(16)?,
        retry: retry_at(row, 17)?,
        timeout: timeout.map(|ns| std::time::Duration::from_nanos(ns.max(0) as u64)),
        lease_owner: row.get(19)?,
        lease_token: uuid_opt_at(row, 20)?.map(LeaseToken),
        lease_expires_at: time_opt_at(row, 21)?,
        heartbeat_at: time_opt_at(row, 22)?,
        stuck_at: time_opt_at(row, 23)?,
        wake_gen: row.get(24)?,
        scheduled_for: time_at(row, 25)?,
        created_at: time_at(row, 26)?,
        started_at: time_opt_at(row, 27)?,
        completed_at: time_opt_at(row, 28)?,
    };
    Ok((row.get(0)?, record))
}

/// The columns of `executions`, in the order [`execution_at`] reads them.
macro_rules! execution_columns {
    () => {
        "id, function, version, state, args, result, error, queue, tags, priority, idempotency_key, created_at, \
         updated_at, started_at, completed_at, deadline, parent_execution_id, parent_step, parent_close"
    };
}
pub(crate) use execution_columns;

/// Reads an execution selected with [`execution_columns!`].
pub(crate) fn execution_at(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: ExecutionId(uuid_at(row, 0)?),
        function: row.get(1)?,
        version: row.get(2)?,
        state: enum_at(row, 3)?,
        args: json_at(row, 4)?,
        result: json_opt_at(row, 5)?,
        error: json_opt_at(row, 6)?,
        queue: row.get(7)?,
        tags: json_at(row, 8)?,
        priority: row.get(9)?,
        idempotency_key: row.get(10)?,
        created_at: time_at(row, 11)?,
        updated_at: time_at(row, 12)?,
        started_at: time_opt_at(row, 13)?,
        completed_at: time_opt_at(row, 14)?,
        deadline: time_opt_at(row, 15)?,
        parent: match uuid_opt_at(row, 16)? {
            Some(parent) => Some(ParentLink {
                execution_id: ExecutionId(parent),
                step: row.get(17)?,
                close: enum_at(row, 18)?,
            }),
            None => None,
        },
    })
}

/// Inserts a task record as given; a taken id or step is a conflict.
pub(crate) fn insert_task(conn: &Connection, t: &TaskRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO tasks (id, execution_id, parent_id, step, kind, function, version, queue, tags, priority, \
         state, args, result, error, checkpoint, attempt, retry, timeout_ns, lease_owner, lease_token, \
         lease_expires_at, heartbeat_at, stuck_at, wake_gen, scheduled_for, created_at, started_at, completed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, \
         ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
    )?;
    stmt.execute(params![
        t.id.0.as_bytes(),
        t.execution_id.0.as_bytes(),
        t.parent_id.map(|p| *p.0.as_bytes()),
        t.step,
        t.kind.as_str(),
        t.function,
        t.version,
        t.queue,
        json(&t.tags)?,
        t.priority,
        t.state.as_str(),
        json(&t.args)?,
        json_opt(t.result.as_ref())?,
        json_opt(t.error.as_ref())?,
        json_opt(t.checkpoint.as_ref())?,
        t.attempt,
        retry_text(&t.retry)?,
        t.timeout.map(nanos),
        t.lease_owner,
        t.lease_token.map(|l| *l.0.as_bytes()),
        t.lease_expires_at.map(micros),
        t.heartbeat_at.map(micros),
        t.stuck_at.map(micros),
        t.wake_gen,
        micros(t.scheduled_for),
        micros(t.created_at),
        t.started_at.map(micros),
        t.completed_at.map(micros),
    ])
    .map_err(conflict_on(t.id, "task"))?;
    Ok(())
}

/// Overwrites every column of a task but its id; whether the task exists.
pub(crate) fn overwrite_task(conn: &Connection, t: &TaskRecord) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "UPDATE tasks SET execution_id = ?2, parent_id = ?3, step = ?4, kind = ?5, function = ?6, version = ?7, \
         queue = ?8, tags = ?9, priority = ?10, state = ?11, args = ?12, result = ?13, error = ?14, \
         checkpoint = ?15, attempt = ?16, retry = ?17, timeout_ns = ?18, lease_owner = ?19, lease_token = ?20, \
         lease_expires_at = ?21, heartbeat_at = ?22, stuck_at = ?23, wake_gen = ?24, scheduled_for = ?25, \
         created_at = ?26, started_at = ?27, completed_at = ?28 WHERE id = ?1",
    )?;
    let changed = stmt
        .execute(params![
            t.id.0.as_bytes(),
            t.execution_id.0.as_bytes(),
            t.parent_id.map(|p| *p.0.as_bytes()),
            t.step,
            t.kind.as_str(),
            t.function,
            t.version,
            t.queue,
            json(&t.tags)?,
            t.priority,
            t.state.as_str(),
            json(&t.args)?,
            json_opt(t.result.as_ref())?,
            json_opt(t.error.as_ref())?,
            json_opt(t.checkpoint.as_ref())?,
            t.attempt,
            retry_text(&t.retry)?,
            t.timeout.map(nanos),
            t.lease_owner,
            t.lease_token.map(|l| *l.0.as_bytes()),
            t.lease_expires_at.map(micros),
            t.heartbeat_at.map(micros),
            t.stuck_at.map(micros),
            t.wake_gen,
            micros(t.scheduled_for),
            micros(t.created_at),
            t.started_at.map(micros),
            t.completed_at.map(micros),
        ])
        .map_err(conflict_on(t.id, "task step"))?;
    Ok(changed > 0)
}

/// Inserts an execution record as given; a taken id or idempotency key is a conflict.
pub(crate) fn insert_execution(conn: &Connection, e: &ExecutionRecord) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO executions (id, function, version, state, args, result, error, queue, tags, priority, \
         idempotency_key, created_at, updated_at, started_at, completed_at, deadline, parent_execution_id, \
         parent_step, parent_close) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?;
    stmt.execute(params![
        e.id.0.as_bytes(),
        e.function,
        e.version,
        e.state.as_str(),
        json(&e.args)?,
        json_opt(e.result.as_ref())?,
        json_opt(e.error.as_ref())?,
        e.queue,
        json(&e.tags)?,
        e.priority,
        e.idempotency_key,
        micros(e.created_at),
        micros(e.updated_at),
        e.started_at.map(micros),
        e.completed_at.map(micros),
        e.deadline.map(micros),
        e.parent.map(|p| *p.execution_id.0.as_bytes()),
        e.parent.map(|p| p.step),
        e.parent.map(|p| p.close.as_str()),
    ])
    .map_err(conflict_on(e.id, "execution"))?;
    Ok(())
}

/// Overwrites every column of an execution but its id; whether it exists.
pub(crate) fn overwrite_execution(conn: &Connection, e: &ExecutionRecord) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "UPDATE executions SET function = ?2, version = ?3, state = ?4, args = ?5, result = ?6, error = ?7, \
         queue = ?8, tags = ?9, priority = ?10, idempotency_key = ?11, created_at = ?12, updated_at = ?13, \
         started_at = ?14, completed_at = ?15, deadline = ?16, parent_execution_id = ?17, parent_step = ?18, \
         parent_close = ?19 WHERE id = ?1",
    )?;
    let changed = stmt
        .execute(params![
            e.id.0.as_bytes(),
            e.function,
            e.version,
            e.state.as_str(),
            json(&e.args)?,
            json_opt(e.result.as_ref())?,
            json_opt(e.error.as_ref())?,
            e.queue,
            json(&e.tags)?,
            e.priority,
            e.idempotency_key,
            micros(e.created_at),
            micros(e.updated_at),
            e.started_at.map(micros),
            e.completed_at.map(micros),
            e.deadline.map(micros),
            e.parent.map(|p| *p.execution_id.0.as_bytes()),
            e.parent.map(|p| p.step),
            e.parent.map(|p| p.close.as_str()),
        ])
        .map_err(conflict_on(e.id, "execution idempotency key"))?;
    Ok(changed > 0)
}

/// A task the store creates from a [`TaskSpec`] (dispatch, children, effects),
/// with its JSON already encoded.
pub(crate) struct NewTaskRow<'a> {
    pub(crate) id: TaskId,
    pub(crate) execution_id: ExecutionId,
    pub(crate) parent_id: Option<TaskId>,
    pub(crate) step: i64,
    pub(crate) spec: &'a TaskSpec,
    pub(crate) args: &'a str,
    pub(crate) tags: &'a str,
    pub(crate) state: TaskState,
    pub(crate) result: Option<&'a str>,
    pub(crate) scheduled_for: i64,
    pub(crate) now: i64,
    pub(crate) completed_at: Option<i64>,
}

/// Inserts a new task; false (and nothing written) if its id or step is taken.
pub(crate) fn insert_new_task(conn: &Connection, t: &NewTaskRow<'_>) -> Result<bool> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO tasks (id, execution_id, parent_id, step, kind, function, version, queue, tags, priority, \
         state, args, result, attempt, retry, timeout_ns, wake_gen, scheduled_for, created_at, completed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 0, ?14, ?15, 0, ?16, ?17, ?18) \
         ON CONFLICT DO NOTHING",
    )?;
    let spec = t.spec;
    let changed = stmt.execute(params![
        t.id.0.as_bytes(),
        t.execution_id.0.as_bytes(),
        t.parent_id.map(|p| *p.0.as_bytes()),
        t.step,
        spec.kind.as_str(),
        spec.function,
        spec.version,
        spec.queue,
        t.tags,
        spec.priority,
        t.state.as_str(),
        t.args,
        t.result,
        retry_text(&spec.retry)?,
        spec.timeout.map(nanos),
        t.scheduled_for,
        t.now,
        t.completed_at,
    ])?;
    Ok(changed > 0)
}
