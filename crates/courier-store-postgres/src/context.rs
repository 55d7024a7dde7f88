//! An execution's context: [`ContextStore`] for [`PostgresStore`] (signals are
//! sent by `signals`), progress reports, counters and custom state values, and
//! the raw seed-parity writes of counters and state values
//! ([`SeedRecords`](courier_core::SeedRecords) delegates here). Orchestrators
//! record counters, state values and progress as effects (see `children`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use courier_core::{
    Change, Committed, ContextStore, ExecutionId, LeaseKey, Progress, ProgressEntry, SignalRecord, SignalSent,
    StoreResult, TaskId, events_of,
};
use serde_json::Value;

use crate::PostgresStore;
use crate::error::{Error, Result};
use crate::rows::{self, PROGRESS_COLUMNS};
use crate::statements::{Statements, execute, query, query_one};
use crate::transaction::{Tx, in_transaction};
use crate::{event_log, leases, signals};

#[async_trait]
impl ContextStore for PostgresStore {
    async fn send_signal(
        &self,
        execution_id: ExecutionId,
        name: &str,
        payload: Value,
    ) -> StoreResult<Committed<SignalSent>> {
        signals::send(self, execution_id, name, &payload).await
    }

    async fn append_progress(
        &self,
        execution_id: ExecutionId,
        task_id: Option<TaskId>,
        progress: &Progress,
        fence: Option<LeaseKey>,
    ) -> StoreResult<Committed<()>> {
        append_progress(self, execution_id, task_id, progress, fence).await
    }

    async fn list_signals(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<SignalRecord>> {
        crate::signals::list(self, execution_id, limit).await
    }

    async fn list_progress(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<ProgressEntry>> {
        list_progress(self, execution_id, limit).await
    }

    async fn get_execution_counters(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, f64>> {
        counters(self, execution_id).await
    }

    async fn get_execution_state_values(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, Value>> {
        state_values(self, execution_id).await
    }
}

/// Stores one progress report.
pub(crate) async fn insert_progress(tx: &Tx, execution: ExecutionId, task: TaskId, p: &Progress) -> Result<()> {
    execute(
        tx,
        "INSERT INTO progress (execution_id, task_id, step, status, percent, message, detail, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())",
        &[
            &execution.0,
            &task.0,
            &p.step,
            &p.status,
            &p.percent,
            &p.message,
            &p.detail,
        ],
    )
    .await?;
    Ok(())
}

/// Stores one progress report if `fence` still holds its task; whether it did.
/// The fence is in the WHERE clause, and the task row is share-locked until the
/// commit, so a reclaim cannot slip in between the check and the commit.
async fn insert_fenced_progress(
    tx: &Tx,
    execution: ExecutionId,
    task: TaskId,
    p: &Progress,
    fence: LeaseKey,
) -> Result<bool> {
    let n = execute(
        tx,
        "INSERT INTO progress (execution_id, task_id, step, status, percent, message, detail, created_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, now() FROM tasks
         WHERE id = $8 AND state = 'running' AND lease_token = $9
         FOR SHARE",
        &[
            &execution.0,
            &task.0,
            &p.step,
            &p.status,
            &p.percent,
            &p.message,
            &p.detail,
            &fence.task_id.0,
            &fence.token.0,
        ],
    )
    .await?;
    Ok(n > 0)
}

/// Appends a progress report of `task` (the root task if none) and its
/// `TaskProgress`; with a `fence`, only if that claim still holds its task.
async fn append_progress(
    store: &PostgresStore,
    execution: ExecutionId,
    task: Option<TaskId>,
    progress: &Progress,
    fence: Option<LeaseKey>,
) -> StoreResult<Committed<()>> {
    let task = task.unwrap_or_else(|| TaskId::root_of(execution));
    in_transaction!(store, |tx| async move {
        match fence {
            None => insert_progress(tx, execution, task, progress).await?,
            Some(fence) => {
                if !insert_fenced_progress(tx, execution, task, progress, fence).await? {
                    return Err(Error::Store(leases::refused(tx, fence).await?));
                }
            }
        }
        let changes = vec![Change::TaskProgress {
            execution,
            task,
            progress: progress.clone(),
        }];
        event_log::append(tx, &events_of(&changes)).await?;
        Ok::<_, Error>(Committed::new((), changes))
    })
}

/// The latest `max` reports, oldest first; reads only those (index on `(execution_id, id)`).
async fn list_progress(store: &PostgresStore, execution: ExecutionId, max: u32) -> StoreResult<Vec<ProgressEntry>> {
    let client = store.client().await?;
    let sql = format!(
        "SELECT {PROGRESS_COLUMNS} FROM (
             SELECT id, {PROGRESS_COLUMNS} FROM progress WHERE execution_id = $1 ORDER BY id DESC LIMIT $2
         ) latest ORDER BY id"
    );
    let rows = query(&client, &sql, &[&execution.0, &i64::from(max)]).await?;
    Ok(rows.iter().map(rows::progress).collect::<Result<_>>()?)
}

/// Creates the counters that do not exist yet.
pub(crate) async fn ensure_counters(
    store: &PostgresStore,
    execution: ExecutionId,
    counters: &[(String, f64)],
) -> StoreResult<()> {
    if counters.is_empty() {
        return Ok(());
    }
    let client = store.client().await?;
    let names: Vec<&str> = counters.iter().map(|(n, _)| n.as_str()).collect();
    let values: Vec<f64> = counters.iter().map(|(_, v)| *v).collect();
    execute(
        &client,
        "INSERT INTO execution_counters (execution_id, name, value)
         SELECT $1, x.name, x.value FROM unnest($2::text[], $3::float8[]) AS x(name, value)
         ON CONFLICT (execution_id, name) DO NOTHING",
        &[&execution.0, &names, &values],
    )
    .await?;
    Ok(())
}

/// Adds to a counter (created at 0); the row lock makes concurrent increments exact.
pub(crate) async fn increment(
    store: &PostgresStore,
    execution: ExecutionId,
    name: &str,
    amount: f64,
) -> StoreResult<f64> {
    let client = store.client().await?;
    let row = query_one(
        &client,
        "INSERT INTO execution_counters (execution_id, name, value) VALUES ($1, $2, $3)
         ON CONFLICT (execution_id, name) DO UPDATE SET value = execution_counters.value + excluded.value
         RETURNING value",
        &[&execution.0, &name, &amount],
    )
    .await?;
    Ok(row.try_get(0).map_err(Error::from)?)
}

/// All counters of an execution.
async fn counters(store: &PostgresStore, execution: ExecutionId) -> StoreResult<BTreeMap<String, f64>> {
    let client = store.client().await?;
    let rows = query(
        &client,
        "SELECT name, value FROM execution_counters WHERE execution_id = $1",
        &[&execution.0],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?)
}

/// Creates the state values that do not exist yet.
pub(crate) async fn ensure_state_values(
    store: &PostgresStore,
    execution: ExecutionId,
    values: &[(String, Value)],
) -> StoreResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    let client = store.client().await?;
    let keys: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
    let vals: Vec<&Value> = values.iter().map(|(_, v)| v).collect();
    execute(
        &client,
        "INSERT INTO execution_state (execution_id, key, value)
         SELECT $1, x.key, x.value FROM unnest($2::text[], $3::jsonb[]) AS x(key, value)
         ON CONFLICT (execution_id, key) DO NOTHING",
        &[&execution.0, &keys, &vals],
    )
    .await?;
    Ok(())
}

/// Sets a state value (raw, outside any transaction of the caller's).
pub(crate) async fn set_state(
    store: &PostgresStore,
    execution: ExecutionId,
    key: &str,
    value: &Value,
) -> StoreResult<()> {
    let client = store.client().await?;
    Ok(set_state_value(&client, execution, key, value).await?)
}

/// Sets a state value.
pub(crate) async fn set_state_value<C: Statements>(
    client: &C,
    execution: ExecutionId,
    key: &str,
    value: &Value,
) -> Result<()> {
    execute(
        client,
        "INSERT INTO execution_state (execution_id, key, value) VALUES ($1, $2, $3)
         ON CONFLICT (execution_id, key) DO UPDATE SET value = excluded.value",
        &[&execution.0, &key, value],
    )
    .await?;
    Ok(())
}

/// All state values of an execution.
async fn state_values(store: &PostgresStore, execution: ExecutionId) -> StoreResult<BTreeMap<String, Value>> {
    let client = store.client().await?;
    let rows = query(
        &client,
        "SELECT key, value FROM execution_state WHERE execution_id = $1",
        &[&execution.0],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?)
}
