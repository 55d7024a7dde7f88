//! Tasks, claims and leases: who runs what, for how long.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::change::Committed;
use crate::error::StoreResult;
use crate::id::TaskId;
use crate::task::{ClaimRequest, Claimed, LeaseKey, QueueDepth, Renewed, TaskFilter, TaskRecord};

/// Reading tasks, and every write made under a claim except its outcome (which
/// is a [`WriteBatch`](super::WriteBatch) completion).
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// One task.
    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>>;

    /// The tasks among `ids` that exist, in no particular order.
    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>>;

    /// Tasks matching `filter`: by step with `execution_id`, newest first otherwise.
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>>;

    /// Work per queue, for every queue that has pending or running tasks.
    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>>;

    /// Atomically claims up to `req.max` claimable tasks: `pending` and due, or
    /// `running` with an expired lease. Honours queues, kinds, functions and tags
    /// (see [`ClaimRequest`]); orders by due time minus priority × the store's
    /// [`PriorityAgeing`](crate::PriorityAgeing) (earliest first; the bound that
    /// gives is stated there), then priority (high first), due time and creation.
    /// A function with a limit never has more than that many tasks
    /// running under live leases, however many claimers race (unlike the seed,
    /// which counted without a lock).
    ///
    /// Each claim: `running`, `attempt + 1`, a new token, `lease_expires_at =
    /// now + req.lease`, `heartbeat_at = started_at = now`, `stuck_at` cleared.
    /// A pending execution whose root task is claimed becomes `running`.
    /// Changes: `TaskStarted` per task; `ExecutionStarted` per execution started.
    async fn claim_tasks(&self, req: &ClaimRequest) -> StoreResult<Committed<Vec<Claimed>>>;

    /// Extends each lease to `now + extend` and records a heartbeat (no change).
    async fn renew_leases(&self, leases: &[LeaseKey], extend: Duration) -> StoreResult<Vec<StoreResult<Renewed>>>;

    /// A heartbeat from the task's own code: renews the lease, clears `stuck_at`.
    /// Change: `TaskHeartbeat` with `details`.
    async fn heartbeat(
        &self,
        lease: LeaseKey,
        extend: Duration,
        details: Option<Value>,
    ) -> StoreResult<Committed<Renewed>>;

    /// Saves a checkpoint the next attempt will see in `TaskRecord::checkpoint`.
    /// Change: `TaskCheckpoint`.
    async fn checkpoint(&self, lease: LeaseKey, data: Value) -> StoreResult<Committed<()>>;

    /// Gives a claim back without using an attempt (shutdown, drain): `pending`,
    /// due `now + delay`, `attempt - 1`, lease cleared. Change: `TaskQueued` (released).
    async fn release_task(&self, lease: LeaseKey, delay: Duration) -> StoreResult<Committed<()>>;

    /// Parks a running orchestrator that has nothing to do: `waiting`, lease
    /// cleared, but only if its `wake_gen` still equals `seen_wake_gen` (no child
    /// settled since it last looked). Returns whether it was parked; if not, it
    /// is still running under the same lease. No change.
    async fn suspend_task(&self, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool>;

    /// Marks up to `limit` running tasks whose last heartbeat is older than
    /// `heartbeat_timeout` as stuck (once per attempt) and returns them.
    /// Change: `TaskStuck` per task.
    async fn detect_stuck_tasks(&self, heartbeat_timeout: Duration, limit: u32) -> StoreResult<Committed<Vec<TaskId>>>;
}
