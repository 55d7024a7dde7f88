//! Execution rows: [`ExecutionStore`] for [`PostgresStore`] (listings, cancel,
//! time-out, clean-up), the raw seed-parity operations ([`SeedRecords`](courier_core::SeedRecords)
//! delegates here), and the `execution_deadlines` table kept in step with them.
//! Dispatching is a group-commit write (see `dispatch`).

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Cancelled, Change, Committed, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, ExecutionStore,
    StoreError, StoreResult, TaskError, TaskId, TaskKind, TaskRecord, TaskRef, events_of,
};
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{count, limit, parse, to_json};
use crate::error::{Error, Result};
use crate::rows::{self, EXECUTION_COLUMNS};
use crate::statements::{Statements, execute, query, query_one, query_opt, query_typed};
use crate::tasks::insert_record;
use crate::transaction::{Tx, in_transaction};
use crate::wake::Wakes;
use crate::{event_log, family};

#[async_trait]
impl ExecutionStore for PostgresStore {
    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
        get(self, id).await
    }

    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
        list(self, filter).await
    }

    async fn count_executions(&self, state: Option<ExecutionState>) -> StoreResult<u64> {
        count_executions(self, state).await
    }

    async fn cancel_execution(&self, id: ExecutionId, reason: &str) -> StoreResult<Committed<Cancelled>> {
        cancel(self, id, reason).await
    }

    async fn time_out_executions(&self, limit: u32) -> StoreResult<Committed<Vec<Cancelled>>> {
        time_out(self, limit).await
    }

    async fn cleanup_executions(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        clean_up(self, older_than).await
    }
}

static INSERT_RECORD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO executions ({EXECUTION_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    )
});

async fn insert_record_execution<C: Statements>(client: &C, e: &ExecutionRecord) -> Result<()> {
    let error = e.error.as_ref().map(to_json).transpose()?;
    execute(
        client,
        &INSERT_RECORD,
        &[
            &e.id.0,
            &e.function,
            &e.version,
            &e.state.as_str(),
            &e.args,
            &e.result,
            &error,
            &e.queue,
            &e.tags,
            &e.priority,
            &e.idempotency_key,
            &e.created_at,
            &e.updated_at,
            &e.started_at,
            &e.completed_at,
            &e.deadline,
            &e.parent.map(|p| p.execution_id.0),
            &e.parent.map(|p| p.step),
            &e.parent.map(|p| p.close.as_str()),
        ],
    )
    .await
    .map_err(|err| err.conflict_on(e.id))?;
    Ok(())
}

/// Makes `execution_deadlines` agree with the execution's row: a deadline row
/// while it is unfinished and has a deadline, none otherwise.
pub(crate) async fn sync_deadline<C: Statements>(client: &C, id: ExecutionId) -> Result<()> {
    execute(
        client,
        "DELETE FROM execution_deadlines WHERE execution_id = $1",
        &[&id.0],
    )
    .await?;
    execute(
        client,
        "INSERT INTO execution_deadlines (execution_id, deadline)
         SELECT id, deadline FROM executions
         WHERE id = $1 AND deadline IS NOT NULL AND state IN ('pending', 'running')",
        &[&id.0],
    )
    .await?;
    Ok(())
}

/// Forgets the deadlines of executions that finished (cancelled, timed out).
/// Completions forget theirs in the statement that settles the execution
/// (`complete::apply_pass`), one round trip fewer on the hot path.
pub(crate) async fn forget_deadlines<C: Statements>(client: &C, ids: &[Uuid]) -> Result<()> {
    execute(
        client,
        "DELETE FROM execution_deadlines WHERE execution_id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// Inserts an execution record as given.
pub(crate) async fn create(store: &PostgresStore, record: &ExecutionRecord) -> StoreResult<()> {
    in_transaction!(store, |tx| async move {
        insert_record_execution(tx, record).await?;
        sync_deadline(tx, record.id).await
    })
}

/// Inserts an execution record and its root task record, both or neither.
pub(crate) async fn create_with_root(
    store: &PostgresStore,
    record: &ExecutionRecord,
    task: &TaskRecord,
) -> StoreResult<()> {
    in_transaction!(store, |tx| async move {
        insert_record_execution(tx, record).await?;
        insert_record(tx, task).await?;
        sync_deadline(tx, record.id).await
    })
}

/// One execution.
async fn get(store: &PostgresStore, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>> {
    let client = store.client().await?;
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
    let row = query_opt(&client, &sql, &[&id.0]).await?;
    Ok(row.as_ref().map(rows::execution).transpose()?)
}

/// Overwrites every field but the id and creation time.
pub(crate) async fn update(store: &PostgresStore, e: &ExecutionRecord) -> StoreResult<()> {
    in_transaction!(store, |tx| update_in(tx, e))
}

async fn update_in(tx: &Tx, e: &ExecutionRecord) -> Result<()> {
    let error = e.error.as_ref().map(to_json).transpose()?;
    let n = execute(
        tx,
        "UPDATE executions SET function = $2, version = $3, state = $4, args = $5, result = $6, error = $7,
             queue = $8, tags = $9, priority = $10, idempotency_key = $11, updated_at = $12, started_at = $13,
             completed_at = $14, deadline = $15, parent_execution_id = $16, parent_step = $17, parent_close = $18
         WHERE id = $1",
        &[
            &e.id.0,
            &e.function,
            &e.version,
            &e.state.as_str(),
            &e.args,
            &e.result,
            &error,
            &e.queue,
            &e.tags,
            &e.priority,
            &e.idempotency_key,
            &e.updated_at,
            &e.started_at,
            &e.completed_at,
            &e.deadline,
            &e.parent.map(|p| p.execution_id.0),
            &e.parent.map(|p| p.step),
            &e.parent.map(|p| p.close.as_str()),
        ],
    )
    .await
    .map_err(|err| err.conflict_on(e.id))?;
    if n == 0 {
        return Err(StoreError::ExecutionNotFound(e.id).into());
    }
    sync_deadline(tx, e.id).await
}

/// Executions by filter, newest first.
async fn list(store: &PostgresStore, f: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>> {
    let client = store.client().await?;
    let mut sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE true");
    if f.state.is_some() {
        sql.push_str(" AND state = $1");
    }
    if !f.include_internal {
        sql.push_str(" AND function NOT LIKE 'courier.%'");
    }
    if f.function.is_some() {
        sql.push_str(" AND function = $2");
    }
    if f.queue.is_some() {
        sql.push_str(" AND queue = $5");
    }
    if f.created_after.is_some() {
        sql.push_str(" AND created_at >= $6");
    }
    if f.created_before.is_some() {
        sql.push_str(" AND created_at < $7");
    }
    if f.idempotency_key.is_some() {
        sql.push_str(" AND idempotency_key = $8");
    }
    if f.parent.is_some() {
        sql.push_str(" AND parent_execution_id = $9");
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4");
    let rows = query_typed(
        &client,
        &sql,
        &[
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::UUID,
        ],
        &[
            &f.state.map(|s| s.as_str()),
            &f.function,
            &limit(f.limit),
            &i64::from(f.offset),
            &f.queue,
            &f.created_after,
            &f.created_before,
            &f.idempotency_key,
            &f.parent.map(|p| p.0),
        ],
    )
    .await?;
    Ok(rows.iter().map(rows::execution).collect::<Result<_>>()?)
}

/// How many executions (in `state`, if given).
async fn count_executions(store: &PostgresStore, state: Option<ExecutionState>) -> StoreResult<u64> {
    let client = store.client().await?;
    let row = query_one(
        &client,
        "SELECT count(*) FROM executions WHERE $1::text IS NULL OR state = $1",
        &[&state.map(|s| s.as_str())],
    )
    .await?;
    Ok(count(row.try_get(0).map_err(Error::from)?))
}

/// A task cancelled with its execution.
struct CancelledTask {
    execution: ExecutionId,
    step: i64,
    id: TaskId,
    kind: TaskKind,
    function: String,
}

/// Cancels the unfinished tasks of `executions` (their leases go with them), in
/// step order per execution.
async fn cancel_tasks(tx: &Tx, executions: &[Uuid]) -> Result<Vec<CancelledTask>> {
    let rows = query(
        tx,
        "UPDATE tasks SET state = 'cancelled', completed_at = now(), lease_token = NULL, lease_expires_at = NULL
         WHERE execution_id = ANY($1) AND state IN ('pending', 'running', 'waiting')
         RETURNING execution_id, step, id, kind, function",
        &[&executions],
    )
    .await?;
    let mut cancelled: Vec<CancelledTask> = rows
        .iter()
        .map(|r| {
            Ok(CancelledTask {
                execution: ExecutionId(r.try_get(0)?),
                step: r.try_get(1)?,
                id: TaskId(r.try_get(2)?),
                kind: parse(r.try_get::<_, &str>(3)?)?,
                function: r.try_get(4)?,
            })
        })
        .collect::<Result<_>>()?;
    cancelled.sort_by_key(|t| (t.execution, t.step));
    Ok(cancelled)
}

/// The tasks of `execution` among `cancelled`, each with its `TaskCancelled`.
fn report(execution: ExecutionId, cancelled: &[CancelledTask], reason: &str, changes: &mut Vec<Change>) -> Vec<TaskId> {
    cancelled
        .iter()
        .filter(|t| t.execution == execution)
        .map(|t| {
            changes.push(Change::TaskCancelled {
                task: TaskRef::new(t.execution, t.id, t.kind, t.function.clone()),
                reason: reason.to_string(),
            });
            t.id
        })
        .collect()
}

/// Cancels an execution and its unfinished tasks.
async fn cancel(store: &PostgresStore, id: ExecutionId, reason: &str) -> StoreResult<Committed<Cancelled>> {
    in_transaction!(store, |tx| cancel_in(tx, id, reason))
}

async fn cancel_in(tx: &Tx, id: ExecutionId, reason: &str) -> Result<Committed<Cancelled>> {
    let mut changes = Vec::new();
    let (cancelled, end) = cancel_locked(tx, id, reason, &mut changes).await?;
    let Some(end) = end else {
        return Ok(Committed::unchanged(cancelled));
    };
    let mut wakes = Wakes::default();
    family::ended(tx, vec![end], &mut changes, &mut wakes).await?;
    wakes.apply(tx, &mut changes).await?;
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(cancelled, changes))
}

/// Cancels an execution and its unfinished tasks inside the caller's
/// transaction, recording their changes; also returns the `ExecutionEnded` if it
/// ended now (none if it had ended before), for the caller to follow to its
/// parent and children.
pub(crate) async fn cancel_locked(
    tx: &Tx,
    id: ExecutionId,
    reason: &str,
    changes: &mut Vec<Change>,
) -> Result<(Cancelled, Option<Change>)> {
    // The execution row is locked first, so a concurrent completion of its root
    // cannot settle it between this check and the update.
    let row = query_opt(
        tx,
        "SELECT state, function FROM executions WHERE id = $1 FOR UPDATE",
        &[&id.0],
    )
    .await?
    .ok_or(StoreError::ExecutionNotFound(id))?;
    let previous: ExecutionState = parse(row.try_get::<_, &str>(0)?)?;
    if previous.is_terminal() {
        let unchanged = Cancelled {
            execution_id: id,
            previous,
            tasks: Vec::new(),
        };
        return Ok((unchanged, None));
    }
    let function: String = row.try_get(1)?;
    let cancelled = cancel_tasks(tx, &[id.0]).await?;
    let tasks = report(id, &cancelled, reason, changes);
    let error = to_json(&TaskError::new(TaskError::CANCELLED, reason))?;
    execute(
        tx,
        "UPDATE executions SET state = 'cancelled', error = $2, completed_at = now(), updated_at = now()
         WHERE id = $1",
        &[&id.0, &error],
    )
    .await?;
    forget_deadlines(tx, &[id.0]).await?;
    let end = Change::ExecutionEnded {
        execution: id,
        function,
        state: ExecutionState::Cancelled,
        result: None,
        error: None,
        reason: Some(reason.to_string()),
    };
    changes.push(end.clone());
    Ok((
        Cancelled {
            execution_id: id,
            previous,
            tasks,
        },
        Some(end),
    ))
}

/// Times out unfinished executions past their deadline.
async fn time_out(store: &PostgresStore, max: u32) -> StoreResult<Committed<Vec<Cancelled>>> {
    if max == 0 {
        return Ok(Committed::unchanged(Vec::new()));
    }
    in_transaction!(store, |tx| time_out_in(tx, max))
}

async fn time_out_in(tx: &Tx, max: u32) -> Result<Committed<Vec<Cancelled>>> {
    let due = query(
        tx,
        "SELECT e.id, e.state, e.function FROM execution_deadlines d JOIN executions e ON e.id = d.execution_id
         WHERE d.deadline <= now() AND e.state IN ('pending', 'running')
         ORDER BY d.deadline LIMIT $1 FOR UPDATE OF e SKIP LOCKED",
        &[&i64::from(max)],
    )
    .await?;
    if due.is_empty() {
        return Ok(Committed::unchanged(Vec::new()));
    }
    let mut expired: Vec<(ExecutionId, ExecutionState, String)> = Vec::with_capacity(due.len());
    for r in &due {
        expired.push((
            ExecutionId(r.try_get(0)?),
            parse(r.try_get::<_, &str>(1)?)?,
            r.try_get(2)?,
        ));
    }
    let ids: Vec<Uuid> = expired.iter().map(|(id, _, _)| id.0).collect();
    let cancelled = cancel_tasks(tx, &ids).await?;
    let error = to_json(&TaskError::new(TaskError::TIMEOUT, "the execution outlived its expiry"))?;
    execute(
        tx,
        "UPDATE executions SET state = 'timed_out', error = $2, completed_at = now(), updated_at = now()
         WHERE id = ANY($1)",
        &[&ids, &error],
    )
    .await?;
    forget_deadlines(tx, &ids).await?;
    let mut changes = Vec::new();
    let mut out = Vec::with_capacity(expired.len());
    for (id, previous, function) in expired {
        let tasks = report(id, &cancelled, "execution timed out", &mut changes);
        changes.push(Change::ExecutionEnded {
            execution: id,
            function,
            state: ExecutionState::TimedOut,
            result: None,
            error: None,
            reason: None,
        });
        out.push(Cancelled {
            execution_id: id,
            previous,
            tasks,
        });
    }
    let ends = changes.clone();
    let mut wakes = Wakes::default();
    family::ended(tx, ends, &mut changes, &mut wakes).await?;
    wakes.apply(tx, &mut changes).await?;
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(out, changes))
}

/// Finished executions are deleted this many at a time, each chunk in its own
/// transaction, so a first cleanup of a large backlog holds no locks for long.
const CLEANUP_CHUNK: i64 = 2000;

/// Deletes finished executions older than `older_than` with every row they own
/// (the webhook deliveries they made and those deliveries' attempts included),
/// then the deliveries skipped before `older_than` that no execution makes.
async fn clean_up(store: &PostgresStore, older_than: DateTime<Utc>) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let n = in_transaction!(store, |tx| clean_up_chunk(tx, older_than))?;
        total += n;
        if n < CLEANUP_CHUNK as u64 {
            break;
        }
    }
    // Deliveries skipped when their event arrived have no execution to be
    // cleaned up with: they go once as old as the executions cleaned.
    while in_transaction!(store, |tx| clean_up_skipped_chunk(tx, older_than))? >= CLEANUP_CHUNK as u64 {}
    Ok(total)
}

async fn clean_up_skipped_chunk(tx: &Tx, older_than: DateTime<Utc>) -> Result<u64> {
    let row = query_one(
        tx,
        "WITH gone AS (
             DELETE FROM webhook_deliveries WHERE id IN (
                 SELECT d.id FROM webhook_deliveries d
                 WHERE d.state = 'skipped' AND d.created_at < $1
                     AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.id = d.execution_id)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id
         ),
         attempts_gone AS (DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM gone))
         SELECT count(*) FROM gone",
        &[&older_than, &CLEANUP_CHUNK],
    )
    .await?;
    Ok(count(row.try_get(0)?))
}

async fn clean_up_chunk(tx: &Tx, older_than: DateTime<Utc>) -> Result<u64> {
    let row = query_one(
        tx,
        "WITH gone AS (
             DELETE FROM executions WHERE id IN (
                 SELECT id FROM executions
                 WHERE created_at < $1 AND state IN ('completed', 'failed', 'timed_out', 'cancelled')
                     AND (completed_at < $1 OR (completed_at IS NULL AND updated_at < $1))
                 ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING id
         ),
         deadlines_gone AS (DELETE FROM execution_deadlines WHERE execution_id IN (SELECT id FROM gone)),
         pauses_gone AS (DELETE FROM paused_executions WHERE execution_id IN (SELECT id FROM gone)),
         slots_gone AS (
             DELETE FROM key_slots WHERE task_id IN (SELECT id FROM tasks WHERE execution_id IN (SELECT id FROM gone))
         ),
         tasks_gone AS (DELETE FROM tasks WHERE execution_id IN (SELECT id FROM gone)),
         signals_gone AS (DELETE FROM signals WHERE execution_id IN (SELECT id FROM gone)),
         progress_gone AS (DELETE FROM progress WHERE execution_id IN (SELECT id FROM gone)),
         counters_gone AS (DELETE FROM execution_counters WHERE execution_id IN (SELECT id FROM gone)),
         state_gone AS (DELETE FROM execution_state WHERE execution_id IN (SELECT id FROM gone)),
         letters_gone AS (DELETE FROM dead_letters WHERE execution_id IN (SELECT id FROM gone)),
         events_gone AS (DELETE FROM events WHERE execution_id IN (SELECT id FROM gone)),
         deliveries_gone AS (
             DELETE FROM webhook_deliveries WHERE execution_id IN (SELECT id FROM gone) RETURNING id
         ),
         attempts_gone AS (DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM deliveries_gone))
         SELECT count(*) FROM gone",
        &[&older_than, &CLEANUP_CHUNK],
    )
    .await?;
    Ok(count(row.try_get(0)?))
}
