//! Seed 003's record-level operations: raw inserts and updates of executions,
//! tasks, signals, dead letters, cache entries and context values, as the Python
//! engine's `Backend` protocol had them.
//!
//! Both stores keep them, and the conformance suite covers them, so that code
//! written against the seed's protocol finds every operation. Courier's runtime
//! never calls them: its writes are the semantic ones of the other traits, which
//! keep fencing, events and invariants that raw writes bypass.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::StoreResult;
use crate::execution::ExecutionRecord;
use crate::id::ExecutionId;
use crate::signal::SignalRecord;
use crate::state::TaskState;
use crate::task::{ClaimRequest, Claimed, LeaseKey, Renewed, TaskRecord};

/// The seed's raw record operations (no events, no fencing; see the module documentation).
#[async_trait]
pub trait SeedRecords: super::TaskStore + Send + Sync {
    /// Inserts an execution record as given (no root task).
    async fn create_execution(&self, record: &ExecutionRecord) -> StoreResult<()>;

    /// Inserts an execution record and its root task record as given, both or
    /// neither. A conflict on either id fails the whole call.
    async fn create_execution_with_root_task(&self, record: &ExecutionRecord, task: &TaskRecord) -> StoreResult<()>;

    /// Overwrites an execution record's mutable fields as given.
    /// [`StoreError::ExecutionNotFound`](crate::StoreError::ExecutionNotFound) if absent.
    async fn update_execution(&self, record: &ExecutionRecord) -> StoreResult<()>;

    /// Inserts a task record as given.
    async fn create_task(&self, task: &TaskRecord) -> StoreResult<()> {
        self.create_tasks(std::slice::from_ref(task)).await
    }

    /// Inserts task records as given, all or none.
    async fn create_tasks(&self, tasks: &[TaskRecord]) -> StoreResult<()>;

    /// Overwrites a task record's mutable fields as given.
    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()>;

    /// How many tasks (on `queue`, in `state`, if given).
    async fn count_tasks(&self, queue: Option<&str>, state: Option<TaskState>) -> StoreResult<u64>;

    /// Claims at most one task, as [`TaskStore::claim_tasks`](super::TaskStore::claim_tasks) does.
    async fn claim_next_task(&self, req: &ClaimRequest) -> StoreResult<Option<Claimed>> {
        let mut req = req.clone();
        req.max = 1;
        Ok(self.claim_tasks(&req).await?.value.pop())
    }

    /// Renews one lease, as [`TaskStore::renew_leases`](super::TaskStore::renew_leases) does.
    async fn renew_task_lease(&self, lease: LeaseKey, extend: Duration) -> StoreResult<Renewed> {
        self.renew_leases(&[lease], extend)
            .await?
            .pop()
            .unwrap_or(Err(crate::StoreError::TaskNotFound(lease.task_id)))
    }

    /// Caches a result for `ttl` (forever if none), replacing any entry.
    async fn set_cached_result(&self, key: &str, value: &Value, ttl: Option<Duration>) -> StoreResult<()>;

    /// The recorded result of an idempotency key, if its work finished.
    async fn get_idempotency_result(&self, key: &str) -> StoreResult<Option<Value>>;

    /// Records the result of an idempotency key (replacing any reservation).
    async fn set_idempotency_result(&self, key: &str, value: &Value) -> StoreResult<()>;

    /// Stores (or replaces) a dead letter for `task` as given (the task row is not changed).
    async fn move_task_to_dead_letter(&self, task: &TaskRecord, reason: &str) -> StoreResult<()>;

    /// Inserts a signal record as given (delivers nothing).
    async fn create_signal(&self, signal: &SignalRecord) -> StoreResult<()>;

    /// The oldest unconsumed signal of `name`, or if none the newest consumed one.
    async fn get_signal(&self, execution_id: ExecutionId, name: &str) -> StoreResult<Option<SignalRecord>>;

    /// Creates counters that do not exist yet with these initial values.
    async fn ensure_execution_counters(&self, execution_id: ExecutionId, counters: &[(String, f64)])
    -> StoreResult<()>;

    /// Adds `amount` to a counter (created at 0) and returns its new value; exact
    /// under concurrent incrementers.
    async fn increment_execution_counter(&self, execution_id: ExecutionId, name: &str, amount: f64)
    -> StoreResult<f64>;

    /// Creates state values that do not exist yet.
    async fn ensure_execution_state_values(
        &self,
        execution_id: ExecutionId,
        values: &[(String, Value)],
    ) -> StoreResult<()>;

    /// Sets a state value.
    async fn set_execution_state_value(&self, execution_id: ExecutionId, key: &str, value: &Value) -> StoreResult<()>;
}
