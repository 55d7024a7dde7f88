//! Task rows: [`TaskStore`] for [`PostgresStore`] (reads and listings here,
//! claims in `claim`, lease writes and stuck detection in `leases`), bulk
//! insertion of new tasks (children, effects; a dispatch inserts its root tasks with
//! their executions, in `dispatch`), and the raw seed-parity
//! record operations ([`SeedRecords`](courier_core::SeedRecords) delegates here).

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use courier_core::{
    ClaimRequest, Claimed, Committed, ExecutionId, LeaseKey, NewTask, QueueDepth, Renewed, StoreError, StoreResult,
    TaskFilter, TaskId, TaskKind, TaskRecord, TaskState, TaskStore,
};
use serde_json::Value;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{count, limit, micros, now_plus, opt_micros, tags_json, tags_sql, to_json};
use crate::error::{Error, Result};
use crate::rows::{self, TASK_COLUMNS};
use crate::statements::{Statements, execute, query, query_one, query_opt, query_typed};
use crate::transaction::{Tx, in_transaction};
use crate::{claim, leases};

#[async_trait]
impl TaskStore for PostgresStore {
    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>> {
        get(self, id).await
    }

    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
        get_many(self, ids).await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
        list(self, filter).await
    }

    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>> {
        queue_depths(self).await
    }

    async fn claim_tasks(&self, req: &ClaimRequest) -> StoreResult<Committed<Vec<Claimed>>> {
        claim::claim(self, req).await
    }

    async fn renew_leases(&self, leases: &[LeaseKey], extend: Duration) -> StoreResult<Vec<StoreResult<Renewed>>> {
        leases::renew(self, leases, extend).await
    }

    async fn heartbeat(
        &self,
        lease: LeaseKey,
        extend: Duration,
        details: Option<Value>,
    ) -> StoreResult<Committed<Renewed>> {
        leases::heartbeat(self, lease, extend, details.as_ref()).await
    }

    async fn checkpoint(&self, lease: LeaseKey, data: Value) -> StoreResult<Committed<()>> {
        leases::checkpoint(self, lease, &data).await
    }

    async fn release_task(&self, lease: LeaseKey, delay: Duration) -> StoreResult<Committed<()>> {
        leases::release(self, lease, delay).await
    }

    async fn suspend_task(&self, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool> {
        leases::suspend(self, lease, seen_wake_gen).await
    }

    async fn detect_stuck_tasks(&self, heartbeat_timeout: Duration, limit: u32) -> StoreResult<Committed<Vec<TaskId>>> {
        leases::detect_stuck(self, heartbeat_timeout, limit).await
    }
}

/// New task rows gathered column by column, inserted with one statement.
#[derive(Default)]
pub(crate) struct NewTaskRows<'a> {
    ids: Vec<Uuid>,
    execution_ids: Vec<Uuid>,
    parent_ids: Vec<Option<Uuid>>,
    steps: Vec<i64>,
    kinds: Vec<&'static str>,
    functions: Vec<&'a str>,
    versions: Vec<Option<&'a str>>,
    queues: Vec<&'a str>,
    tags: Vec<Value>,
    priorities: Vec<i32>,
    states: Vec<&'static str>,
    args: Vec<&'a Value>,
    results: Vec<Option<&'a Value>>,
    retries: Vec<Value>,
    timeouts: Vec<Option<i64>>,
    delays: Vec<i64>,
}

/// One new task, as [`NewTaskRows::push`] takes it.
pub(crate) struct NewTaskRow<'a> {
    pub id: TaskId,
    pub execution_id: ExecutionId,
    pub parent_id: Option<TaskId>,
    pub step: i64,
    pub kind: TaskKind,
    pub function: &'a str,
    pub spec: &'a courier_core::TaskSpec,
    pub args: &'a Value,
    pub state: TaskState,
    pub result: Option<&'a Value>,
    /// Due this long after now.
    pub delay: Duration,
}

// A dispatch's root tasks are written by `dispatch`'s own statement, with
// their executions: a column given a value here needs one there too.
static INSERT_NEW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tasks (id, execution_id, parent_id, step, kind, function, version, queue, tags, priority,
             state, args, result, attempt, retry, timeout_us, wake_gen, scheduled_for, created_at, completed_at)
         SELECT x.id, x.execution_id, x.parent_id, x.step, x.kind, x.function, x.version, x.queue, {tags}, x.priority,
             x.state, x.args, x.result, 0, x.retry, x.timeout_us, 0, {due}, now(),
             CASE WHEN x.state = 'completed' THEN now() END
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[],
                     $9::jsonb[], $10::int4[], $11::text[], $12::jsonb[], $13::jsonb[], $14::jsonb[], $15::int8[],
                     $16::int8[])
             AS x(id, execution_id, parent_id, step, kind, function, version, queue, tags, priority, state, args,
                  result, retry, timeout_us, delay_us)
         ON CONFLICT DO NOTHING
         RETURNING id",
        tags = tags_sql("x.tags"),
        due = now_plus("x.delay_us"),
    )
});

impl<'a> NewTaskRows<'a> {
    /// Adds a task.
    pub(crate) fn push(&mut self, row: NewTaskRow<'a>) -> Result<()> {
        self.ids.push(row.id.0);
        self.execution_ids.push(row.execution_id.0);
        self.parent_ids.push(row.parent_id.map(|p| p.0));
        self.steps.push(row.step);
        self.kinds.push(row.kind.as_str());
        self.functions.push(row.function);
        self.versions.push(row.spec.version.as_deref());
        self.queues.push(&row.spec.queue);
        self.tags.push(tags_json(&row.spec.tags));
        self.priorities.push(row.spec.priority);
        self.states.push(row.state.as_str());
        self.args.push(row.args);
        self.results.push(row.result);
        self.retries.push(to_json(&row.spec.retry)?);
        self.timeouts.push(opt_micros(row.spec.timeout));
        self.delays.push(micros(row.delay));
        Ok(())
    }

    /// Adds a child task at its initial state.
    pub(crate) fn push_child(&mut self, task: &'a NewTask, state: TaskState, result: Option<&'a Value>) -> Result<()> {
        let delay = match (task.spec.kind, state) {
            (TaskKind::Effect, _) | (_, TaskState::Waiting) => Duration::ZERO,
            _ => task.spec.delay.unwrap_or_default(),
        };
        self.push(NewTaskRow {
            id: task.id(),
            execution_id: task.execution_id,
            parent_id: task.parent_id,
            step: task.step,
            kind: task.spec.kind,
            function: &task.spec.function,
            spec: &task.spec,
            args: &task.spec.args,
            state,
            result,
            delay,
        })
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Inserts the rows, skipping any whose id or `(execution, step)` is taken;
    /// returns the ids inserted.
    pub(crate) async fn insert(&self, tx: &Tx) -> Result<HashSet<Uuid>> {
        if self.is_empty() {
            return Ok(HashSet::new());
        }
        let rows = query(
            tx,
            &INSERT_NEW,
            &[
                &self.ids,
                &self.execution_ids,
                &self.parent_ids,
                &self.steps,
                &self.kinds,
                &self.functions,
                &self.versions,
                &self.queues,
                &self.tags,
                &self.priorities,
                &self.states,
                &self.args,
                &self.results,
                &self.retries,
                &self.timeouts,
                &self.delays,
            ],
        )
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<_, Uuid>(0)?)).collect()
    }
}

static INSERT_RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
    )
});

/// Inserts a task record exactly as given.
pub(crate) async fn insert_record<C: Statements>(client: &C, t: &TaskRecord) -> Result<()> {
    let error = t.error.as_ref().map(to_json).transpose()?;
    let retry = to_json(&t.retry)?;
    let attempt = i32::try_from(t.attempt).unwrap_or(i32::MAX);
    execute(
        client,
        &INSERT_RECORD,
        &[
            &t.id.0,
            &t.execution_id.0,
            &t.parent_id.map(|p| p.0),
            &t.step,
            &t.kind.as_str(),
            &t.function,
            &t.version,
            &t.queue,
            &t.tags,
            &t.priority,
            &t.state.as_str(),
            &t.args,
            &t.result,
            &error,
            &t.checkpoint,
            &attempt,
            &retry,
            &opt_micros(t.timeout),
            &t.lease_owner,
            &t.lease_token.map(|l| l.0),
            &t.lease_expires_at,
            &t.heartbeat_at,
            &t.stuck_at,
            &t.wake_gen,
            &t.scheduled_for,
            &t.created_at,
            &t.started_at,
            &t.completed_at,
        ],
    )
    .await
    .map_err(|e| e.conflict_on(t.id))?;
    Ok(())
}

/// Inserts task records as given, all or none.
pub(crate) async fn create_records(store: &PostgresStore, tasks: &[TaskRecord]) -> StoreResult<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    in_transaction!(store, |tx| async move {
        for t in tasks {
            insert_record(tx, t).await?;
        }
        Ok::<_, Error>(())
    })
}

/// Overwrites every field but the identity (id, execution, step, creation time).
pub(crate) async fn update_record(store: &PostgresStore, t: &TaskRecord) -> StoreResult<()> {
    let client = store.client().await?;
    let error = t.error.as_ref().map(to_json).transpose()?;
    let retry = to_json(&t.retry)?;
    let attempt = i32::try_from(t.attempt).unwrap_or(i32::MAX);
    let n = execute(
        &client,
        "UPDATE tasks SET parent_id = $2, kind = $3, function = $4, version = $5, queue = $6, tags = $7,
             priority = $8, state = $9, args = $10, result = $11, error = $12, checkpoint = $13, attempt = $14,
             retry = $15, timeout_us = $16, lease_owner = $17, lease_token = $18, lease_expires_at = $19,
             heartbeat_at = $20, stuck_at = $21, wake_gen = $22, scheduled_for = $23, started_at = $24,
             completed_at = $25
         WHERE id = $1",
        &[
            &t.id.0,
            &t.parent_id.map(|p| p.0),
            &t.kind.as_str(),
            &t.function,
            &t.version,
            &t.queue,
            &t.tags,
            &t.priority,
            &t.state.as_str(),
            &t.args,
            &t.result,
            &error,
            &t.checkpoint,
            &attempt,
            &retry,
            &opt_micros(t.timeout),
            &t.lease_owner,
            &t.lease_token.map(|l| l.0),
            &t.lease_expires_at,
            &t.heartbeat_at,
            &t.stuck_at,
            &t.wake_gen,
            &t.scheduled_for,
            &t.started_at,
            &t.completed_at,
        ],
    )
    .await?;
    if n == 0 {
        return Err(StoreError::TaskNotFound(t.id));
    }
    Ok(())
}

/// One task.
async fn get(store: &PostgresStore, id: TaskId) -> StoreResult<Option<TaskRecord>> {
    let client = store.client().await?;
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
    let row = query_opt(&client, &sql, &[&id.0]).await?;
    Ok(row.as_ref().map(rows::task).transpose()?)
}

/// The tasks among `ids` that exist.
async fn get_many(store: &PostgresStore, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let client = store.client().await?;
    let ids: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)");
    let rows = query(&client, &sql, &[&ids]).await?;
    Ok(rows.iter().map(rows::task).collect::<Result<_>>()?)
}

/// Tasks by filter: an execution's by step, otherwise newest first.
async fn list(store: &PostgresStore, f: &TaskFilter) -> StoreResult<Vec<TaskRecord>> {
    let client = store.client().await?;
    let mut sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE true");
    if f.execution_id.is_some() {
        sql.push_str(" AND execution_id = $1");
        if f.after_step.is_some() {
            sql.push_str(" AND step > $2");
        }
    }
    if f.state.is_some() {
        sql.push_str(" AND state = $3");
    }
    if f.queue.is_some() {
        sql.push_str(" AND queue = $4");
    }
    if f.execution_id.is_some() {
        sql.push_str(" ORDER BY step");
    } else {
        sql.push_str(" ORDER BY created_at DESC, id DESC");
    }
    sql.push_str(" LIMIT $5 OFFSET $6");
    let rows = query_typed(
        &client,
        &sql,
        &[Type::UUID, Type::INT8, Type::TEXT, Type::TEXT, Type::INT8, Type::INT8],
        &[
            &f.execution_id.map(|e| e.0),
            &f.after_step,
            &f.state.map(|s| s.as_str()),
            &f.queue,
            &limit(f.limit),
            &i64::from(f.offset),
        ],
    )
    .await?;
    Ok(rows.iter().map(rows::task).collect::<Result<_>>()?)
}

/// How many tasks, optionally on one queue and in one state.
pub(crate) async fn count_tasks(
    store: &PostgresStore,
    queue: Option<&str>,
    state: Option<TaskState>,
) -> StoreResult<u64> {
    let client = store.client().await?;
    let row = query_one(
        &client,
        "SELECT count(*) FROM tasks WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR state = $2)",
        &[&queue, &state.map(|s| s.as_str())],
    )
    .await?;
    Ok(count(row.try_get(0).map_err(Error::from)?))
}

/// Work per queue with pending or running tasks.
async fn queue_depths(store: &PostgresStore) -> StoreResult<Vec<QueueDepth>> {
    let client = store.client().await?;
    let rows = query(
        &client,
        "SELECT queue,
                count(*) FILTER (WHERE state = 'pending' AND scheduled_for <= now()),
                count(*) FILTER (WHERE state = 'pending' AND scheduled_for > now()),
                count(*) FILTER (WHERE state = 'running')
         FROM tasks WHERE state IN ('pending', 'running')
         GROUP BY queue ORDER BY queue",
        &[],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(QueueDepth {
                queue: r.try_get(0)?,
                ready: count(r.try_get(1)?),
                scheduled: count(r.try_get(2)?),
                running: count(r.try_get(3)?),
            })
        })
        .collect::<Result<_>>()
        .map_err(StoreError::from)
}
