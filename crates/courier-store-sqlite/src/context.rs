//! An execution's context besides its tasks: signals (in `signals.rs`), progress
//! reports, counters and custom state values. [`ContextStore`] is implemented here.

use std::collections::BTreeMap;

use async_trait::async_trait;
use courier_core::{
    Change, Committed, ContextStore, ExecutionId, LeaseKey, Progress, ProgressEntry, SignalRecord, SignalSent,
    StoreResult, TaskId,
};
use rusqlite::Connection;
use serde_json::Value;

use crate::SqliteStore;
use crate::codec::{json, json_at, time_at, uuid_at, uuid_opt_at};
use crate::error::Result;
use crate::{event_log, executions, leases, signals};

#[async_trait]
impl ContextStore for SqliteStore {
    async fn send_signal(
        &self,
        execution_id: ExecutionId,
        name: &str,
        payload: Value,
    ) -> StoreResult<Committed<SignalSent>> {
        let name = name.to_string();
        self.write_changes(move |conn, now, changes| signals::send(conn, now, execution_id, &name, &payload, changes))
            .await
    }

    async fn append_progress(
        &self,
        execution_id: ExecutionId,
        task_id: Option<TaskId>,
        progress: &Progress,
        fence: Option<LeaseKey>,
    ) -> StoreResult<Committed<()>> {
        let progress = progress.clone();
        self.write_changes(move |conn, now, changes| {
            if let Some(fence) = &fence {
                leases::fenced(conn, fence)?;
            }
            executions::require(conn, execution_id)?;
            append_progress(conn, now, execution_id, task_id, &progress, changes)
        })
        .await
    }

    async fn list_signals(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<SignalRecord>> {
        self.read(move |conn, _| signals::list(conn, execution_id, limit)).await
    }

    async fn list_progress(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<ProgressEntry>> {
        self.read(move |conn, _| list_progress(conn, execution_id, limit)).await
    }

    async fn get_execution_counters(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, f64>> {
        self.read(move |conn, _| counters(conn, execution_id)).await
    }

    async fn get_execution_state_values(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, Value>> {
        self.read(move |conn, _| state_values(conn, execution_id)).await
    }
}

/// Appends a progress report of `task` (else of the root task); records `TaskProgress`.
pub(crate) fn append_progress(
    conn: &Connection,
    now: i64,
    execution: ExecutionId,
    task: Option<TaskId>,
    progress: &Progress,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let task = task.unwrap_or_else(|| TaskId::root_of(execution));
    conn.prepare_cached("INSERT INTO progress (execution_id, task_id, report, created_at) VALUES (?1, ?2, ?3, ?4)")?
        .execute((execution.0.as_bytes(), task.0.as_bytes(), json(progress)?, now))?;
    let change = Change::TaskProgress {
        execution,
        task,
        progress: progress.clone(),
    };
    event_log::record(conn, now, changes, change)?;
    Ok(())
}

/// The latest `limit` reports, oldest first: an index range from the newest end,
/// so the cost does not grow with how many reports exist.
pub(crate) fn list_progress(conn: &Connection, execution: ExecutionId, limit: u32) -> Result<Vec<ProgressEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT execution_id, task_id, report, created_at FROM \
         (SELECT id, execution_id, task_id, report, created_at FROM progress WHERE execution_id = ?1 \
          ORDER BY id DESC LIMIT ?2) ORDER BY id",
    )?;
    let rows = stmt.query_map((execution.0.as_bytes(), i64::from(limit)), |row| {
        Ok(ProgressEntry {
            execution_id: ExecutionId(uuid_at(row, 0)?),
            task_id: uuid_opt_at(row, 1)?.map(TaskId),
            progress: json_at(row, 2)?,
            created_at: time_at(row, 3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Creates the counters that do not exist yet.
pub(crate) fn ensure_counters(conn: &Connection, execution: ExecutionId, counters: &[(String, f64)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO execution_counters (execution_id, name, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for (name, value) in counters {
        stmt.execute((execution.0.as_bytes(), name, value))?;
    }
    Ok(())
}

/// Adds `amount` to a counter (created at 0); its new value.
pub(crate) fn increment_counter(conn: &Connection, execution: ExecutionId, name: &str, amount: f64) -> Result<f64> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO execution_counters (execution_id, name, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (execution_id, name) DO UPDATE SET value = value + excluded.value RETURNING value",
        )?
        .query_row((execution.0.as_bytes(), name, amount), |row| row.get(0))?)
}

/// Every counter of an execution.
pub(crate) fn counters(conn: &Connection, execution: ExecutionId) -> Result<BTreeMap<String, f64>> {
    let mut stmt = conn.prepare_cached("SELECT name, value FROM execution_counters WHERE execution_id = ?1")?;
    let rows = stmt.query_map([execution.0.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Creates the state values that do not exist yet.
pub(crate) fn ensure_state_values(conn: &Connection, execution: ExecutionId, values: &[(String, Value)]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO execution_state (execution_id, key, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?;
    for (key, value) in values {
        stmt.execute((execution.0.as_bytes(), key, json(value)?))?;
    }
    Ok(())
}

/// Sets a state value.
pub(crate) fn set_state_value(conn: &Connection, execution: ExecutionId, key: &str, value: &Value) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO execution_state (execution_id, key, value) VALUES (?1, ?2, ?3) \
         ON CONFLICT (execution_id, key) DO UPDATE SET value = excluded.value",
    )?
    .execute((execution.0.as_bytes(), key, json(value)?))?;
    Ok(())
}

/// Every state value of an execution.
pub(crate) fn state_values(conn: &Connection, execution: ExecutionId) -> Result<BTreeMap<String, Value>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM execution_state WHERE execution_id = ?1")?;
    let rows = stmt.query_map([execution.0.as_bytes()], |row| Ok((row.get(0)?, json_at(row, 1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
