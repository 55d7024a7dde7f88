//! An execution's context: progress reports, counters and custom state values.

use std::collections::BTreeMap;

use courier_core::{ExecutionId, Progress, ProgressEntry, StoreResult, TaskId, events};
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::Value;

use crate::PostgresStore;
use crate::error::{Error, Result};
use crate::event_log;
use crate::rows::{self, PROGRESS_COLUMNS};
use crate::statements::{execute, query, query_one};
use crate::transaction::in_transaction;

/// Stores one progress report.
pub(crate) async fn insert_progress(
    tx: &Transaction<'_>,
    execution: ExecutionId,
    task: TaskId,
    p: &Progress,
) -> Result<()> {
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

/// Appends a progress report of `task` (the root task if none) and its event.
pub(crate) async fn append_progress(
    store: &PostgresStore,
    execution: ExecutionId,
    task: Option<TaskId>,
    progress: &Progress,
) -> StoreResult<()> {
    let task = task.unwrap_or_else(|| TaskId::root_of(execution));
    in_transaction!(store, |tx| async move {
        insert_progress(tx, execution, task, progress).await?;
        event_log::append(tx, &[events::task_progress(execution, task, progress)]).await?;
        Ok::<_, Error>(())
    })
}

/// The latest `max` reports, oldest first; reads only those (index on `(execution_id, id)`).
pub(crate) async fn list_progress(
    store: &PostgresStore,
    execution: ExecutionId,
    max: u32,
) -> StoreResult<Vec<ProgressEntry>> {
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
pub(crate) async fn counters(store: &PostgresStore, execution: ExecutionId) -> StoreResult<BTreeMap<String, f64>> {
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

/// Sets a state value.
pub(crate) async fn set_state_value<C: GenericClient>(
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
pub(crate) async fn state_values(
    store: &PostgresStore,
    execution: ExecutionId,
) -> StoreResult<BTreeMap<String, Value>> {
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
