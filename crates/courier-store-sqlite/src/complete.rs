//! Fenced completions: the end of an attempt, and what it sets off (the
//! execution's end for a root task, a parent's wake-up, remembered results).

use courier_core::{AttemptEnd, Change, Completed, Completion, ExecutionState, Outcome, Remember, Requeue, TaskState};
use rusqlite::Connection;

use crate::codec::{after, json};
use crate::error::Result;
use crate::wake::Wakes;
use crate::{cache, dead_letters, event_log, executions, leases, tasks};

/// Applies one completion. The fence is checked before anything is written, so a
/// refused completion changes nothing. A root task's function is its execution's
/// (dispatch writes both from one spec), so execution events name it. A settled
/// child's parent is added to `wakes`, which the batch applies once it has run
/// its completions.
pub(crate) fn complete(
    conn: &Connection,
    now: i64,
    completion: &Completion,
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<Completed> {
    let task = leases::fenced(conn, &completion.lease)?;
    let task_ref = task.task_ref();
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
            let ended = Change::AttemptEnded {
                task: task_ref,
                attempt: task.attempt,
                end: AttemptEnd::Completed,
            };
            event_log::record(conn, now, changes, ended)?;
            if is_root && executions::finish(conn, now, execution, ExecutionState::Completed, Some(&text), None)? {
                let ended = Change::ExecutionEnded {
                    execution,
                    function: task.function.clone(),
                    state: ExecutionState::Completed,
                    result: Some(result.clone()),
                    error: None,
                    reason: None,
                };
                executions::record_end(conn, now, changes, ended)?;
                done.execution_state = Some(ExecutionState::Completed);
            }
        }
        Outcome::Retry { error, delay } => {
            conn.prepare_cached(
                "UPDATE tasks SET state = 'pending', scheduled_for = ?2, error = ?3, lease_token = NULL, \
                 lease_expires_at = NULL WHERE rowid = ?1",
            )?
            .execute((task.rowid, after(now, *delay), json(error)?))?;
            let failed = Change::AttemptEnded {
                task: task_ref.clone(),
                attempt: task.attempt,
                end: AttemptEnd::Failed {
                    error: error.clone(),
                    retry_in: Some(*delay),
                },
            };
            event_log::record(conn, now, changes, failed)?;
            let queued = Change::TaskQueued {
                task: task_ref,
                queue: task.queue.clone(),
                attempt: task.attempt,
                reason: Requeue::Retry,
                claimable_now: delay.is_zero(),
            };
            event_log::record(conn, now, changes, queued)?;
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
            let failed = Change::AttemptEnded {
                task: task_ref,
                attempt: task.attempt,
                end: AttemptEnd::Failed {
                    error: error.clone(),
                    retry_in: None,
                },
            };
            event_log::record(conn, now, changes, failed)?;
            if is_root && executions::finish(conn, now, execution, ExecutionState::Failed, None, Some(error))? {
                let ended = Change::ExecutionEnded {
                    execution,
                    function: task.function.clone(),
                    state: ExecutionState::Failed,
                    result: None,
                    error: Some(error.clone()),
                    reason: None,
                };
                executions::record_end(conn, now, changes, ended)?;
                done.execution_state = Some(ExecutionState::Failed);
            }
            done.state = TaskState::Failed;
        }
    }
    if let Some(parent) = task.parent_id {
        wakes.add(parent);
    }
    Ok(done)
}
