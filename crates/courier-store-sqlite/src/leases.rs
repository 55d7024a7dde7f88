//! Fencing, and the writes a claim makes while it holds its task: renewals,
//! heartbeats, checkpoints, giving the task back, parking it.

use std::time::Duration;

use courier_core::{Change, ExecutionId, LeaseKey, LeaseLost, Renewed, Requeue, StoreError, StoreResult, TaskState};
use rusqlite::Connection;
use serde_json::Value;

use crate::codec::{after, json, time};
use crate::error::{Error, Result};
use crate::event_log;
use crate::tasks::{self, Head};

/// The task `lease` names, if that claim still holds it: `running` under its
/// token. An expired lease nobody reclaimed still holds.
pub(crate) fn fenced(conn: &Connection, lease: &LeaseKey) -> Result<Head> {
    let Some(head) = tasks::head(conn, lease.task_id)? else {
        return Err(StoreError::TaskNotFound(lease.task_id).into());
    };
    let reason = if head.state != TaskState::Running {
        LeaseLost::NotRunning(head.state)
    } else if head.lease_token != Some(lease.token) {
        LeaseLost::Reclaimed
    } else {
        return Ok(head);
    };
    Err(StoreError::LeaseLost {
        task_id: lease.task_id,
        reason,
    }
    .into())
}

/// Extends `lease` to `now + extend` with a heartbeat; `clear_stuck` when the
/// task's own code reported in. Returns the task's execution too.
fn extend_lease(
    conn: &Connection,
    now: i64,
    lease: &LeaseKey,
    extend: Duration,
    clear_stuck: bool,
) -> Result<(Renewed, ExecutionId)> {
    let head = fenced(conn, lease)?;
    let until = after(now, extend);
    let sql = if clear_stuck {
        "UPDATE tasks SET lease_expires_at = ?2, heartbeat_at = ?3, stuck_at = NULL WHERE rowid = ?1"
    } else {
        "UPDATE tasks SET lease_expires_at = ?2, heartbeat_at = ?3 WHERE rowid = ?1"
    };
    conn.prepare_cached(sql)?.execute((head.rowid, until, now))?;
    let renewed = Renewed {
        task_id: lease.task_id,
        expires_at: time(until),
    };
    Ok((renewed, head.execution_id))
}

/// Renews each lease; a lost one is refused alone.
pub(crate) fn renew(
    conn: &Connection,
    now: i64,
    leases: &[LeaseKey],
    extend: Duration,
) -> Result<Vec<StoreResult<Renewed>>> {
    let mut out = Vec::with_capacity(leases.len());
    for lease in leases {
        out.push(match extend_lease(conn, now, lease, extend, false) {
            Ok((renewed, _)) => Ok(renewed),
            Err(Error::Store(e)) => Err(e),
            Err(e) => return Err(e),
        });
    }
    Ok(out)
}

/// A heartbeat from the task's code: renews, clears `stuck_at`, records `TaskHeartbeat`.
pub(crate) fn heartbeat(
    conn: &Connection,
    now: i64,
    lease: &LeaseKey,
    extend: Duration,
    details: Option<Value>,
    changes: &mut Vec<Change>,
) -> Result<Renewed> {
    let (renewed, execution) = extend_lease(conn, now, lease, extend, true)?;
    let change = Change::TaskHeartbeat {
        execution,
        task: lease.task_id,
        details,
    };
    event_log::record(conn, now, changes, change)?;
    Ok(renewed)
}

/// Saves a checkpoint for the next attempt.
pub(crate) fn checkpoint(
    conn: &Connection,
    now: i64,
    lease: &LeaseKey,
    data: Value,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let head = fenced(conn, lease)?;
    conn.prepare_cached("UPDATE tasks SET checkpoint = ?2 WHERE rowid = ?1")?
        .execute((head.rowid, json(&data)?))?;
    let change = Change::TaskCheckpoint {
        execution: head.execution_id,
        task: head.id,
        checkpoint: data,
    };
    event_log::record(conn, now, changes, change)?;
    Ok(())
}

/// Gives a claim back without spending an attempt.
pub(crate) fn release(
    conn: &Connection,
    now: i64,
    lease: &LeaseKey,
    delay: Duration,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let head = fenced(conn, lease)?;
    let attempt = head.attempt.saturating_sub(1);
    conn.prepare_cached(
        "UPDATE tasks SET state = 'pending', scheduled_for = ?2, attempt = ?3, lease_token = NULL, \
         lease_expires_at = NULL WHERE rowid = ?1",
    )?
    .execute((head.rowid, after(now, delay), attempt))?;
    let change = Change::TaskQueued {
        task: head.task_ref(),
        queue: head.queue.clone(),
        attempt,
        reason: Requeue::Released,
        claimable_now: delay.is_zero(),
    };
    event_log::record(conn, now, changes, change)?;
    Ok(())
}

/// Parks a running orchestrator unless a child settled since it last looked.
pub(crate) fn suspend(conn: &Connection, lease: &LeaseKey, seen_wake_gen: i64) -> Result<bool> {
    let head = fenced(conn, lease)?;
    if head.wake_gen != seen_wake_gen {
        return Ok(false);
    }
    conn.prepare_cached(
        "UPDATE tasks SET state = 'waiting', lease_token = NULL, lease_expires_at = NULL WHERE rowid = ?1",
    )?
    .execute([head.rowid])?;
    Ok(true)
}
