//! Housekeeping: deleting old executions, noticing stuck tasks, and cluster-wide roles.

use std::time::Duration;

use chrono::{DateTime, Utc};
use courier_core::{Change, ExecutionId, TaskId, TaskKind, TaskRef};
use rusqlite::Connection;

use crate::codec::{after, before, enum_at, time_opt_at, uuid_at};
use crate::error::Result;
use crate::event_log;

/// Every table that holds rows of an execution, child tables first.
const EXECUTION_TABLES: &[&str] = &[
    "DELETE FROM key_slots WHERE task_id IN (SELECT id FROM tasks WHERE execution_id = ?1)",
    "DELETE FROM tasks WHERE execution_id = ?1",
    "DELETE FROM signals WHERE execution_id = ?1",
    "DELETE FROM progress WHERE execution_id = ?1",
    "DELETE FROM execution_counters WHERE execution_id = ?1",
    "DELETE FROM execution_state WHERE execution_id = ?1",
    "DELETE FROM dead_letters WHERE execution_id = ?1",
    "DELETE FROM events WHERE execution_id = ?1",
    "DELETE FROM webhook_attempts WHERE delivery_id IN \
     (SELECT id FROM webhook_deliveries WHERE execution_id = ?1)",
    "DELETE FROM webhook_deliveries WHERE execution_id = ?1",
    "DELETE FROM paused_executions WHERE execution_id = ?1",
    "DELETE FROM executions WHERE id = ?1",
];

/// Deletes terminal executions finished before `older_than`, with all their rows
/// (the webhook deliveries they made and those deliveries' attempts included),
/// and the deliveries skipped before `older_than` that no execution makes.
pub(crate) fn cleanup_executions(conn: &Connection, older_than: i64) -> Result<u64> {
    let ids: Vec<ExecutionId> = conn
        .prepare_cached(
            "SELECT id FROM executions INDEXED BY executions_completed WHERE completed_at < ?1 \
             AND state IN ('completed', 'failed', 'timed_out', 'cancelled')",
        )?
        .query_map([older_than], |row| uuid_at(row, 0).map(ExecutionId))?
        .collect::<rusqlite::Result<_>>()?;
    if !ids.is_empty() {
        event_log::raise_floor(conn)?;
    }
    for id in &ids {
        for sql in EXECUTION_TABLES {
            conn.prepare_cached(sql)?.execute([id.0.as_bytes()])?;
        }
    }
    // Deliveries skipped when their event arrived have no execution to be
    // cleaned up with: they go once as old as the executions cleaned.
    conn.prepare_cached(
        "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT d.id FROM webhook_deliveries d \
         WHERE d.state = 'skipped' AND d.created_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.id = d.execution_id))",
    )?
    .execute([older_than])?;
    conn.prepare_cached(
        "DELETE FROM webhook_deliveries WHERE state = 'skipped' AND created_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM executions e WHERE e.id = webhook_deliveries.execution_id)",
    )?
    .execute([older_than])?;
    Ok(ids.len() as u64)
}

/// A running task whose heartbeat is late.
struct Late {
    rowid: i64,
    id: TaskId,
    execution: ExecutionId,
    kind: TaskKind,
    function: String,
    attempt: u32,
    worker: Option<String>,
    heartbeat_at: Option<DateTime<Utc>>,
}

/// Marks running tasks with a late heartbeat as stuck, once per attempt.
pub(crate) fn detect_stuck(
    conn: &Connection,
    now: i64,
    heartbeat_timeout: Duration,
    max: u32,
    changes: &mut Vec<Change>,
) -> Result<Vec<TaskId>> {
    let cutoff = before(now, heartbeat_timeout);
    let late: Vec<Late> = conn
        .prepare_cached(
            "SELECT rowid, id, execution_id, kind, function, attempt, lease_owner, heartbeat_at FROM tasks \
             WHERE state = 'running' AND stuck_at IS NULL AND coalesce(heartbeat_at, started_at, 0) < ?1 \
             ORDER BY coalesce(heartbeat_at, started_at, 0) LIMIT ?2",
        )?
        .query_map((cutoff, i64::from(max)), |row| {
            Ok(Late {
                rowid: row.get(0)?,
                id: TaskId(uuid_at(row, 1)?),
                execution: ExecutionId(uuid_at(row, 2)?),
                kind: enum_at(row, 3)?,
                function: row.get(4)?,
                attempt: row.get(5)?,
                worker: row.get(6)?,
                heartbeat_at: time_opt_at(row, 7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut mark = conn.prepare_cached("UPDATE tasks SET stuck_at = ?2 WHERE rowid = ?1")?;
    let mut ids = Vec::with_capacity(late.len());
    for t in late {
        mark.execute((t.rowid, now))?;
        let stuck = Change::TaskStuck {
            task: TaskRef::new(t.execution, t.id, t.kind, t.function),
            attempt: t.attempt,
            worker: t.worker,
            heartbeat_at: t.heartbeat_at,
        };
        event_log::record(conn, now, changes, stuck)?;
        ids.push(t.id);
    }
    Ok(ids)
}

/// Takes or keeps a named role for `ttl`: true if `owner` holds it now.
pub(crate) fn try_acquire_singleton(
    conn: &Connection,
    now: i64,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO singletons (name, owner, expires_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE singletons.owner = excluded.owner OR singletons.expires_at <= ?4",
        )?
        .execute((name, owner, after(now, ttl), now))?;
    Ok(n > 0)
}
