//! What a claim does while it holds its task: renew, heartbeat, checkpoint, give
//! the task back, or park it. Every write carries the claim's [`LeaseKey`] in its
//! WHERE clause, so a claim that lost its task changes nothing; the reason is
//! then read from the row. And the one write about claims made from outside:
//! noticing those whose heartbeat is late.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use courier_core::{
    Change, Committed, ExecutionId, LeaseKey, LeaseToken, Release, Renewed, Requeue, StoreError, StoreResult, TaskId,
    TaskKind, TaskRef, events_of,
};
use serde_json::Value;
use uuid::Uuid;

use crate::PostgresStore;
use crate::children::refusal;
use crate::codec::{micros, now_plus, parse};
use crate::complete::refusals;
use crate::error::{Error, Result};
use crate::event_log;
use crate::passes::{in_item_order, passes};
use crate::statements::{Statements, query, query_opt};
use crate::transaction::{Tx, in_transaction};

/// Extends live leases; refuses lost ones item by item.
pub(crate) async fn renew(
    store: &PostgresStore,
    leases: &[LeaseKey],
    extend: Duration,
) -> StoreResult<Vec<StoreResult<Renewed>>> {
    if leases.is_empty() {
        return Ok(Vec::new());
    }
    in_transaction!(store, |tx| async move {
        let ids: Vec<Uuid> = leases.iter().map(|l| l.task_id.0).collect();
        let tokens: Vec<Uuid> = leases.iter().map(|l| l.token.0).collect();
        let renewed: HashMap<LeaseKey, Renewed> = query(
            tx,
            &format!(
                "UPDATE tasks t SET lease_expires_at = {}, heartbeat_at = now()
                 FROM unnest($1::uuid[], $2::uuid[]) AS l(id, token)
                 WHERE t.id = ANY($1) AND t.id = l.id AND t.state = 'running' AND t.lease_token = l.token
                 RETURNING t.id, l.token, t.lease_expires_at",
                now_plus("$3")
            ),
            &[&ids, &tokens, &micros(extend)],
        )
        .await?
        .iter()
        .map(|r| {
            let key = LeaseKey {
                task_id: TaskId(r.try_get(0)?),
                token: LeaseToken(r.try_get(1)?),
            };
            let renewed = Renewed {
                task_id: key.task_id,
                expires_at: r.try_get(2)?,
            };
            Ok((key, renewed))
        })
        .collect::<Result<_>>()?;
        let refused = refusals(tx, leases.iter().copied().filter(|l| !renewed.contains_key(l))).await?;
        Ok::<_, Error>(
            leases
                .iter()
                .map(|l| match renewed.get(l) {
                    Some(r) => Ok(*r),
                    None => Err(refused.get(l).cloned().unwrap_or(StoreError::TaskNotFound(l.task_id))),
                })
                .collect(),
        )
    })
}

/// Why `lease` was refused.
pub(crate) async fn refused<C: Statements>(client: &C, lease: LeaseKey) -> Result<StoreError> {
    let row = query_opt(
        client,
        "SELECT state, lease_token FROM tasks WHERE id = $1",
        &[&lease.task_id.0],
    )
    .await?;
    let Some(row) = row else {
        return Ok(StoreError::TaskNotFound(lease.task_id));
    };
    let token: Option<Uuid> = row.try_get(1)?;
    Ok(
        refusal(lease, parse(row.try_get::<_, &str>(0)?)?, token.map(LeaseToken)).unwrap_or(StoreError::LeaseLost {
            task_id: lease.task_id,
            reason: courier_core::LeaseLost::Reclaimed,
        }),
    )
}

/// A heartbeat from the task's own code.
pub(crate) async fn heartbeat(
    store: &PostgresStore,
    lease: LeaseKey,
    extend: Duration,
    details: Option<&Value>,
) -> StoreResult<Committed<Renewed>> {
    in_transaction!(store, |tx| async move {
        let row = query_opt(
            tx,
            &format!(
                "UPDATE tasks SET lease_expires_at = {}, heartbeat_at = now(), stuck_at = NULL
                 WHERE id = $1 AND state = 'running' AND lease_token = $2
                 RETURNING execution_id, lease_expires_at",
                now_plus("$3")
            ),
            &[&lease.task_id.0, &lease.token.0, &micros(extend)],
        )
        .await?;
        let Some(row) = row else {
            return Err(Error::Store(refused(tx, lease).await?));
        };
        let renewed = Renewed {
            task_id: lease.task_id,
            expires_at: row.try_get(1)?,
        };
        let changes = vec![Change::TaskHeartbeat {
            execution: ExecutionId(row.try_get(0)?),
            task: lease.task_id,
            details: details.cloned(),
        }];
        event_log::append(tx, &events_of(&changes)).await?;
        Ok(Committed::new(renewed, changes))
    })
}

/// Saves a checkpoint for the next attempt.
pub(crate) async fn checkpoint(store: &PostgresStore, lease: LeaseKey, data: &Value) -> StoreResult<Committed<()>> {
    in_transaction!(store, |tx| async move {
        let row = query_opt(
            tx,
            "UPDATE tasks SET checkpoint = $3 WHERE id = $1 AND state = 'running' AND lease_token = $2
             RETURNING execution_id",
            &[&lease.task_id.0, &lease.token.0, data],
        )
        .await?;
        let Some(row) = row else {
            return Err(Error::Store(refused(tx, lease).await?));
        };
        let changes = vec![Change::TaskCheckpoint {
            execution: ExecutionId(row.try_get(0)?),
            task: lease.task_id,
            checkpoint: data.clone(),
        }];
        event_log::append(tx, &events_of(&changes)).await?;
        Ok(Committed::new((), changes))
    })
}

/// Gives a claim back without using an attempt.
pub(crate) async fn release(store: &PostgresStore, lease: LeaseKey, delay: Duration) -> StoreResult<Committed<()>> {
    in_transaction!(store, |tx| async move {
        let mut changes = Vec::new();
        let released = release_all(tx, &[Release { lease, delay }], &mut changes).await?;
        if let Some(Err(refusal)) = released.into_iter().next() {
            return Err(Error::Store(refusal));
        }
        event_log::append(tx, &events_of(&changes)).await?;
        Ok(Committed::new((), changes))
    })
}

static RELEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE tasks t SET state = 'pending', attempt = GREATEST(t.attempt - 1, 0), scheduled_for = {due},
             lease_token = NULL, lease_expires_at = NULL
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS r(id, token, delay_us)
         WHERE t.id = r.id AND t.state = 'running' AND t.lease_token = r.token
         RETURNING t.id, t.execution_id, t.kind, t.function, t.attempt, t.queue",
        due = now_plus("r.delay_us"),
    )
});

/// Gives claims back and records a `TaskQueued` for each; each refusal (a
/// claim that no longer holds its task) is that item's result. One statement
/// for them all, in passes should a task be named twice. The caller appends
/// the events.
pub(crate) async fn release_all(
    tx: &Tx,
    releases: &[Release],
    changes: &mut Vec<Change>,
) -> Result<Vec<StoreResult<()>>> {
    let tasks: Vec<TaskId> = releases.iter().map(|r| r.lease.task_id).collect();
    let mut done = Vec::new();
    for pass in passes(&tasks) {
        let results = release_pass(tx, releases, &pass, changes).await?;
        done.push((pass, results));
    }
    Ok(in_item_order(releases.len(), done))
}

/// Releases claims of distinct tasks, recording their changes in order.
async fn release_pass(
    tx: &Tx,
    all: &[Release],
    pass: &[usize],
    changes: &mut Vec<Change>,
) -> Result<Vec<StoreResult<()>>> {
    let items: Vec<&Release> = pass.iter().map(|&i| &all[i]).collect();
    let ids: Vec<Uuid> = items.iter().map(|r| r.lease.task_id.0).collect();
    let tokens: Vec<Uuid> = items.iter().map(|r| r.lease.token.0).collect();
    let delays: Vec<i64> = items.iter().map(|r| micros(r.delay)).collect();
    let by_task: HashMap<TaskId, &Release> = items.iter().map(|r| (r.lease.task_id, *r)).collect();
    let mut queued: HashMap<TaskId, Change> = HashMap::with_capacity(items.len());
    for row in query(tx, &RELEASE, &[&ids, &tokens, &delays]).await? {
        let id = TaskId(row.try_get(0)?);
        let Some(release) = by_task.get(&id) else {
            continue;
        };
        let attempt: i32 = row.try_get(4)?;
        let change = Change::TaskQueued {
            task: TaskRef::new(
                ExecutionId(row.try_get(1)?),
                id,
                parse(row.try_get::<_, &str>(2)?)?,
                row.try_get::<_, String>(3)?,
            ),
            queue: row.try_get(5)?,
            attempt: u32::try_from(attempt).unwrap_or(0),
            reason: Requeue::Released,
            claimable_now: release.delay.is_zero(),
        };
        queued.insert(id, change);
    }
    let refused = refusals(
        tx,
        items
            .iter()
            .filter(|r| !queued.contains_key(&r.lease.task_id))
            .map(|r| r.lease),
    )
    .await?;
    Ok(items
        .iter()
        .map(|r| match queued.remove(&r.lease.task_id) {
            Some(change) => {
                changes.push(change);
                Ok(())
            }
            None => Err(refused
                .get(&r.lease)
                .cloned()
                .unwrap_or(StoreError::TaskNotFound(r.lease.task_id))),
        })
        .collect())
}

/// Parks a running orchestrator unless a child settled since it looked.
pub(crate) async fn suspend(store: &PostgresStore, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool> {
    let client = store.client().await?;
    let parked = query_opt(
        &client,
        "UPDATE tasks SET state = 'waiting', lease_token = NULL, lease_expires_at = NULL
         WHERE id = $1 AND state = 'running' AND lease_token = $2 AND wake_gen = $3
         RETURNING id",
        &[&lease.task_id.0, &lease.token.0, &seen_wake_gen],
    )
    .await?;
    if parked.is_some() {
        return Ok(true);
    }
    let row = query_opt(
        &client,
        "SELECT state, lease_token FROM tasks WHERE id = $1",
        &[&lease.task_id.0],
    )
    .await?;
    let Some(row) = row else {
        return Err(StoreError::TaskNotFound(lease.task_id));
    };
    let token: Option<Uuid> = row.try_get(1).map_err(Error::from)?;
    match refusal(
        lease,
        parse(row.try_get::<_, &str>(0).map_err(Error::from)?)?,
        token.map(LeaseToken),
    ) {
        // Still ours: a child settled since the orchestrator last looked.
        None => Ok(false),
        Some(e) => Err(e),
    }
}

/// Marks running tasks with a late heartbeat as stuck and reports each once
/// (`TaskStuck`).
pub(crate) async fn detect_stuck(
    store: &PostgresStore,
    timeout: Duration,
    max: u32,
) -> StoreResult<Committed<Vec<TaskId>>> {
    if max == 0 {
        return Ok(Committed::unchanged(Vec::new()));
    }
    in_transaction!(store, |tx| detect_stuck_in(tx, timeout, max))
}

async fn detect_stuck_in(tx: &Tx, timeout: Duration, max: u32) -> Result<Committed<Vec<TaskId>>> {
    let rows = query(
        tx,
        "WITH late AS (
             SELECT id FROM tasks
             WHERE state = 'running' AND stuck_at IS NULL
                 AND COALESCE(heartbeat_at, started_at) < now() - $1::int8::float8 * interval '1 microsecond'
             ORDER BY COALESCE(heartbeat_at, started_at) LIMIT $2 FOR UPDATE SKIP LOCKED
         )
         UPDATE tasks t SET stuck_at = now() FROM late WHERE t.id = late.id
         RETURNING t.id, t.execution_id, t.kind, t.function, t.attempt, t.lease_owner, t.heartbeat_at",
        &[&micros(timeout), &i64::from(max)],
    )
    .await?;
    let mut stuck = Vec::with_capacity(rows.len());
    let mut changes = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = TaskId(r.try_get(0)?);
        let kind: TaskKind = parse(r.try_get::<_, &str>(2)?)?;
        let attempt: i32 = r.try_get(4)?;
        changes.push(Change::TaskStuck {
            task: TaskRef::new(ExecutionId(r.try_get(1)?), id, kind, r.try_get::<_, String>(3)?),
            attempt: u32::try_from(attempt).unwrap_or(0),
            worker: r.try_get(5)?,
            heartbeat_at: r.try_get(6)?,
        });
        stuck.push(id);
    }
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(stuck, changes))
}
