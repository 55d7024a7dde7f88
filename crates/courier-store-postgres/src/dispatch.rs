//! Dispatch: new executions with their root tasks, deduplicated by idempotency key
//! (the dispatch section of a commit, and webhook deliveries' executions).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use courier_core::{Change, Dispatched, NewExecution, StoreError, StoreResult, TaskId, TaskRef, TaskState};
use serde_json::Value;
use uuid::Uuid;

use crate::codec::{micros, now_plus, opt_micros, tags_json, tags_sql, to_json};
use crate::error::{Error, Result};
use crate::family;
use crate::statements::query;
use crate::transaction::Tx;

/// What to do with one item of the batch.
enum Plan {
    /// Insert it (it may still turn out to exist).
    Insert,
    /// An earlier item of the batch has the same idempotency key.
    SameKeyAs(usize),
    /// An earlier item of the batch has the same id.
    DuplicateId,
}

/// The executions and, for each one inserted, its root task: one statement, so
/// that a dispatch costs one round trip, not one per table. Answers each id
/// inserted, with whether it is a root task's.
static INSERT_EXECUTIONS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH x AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::jsonb[],
                                  $7::int4[], $8::text[], $9::int8[], $10::uuid[], $11::text[], $12::jsonb[],
                                  $13::int8[], $14::int8[])
                 AS x(id, function, version, args, queue, tags, priority, key, expiry_us, root, kind, retry,
                      timeout_us, delay_us)
         ),
         inserted AS (
             INSERT INTO executions (id, function, version, state, args, queue, tags, priority, idempotency_key,
                 created_at, updated_at, deadline)
             SELECT x.id, x.function, x.version, 'pending', x.args, x.queue, {tags}, x.priority, x.key, now(), now(),
                 {deadline}
             FROM x
             ON CONFLICT DO NOTHING
             RETURNING id, deadline
         ),
         deadlines AS (
             INSERT INTO execution_deadlines (execution_id, deadline)
             SELECT id, deadline FROM inserted WHERE deadline IS NOT NULL
         ),
         roots AS (
             INSERT INTO tasks (id, execution_id, parent_id, step, kind, function, version, queue, tags, priority,
                 state, args, attempt, retry, timeout_us, wake_gen, scheduled_for, created_at)
             SELECT x.root, x.id, NULL, 0, x.kind, x.function, x.version, x.queue, {tags}, x.priority,
                 'pending', x.args, 0, x.retry, x.timeout_us, 0, {due}, now()
             FROM x JOIN inserted ON inserted.id = x.id
             ON CONFLICT DO NOTHING
             RETURNING id
         )
         SELECT id, false FROM inserted
         UNION ALL
         SELECT id, true FROM roots",
        tags = tags_sql("x.tags"),
        deadline = now_plus("x.expiry_us"),
        due = now_plus("x.delay_us"),
    )
});

/// Creates the executions of a batch and their root tasks; records their changes
/// (`ExecutionCreated`, then `TaskCreated`, per execution created, in batch order).
///
/// A key already taken (in the database, or earlier in the batch) yields the
/// existing execution. Concurrent dispatches of one key meet in the unique index:
/// the later insert waits for the earlier transaction and then finds its row.
pub(crate) async fn apply(
    tx: &Tx,
    items: &[NewExecution],
    changes: &mut Vec<Change>,
) -> Result<Vec<StoreResult<Dispatched>>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let plans: Vec<Plan> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if let Some(key) = item.idempotency_key.as_deref() {
                if let Some(&first) = by_key.get(key) {
                    return Plan::SameKeyAs(first);
                }
                by_key.insert(key, i);
            }
            if ids.insert(item.id.0) {
                Plan::Insert
            } else {
                Plan::DuplicateId
            }
        })
        .collect();

    let mut inserting: Vec<&NewExecution> = items
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Insert))
        .map(|(item, _)| item)
        .collect();
    // Batches that share keys then wait on each other's rows in one order, never
    // in a cycle.
    inserting.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
    let (created, inserted_roots) = insert_executions(tx, &inserting).await?;

    // Keys whose insert found an execution already there.
    let taken: Vec<&str> = inserting
        .iter()
        .filter(|item| !created.contains(&item.id.0))
        .filter_map(|item| item.idempotency_key.as_deref())
        .collect();
    let existing: HashMap<String, Uuid> = if taken.is_empty() {
        HashMap::new()
    } else {
        query(
            tx,
            "SELECT idempotency_key, id FROM executions WHERE idempotency_key = ANY($1)",
            &[&taken],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?
    };

    if let Some(item) = inserting
        .iter()
        .find(|item| created.contains(&item.id.0) && !inserted_roots.contains(&TaskId::root_of(item.id).0))
    {
        // The root task's id is taken by a row of another execution: the batch
        // fails as a whole so that no execution is left without its root.
        return Err(Error::Store(StoreError::Conflict {
            id: TaskId::root_of(item.id).to_string(),
            detail: format!("the root task id of execution {} is already taken", item.id),
        }));
    }

    for item in inserting.iter().filter(|item| created.contains(&item.id.0)) {
        if let Some(link) = &item.parent {
            family::link(tx, item.id, link).await?;
        }
    }

    let mut results: Vec<StoreResult<Dispatched>> = Vec::with_capacity(items.len());
    for (item, plan) in items.iter().zip(&plans) {
        let result = match plan {
            Plan::SameKeyAs(first) => match &results[*first] {
                Ok(d) => Ok(Dispatched::Existing(d.id())),
                Err(e) => Err(e.clone()),
            },
            Plan::DuplicateId => Err(duplicate_id(item)),
            Plan::Insert if created.contains(&item.id.0) => {
                let root = TaskId::root_of(item.id);
                changes.push(Change::ExecutionCreated {
                    execution: item.id,
                    function: item.spec.function.clone(),
                    queue: item.spec.queue.clone(),
                });
                changes.push(Change::TaskCreated {
                    task: TaskRef::new(item.id, root, item.spec.kind, item.spec.function.clone()),
                    step: 0,
                    queue: item.spec.queue.clone(),
                    state: TaskState::Pending,
                    claimable_now: item.spec.delay.is_none_or(|d| d.is_zero()),
                });
                Ok(Dispatched::Created(item.id))
            }
            Plan::Insert => match item.idempotency_key.as_deref().and_then(|k| existing.get(k)) {
                Some(id) => Ok(Dispatched::Existing((*id).into())),
                None => Err(duplicate_id(item)),
            },
        };
        results.push(result);
    }
    Ok(results)
}

fn duplicate_id(item: &NewExecution) -> StoreError {
    StoreError::Conflict {
        id: item.id.to_string(),
        detail: "an execution with this id already exists".into(),
    }
}

/// Inserts `items` and their root tasks; answers the executions inserted and
/// the root tasks inserted.
async fn insert_executions(tx: &Tx, items: &[&NewExecution]) -> Result<(HashSet<Uuid>, HashSet<Uuid>)> {
    if items.is_empty() {
        return Ok((HashSet::new(), HashSet::new()));
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.id.0).collect();
    let functions: Vec<&str> = items.iter().map(|i| i.spec.function.as_str()).collect();
    let versions: Vec<Option<&str>> = items.iter().map(|i| i.spec.version.as_deref()).collect();
    let args: Vec<&Value> = items.iter().map(|i| &i.spec.args).collect();
    let queues: Vec<&str> = items.iter().map(|i| i.spec.queue.as_str()).collect();
    let tags: Vec<Value> = items.iter().map(|i| tags_json(&i.spec.tags)).collect();
    let priorities: Vec<i32> = items.iter().map(|i| i.spec.priority).collect();
    let keys: Vec<Option<&str>> = items.iter().map(|i| i.idempotency_key.as_deref()).collect();
    let expiries: Vec<Option<i64>> = items.iter().map(|i| opt_micros(i.expiry)).collect();
    let roots: Vec<Uuid> = items.iter().map(|i| TaskId::root_of(i.id).0).collect();
    let kinds: Vec<&str> = items.iter().map(|i| i.spec.kind.as_str()).collect();
    let retries: Vec<Value> = items.iter().map(|i| to_json(&i.spec.retry)).collect::<Result<_>>()?;
    let timeouts: Vec<Option<i64>> = items.iter().map(|i| opt_micros(i.spec.timeout)).collect();
    let delays: Vec<i64> = items.iter().map(|i| micros(i.spec.delay.unwrap_or_default())).collect();
    let rows = query(
        tx,
        &INSERT_EXECUTIONS,
        &[
            &ids,
            &functions,
            &versions,
            &args,
            &queues,
            &tags,
            &priorities,
            &keys,
            &expiries,
            &roots,
            &kinds,
            &retries,
            &timeouts,
            &delays,
        ],
    )
    .await?;
    let (mut executions, mut tasks) = (HashSet::new(), HashSet::new());
    for row in &rows {
        let id: Uuid = row.try_get(0)?;
        if row.try_get(1)? {
            tasks.insert(id);
        } else {
            executions.insert(id);
        }
    }
    Ok((executions, tasks))
}
