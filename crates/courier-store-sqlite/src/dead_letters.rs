//! Dead letters: failed tasks kept for inspection, and their replay.
//! [`DeadLetterStore`] is implemented here.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Committed, DeadLetterRecord, DeadLetterStore, ExecutionId, ExecutionState, Replayed, Requeue, StoreError,
    StoreResult, TaskId, TaskKind, TaskRecord, TaskState,
};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::SqliteStore;
use crate::codec::{json, json_at, micros, time_at, uuid_at};
use crate::error::Result;
use crate::{event_log, executions, tasks};

#[async_trait]
impl DeadLetterStore for SqliteStore {
    async fn list_dead_letters(&self, limit: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>> {
        self.read(move |conn, _| list(conn, limit, offset)).await
    }

    async fn count_dead_letters(&self) -> StoreResult<u64> {
        self.read(|conn, _| count(conn)).await
    }

    async fn get_dead_letter(&self, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>> {
        self.read(move |conn, _| get(conn, task_id)).await
    }

    async fn delete_dead_letter(&self, task_id: TaskId) -> StoreResult<bool> {
        self.write(move |conn, _| delete(conn, task_id)).await
    }

    async fn replay_dead_letter(&self, task_id: TaskId) -> StoreResult<Committed<Replayed>> {
        self.write_changes(move |conn, now, changes| replay(conn, now, task_id, changes))
            .await
    }

    async fn cleanup_dead_letters(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |conn, _| cleanup(conn, micros(older_than))).await
    }
}

/// Stores (or replaces) the dead letter of `task`, stamped `now`.
pub(crate) fn put(conn: &Connection, now: i64, task: &TaskRecord, reason: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (task_id, execution_id, reason, failed_at, task) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (task_id) DO UPDATE SET execution_id = excluded.execution_id, reason = excluded.reason, \
         failed_at = excluded.failed_at, task = excluded.task",
    )?
    .execute((
        task.id.0.as_bytes(),
        task.execution_id.0.as_bytes(),
        reason,
        now,
        json(task)?,
    ))?;
    Ok(())
}

fn dead_letter_at(row: &Row<'_>) -> rusqlite::Result<DeadLetterRecord> {
    Ok(DeadLetterRecord {
        task_id: TaskId(uuid_at(row, 0)?),
        execution_id: ExecutionId(uuid_at(row, 1)?),
        reason: row.get(2)?,
        failed_at: time_at(row, 3)?,
        task: json_at(row, 4)?,
    })
}

/// Dead letters, newest first.
pub(crate) fn list(conn: &Connection, limit: u32, offset: u32) -> Result<Vec<DeadLetterRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT task_id, execution_id, reason, failed_at, task FROM dead_letters \
         ORDER BY failed_at DESC, rowid DESC LIMIT ?1 OFFSET ?2",
    )?;
    let rows = stmt.query_map((i64::from(limit), i64::from(offset)), dead_letter_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many dead letters.
pub(crate) fn count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM dead_letters")?
        .query_row([], |row| row.get(0))?;
    Ok(n as u64)
}

/// The dead letter of a task.
pub(crate) fn get(conn: &Connection, task: TaskId) -> Result<Option<DeadLetterRecord>> {
    Ok(conn
        .prepare_cached("SELECT task_id, execution_id, reason, failed_at, task FROM dead_letters WHERE task_id = ?1")?
        .query_row([task.0.as_bytes()], dead_letter_at)
        .optional()?)
}

/// Deletes a dead letter; whether there was one.
pub(crate) fn delete(conn: &Connection, task: TaskId) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM dead_letters WHERE task_id = ?1")?
        .execute([task.0.as_bytes()])?;
    Ok(n > 0)
}

/// Replays a dead letter; see [`DeadLetterStore::replay_dead_letter`].
fn replay(conn: &Connection, now: i64, task_id: TaskId, changes: &mut Vec<Change>) -> Result<Replayed> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM dead_letters WHERE task_id = ?1")?
        .query_row([task_id.0.as_bytes()], |_| Ok(()))
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::DeadLetterNotFound(task_id).into());
    }
    let task = tasks::head(conn, task_id)?.ok_or(StoreError::TaskNotFound(task_id))?;
    let (state, function) = executions::require(conn, task.execution_id)?;
    let resumed = match state {
        ExecutionState::Failed => true,
        ExecutionState::Pending | ExecutionState::Running => false,
        ExecutionState::Completed | ExecutionState::TimedOut | ExecutionState::Cancelled => {
            return Err(StoreError::ExecutionState {
                id: task.execution_id,
                state,
                detail: "only a failed or unfinished execution can replay a dead letter".into(),
            }
            .into());
        }
    };
    if resumed {
        conn.prepare_cached(
            "UPDATE executions SET state = 'running', result = NULL, error = NULL, completed_at = NULL, \
             updated_at = ?2 WHERE id = ?1",
        )?
        .execute((task.execution_id.0.as_bytes(), now))?;
        if task.step != 0 {
            park_failed_root(conn, task.execution_id)?;
        }
        let resumed = Change::ExecutionResumed {
            execution: task.execution_id,
            function,
            task: task_id,
        };
        event_log::record(conn, now, changes, resumed)?;
    }
    conn.prepare_cached(
        "UPDATE tasks SET state = 'pending', scheduled_for = ?2, attempt = 0, error = NULL, result = NULL, \
         completed_at = NULL, lease_token = NULL, lease_expires_at = NULL, stuck_at = NULL WHERE rowid = ?1",
    )?
    .execute((task.rowid, now))?;
    delete(conn, task_id)?;
    let queued = Change::TaskQueued {
        task: task.task_ref(),
        queue: task.queue.clone(),
        attempt: 0,
        reason: Requeue::Replayed,
        claimable_now: true,
    };
    event_log::record(conn, now, changes, queued)?;
    Ok(Replayed {
        task_id,
        execution_id: task.execution_id,
        execution_resumed: resumed,
    })
}

/// The root orchestrator failed because a child did: park it (`waiting`) so the
/// replayed child's completion wakes it to replay, and drop its own dead letter.
fn park_failed_root(conn: &Connection, execution: ExecutionId) -> Result<()> {
    let root = TaskId::root_of(execution);
    let Some(head) = tasks::head(conn, root)? else {
        return Ok(());
    };
    if head.kind != TaskKind::Orchestrator || head.state != TaskState::Failed {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE tasks SET state = 'waiting', error = NULL, completed_at = NULL, lease_token = NULL, \
         lease_expires_at = NULL WHERE rowid = ?1",
    )?
    .execute([head.rowid])?;
    delete(conn, root)?;
    Ok(())
}

/// Deletes dead letters that failed before `older_than`; how many.
fn cleanup(conn: &Connection, older_than: i64) -> Result<u64> {
    let n = conn
        .prepare_cached("DELETE FROM dead_letters WHERE failed_at < ?1")?
        .execute([older_than])?;
    Ok(n as u64)
}
