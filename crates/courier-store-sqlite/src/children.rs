//! What orchestrators create at their steps: child tasks and recorded effects.
//! A step that is already taken is reported, never overwritten, so a replaying
//! orchestrator finds its history instead of repeating it.

use courier_core::{
    AttemptEnd, Change, ChildCreated, ChildGroup, Effect, EffectApplied, EffectWrite, ExecutionId, NewTask, TaskId,
    TaskKind, TaskRef, TaskSpec, TaskState,
};
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::codec::{after, enum_at, json, json_opt_at, uuid_at};
use crate::error::Result;
use crate::rows::{NewTaskRow, insert_new_task};
use crate::{context, dispatch, event_log, executions, family, leases, notifications, signals, tasks, wake};

/// What sits at a step already, with its recorded result.
fn existing_at(conn: &Connection, execution: ExecutionId, step: i64) -> Result<Option<(ChildCreated, Option<Value>)>> {
    Ok(conn
        .prepare_cached("SELECT id, kind, function, state, result FROM tasks WHERE execution_id = ?1 AND step = ?2")?
        .query_row((execution.0.as_bytes(), step), |row| {
            let existing = ChildCreated::Existing {
                id: TaskId(uuid_at(row, 0)?),
                kind: enum_at(row, 1)?,
                function: row.get(2)?,
                state: enum_at(row, 3)?,
            };
            Ok((existing, json_opt_at(row, 4)?))
        })
        .optional()?)
}

/// The same, for a task found by id (its id was taken at another step).
fn existing_by_id(conn: &Connection, id: TaskId) -> Result<ChildCreated> {
    let head = tasks::head(conn, id)?.ok_or(courier_core::StoreError::TaskNotFound(id))?;
    Ok(ChildCreated::Existing {
        id,
        kind: head.kind,
        function: head.function,
        state: head.state,
    })
}

/// Creates a group of children under one fence. Everything that can refuse the
/// group is checked before anything is written.
pub(crate) fn create_group(
    conn: &Connection,
    now: i64,
    group: &ChildGroup,
    changes: &mut Vec<Change>,
) -> Result<Vec<ChildCreated>> {
    if let Some(fence) = &group.fence {
        leases::fenced(conn, fence)?;
    }
    let mut checked: Vec<ExecutionId> = Vec::new();
    for task in &group.tasks {
        if !checked.contains(&task.execution_id) {
            executions::require(conn, task.execution_id)?;
            checked.push(task.execution_id);
        }
    }
    let mut out = Vec::with_capacity(group.tasks.len());
    for task in &group.tasks {
        out.push(create_child(conn, now, task, changes)?);
    }
    Ok(out)
}

fn create_child(conn: &Connection, now: i64, task: &NewTask, changes: &mut Vec<Change>) -> Result<ChildCreated> {
    if let Some((existing, _)) = existing_at(conn, task.execution_id, task.step)? {
        return Ok(existing);
    }
    let id = task.id();
    let spec = &task.spec;
    let mut signal: Option<(i64, String)> = None;
    let mut result: Option<String> = None;
    let (state, scheduled_for) = match spec.kind {
        TaskKind::Effect => {
            result = Some(json(task.result.as_ref().unwrap_or(&Value::Null))?);
            (TaskState::Completed, now)
        }
        TaskKind::SignalWait => {
            signal = signals::oldest_unconsumed(conn, task.execution_id, &spec.function)?;
            match (&signal, spec.delay) {
                (Some(_), _) => (TaskState::Completed, now),
                (None, Some(timeout)) => (TaskState::Pending, after(now, timeout)),
                (None, None) => (TaskState::Waiting, now),
            }
        }
        TaskKind::Orchestrator | TaskKind::Activity | TaskKind::Sleep => {
            (TaskState::Pending, after(now, spec.delay.unwrap_or_default()))
        }
    };
    if let Some((_, payload)) = &signal {
        result = Some(payload.clone());
    }
    let args = json(&spec.args)?;
    let tags = json(&spec.tags)?;
    let row = NewTaskRow {
        id,
        execution_id: task.execution_id,
        parent_id: task.parent_id,
        step: task.step,
        spec,
        args: &args,
        tags: &tags,
        state,
        result: result.as_deref(),
        scheduled_for,
        now,
        completed_at: (state == TaskState::Completed).then_some(now),
    };
    if !insert_new_task(conn, &row)? {
        return existing_by_id(conn, id);
    }
    let task_ref = TaskRef::new(task.execution_id, id, spec.kind, spec.function.clone());
    if spec.kind != TaskKind::Effect {
        let created = Change::TaskCreated {
            task: task_ref.clone(),
            step: task.step,
            queue: spec.queue.clone(),
            state,
            claimable_now: state == TaskState::Pending && spec.delay.is_none_or(|d| d.is_zero()),
        };
        event_log::record(conn, now, changes, created)?;
    }
    if let Some((rowid, _)) = signal {
        signals::consume(conn, now, rowid, id)?;
        let completed = Change::AttemptEnded {
            task: task_ref,
            attempt: 0,
            end: AttemptEnd::Completed,
        };
        event_log::record(conn, now, changes, completed)?;
        if let Some(parent) = task.parent_id {
            wake::wake_parent(conn, now, parent, changes)?;
        }
    }
    Ok(ChildCreated::Created { id, state })
}

/// Records an effect at its step, applying it only the first time.
pub(crate) fn apply_effect(
    conn: &Connection,
    now: i64,
    write: &EffectWrite,
    changes: &mut Vec<Change>,
) -> Result<EffectApplied> {
    if let Some(fence) = &write.fence {
        leases::fenced(conn, fence)?;
    }
    if let Some((task, result)) = existing_at(conn, write.execution_id, write.step)? {
        return Ok(EffectApplied {
            task,
            result: result.unwrap_or(Value::Null),
        });
    }
    executions::require(conn, write.execution_id)?;
    let id = TaskId::for_step(write.execution_id, write.step);
    if tasks::head(conn, id)?.is_some() {
        // The step is free but a raw record squats the id: report it, apply nothing.
        return Ok(EffectApplied {
            task: existing_by_id(conn, id)?,
            result: Value::Null,
        });
    }
    let result = match &write.effect {
        Effect::Increment { name, amount } => {
            Value::from(context::increment_counter(conn, write.execution_id, name, *amount)?)
        }
        Effect::SetState { key, value } => {
            context::set_state_value(conn, write.execution_id, key, value)?;
            Value::Null
        }
        Effect::Progress(progress) => {
            context::append_progress(conn, now, write.execution_id, write.parent_id, progress, changes)?;
            Value::Null
        }
        Effect::Notify { notification, ttl } => {
            let id = notifications::send_as_effect(conn, now, notification, ttl, changes)?;
            serde_json::json!(id)
        }
        Effect::Record { value, .. } => value.clone(),
        Effect::StartChild { execution } => {
            let child = execution.as_child_of(write.execution_id, write.step)?;
            serde_json::json!(dispatch::dispatch(conn, now, &child, changes)?.id())
        }
        Effect::CancelChild { execution_id, reason } => {
            family::require_child(conn, write.execution_id, *execution_id)?;
            serde_json::json!(executions::cancel(conn, now, *execution_id, reason, changes)?.previous)
        }
        Effect::ContinueAsNew { execution } => {
            let mut successor = execution.clone();
            successor.parent = family::hand_over(conn, write.execution_id)?;
            serde_json::json!(dispatch::dispatch(conn, now, &successor, changes)?.id())
        }
    };
    let spec = TaskSpec::new(TaskKind::Effect, write.effect.function_name(), Value::Null);
    let args = json(&write.effect)?;
    let result_text = json(&result)?;
    let row = NewTaskRow {
        id,
        execution_id: write.execution_id,
        parent_id: write.parent_id,
        step: write.step,
        spec: &spec,
        args: &args,
        tags: "[]",
        state: TaskState::Completed,
        result: Some(&result_text),
        scheduled_for: now,
        now,
        completed_at: Some(now),
    };
    insert_new_task(conn, &row)?;
    Ok(EffectApplied {
        task: ChildCreated::Created {
            id,
            state: TaskState::Completed,
        },
        result,
    })
}
