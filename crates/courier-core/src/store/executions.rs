//! Executions: one dispatched durable function each.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::change::Committed;
use crate::error::StoreResult;
use crate::execution::{Cancelled, ExecutionFilter, ExecutionRecord};
use crate::id::ExecutionId;
use crate::state::ExecutionState;

/// Reading executions, and the writes that end them from outside (cancel,
/// time-out) or delete them. Dispatching is a [`WriteBatch`](super::WriteBatch) write.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// One execution.
    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>>;

    /// Executions matching `filter`, newest first.
    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>>;

    /// How many executions (in `state`, if given).
    async fn count_executions(&self, state: Option<ExecutionState>) -> StoreResult<u64>;

    /// Cancels an execution and every unfinished task of it; running tasks lose
    /// their leases (their later fenced writes are refused). On an execution that
    /// is already terminal nothing changes and `previous` says what it is.
    /// `ExecutionNotFound` if there is none.
    /// Changes: `TaskCancelled` per task, `ExecutionEnded` (cancelled).
    async fn cancel_execution(&self, id: ExecutionId, reason: &str) -> StoreResult<Committed<Cancelled>>;

    /// Times out up to `limit` unfinished executions whose deadline has passed,
    /// cancelling their unfinished tasks.
    /// Changes: `TaskCancelled` per task, `ExecutionEnded` (timed out).
    async fn time_out_executions(&self, limit: u32) -> StoreResult<Committed<Vec<Cancelled>>>;

    /// Deletes terminal executions finished before `older_than`, with all their
    /// rows (tasks, signals, progress, counters, state values, dead letters,
    /// events, and the webhook deliveries they made, with their attempts), and
    /// the webhook deliveries skipped before `older_than` that no execution makes.
    /// Unfinished executions are kept however old. Returns how many executions
    /// were deleted.
    async fn cleanup_executions(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;
}
