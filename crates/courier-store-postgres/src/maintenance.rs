//! Housekeeping: the store clock, planner statistics, cleanup of finished
//! executions, stuck-task detection and cluster-wide singleton roles.

use std::time::Duration;

use chrono::{DateTime, Utc};
use courier_core::{ExecutionId, StoreResult, TaskId, TaskKind, events};
use deadpool_postgres::Transaction;

use crate::PostgresStore;
use crate::codec::{count, micros, now_plus, parse};
use crate::error::{Error, Result};
use crate::event_log;
use crate::statements::{query, query_one, query_opt};
use crate::transaction::in_transaction;

/// Finished executions are deleted this many at a time, each chunk in its own
/// transaction, so a first cleanup of a large backlog holds no locks for long.
const CLEANUP_CHUNK: i64 = 2000;

/// The database's clock.
pub(crate) async fn now(store: &PostgresStore) -> StoreResult<DateTime<Utc>> {
    let client = store.client().await?;
    let row = query_one(&client, "SELECT now()", &[]).await?;
    Ok(row.try_get(0).map_err(Error::from)?)
}

/// Refreshes planner statistics of the tables whose size swings most.
pub(crate) async fn analyze(store: &PostgresStore) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .batch_execute("ANALYZE tasks, executions, events, signals, dead_letters, progress")
        .await
        .map_err(|e| crate::error::from_db(&e))?;
    Ok(())
}

/// Deletes finished executions older than `older_than` with every row they own
/// (the webhook deliveries they made and those deliveries' attempts included).
pub(crate) async fn clean_up_executions(store: &PostgresStore, older_than: DateTime<Utc>) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let n = in_transaction!(store, |tx| clean_up_chunk(tx, older_than))?;
        total += n;
        if n < CLEANUP_CHUNK as u64 {
            return Ok(total);
        }
    }
}

async fn clean_up_chunk(tx: &Transaction<'_>, older_than: DateTime<Utc>) -> Result<u64> {
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

/// Deletes events older than `older_than`.
pub(crate) async fn trim_events(store: &PostgresStore, older_than: DateTime<Utc>) -> StoreResult<u64> {
    let client = store.client().await?;
    Ok(event_log::trim(&client, older_than).await?)
}

/// Marks running tasks with a late heartbeat as stuck and reports each once.
pub(crate) async fn detect_stuck(store: &PostgresStore, timeout: Duration, max: u32) -> StoreResult<Vec<TaskId>> {
    if max == 0 {
        return Ok(Vec::new());
    }
    in_transaction!(store, |tx| detect_stuck_in(tx, timeout, max))
}

async fn detect_stuck_in(tx: &Transaction<'_>, timeout: Duration, max: u32) -> Result<Vec<TaskId>> {
    let rows = query(
        tx,
        "WITH late AS (
             SELECT id FROM tasks
             WHERE state = 'running' AND stuck_at IS NULL
                 AND COALESCE(heartbeat_at, started_at) < now() - $1::int8::float8 * interval '1 microsecond'
             ORDER BY COALESCE(heartbeat_at, started_at) LIMIT $2 FOR UPDATE SKIP LOCKED
         )
         UPDATE tasks t SET stuck_at = now() FROM late WHERE t.id = late.id
         RETURNING t.id, t.execution_id, t.kind, t.function, t.attempt, t.lease_owner, t.heartbeat_at",
        &[&micros(timeout), &i64::from(max)],
    )
    .await?;
    let mut stuck = Vec::with_capacity(rows.len());
    let mut new_events = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = TaskId(r.try_get(0)?);
        let kind: TaskKind = parse(r.try_get::<_, &str>(2)?)?;
        let function: String = r.try_get(3)?;
        let attempt: i32 = r.try_get(4)?;
        let worker: Option<String> = r.try_get(5)?;
        new_events.push(events::task_stuck(
            ExecutionId(r.try_get(1)?),
            id,
            kind,
            &function,
            u32::try_from(attempt).unwrap_or(0),
            worker.as_deref(),
            r.try_get(6)?,
        ));
        stuck.push(id);
    }
    event_log::append(tx, &new_events).await?;
    Ok(stuck)
}

/// Takes or keeps a named role for `ttl`.
pub(crate) async fn try_acquire_singleton(
    store: &PostgresStore,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> StoreResult<bool> {
    let client = store.client().await?;
    let row = query_opt(
        &client,
        &format!(
            "INSERT INTO courier_singletons (name, owner, expires_at) VALUES ($1, $2, {})
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
             WHERE courier_singletons.expires_at <= now() OR courier_singletons.owner = excluded.owner
             RETURNING owner",
            now_plus("$3")
        ),
        &[&name, &owner, &micros(ttl)],
    )
    .await?;
    Ok(row.is_some())
}
