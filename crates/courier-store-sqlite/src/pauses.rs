//! Pauses of executions and queues: [`PauseStore`] for [`SqliteStore`]. A pause
//! is one row; the claim (`claim.rs`) leaves the tasks it names.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{Change, Committed, ExecutionId, PauseState, PauseStore, PausedQueue, StoreError, StoreResult};
use rusqlite::{Connection, OptionalExtension, params};

use crate::SqliteStore;
use crate::codec::{time, time_at};
use crate::error::Result;
use crate::{event_log, executions};

#[async_trait]
impl PauseStore for SqliteStore {
    async fn pause_execution(&self, id: ExecutionId) -> StoreResult<Committed<PauseState>> {
        self.write_changes(move |conn, now, changes| pause_execution(conn, now, id, changes))
            .await
    }

    async fn resume_execution(&self, id: ExecutionId) -> StoreResult<Committed<PauseState>> {
        self.write_changes(move |conn, now, changes| resume_execution(conn, now, id, changes))
            .await
    }

    async fn execution_paused_at(&self, id: ExecutionId) -> StoreResult<Option<DateTime<Utc>>> {
        self.read(move |conn, _| execution_paused_at(conn, id)).await
    }

    async fn pause_queue(&self, queue: &str) -> StoreResult<Committed<PauseState>> {
        PausedQueue::check_name(queue)?;
        let queue = queue.to_string();
        self.write_changes(move |conn, now, changes| pause_queue(conn, now, queue, changes))
            .await
    }

    async fn resume_queue(&self, queue: &str) -> StoreResult<Committed<PauseState>> {
        PausedQueue::check_name(queue)?;
        let queue = queue.to_string();
        self.write_changes(move |conn, now, changes| resume_queue(conn, now, queue, changes))
            .await
    }

    async fn paused_queues(&self) -> StoreResult<Vec<PausedQueue>> {
        self.read(|conn, _| {
            let mut stmt = conn.prepare_cached("SELECT queue, paused_at FROM paused_queues ORDER BY queue")?;
            let rows = stmt.query_map([], |row| {
                Ok(PausedQueue {
                    queue: row.get(0)?,
                    paused_at: time_at(row, 1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

/// The paused queues' names, for the claim to skip.
pub(crate) fn paused_queue_names(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT queue FROM paused_queues")?;
    let rows = stmt.query_map([], |row| row.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn execution_paused_at(conn: &Connection, id: ExecutionId) -> Result<Option<DateTime<Utc>>> {
    Ok(conn
        .prepare_cached("SELECT paused_at FROM paused_executions WHERE execution_id = ?1")?
        .query_row([id.0.as_bytes()], |row| time_at(row, 0))
        .optional()?)
}

fn pause_execution(conn: &Connection, now: i64, id: ExecutionId, changes: &mut Vec<Change>) -> Result<PauseState> {
    let (state, function) = executions::require(conn, id)?;
    if let Some(at) = execution_paused_at(conn, id)? {
        return Ok(PauseState::paused_since(at, false));
    }
    if state.is_terminal() {
        return Err(StoreError::ExecutionState {
            id,
            state,
            detail: "an execution that has ended cannot be paused".into(),
        }
        .into());
    }
    conn.prepare_cached("INSERT INTO paused_executions (execution_id, paused_at) VALUES (?1, ?2)")?
        .execute(params![id.0.as_bytes(), now])?;
    let paused = Change::ExecutionPaused {
        execution: id,
        function,
        paused: true,
        queues: Vec::new(),
    };
    event_log::record(conn, now, changes, paused)?;
    Ok(PauseState::paused_since(time(now), true))
}

fn resume_execution(conn: &Connection, now: i64, id: ExecutionId, changes: &mut Vec<Change>) -> Result<PauseState> {
    let (_, function) = executions::require(conn, id)?;
    let removed = conn
        .prepare_cached("DELETE FROM paused_executions WHERE execution_id = ?1")?
        .execute([id.0.as_bytes()])?;
    if removed == 0 {
        return Ok(PauseState::running(false));
    }
    let queues: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT queue FROM tasks WHERE execution_id = ?1 AND state = 'pending' ORDER BY queue",
        )?
        .query_map([id.0.as_bytes()], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let unpaused = Change::ExecutionPaused {
        execution: id,
        function,
        paused: false,
        queues,
    };
    event_log::record(conn, now, changes, unpaused)?;
    Ok(PauseState::running(true))
}

fn pause_queue(conn: &Connection, now: i64, queue: String, changes: &mut Vec<Change>) -> Result<PauseState> {
    let inserted = conn
        .prepare_cached("INSERT INTO paused_queues (queue, paused_at) VALUES (?1, ?2) ON CONFLICT (queue) DO NOTHING")?
        .execute(params![queue, now])?;
    if inserted == 0 {
        let at = conn
            .prepare_cached("SELECT paused_at FROM paused_queues WHERE queue = ?1")?
            .query_row([&queue], |row| time_at(row, 0))?;
        return Ok(PauseState::paused_since(at, false));
    }
    event_log::record(conn, now, changes, Change::QueuePaused { queue, paused: true })?;
    Ok(PauseState::paused_since(time(now), true))
}

fn resume_queue(conn: &Connection, now: i64, queue: String, changes: &mut Vec<Change>) -> Result<PauseState> {
    let removed = conn
        .prepare_cached("DELETE FROM paused_queues WHERE queue = ?1")?
        .execute([&queue])?;
    if removed == 0 {
        return Ok(PauseState::running(false));
    }
    event_log::record(conn, now, changes, Change::QueuePaused { queue, paused: false })?;
    Ok(PauseState::running(true))
}
