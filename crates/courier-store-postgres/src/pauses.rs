//! Pauses of executions and queues: [`PauseStore`] for [`PostgresStore`]. A
//! pause is one row; the claim (`claim.rs`) leaves the tasks it names. Pausing
//! twice at once is settled by the primary key (the second finds the first's row).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Committed, ExecutionId, ExecutionState, PauseState, PauseStore, PausedQueue, StoreError, StoreResult,
    events_of,
};

use crate::PostgresStore;
use crate::codec::parse;
use crate::error::{Error, Result};
use crate::event_log;
use crate::statements::{query, query_one, query_opt};
use crate::transaction::{Tx, in_transaction};

#[async_trait]
impl PauseStore for PostgresStore {
    async fn pause_execution(&self, id: ExecutionId) -> StoreResult<Committed<PauseState>> {
        in_transaction!(self, |tx| pause_execution(tx, id))
    }

    async fn resume_execution(&self, id: ExecutionId) -> StoreResult<Committed<PauseState>> {
        in_transaction!(self, |tx| resume_execution(tx, id))
    }

    async fn execution_paused_at(&self, id: ExecutionId) -> StoreResult<Option<DateTime<Utc>>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT paused_at FROM paused_executions WHERE execution_id = $1",
            &[&id.0],
        )
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose().map_err(Error::from)?)
    }

    async fn pause_queue(&self, queue: &str) -> StoreResult<Committed<PauseState>> {
        PausedQueue::check_name(queue)?;
        in_transaction!(self, |tx| pause_queue(tx, queue))
    }

    async fn resume_queue(&self, queue: &str) -> StoreResult<Committed<PauseState>> {
        PausedQueue::check_name(queue)?;
        in_transaction!(self, |tx| resume_queue(tx, queue))
    }

    async fn paused_queues(&self) -> StoreResult<Vec<PausedQueue>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT queue, paused_at FROM paused_queues ORDER BY queue",
            &[],
        )
        .await?;
        let paused = rows
            .iter()
            .map(|r| {
                Ok(PausedQueue {
                    queue: r.try_get(0)?,
                    paused_at: r.try_get(1)?,
                })
            })
            .collect::<std::result::Result<_, tokio_postgres::Error>>()
            .map_err(Error::from)?;
        Ok(paused)
    }
}

/// The execution's state and function; `ExecutionNotFound` if there is none.
async fn require(tx: &Tx, id: ExecutionId) -> Result<(ExecutionState, String)> {
    let row = query_opt(tx, "SELECT state, function FROM executions WHERE id = $1", &[&id.0])
        .await?
        .ok_or(StoreError::ExecutionNotFound(id))?;
    Ok((parse(row.try_get::<_, &str>(0)?)?, row.try_get(1)?))
}

async fn commit_change(tx: &Tx, state: PauseState, change: Change) -> Result<Committed<PauseState>> {
    let changes = vec![change];
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(state, changes))
}

async fn pause_execution(tx: &Tx, id: ExecutionId) -> Result<Committed<PauseState>> {
    let (state, function) = require(tx, id).await?;
    if let Some(row) = query_opt(
        tx,
        "SELECT paused_at FROM paused_executions WHERE execution_id = $1",
        &[&id.0],
    )
    .await?
    {
        return Ok(Committed::unchanged(PauseState::paused_since(row.try_get(0)?, false)));
    }
    if state.is_terminal() {
        return Err(StoreError::ExecutionState {
            id,
            state,
            detail: "an execution that has ended cannot be paused".into(),
        }
        .into());
    }
    let inserted = query_opt(
        tx,
        "INSERT INTO paused_executions (execution_id, paused_at) VALUES ($1, now())
         ON CONFLICT (execution_id) DO NOTHING RETURNING paused_at",
        &[&id.0],
    )
    .await?;
    let Some(row) = inserted else {
        // A concurrent pause committed first: it reported the change.
        let row = query_one(
            tx,
            "SELECT paused_at FROM paused_executions WHERE execution_id = $1",
            &[&id.0],
        )
        .await?;
        return Ok(Committed::unchanged(PauseState::paused_since(row.try_get(0)?, false)));
    };
    let change = Change::ExecutionPaused {
        execution: id,
        function,
        paused: true,
        queues: Vec::new(),
    };
    commit_change(tx, PauseState::paused_since(row.try_get(0)?, true), change).await
}

async fn resume_execution(tx: &Tx, id: ExecutionId) -> Result<Committed<PauseState>> {
    let (_, function) = require(tx, id).await?;
    let removed = query_opt(
        tx,
        "DELETE FROM paused_executions WHERE execution_id = $1 RETURNING paused_at",
        &[&id.0],
    )
    .await?;
    if removed.is_none() {
        return Ok(Committed::unchanged(PauseState::running(false)));
    }
    let rows = query(
        tx,
        "SELECT DISTINCT queue FROM tasks WHERE execution_id = $1 AND state = 'pending' ORDER BY queue",
        &[&id.0],
    )
    .await?;
    let queues = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
    let change = Change::ExecutionPaused {
        execution: id,
        function,
        paused: false,
        queues,
    };
    commit_change(tx, PauseState::running(true), change).await
}

async fn pause_queue(tx: &Tx, queue: &str) -> Result<Committed<PauseState>> {
    let inserted = query_opt(
        tx,
        "INSERT INTO paused_queues (queue, paused_at) VALUES ($1, now())
         ON CONFLICT (queue) DO NOTHING RETURNING paused_at",
        &[&queue],
    )
    .await?;
    let Some(row) = inserted else {
        let row = query_one(tx, "SELECT paused_at FROM paused_queues WHERE queue = $1", &[&queue]).await?;
        return Ok(Committed::unchanged(PauseState::paused_since(row.try_get(0)?, false)));
    };
    let change = Change::QueuePaused {
        queue: queue.to_string(),
        paused: true,
    };
    commit_change(tx, PauseState::paused_since(row.try_get(0)?, true), change).await
}

async fn resume_queue(tx: &Tx, queue: &str) -> Result<Committed<PauseState>> {
    let removed = query_opt(
        tx,
        "DELETE FROM paused_queues WHERE queue = $1 RETURNING queue",
        &[&queue],
    )
    .await?;
    if removed.is_none() {
        return Ok(Committed::unchanged(PauseState::running(false)));
    }
    let change = Change::QueuePaused {
        queue: queue.to_string(),
        paused: false,
    };
    commit_change(tx, PauseState::running(true), change).await
}
