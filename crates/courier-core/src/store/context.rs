//! An execution's context: signals sent to it, progress it reports, its counters
//! and state values.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::change::Committed;
use crate::error::StoreResult;
use crate::id::{ExecutionId, TaskId};
use crate::progress::{Progress, ProgressEntry};
use crate::signal::{SignalRecord, SignalSent};
use crate::task::LeaseKey;

/// Signals, progress, counters and state values. Orchestrators record counters
/// and state values as effects (see [`WriteBatch::effects`](super::WriteBatch::effects)).
#[async_trait]
pub trait ContextStore: Send + Sync {
    /// Sends a signal: stores it and, in the same transaction, completes the
    /// oldest task waiting for that name (then the signal is consumed by it and its
    /// parent is woken). With nobody waiting it is kept for the next wait.
    /// `ExecutionNotFound` or `ExecutionState` (terminal) otherwise.
    /// Changes: `AttemptEnded` (and `TaskQueued` for a woken parent) if delivered.
    async fn send_signal(
        &self,
        execution_id: ExecutionId,
        name: &str,
        payload: Value,
    ) -> StoreResult<Committed<SignalSent>>;

    /// Appends a progress report of an execution (of `task_id`, else of the root
    /// task). With a `fence`, refused with `LeaseLost` unless that claim still
    /// holds the task. Change: `TaskProgress`.
    async fn append_progress(
        &self,
        execution_id: ExecutionId,
        task_id: Option<TaskId>,
        progress: &Progress,
        fence: Option<LeaseKey>,
    ) -> StoreResult<Committed<()>>;

    /// The latest `limit` signals sent to an execution, oldest first, each with
    /// the wait that consumed it (if one did). Reads only what it returns.
    async fn list_signals(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<SignalRecord>>;

    /// The latest `limit` progress reports of an execution, oldest first. Reads
    /// only what it returns (per-report cost is constant, however many exist).
    async fn list_progress(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<ProgressEntry>>;

    /// All counters of an execution.
    async fn get_execution_counters(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, f64>>;

    /// All state values of an execution.
    async fn get_execution_state_values(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, Value>>;
}
