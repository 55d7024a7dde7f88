//! Dead letters: tasks that failed for good, kept for inspection and replay.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::change::Committed;
use crate::dead_letter::{DeadLetterRecord, Replayed};
use crate::error::StoreResult;
use crate::id::TaskId;

/// Dead letters. A completion that fails for good keeps one (see
/// [`WriteBatch::completions`](super::WriteBatch::completions)).
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Dead letters, newest first.
    async fn list_dead_letters(&self, limit: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>>;

    /// How many dead letters.
    async fn count_dead_letters(&self) -> StoreResult<u64>;

    /// The dead letter of a task.
    async fn get_dead_letter(&self, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>>;

    /// Deletes a dead letter (discard); whether there was one.
    async fn delete_dead_letter(&self, task_id: TaskId) -> StoreResult<bool>;

    /// Replays a dead letter: the task goes back to `pending` (due now, attempt 0,
    /// error cleared) and the dead letter is removed. If the execution is `failed`
    /// it is reopened (`running`, result and error cleared) and, when the task is
    /// not the root, a failed root orchestrator goes to `waiting` (its own dead
    /// letter removed) so the task's completion wakes it to replay. Refused with
    /// `ExecutionState` unless the execution is `failed` or still unfinished.
    /// Changes: `ExecutionResumed` (if reopened), `TaskQueued` (replayed).
    async fn replay_dead_letter(&self, task_id: TaskId) -> StoreResult<Committed<Replayed>>;

    /// Deletes dead letters that failed before `older_than`; how many.
    async fn cleanup_dead_letters(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;
}
