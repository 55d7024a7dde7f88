//! What orchestrators write under their lease: children at steps, and recorded
//! side effects. Both are fenced by the orchestrator's [`LeaseKey`], and both
//! leave a step that is already occupied alone, reporting what is there.

use std::collections::{HashMap, HashSet};

use courier_core::{
    AttemptEnd, Change, ChildCreated, ChildGroup, Dispatched, Effect, EffectApplied, EffectWrite, ExecutionId,
    LeaseKey, LeaseLost, LeaseToken, NewExecution, NewTask, StoreError, StoreResult, TaskId, TaskKind, TaskRef,
    TaskSpec, TaskState, WriteBatch,
};
use serde_json::Value;
use uuid::Uuid;

use crate::codec::{parse, to_json};
use crate::error::{Error, Result};
use crate::executions::cancel_locked;
use crate::statements::{execute, query, query_one, query_opt};
use crate::tasks::{NewTaskRow, NewTaskRows};
use crate::transaction::Tx;
use crate::wake::Wakes;
use crate::{context, dispatch, family, notifications};

/// The orchestrators whose leases fence a batch's children and effects, locked
/// for the rest of the transaction so that a reclaim cannot slip in between the
/// check and the commit.
pub(crate) struct Fences {
    holders: HashMap<TaskId, (TaskState, Option<LeaseToken>)>,
}

impl Fences {
    /// Locks the fencing tasks of `batch` (and, first, the executions that get
    /// signal waits: signal delivery locks the execution before any task, and so
    /// must this).
    pub(crate) async fn lock(tx: &Tx, batch: &WriteBatch) -> Result<Fences> {
        let mut waiting_executions: Vec<Uuid> = batch
            .children
            .iter()
            .flat_map(|g| &g.tasks)
            .filter(|t| t.spec.kind == TaskKind::SignalWait)
            .map(|t| t.execution_id.0)
            .collect();
        if !waiting_executions.is_empty() {
            waiting_executions.sort();
            waiting_executions.dedup();
            query(
                tx,
                "SELECT id FROM executions WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
                &[&waiting_executions],
            )
            .await?;
        }
        let mut ids: Vec<Uuid> = batch
            .children
            .iter()
            .filter_map(|g| g.fence)
            .chain(batch.effects.iter().filter_map(|e| e.fence))
            .map(|f| f.task_id.0)
            .collect();
        let mut holders = HashMap::new();
        if ids.is_empty() {
            return Ok(Fences { holders });
        }
        ids.sort();
        ids.dedup();
        for r in query(
            tx,
            "SELECT id, state, lease_token FROM tasks WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE",
            &[&ids],
        )
        .await?
        {
            let token: Option<Uuid> = r.try_get(2)?;
            holders.insert(
                TaskId(r.try_get(0)?),
                (parse(r.try_get::<_, &str>(1)?)?, token.map(LeaseToken)),
            );
        }
        Ok(Fences { holders })
    }

    /// Whether a write fenced by `fence` may go ahead.
    pub(crate) fn check(&self, fence: Option<LeaseKey>) -> StoreResult<()> {
        let Some(fence) = fence else { return Ok(()) };
        match self.holders.get(&fence.task_id) {
            None => Err(StoreError::TaskNotFound(fence.task_id)),
            Some((state, token)) => refusal(fence, *state, *token).map_or(Ok(()), Err),
        }
    }
}

/// Why a fenced write by `fence` is refused by a task in `state` holding `token`,
/// or `None` if the claim still holds the task.
pub(crate) fn refusal(fence: LeaseKey, state: TaskState, token: Option<LeaseToken>) -> Option<StoreError> {
    let reason = if state != TaskState::Running {
        LeaseLost::NotRunning(state)
    } else if token != Some(fence.token) {
        LeaseLost::Reclaimed
    } else {
        return None;
    };
    Some(StoreError::LeaseLost {
        task_id: fence.task_id,
        reason,
    })
}

/// The state a new child starts in (signal waits that find their signal are
/// completed afterwards).
fn initial_state(spec: &TaskSpec) -> TaskState {
    match spec.kind {
        TaskKind::Effect => TaskState::Completed,
        TaskKind::SignalWait if spec.delay.is_none() => TaskState::Waiting,
        _ => TaskState::Pending,
    }
}

/// A task found at an occupied step.
fn existing(row: &tokio_postgres::Row) -> Result<ChildCreated> {
    Ok(ChildCreated::Existing {
        id: TaskId(row.try_get(0)?),
        kind: parse(row.try_get::<_, &str>(1)?)?,
        function: row.try_get(2)?,
        state: parse(row.try_get::<_, &str>(3)?)?,
    })
}

/// Whether a new child in `state` can be claimed at once: pending and not delayed.
fn claimable_now(spec: &TaskSpec, state: TaskState) -> bool {
    state == TaskState::Pending && spec.delay.is_none_or(|d| d.is_zero())
}

/// Creates the children of every group whose fence holds, with one insert for
/// the whole batch; records `TaskCreated` per new task that is not an effect
/// (and `AttemptEnded` for a signal wait that consumed a waiting signal; its
/// parent is woken with the batch's other parents).
pub(crate) async fn create(
    tx: &Tx,
    groups: &[ChildGroup],
    fences: &Fences,
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<Vec<StoreResult<Vec<ChildCreated>>>> {
    let checks: Vec<StoreResult<()>> = groups.iter().map(|g| fences.check(g.fence)).collect();
    let admitted = || {
        groups
            .iter()
            .zip(&checks)
            .filter(|(_, c)| c.is_ok())
            .flat_map(|(g, _)| &g.tasks)
    };
    let null = Value::Null;
    let mut rows = NewTaskRows::default();
    let mut seen: HashSet<TaskId> = HashSet::new();
    for task in admitted() {
        if seen.insert(task.id()) {
            let result = (task.spec.kind == TaskKind::Effect).then(|| task.result.as_ref().unwrap_or(&null));
            rows.push_child(task, initial_state(&task.spec), result)?;
        }
    }
    let inserted = rows.insert(tx).await?;

    // What occupies the steps that were taken (by earlier rows or earlier in the batch).
    let occupied: Vec<&NewTask> = admitted().filter(|t| !inserted.contains(&t.id().0)).collect();
    let mut found: HashMap<(Uuid, i64), ChildCreated> = HashMap::new();
    if !occupied.is_empty() {
        let executions: Vec<Uuid> = occupied.iter().map(|t| t.execution_id.0).collect();
        let steps: Vec<i64> = occupied.iter().map(|t| t.step).collect();
        for r in query(
            tx,
            "SELECT t.id, t.kind, t.function, t.state, t.execution_id, t.step
             FROM tasks t JOIN unnest($1::uuid[], $2::int8[]) AS s(execution_id, step)
                 ON t.execution_id = s.execution_id AND t.step = s.step",
            &[&executions, &steps],
        )
        .await?
        {
            found.insert((r.try_get(4)?, r.try_get(5)?), existing(&r)?);
        }
    }

    let consumed = consume_signals(tx, admitted().filter(|t| inserted.contains(&t.id().0)), wakes).await?;

    let mut reported: HashSet<TaskId> = HashSet::new();
    let mut results = Vec::with_capacity(groups.len());
    for (group, check) in groups.iter().zip(checks) {
        if let Err(e) = check {
            results.push(Err(e));
            continue;
        }
        let mut created = Vec::with_capacity(group.tasks.len());
        for task in &group.tasks {
            let id = task.id();
            if inserted.contains(&id.0) && reported.insert(id) {
                let mut state = initial_state(&task.spec);
                let task_ref = || TaskRef::new(task.execution_id, id, task.spec.kind, task.spec.function.clone());
                if task.spec.kind != TaskKind::Effect {
                    changes.push(Change::TaskCreated {
                        task: task_ref(),
                        step: task.step,
                        queue: task.spec.queue.clone(),
                        state,
                        claimable_now: claimable_now(&task.spec, state),
                    });
                }
                if consumed.contains(&id) {
                    state = TaskState::Completed;
                    changes.push(Change::AttemptEnded {
                        task: task_ref(),
                        attempt: 0,
                        end: AttemptEnd::Completed,
                    });
                }
                created.push(ChildCreated::Created { id, state });
            } else if let Some(existing) = found.get(&(task.execution_id.0, task.step)) {
                created.push(existing.clone());
            } else if inserted.contains(&id.0) {
                // The same step twice in one batch: the second sees the first.
                created.push(ChildCreated::Existing {
                    id,
                    kind: task.spec.kind,
                    function: task.spec.function.clone(),
                    state: if consumed.contains(&id) {
                        TaskState::Completed
                    } else {
                        initial_state(&task.spec)
                    },
                });
            } else {
                // Its id belongs to a task at another step or of another execution:
                // only raw writes can do that, and nothing sensible can be reported.
                return Err(Error::Store(StoreError::Conflict {
                    id: id.to_string(),
                    detail: format!(
                        "task id of step {} of execution {} is taken by another task",
                        task.step, task.execution_id
                    ),
                }));
            }
        }
        results.push(Ok(created));
    }
    Ok(results)
}

/// Hands each new signal wait the oldest unconsumed signal of its name, if any,
/// completing it with the payload. The executions are locked (see
/// [`Fences::lock`]), so no concurrent wait or sender can take the same signal.
async fn consume_signals<'a>(
    tx: &Tx,
    new_tasks: impl Iterator<Item = &'a NewTask>,
    wakes: &mut Wakes,
) -> Result<HashSet<TaskId>> {
    let waits: Vec<&NewTask> = new_tasks.filter(|t| t.spec.kind == TaskKind::SignalWait).collect();
    if waits.is_empty() {
        return Ok(HashSet::new());
    }
    let executions: Vec<Uuid> = waits.iter().map(|t| t.execution_id.0).collect();
    let names: Vec<&str> = waits.iter().map(|t| t.spec.function.as_str()).collect();
    let mut available: HashMap<(Uuid, String), std::collections::VecDeque<(Uuid, Value)>> = HashMap::new();
    for r in query(
        tx,
        "SELECT id, execution_id, name, payload FROM signals
         WHERE consumed_by IS NULL AND execution_id = ANY($1) AND name = ANY($2)
         ORDER BY created_at, position",
        &[&executions, &names],
    )
    .await?
    {
        available
            .entry((r.try_get(1)?, r.try_get(2)?))
            .or_default()
            .push_back((r.try_get(0)?, r.try_get(3)?));
    }
    let mut signal_ids = Vec::new();
    let mut task_ids = Vec::new();
    let mut payloads = Vec::new();
    let mut consumed = HashSet::new();
    for wait in waits {
        let key = (wait.execution_id.0, wait.spec.function.clone());
        if let Some((signal, payload)) = available.get_mut(&key).and_then(|q| q.pop_front()) {
            signal_ids.push(signal);
            task_ids.push(wait.id().0);
            payloads.push(payload);
            consumed.insert(wait.id());
            if let Some(parent) = wait.parent_id {
                wakes.add(parent);
            }
        }
    }
    if !consumed.is_empty() {
        execute(
            tx,
            "UPDATE signals s SET consumed_by = x.task_id, consumed_at = now()
             FROM unnest($1::uuid[], $2::uuid[]) AS x(id, task_id) WHERE s.id = ANY($1) AND s.id = x.id",
            &[&signal_ids, &task_ids],
        )
        .await?;
        execute(
            tx,
            "UPDATE tasks t SET state = 'completed', result = x.payload, completed_at = now()
             FROM unnest($1::uuid[], $2::jsonb[]) AS x(id, payload) WHERE t.id = ANY($1) AND t.id = x.id",
            &[&task_ids, &payloads],
        )
        .await?;
    }
    Ok(consumed)
}

/// Records each effect whose fence holds, once per step (a progress effect
/// records its `TaskProgress` the first time, a notification its
/// `NotificationSent`; the caller holds the notifications' group locks). Effects
/// are rare next to children and completions, and increments of one counter must
/// apply in order, so they go one by one.
pub(crate) async fn apply_effects(
    tx: &Tx,
    writes: &[EffectWrite],
    fences: &Fences,
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<Vec<StoreResult<EffectApplied>>> {
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        if let Err(e) = fences.check(write.fence) {
            results.push(Err(e));
            continue;
        }
        if let Err(refusal) = refusal_of(tx, write).await? {
            results.push(Err(refusal));
            continue;
        }
        results.push(Ok(apply_effect(tx, write, changes, wakes).await?));
    }
    Ok(results)
}

/// What refuses an effect on its own, checked before anything of it is written
/// (so it fails alone, not the batch): a child it may not start or cancel.
async fn refusal_of(tx: &Tx, write: &EffectWrite) -> Result<StoreResult<()>> {
    match &write.effect {
        Effect::StartChild { execution } => Ok(execution.as_child_of(write.execution_id, write.step).map(|_| ())),
        Effect::CancelChild { execution_id, .. } => {
            match family::require_child(tx, write.execution_id, *execution_id).await {
                Ok(()) => Ok(Ok(())),
                Err(Error::Store(refusal)) => Ok(Err(refusal)),
                Err(failure) => Err(failure),
            }
        }
        _ => Ok(Ok(())),
    }
}

async fn apply_effect(
    tx: &Tx,
    write: &EffectWrite,
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<EffectApplied> {
    let id = TaskId::for_step(write.execution_id, write.step);
    let function = write.effect.function_name();
    let args = to_json(&write.effect)?;
    let spec = TaskSpec::new(TaskKind::Effect, function.clone(), Value::Null);
    // What the step records, when known before the effect applies (a
    // notification's id); an increment records its counter's value afterwards.
    let recorded_result = match &write.effect {
        Effect::Notify { notification, .. } => serde_json::json!(notification.id),
        Effect::Record { value, .. } => value.clone(),
        Effect::StartChild { execution } | Effect::ContinueAsNew { execution } => serde_json::json!(execution.id),
        Effect::CancelChild { .. } => Value::Null,
        Effect::Increment { .. } | Effect::SetState { .. } | Effect::Progress(_) => Value::Null,
    };
    let mut rows = NewTaskRows::default();
    rows.push(NewTaskRow {
        id,
        execution_id: write.execution_id,
        parent_id: write.parent_id,
        step: write.step,
        kind: TaskKind::Effect,
        function: &function,
        spec: &spec,
        args: &args,
        state: TaskState::Completed,
        result: Some(&recorded_result),
        delay: std::time::Duration::ZERO,
    })?;
    if rows.insert(tx).await?.is_empty() {
        return recorded(tx, id, write.execution_id, write.step).await;
    }
    let result = match &write.effect {
        Effect::Increment { name, amount } => {
            let value: f64 = query_one(
                tx,
                "INSERT INTO execution_counters (execution_id, name, value) VALUES ($1, $2, $3)
                 ON CONFLICT (execution_id, name) DO UPDATE SET value = execution_counters.value + excluded.value
                 RETURNING value",
                &[&write.execution_id.0, name, amount],
            )
            .await?
            .try_get(0)?;
            let result = serde_json::json!(value);
            execute(tx, "UPDATE tasks SET result = $2 WHERE id = $1", &[&id.0, &result]).await?;
            result
        }
        Effect::SetState { key, value } => {
            context::set_state_value(tx, write.execution_id, key, value).await?;
            Value::Null
        }
        Effect::Progress(progress) => {
            let reporter = write.parent_id.unwrap_or_else(|| TaskId::root_of(write.execution_id));
            context::insert_progress(tx, write.execution_id, reporter, progress).await?;
            changes.push(Change::TaskProgress {
                execution: write.execution_id,
                task: reporter,
                progress: progress.clone(),
            });
            Value::Null
        }
        Effect::Notify { notification, ttl } => {
            // Its group's lock was taken with the batch's (see `commit`).
            notifications::send_in(tx, notification, ttl, changes).await?;
            recorded_result
        }
        Effect::Record { .. } => recorded_result,
        Effect::StartChild { execution } => {
            let child = execution.as_child_of(write.execution_id, write.step)?;
            start_execution(tx, &child, changes).await?;
            recorded_result
        }
        Effect::CancelChild { execution_id, reason } => {
            let (cancelled, end) = cancel_locked(tx, *execution_id, reason, changes).await?;
            if let Some(end) = end {
                family::ended(tx, vec![end], changes, wakes).await?;
            }
            let previous = serde_json::json!(cancelled.previous);
            execute(tx, "UPDATE tasks SET result = $2 WHERE id = $1", &[&id.0, &previous]).await?;
            previous
        }
        Effect::ContinueAsNew { execution } => {
            let mut successor = execution.clone();
            successor.parent = family::hand_over(tx, write.execution_id).await?;
            start_execution(tx, &successor, changes).await?;
            recorded_result
        }
    };
    Ok(EffectApplied {
        task: ChildCreated::Created {
            id,
            state: TaskState::Completed,
        },
        result,
    })
}

/// Dispatches an execution an effect starts; its id must be free, since the
/// effect's step is taken only once.
async fn start_execution(tx: &Tx, execution: &NewExecution, changes: &mut Vec<Change>) -> Result<()> {
    let mut results = dispatch::apply(tx, std::slice::from_ref(execution), changes).await?;
    match results.pop() {
        Some(Ok(Dispatched::Created(_))) => Ok(()),
        Some(Ok(Dispatched::Existing(id))) => Err(Error::Store(StoreError::Conflict {
            id: id.to_string(),
            detail: "the execution to start already exists".into(),
        })),
        Some(Err(e)) => Err(Error::Store(e)),
        None => Err(Error::Store(StoreError::Backend(
            "a dispatch returned no result".into(),
        ))),
    }
}

/// What an earlier recording of an effect left at its step.
async fn recorded(tx: &Tx, id: TaskId, execution: ExecutionId, step: i64) -> Result<EffectApplied> {
    let row = query_opt(
        tx,
        "SELECT id, kind, function, state, result FROM tasks WHERE execution_id = $1 AND step = $2",
        &[&execution.0, &step],
    )
    .await?
    .ok_or_else(|| {
        Error::Store(StoreError::Conflict {
            id: id.to_string(),
            detail: format!("task id of step {step} of execution {execution} is taken by another task"),
        })
    })?;
    Ok(EffectApplied {
        task: existing(&row)?,
        result: row.try_get::<_, Option<Value>>(4)?.unwrap_or(Value::Null),
    })
}
