//! Pauses of executions and queues, held in the store so every claimer in the
//! cluster (nodes and outside workers alike) honours them from the next claim.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::change::Committed;
use crate::error::StoreResult;
use crate::id::ExecutionId;
use crate::pause::{PauseState, PausedQueue};

/// Pausing and resuming executions and queues. A claim
/// ([`TaskStore::claim`](super::TaskStore::claim)) takes no task of a paused
/// execution and none in a paused queue; leases already held are untouched, so
/// running tasks finish, and writes that create or requeue tasks still happen
/// (the tasks wait).
#[async_trait]
pub trait PauseStore: Send + Sync {
    /// Pauses an execution. `ExecutionNotFound` if there is none; an
    /// `ExecutionState` error if it has ended. Pausing a paused one changes nothing.
    /// Changes: `ExecutionPaused` (paused) when it was running.
    async fn pause_execution(&self, id: ExecutionId) -> StoreResult<Committed<PauseState>>;

    /// Resumes a paused execution (a running or ended one is left as it is).
    /// `ExecutionNotFound` if there is none.
    /// Changes: `ExecutionPaused` (resumed, with the queues of its waiting work)
    /// when it was paused.
    async fn resume_execution(&self, id: ExecutionId) -> StoreResult<Committed<PauseState>>;

    /// Since when an execution has been paused, if it is.
    async fn execution_paused_at(&self, id: ExecutionId) -> StoreResult<Option<DateTime<Utc>>>;

    /// Pauses a queue (it need not have tasks yet). Pausing a paused one changes nothing.
    /// Changes: `QueuePaused` (paused) when it was running.
    async fn pause_queue(&self, queue: &str) -> StoreResult<Committed<PauseState>>;

    /// Resumes a paused queue.
    /// Changes: `QueuePaused` (resumed) when it was paused.
    async fn resume_queue(&self, queue: &str) -> StoreResult<Committed<PauseState>>;

    /// The paused queues, by name (in byte order).
    async fn paused_queues(&self) -> StoreResult<Vec<PausedQueue>>;
}
