//! Tasks: reads, raw task writes, and loading a task's head (what fencing and
//! changes need, without decoding its JSON). [`TaskStore`] is implemented here,
//! with claims in `claim.rs` and a claim's writes in `leases.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use courier_core::{
    ClaimRequest, Claimed, Committed, ExecutionId, LeaseKey, LeaseToken, QueueDepth, Renewed, StoreError, StoreResult,
    TaskFilter, TaskId, TaskKind, TaskRecord, TaskRef, TaskState, TaskStore,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use serde_json::Value;

use crate::SqliteStore;
use crate::codec::{enum_at, limit, uuid_at, uuid_opt_at};
use crate::error::Result;
use crate::rows::{insert_task, overwrite_task, task_at, task_columns};
use crate::{claim, leases, maintenance};

#[async_trait]
impl TaskStore for SqliteStore {
    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        self.read(move |conn, _| get(conn, id)).await
    }

    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
        let ids = ids.to_vec();
        self.read(move |conn, _| get_many(conn, &ids)).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        let filter = filter.clone();
        self.read(move |conn, _| list(conn, &filter)).await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
        self.read(queue_depths).await
    }

    async fn claim_tasks(&self, req: &ClaimRequest) -> StoreResult<Committed<Vec<Claimed>>> {
        let req = req.clone();
        let ageing = self.ageing();
        self.write_changes(move |conn, now, changes| claim::claim(conn, now, ageing, &req, changes))
            .await
    }

    async fn renew_leases(&self, leases: &[LeaseKey], extend: Duration) -> StoreResult<Vec<StoreResult<Renewed>>> {
        let leases = leases.to_vec();
        self.write(move |conn, now| leases::renew(conn, now, &leases, extend))
            .await
    }

    async fn heartbeat(
        &self,
        lease: LeaseKey,
        extend: Duration,
        details: Option<Value>,
    ) -> StoreResult<Committed<Renewed>> {
        self.write_changes(move |conn, now, changes| leases::heartbeat(conn, now, &lease, extend, details, changes))
            .await
    }

    async fn checkpoint(&self, lease: LeaseKey, data: Value) -> StoreResult<Committed<()>> {
        self.write_changes(move |conn, now, changes| leases::checkpoint(conn, now, &lease, data, changes))
            .await
    }

    async fn release_task(&self, lease: LeaseKey, delay: Duration) -> StoreResult<Committed<()>> {
        self.write_changes(move |conn, now, changes| leases::release(conn, now, &lease, delay, changes))
            .await
    }

    async fn suspend_task(&self, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool> {
        self.write(move |conn, _| leases::suspend(conn, &lease, seen_wake_gen))
            .await
    }

    async fn detect_stuck_tasks(&self, heartbeat_timeout: Duration, limit: u32) -> StoreResult<Committed<Vec<TaskId>>> {
        self.write_changes(move |conn, now, changes| {
            maintenance::detect_stuck(conn, now, heartbeat_timeout, limit, changes)
        })
        .await
    }
}

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
    pub(crate) queue: String,
    pub(crate) state: TaskState,
    pub(crate) lease_token: Option<LeaseToken>,
    pub(crate) attempt: u32,
    pub(crate) wake_gen: i64,
}

impl Head {
    /// The task as changes name it.
    pub(crate) fn task_ref(&self) -> TaskRef {
        TaskRef::new(self.execution_id, self.id, self.kind, self.function.clone())
    }
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
        queue: row.get(11)?,
    })
}

/// The head of a task.
pub(crate) fn head(conn: &Connection, id: TaskId) -> Result<Option<Head>> {
    Ok(conn
        .prepare_cached(
            "SELECT rowid, id, execution_id, parent_id, step, kind, function, state, lease_token, attempt, wake_gen, \
             queue FROM tasks WHERE id = ?1",
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
    // A pending task is in one of the two claim indexes; both hold its queue
    // and due time, so neither read touches the table.
    let mut stmt = conn.prepare_cached(
        "SELECT queue, sum(scheduled_for <= ?1), sum(scheduled_for > ?1) FROM ( \
             SELECT queue, scheduled_for FROM tasks INDEXED BY tasks_claim \
             WHERE state = 'pending' AND kind NOT IN ('orchestrator', 'activity') \
             UNION ALL \
             SELECT queue, scheduled_for FROM tasks INDEXED BY tasks_pending_function \
             WHERE state = 'pending' AND kind IN ('orchestrator', 'activity')) \
         GROUP BY queue",
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
