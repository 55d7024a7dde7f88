//! Fenced completions: the end of an attempt, and what it sets off (the
//! execution's end for a root task, a parent's wake-up, remembered results).

use courier_core::{Completed, Completion, ExecutionState, Outcome, Remember, TaskState, events};
use rusqlite::Connection;

use crate::codec::{after, json};
use crate::error::Result;
use crate::{cache, dead_letters, event_log, executions, lease, tasks};

/// Applies one completion. The fence is checked before anything is written, so a
/// refused completion changes nothing. A root task's function is its execution's
/// (dispatch writes both from one spec), so execution events name it.
pub(crate) fn complete(conn: &Connection, now: i64, completion: &Completion) -> Result<Completed> {
    let task = lease::fenced(conn, &completion.lease)?;
    let execution = task.execution_id;
    let is_root = task.step == 0;
    let mut done = Completed {
        task_id: task.id,
        execution_id: execution,
        state: TaskState::Completed,
        parent_id: task.parent_id,
        execution_state: None,
    };
    match &completion.outcome {
        Outcome::Succeeded { result, remember } => {
            let text = json(result)?;
            conn.prepare_cached(
                "UPDATE tasks SET state = 'completed', result = ?2, completed_at = ?3, lease_token = NULL, \
                 lease_expires_at = NULL WHERE rowid = ?1",
            )?
            .execute((task.rowid, &text, now))?;
            for place in remember {
                match place {
                    Remember::Cache { key, ttl } => cache::set(conn, now, key, &text, *ttl)?,
                    Remember::Idempotency { key } => cache::set_idempotency_result(conn, now, key, &text)?,
                }
            }
            let event = events::task_completed(execution, task.id, task.kind, &task.function, task.attempt);
            event_log::append(conn, now, &event)?;
            if is_root && executions::finish(conn, now, execution, ExecutionState::Completed, Some(&text), None)? {
                let event = events::execution_completed(execution, &task.function, result);
                event_log::append(conn, now, &event)?;
                done.execution_state = Some(ExecutionState::Completed);
            }
        }
        Outcome::Retry { error, delay } => {
            conn.prepare_cached(
                "UPDATE tasks SET state = 'pending', scheduled_for = ?2, error = ?3, lease_token = NULL, \
                 lease_expires_at = NULL WHERE rowid = ?1",
            )?
            .execute((task.rowid, after(now, *delay), json(error)?))?;
            let failed = events::task_failed(
                execution,
                task.id,
                task.kind,
                &task.function,
                task.attempt,
                error,
                Some(*delay),
            );
            event_log::append(conn, now, &failed)?;
            let queued = events::task_queued(execution, task.id, task.kind, &task.function, task.attempt, "retry");
            event_log::append(conn, now, &queued)?;
            done.state = TaskState::Pending;
            done.parent_id = None;
            return Ok(done);
        }
        Outcome::Failed {
            error,
            reason,
            dead_letter,
        } => {
            conn.prepare_cached(
                "UPDATE tasks SET state = 'failed', error = ?2, completed_at = ?3, lease_token = NULL, \
                 lease_expires_at = NULL WHERE rowid = ?1",
            )?
            .execute((task.rowid, json(error)?, now))?;
            if *dead_letter && let Some(record) = tasks::get_by_rowid(conn, task.rowid)? {
                dead_letters::put(conn, now, &record, reason)?;
            }
            let failed = events::task_failed(execution, task.id, task.kind, &task.function, task.attempt, error, None);
            event_log::append(conn, now, &failed)?;
            if is_root && executions::finish(conn, now, execution, ExecutionState::Failed, None, Some(error))? {
                event_log::append(conn, now, &events::execution_failed(execution, &task.function, error))?;
                done.execution_state = Some(ExecutionState::Failed);
            }
            done.state = TaskState::Failed;
        }
    }
    if let Some(parent) = task.parent_id {
        tasks::wake_parent(conn, now, parent)?;
    }
    Ok(done)
}
