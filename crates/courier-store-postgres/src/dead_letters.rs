//! Dead letters: tasks that failed for good, kept for inspection and replay;
//! [`DeadLetterStore`] for [`PostgresStore`], and the raw seed-parity insert
//! ([`SeedRecords`](courier_core::SeedRecords) delegates here). Completions keep
//! their dead letters themselves (see `complete`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Committed, DeadLetterRecord, DeadLetterStore, ExecutionId, ExecutionState, Replayed, Requeue, StoreError,
    StoreResult, TaskId, TaskKind, TaskRecord, TaskRef, TaskState, events_of,
};
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{count, from_json, limit, parse, to_json};
use crate::error::{Error, Result};
use crate::event_log;
use crate::executions::sync_deadline;
use crate::rows::{self, DEAD_LETTER_COLUMNS};
use crate::statements::{execute, query, query_one, query_opt};
use crate::tasks::insert_record;
use crate::transaction::{Tx, in_transaction};

#[async_trait]
impl DeadLetterStore for PostgresStore {
    async fn list_dead_letters(&self, limit: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>> {
        list(self, limit, offset).await
    }

    async fn count_dead_letters(&self) -> StoreResult<u64> {
        count_all(self).await
    }

    async fn get_dead_letter(&self, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>> {
        get(self, task_id).await
    }

    async fn delete_dead_letter(&self, task_id: TaskId) -> StoreResult<bool> {
        delete(self, task_id).await
    }

    async fn replay_dead_letter(&self, task_id: TaskId) -> StoreResult<Committed<Replayed>> {
        replay(self, task_id).await
    }

    async fn cleanup_dead_letters(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        clean_up(self, older_than).await
    }
}

/// Stores (or replaces) a dead letter for `task` as given.
pub(crate) async fn put(store: &PostgresStore, task: &TaskRecord, reason: &str) -> StoreResult<()> {
    let client = store.client().await?;
    let snapshot = to_json(task)?;
    execute(
        &client,
        "INSERT INTO dead_letters (task_id, execution_id, reason, failed_at, task) VALUES ($1, $2, $3, now(), $4)
         ON CONFLICT (task_id) DO UPDATE SET execution_id = excluded.execution_id, reason = excluded.reason,
             failed_at = excluded.failed_at, task = excluded.task",
        &[&task.id.0, &task.execution_id.0, &reason, &snapshot],
    )
    .await?;
    Ok(())
}

/// Dead letters, newest first.
async fn list(store: &PostgresStore, max: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>> {
    let client = store.client().await?;
    let sql = format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY failed_at DESC, task_id DESC LIMIT $1 OFFSET $2"
    );
    let rows = query(&client, &sql, &[&limit(max), &i64::from(offset)]).await?;
    Ok(rows.iter().map(rows::dead_letter).collect::<Result<_>>()?)
}

/// How many dead letters.
async fn count_all(store: &PostgresStore) -> StoreResult<u64> {
    let client = store.client().await?;
    let row = query_one(&client, "SELECT count(*) FROM dead_letters", &[]).await?;
    Ok(count(row.try_get(0).map_err(Error::from)?))
}

/// The dead letter of a task.
async fn get(store: &PostgresStore, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>> {
    let client = store.client().await?;
    let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE task_id = $1");
    let row = query_opt(&client, &sql, &[&task_id.0]).await?;
    Ok(row.as_ref().map(rows::dead_letter).transpose()?)
}

/// Deletes a dead letter; whether there was one.
async fn delete(store: &PostgresStore, task_id: TaskId) -> StoreResult<bool> {
    let client = store.client().await?;
    Ok(execute(&client, "DELETE FROM dead_letters WHERE task_id = $1", &[&task_id.0]).await? > 0)
}

/// Deletes dead letters that failed before `older_than`.
async fn clean_up(store: &PostgresStore, older_than: DateTime<Utc>) -> StoreResult<u64> {
    let client = store.client().await?;
    Ok(execute(&client, "DELETE FROM dead_letters WHERE failed_at < $1", &[&older_than]).await?)
}

/// Replays a dead letter.
async fn replay(store: &PostgresStore, task_id: TaskId) -> StoreResult<Committed<Replayed>> {
    in_transaction!(store, |tx| replay_in(tx, task_id))
}

async fn replay_in(tx: &Tx, task_id: TaskId) -> Result<Committed<Replayed>> {
    let letter = query_opt(
        tx,
        "SELECT execution_id, task FROM dead_letters WHERE task_id = $1 FOR UPDATE",
        &[&task_id.0],
    )
    .await?
    .ok_or(StoreError::DeadLetterNotFound(task_id))?;
    let execution_id = ExecutionId(letter.try_get(0)?);
    let exec = query_opt(
        tx,
        "SELECT state, function FROM executions WHERE id = $1 FOR UPDATE",
        &[&execution_id.0],
    )
    .await?
    .ok_or(StoreError::ExecutionNotFound(execution_id))?;
    let state: ExecutionState = parse(exec.try_get::<_, &str>(0)?)?;
    let function: String = exec.try_get(1)?;
    if !matches!(
        state,
        ExecutionState::Failed | ExecutionState::Pending | ExecutionState::Running
    ) {
        return Err(Error::Store(StoreError::ExecutionState {
            id: execution_id,
            state,
            detail: format!("cannot replay the dead letter of task {task_id}"),
        }));
    }
    let mut changes = Vec::new();
    let resumed = state == ExecutionState::Failed;
    if resumed {
        execute(
            tx,
            "UPDATE executions SET state = 'running', result = NULL, error = NULL, completed_at = NULL,
                 updated_at = now()
             WHERE id = $1",
            &[&execution_id.0],
        )
        .await?;
        sync_deadline(tx, execution_id).await?;
        changes.push(Change::ExecutionResumed {
            execution: execution_id,
            function,
            task: task_id,
        });
    }

    let requeue = "UPDATE tasks SET state = 'pending', scheduled_for = now(), attempt = 0, error = NULL,
                       lease_token = NULL, lease_expires_at = NULL, stuck_at = NULL, completed_at = NULL
                   WHERE id = $1
                   RETURNING kind, function, step, queue";
    let mut row = query_opt(tx, requeue, &[&task_id.0]).await?;
    if row.is_none() {
        // The task row is gone (a raw dead letter, or a cleaned-up row): bring it
        // back from the dead letter's copy.
        let snapshot: TaskRecord = from_json(letter.try_get(1)?, "dead letter task")?;
        insert_record(tx, &snapshot).await?;
        row = query_opt(tx, requeue, &[&task_id.0]).await?;
    }
    let row = row.ok_or(StoreError::TaskNotFound(task_id))?;
    let kind: TaskKind = parse(row.try_get::<_, &str>(0)?)?;
    let task_function: String = row.try_get(1)?;
    let step: i64 = row.try_get(2)?;
    let queue: String = row.try_get(3)?;

    if resumed && step != 0 {
        // The root failed because this task did; park it so that this task's
        // completion wakes it to replay, and drop its own dead letter.
        let root: Uuid = TaskId::root_of(execution_id).0;
        execute(
            tx,
            "UPDATE tasks SET state = 'waiting', error = NULL, completed_at = NULL, lease_token = NULL,
                 lease_expires_at = NULL
             WHERE id = $1 AND state = $2",
            &[&root, &TaskState::Failed.as_str()],
        )
        .await?;
        execute(tx, "DELETE FROM dead_letters WHERE task_id = $1", &[&root]).await?;
    }
    execute(tx, "DELETE FROM dead_letters WHERE task_id = $1", &[&task_id.0]).await?;
    changes.push(Change::TaskQueued {
        task: TaskRef::new(execution_id, task_id, kind, task_function),
        queue,
        attempt: 0,
        reason: Requeue::Replayed,
        claimable_now: true,
    });
    event_log::append(tx, &events_of(&changes)).await?;
    Ok(Committed::new(
        Replayed {
            task_id,
            execution_id,
            execution_resumed: resumed,
        },
        changes,
    ))
}
