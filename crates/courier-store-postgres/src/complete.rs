//! Completions: the end of attempts, fenced by their leases, in bulk.
//!
//! One UPDATE finishes every completion whose claim still holds its task (the
//! fence is in its WHERE, so a refusal changes nothing and aborts nothing); the
//! refused ones are then explained from a read of their rows. Root tasks settle
//! their executions, results are remembered, dead letters kept and parents woken,
//! each with one statement for the whole batch. Each finished attempt records an
//! `AttemptEnded` (then a `TaskQueued` if it is retried, and an `ExecutionEnded`
//! if it settled its execution).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use courier_core::{
    AttemptEnd, Change, Completed, Completion, ExecutionId, ExecutionState, LeaseKey, LeaseToken, Outcome, Remember,
    Requeue, StoreError, StoreResult, TaskId, TaskKind, TaskRecord, TaskRef, TaskState,
};
use serde_json::Value;
use uuid::Uuid;

use crate::children::refusal;
use crate::codec::{micros, now_plus, opt_micros, parse, to_json};
use crate::error::Result;
use crate::family;
use crate::passes::{in_item_order, passes};
use crate::rows::{self, TASK_COLUMNS};
use crate::statements::{execute, query};
use crate::transaction::Tx;
use crate::wake::Wakes;

static FINISH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tasks t SET
             state = c.state,
             result = CASE WHEN c.state = 'completed' THEN c.result ELSE t.result END,
             error = COALESCE(c.error, t.error),
             scheduled_for = CASE WHEN c.state = 'pending' THEN {due} ELSE t.scheduled_for END,
             completed_at = CASE WHEN c.state = 'pending' THEN NULL ELSE now() END,
             lease_token = NULL,
             lease_expires_at = NULL
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $6::int8[])
             AS c(id, token, state, result, error, delay_us)
         WHERE t.id = c.id AND t.state = 'running' AND t.lease_token = c.token
         RETURNING t.id, t.execution_id, t.parent_id, t.step, t.kind, t.function, t.attempt, t.state, t.queue",
        due = now_plus("c.delay_us"),
    )
});

/// What a finished attempt's row says now: what the changes, the execution and
/// the parent need (the whole record is read only for dead letters).
struct Finished {
    id: TaskId,
    execution_id: ExecutionId,
    parent_id: Option<TaskId>,
    step: i64,
    kind: TaskKind,
    function: String,
    attempt: u32,
    state: TaskState,
    queue: String,
}

impl Finished {
    fn from_row(r: &tokio_postgres::Row) -> Result<Finished> {
        let attempt: i32 = r.try_get(6)?;
        Ok(Finished {
            id: TaskId(r.try_get(0)?),
            execution_id: ExecutionId(r.try_get(1)?),
            parent_id: r.try_get::<_, Option<Uuid>>(2)?.map(TaskId),
            step: r.try_get(3)?,
            kind: parse(r.try_get::<_, &str>(4)?)?,
            function: r.try_get(5)?,
            attempt: u32::try_from(attempt).unwrap_or(0),
            state: parse(r.try_get::<_, &str>(7)?)?,
            queue: r.try_get(8)?,
        })
    }

    /// The task as changes name it.
    fn task_ref(&self) -> TaskRef {
        TaskRef::new(self.execution_id, self.id, self.kind, self.function.clone())
    }
}

/// Applies `completions` (in passes, should one task appear more than once, so
/// that the second sees what the first did); records their changes.
pub(crate) async fn apply(
    tx: &Tx,
    completions: &[Completion],
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<Vec<StoreResult<Completed>>> {
    let tasks: Vec<TaskId> = completions.iter().map(|c| c.lease.task_id).collect();
    let mut done = Vec::new();
    for pass in passes(&tasks) {
        let results = apply_pass(tx, completions, &pass, changes, wakes).await?;
        done.push((pass, results));
    }
    Ok(in_item_order(completions.len(), done))
}

/// Applies completions of distinct tasks.
async fn apply_pass(
    tx: &Tx,
    all: &[Completion],
    pass: &[usize],
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<Vec<StoreResult<Completed>>> {
    let items: Vec<&Completion> = pass.iter().map(|&i| &all[i]).collect();
    let mut ids = Vec::with_capacity(items.len());
    let mut tokens = Vec::with_capacity(items.len());
    let mut states = Vec::with_capacity(items.len());
    let mut results: Vec<Option<&Value>> = Vec::with_capacity(items.len());
    let mut errors: Vec<Option<Value>> = Vec::with_capacity(items.len());
    let mut delays: Vec<Option<i64>> = Vec::with_capacity(items.len());
    for c in &items {
        ids.push(c.lease.task_id.0);
        tokens.push(c.lease.token.0);
        let (state, result, error, delay) = match &c.outcome {
            Outcome::Succeeded { result, .. } => (TaskState::Completed, Some(result), None, None),
            Outcome::Retry { error, delay } => (TaskState::Pending, None, Some(to_json(error)?), Some(micros(*delay))),
            Outcome::Failed { error, .. } => (TaskState::Failed, None, Some(to_json(error)?), None),
        };
        states.push(state.as_str());
        results.push(result);
        errors.push(error);
        delays.push(delay);
    }
    let finished: HashMap<Uuid, Finished> = query(tx, &FINISH, &[&ids, &tokens, &states, &results, &errors, &delays])
        .await?
        .iter()
        .map(|r| Finished::from_row(r).map(|t| (t.id.0, t)))
        .collect::<Result<_>>()?;

    let refused = refusals(
        tx,
        items
            .iter()
            .map(|c| c.lease)
            .filter(|l| !finished.contains_key(&l.task_id.0)),
    )
    .await?;

    // Root tasks settle their executions.
    let mut settle_ids = Vec::new();
    let mut settle_states = Vec::new();
    let mut settle_results: Vec<Option<&Value>> = Vec::new();
    let mut settle_errors: Vec<Option<Value>> = Vec::new();
    for c in &items {
        let Some(task) = finished.get(&c.lease.task_id.0) else {
            continue;
        };
        if task.step != 0 || task.parent_id.is_some() {
            continue;
        }
        let (state, result, error) = match &c.outcome {
            Outcome::Succeeded { result, .. } => (ExecutionState::Completed, Some(result), None),
            Outcome::Failed { error, .. } => (ExecutionState::Failed, None, Some(to_json(error)?)),
            Outcome::Retry { .. } => continue,
        };
        settle_ids.push(task.execution_id.0);
        settle_states.push(state.as_str());
        settle_results.push(result);
        settle_errors.push(error);
    }
    let mut settled: HashMap<Uuid, (ExecutionState, String)> = HashMap::new();
    // Settled executions with a parent or children: their ends go further.
    let mut with_family: HashSet<Uuid> = HashSet::new();
    if !settle_ids.is_empty() {
        // A settled execution's deadline goes with it, in the same statement.
        for r in query(
            tx,
            "WITH settled AS (
                 UPDATE executions e SET state = x.state, result = x.result, error = x.error,
                     completed_at = now(), updated_at = now()
                 FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[]) AS x(id, state, result, error)
                 WHERE e.id = ANY($1) AND e.id = x.id AND e.state IN ('pending', 'running')
                 RETURNING e.id, e.state, e.function, e.parent_execution_id IS NOT NULL OR e.has_children AS family
             ),
             forgotten AS (
                 DELETE FROM execution_deadlines d USING settled s WHERE d.execution_id = s.id
             )
             SELECT id, state, function, family FROM settled",
            &[&settle_ids, &settle_states, &settle_results, &settle_errors],
        )
        .await?
        {
            let id: Uuid = r.try_get(0)?;
            settled.insert(id, (parse(r.try_get::<_, &str>(1)?)?, r.try_get(2)?));
            if r.try_get::<_, bool>(3)? {
                with_family.insert(id);
            }
        }
    }

    remember(tx, &items, &finished).await?;
    keep_dead_letters(tx, &items, &finished).await?;

    let mut out = Vec::with_capacity(items.len());
    let mut family_ends = Vec::new();
    for c in &items {
        let Some(task) = finished.get(&c.lease.task_id.0) else {
            out.push(Err(refused
                .get(&c.lease)
                .cloned()
                .unwrap_or(StoreError::TaskNotFound(c.lease.task_id))));
            continue;
        };
        let (id, execution) = (task.id, task.execution_id);
        match &c.outcome {
            Outcome::Succeeded { .. } => {
                changes.push(Change::AttemptEnded {
                    task: task.task_ref(),
                    attempt: task.attempt,
                    end: AttemptEnd::Completed,
                });
            }
            Outcome::Retry { error, delay } => {
                changes.push(Change::AttemptEnded {
                    task: task.task_ref(),
                    attempt: task.attempt,
                    end: AttemptEnd::Failed {
                        error: error.clone(),
                        retry_in: Some(*delay),
                    },
                });
                changes.push(Change::TaskQueued {
                    task: task.task_ref(),
                    queue: task.queue.clone(),
                    attempt: task.attempt,
                    reason: Requeue::Retry,
                    claimable_now: delay.is_zero(),
                });
            }
            Outcome::Failed { error, .. } => {
                changes.push(Change::AttemptEnded {
                    task: task.task_ref(),
                    attempt: task.attempt,
                    end: AttemptEnd::Failed {
                        error: error.clone(),
                        retry_in: None,
                    },
                });
            }
        }
        let execution_state = settled
            .get(&execution.0)
            .filter(|_| task.step == 0)
            .map(|(state, function)| {
                let (result, error) = match (&c.outcome, state) {
                    (Outcome::Succeeded { result, .. }, ExecutionState::Completed) => (Some(result.clone()), None),
                    (Outcome::Failed { error, .. }, ExecutionState::Failed) => (None, Some(error.clone())),
                    _ => return *state,
                };
                let ended = Change::ExecutionEnded {
                    execution,
                    function: function.clone(),
                    state: *state,
                    result,
                    error,
                    reason: None,
                };
                if with_family.contains(&execution.0) {
                    family_ends.push(ended.clone());
                }
                changes.push(ended);
                *state
            });
        let terminal = task.state.is_terminal();
        let parent_id = task.parent_id.filter(|_| terminal);
        if let Some(parent) = parent_id {
            wakes.add(parent);
        }
        out.push(Ok(Completed {
            task_id: id,
            execution_id: execution,
            state: task.state,
            parent_id,
            execution_state,
        }));
    }
    if !family_ends.is_empty() {
        family::ended(tx, family_ends, changes, wakes).await?;
    }
    Ok(out)
}

/// Why each of `leases` was refused, read from the tasks' rows.
pub(crate) async fn refusals(tx: &Tx, leases: impl Iterator<Item = LeaseKey>) -> Result<HashMap<LeaseKey, StoreError>> {
    let leases: Vec<LeaseKey> = leases.collect();
    let mut out = HashMap::new();
    if leases.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = leases.iter().map(|l| l.task_id.0).collect();
    let mut found: HashMap<Uuid, (TaskState, Option<LeaseToken>)> = HashMap::new();
    for r in query(
        tx,
        "SELECT id, state, lease_token FROM tasks WHERE id = ANY($1)",
        &[&ids],
    )
    .await?
    {
        let token: Option<Uuid> = r.try_get(2)?;
        found.insert(r.try_get(0)?, (parse(r.try_get::<_, &str>(1)?)?, token.map(LeaseToken)));
    }
    for lease in leases {
        let err = match found.get(&lease.task_id.0) {
            None => StoreError::TaskNotFound(lease.task_id),
            // The update refused a claim that this read says still holds the task:
            // not expected, and not a success either, so it is reported as lost.
            Some((state, token)) => refusal(lease, *state, *token).unwrap_or(StoreError::LeaseLost {
                task_id: lease.task_id,
                reason: courier_core::LeaseLost::Reclaimed,
            }),
        };
        out.insert(lease, err);
    }
    Ok(out)
}

/// Writes successful results to the cache and idempotency keys they name. A key
/// named twice in a batch keeps the later value.
async fn remember(tx: &Tx, items: &[&Completion], finished: &HashMap<Uuid, Finished>) -> Result<()> {
    let mut cache: HashMap<&str, (&Value, Option<i64>)> = HashMap::new();
    let mut idempotency: HashMap<&str, &Value> = HashMap::new();
    for c in items {
        let Outcome::Succeeded { result, remember } = &c.outcome else {
            continue;
        };
        if remember.is_empty() || !finished.contains_key(&c.lease.task_id.0) {
            continue;
        }
        for place in remember {
            match place {
                Remember::Cache { key, ttl } => {
                    cache.insert(key, (result, opt_micros(*ttl)));
                }
                Remember::Idempotency { key } => {
                    idempotency.insert(key, result);
                }
            }
        }
    }
    if !cache.is_empty() {
        let keys: Vec<&str> = cache.keys().copied().collect();
        let values: Vec<&Value> = keys.iter().map(|k| cache[k].0).collect();
        let ttls: Vec<Option<i64>> = keys.iter().map(|k| cache[k].1).collect();
        execute(
            tx,
            &format!(
                "INSERT INTO cache (key, value, expires_at, created_at)
                 SELECT x.key, x.value, {}, now() FROM unnest($1::text[], $2::jsonb[], $3::int8[]) AS x(key, value, ttl_us)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at,
                     created_at = excluded.created_at",
                now_plus("x.ttl_us")
            ),
            &[&keys, &values, &ttls],
        )
        .await?;
    }
    if !idempotency.is_empty() {
        let keys: Vec<&str> = idempotency.keys().copied().collect();
        let values: Vec<&Value> = keys.iter().map(|k| idempotency[k]).collect();
        execute(
            tx,
            "INSERT INTO idempotency (key, result, owner, updated_at)
             SELECT x.key, x.value, NULL, now() FROM unnest($1::text[], $2::jsonb[]) AS x(key, value)
             ON CONFLICT (key) DO UPDATE SET result = excluded.result, owner = NULL, updated_at = now()",
            &[&keys, &values],
        )
        .await?;
    }
    Ok(())
}

/// Keeps a dead letter (the task as it now is) for each final failure that asks.
async fn keep_dead_letters(tx: &Tx, items: &[&Completion], finished: &HashMap<Uuid, Finished>) -> Result<()> {
    let mut reasons: HashMap<Uuid, &str> = HashMap::new();
    for c in items {
        let Outcome::Failed {
            reason,
            dead_letter: true,
            ..
        } = &c.outcome
        else {
            continue;
        };
        if finished.contains_key(&c.lease.task_id.0) {
            reasons.insert(c.lease.task_id.0, reason);
        }
    }
    if reasons.is_empty() {
        return Ok(());
    }
    // The letter keeps the task as it is now, failed, so it is read back whole.
    let ids: Vec<Uuid> = reasons.keys().copied().collect();
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)");
    let mut task_ids = Vec::new();
    let mut executions = Vec::new();
    let mut letter_reasons = Vec::new();
    let mut snapshots = Vec::new();
    for row in query(tx, &sql, &[&ids]).await? {
        let task: TaskRecord = rows::task(&row)?;
        task_ids.push(task.id.0);
        executions.push(task.execution_id.0);
        letter_reasons.push(reasons[&task.id.0]);
        snapshots.push(to_json(&task)?);
    }
    if task_ids.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "INSERT INTO dead_letters (task_id, execution_id, reason, failed_at, task)
         SELECT x.task_id, x.execution_id, x.reason, now(), x.task
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[]) AS x(task_id, execution_id, reason, task)
         ON CONFLICT (task_id) DO UPDATE SET execution_id = excluded.execution_id, reason = excluded.reason,
             failed_at = excluded.failed_at, task = excluded.task",
        &[&task_ids, &executions, &letter_reasons, &snapshots],
    )
    .await?;
    Ok(())
}
