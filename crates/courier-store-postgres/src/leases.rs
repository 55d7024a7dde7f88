//! What a claim does while it holds its task: renew, heartbeat, checkpoint, give
//! the task back, or park it. Every write carries the claim's [`LeaseKey`] in its
//! WHERE clause, so a claim that lost its task changes nothing; the reason is
//! then read from the row.

use std::collections::HashMap;
use std::time::Duration;

use courier_core::{LeaseKey, LeaseToken, Renewed, StoreError, StoreResult, TaskId, TaskKind, events};
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::Value;
use uuid::Uuid;

use crate::PostgresStore;
use crate::children::refusal;
use crate::codec::{micros, now_plus, parse};
use crate::complete::refusals;
use crate::error::{Error, Result};
use crate::event_log;
use crate::statements::{query, query_opt};
use crate::transaction::in_transaction;

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
async fn refused<C: GenericClient>(client: &C, lease: LeaseKey) -> Result<StoreError> {
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
) -> StoreResult<Renewed> {
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
        let execution = courier_core::ExecutionId(row.try_get(0)?);
        event_log::append(tx, &[events::task_heartbeat(execution, lease.task_id, details)]).await?;
        Ok(Renewed {
            task_id: lease.task_id,
            expires_at: row.try_get(1)?,
        })
    })
}

/// Saves a checkpoint for the next attempt.
pub(crate) async fn checkpoint(store: &PostgresStore, lease: LeaseKey, data: &Value) -> StoreResult<()> {
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
        let execution = courier_core::ExecutionId(row.try_get(0)?);
        event_log::append(tx, &[events::task_checkpoint(execution, lease.task_id, data)]).await?;
        Ok(())
    })
}

/// Gives a claim back without using an attempt.
pub(crate) async fn release(store: &PostgresStore, lease: LeaseKey, delay: Duration) -> StoreResult<()> {
    in_transaction!(store, |tx| release_in(tx, lease, delay))
}

async fn release_in(tx: &Transaction<'_>, lease: LeaseKey, delay: Duration) -> Result<()> {
    let row = query_opt(
        tx,
        &format!(
            "UPDATE tasks SET state = 'pending', attempt = GREATEST(attempt - 1, 0), scheduled_for = {},
                 lease_token = NULL, lease_expires_at = NULL
             WHERE id = $1 AND state = 'running' AND lease_token = $2
             RETURNING execution_id, kind, function, attempt",
            now_plus("$3")
        ),
        &[&lease.task_id.0, &lease.token.0, &micros(delay)],
    )
    .await?;
    let Some(row) = row else {
        return Err(Error::Store(refused(tx, lease).await?));
    };
    let attempt: i32 = row.try_get(3)?;
    let kind: TaskKind = parse(row.try_get::<_, &str>(1)?)?;
    let function: String = row.try_get(2)?;
    event_log::append(
        tx,
        &[events::task_queued(
            courier_core::ExecutionId(row.try_get(0)?),
            lease.task_id,
            kind,
            &function,
            u32::try_from(attempt).unwrap_or(0),
            "released",
        )],
    )
    .await?;
    Ok(())
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
