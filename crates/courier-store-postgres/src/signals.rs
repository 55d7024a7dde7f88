//! Signals: kept until waited for, delivered to the oldest wait, never lost.
//!
//! Sending a signal and creating a signal wait both lock the execution's row
//! first, so of a signal and a wait created at the same moment, whichever comes
//! second sees the first: the sender finds the wait, or the wait finds the signal.
//!
//! Sending is [`ContextStore::send_signal`](courier_core::ContextStore::send_signal)
//! (it delegates here); the raw record operations are for
//! [`SeedRecords`](courier_core::SeedRecords).

use courier_core::{
    AttemptEnd, Change, Committed, ExecutionId, ExecutionState, SignalRecord, SignalSent, StoreError, StoreResult,
    TaskId, TaskKind, TaskRef, events_of,
};
use serde_json::Value;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::parse;
use crate::error::Result;
use crate::event_log;
use crate::rows::{self, SIGNAL_COLUMNS};
use crate::statements::{execute, query, query_opt};
use crate::transaction::{Tx, in_transaction};
use crate::wake::Wakes;

/// Sends a signal, delivering it to the oldest wait for its name if there is one
/// (then the wait's `AttemptEnded`, and its parent's `TaskQueued` if that was
/// waiting).
pub(crate) async fn send(
    store: &PostgresStore,
    execution: ExecutionId,
    name: &str,
    payload: &Value,
) -> StoreResult<Committed<SignalSent>> {
    in_transaction!(store, |tx| send_in(tx, execution, name, payload))
}

async fn send_in(tx: &Tx, execution: ExecutionId, name: &str, payload: &Value) -> Result<Committed<SignalSent>> {
    let mut changes = Vec::new();
    let mut wakes = Wakes::default();
    let sent = deliver(tx, execution, name, payload, &mut changes, &mut wakes).await?;
    if changes.is_empty() {
        return Ok(Committed::unchanged(sent));
    }
    wakes.apply(tx, &mut changes).await?;
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(sent, changes))
}

/// Stores a signal and hands it to the oldest wait for its name, if any: the
/// wait's `AttemptEnded` goes to `changes` and its parent to `wakes`, for the
/// caller to apply and append with the rest of its transaction.
pub(crate) async fn deliver(
    tx: &Tx,
    execution: ExecutionId,
    name: &str,
    payload: &Value,
    changes: &mut Vec<Change>,
    wakes: &mut Wakes,
) -> Result<SignalSent> {
    let row = query_opt(
        tx,
        "SELECT state FROM executions WHERE id = $1 FOR NO KEY UPDATE",
        &[&execution.0],
    )
    .await?
    .ok_or(StoreError::ExecutionNotFound(execution))?;
    let state: ExecutionState = parse(row.try_get::<_, &str>(0)?)?;
    if state.is_terminal() {
        return Err(StoreError::ExecutionState {
            id: execution,
            state,
            detail: format!("cannot send signal {name:?} to a finished execution"),
        }
        .into());
    }
    let signal_id = Uuid::now_v7();
    execute(
        tx,
        "INSERT INTO signals (id, execution_id, name, payload, created_at) VALUES ($1, $2, $3, $4, now())",
        &[&signal_id, &execution.0, &name, payload],
    )
    .await?;
    let wait = query_opt(
        tx,
        "SELECT id, parent_id, function, attempt FROM tasks
         WHERE execution_id = $1 AND kind = 'signal_wait' AND function = $2 AND state IN ('waiting', 'pending')
         ORDER BY step LIMIT 1 FOR UPDATE",
        &[&execution.0, &name],
    )
    .await?;
    let Some(wait) = wait else {
        return Ok(SignalSent {
            signal_id,
            delivered_to: None,
            parent_id: None,
        });
    };
    let task = TaskId(wait.try_get(0)?);
    let parent = wait.try_get::<_, Option<Uuid>>(1)?.map(TaskId);
    let function: String = wait.try_get(2)?;
    let attempt: i32 = wait.try_get(3)?;
    execute(
        tx,
        "UPDATE tasks SET state = 'completed', result = $2, completed_at = now(), lease_token = NULL,
             lease_expires_at = NULL
         WHERE id = $1",
        &[&task.0, payload],
    )
    .await?;
    execute(
        tx,
        "UPDATE signals SET consumed_by = $2, consumed_at = now() WHERE id = $1",
        &[&signal_id, &task.0],
    )
    .await?;
    changes.push(Change::AttemptEnded {
        task: TaskRef::new(execution, task, TaskKind::SignalWait, function),
        attempt: u32::try_from(attempt).unwrap_or(0),
        end: AttemptEnd::Completed,
    });
    if let Some(parent) = parent {
        wakes.add(parent);
    }
    Ok(SignalSent {
        signal_id,
        delivered_to: Some(task),
        parent_id: parent,
    })
}

/// Inserts a signal record as given.
pub(crate) async fn create(store: &PostgresStore, s: &SignalRecord) -> StoreResult<()> {
    let client = store.client().await?;
    execute(
        &client,
        "INSERT INTO signals (id, execution_id, name, payload, created_at, consumed_by, consumed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &s.id,
            &s.execution_id.0,
            &s.name,
            &s.payload,
            &s.created_at,
            &s.consumed_by.map(|t| t.0),
            &s.consumed_at,
        ],
    )
    .await
    .map_err(|e| e.conflict_on(s.id))?;
    Ok(())
}

/// The latest `limit` signals of an execution, oldest first.
pub(crate) async fn list(store: &PostgresStore, execution: ExecutionId, limit: u32) -> StoreResult<Vec<SignalRecord>> {
    let client = store.client().await?;
    let sql = format!(
        "SELECT {SIGNAL_COLUMNS} FROM (
             SELECT {SIGNAL_COLUMNS}, position FROM signals WHERE execution_id = $1
             ORDER BY created_at DESC, position DESC LIMIT $2
         ) latest ORDER BY created_at, position"
    );
    let rows = query(&client, &sql, &[&execution.0, &i64::from(limit)]).await?;
    Ok(rows.iter().map(rows::signal).collect::<Result<_>>()?)
}

/// The oldest unconsumed signal of a name, or else the newest consumed one.
pub(crate) async fn get(
    store: &PostgresStore,
    execution: ExecutionId,
    name: &str,
) -> StoreResult<Option<SignalRecord>> {
    let client = store.client().await?;
    let sql = format!(
        "SELECT {SIGNAL_COLUMNS} FROM (
             (SELECT {SIGNAL_COLUMNS}, 0 AS preference FROM signals
              WHERE execution_id = $1 AND name = $2 AND consumed_by IS NULL
              ORDER BY created_at, position LIMIT 1)
             UNION ALL
             (SELECT {SIGNAL_COLUMNS}, 1 FROM signals
              WHERE execution_id = $1 AND name = $2 AND consumed_by IS NOT NULL
              ORDER BY consumed_at DESC NULLS LAST, position DESC LIMIT 1)
         ) s ORDER BY preference LIMIT 1"
    );
    let row = query_opt(&client, &sql, &[&execution.0, &name]).await?;
    Ok(row.as_ref().map(rows::signal).transpose()?)
}
