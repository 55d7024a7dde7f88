//! What activity code sees of the runtime: its task, and ways to report from inside.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use courier_core::{ExecutionId, LeaseKey, Progress, StoreError, TaskError, TaskId};
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;

use crate::store_actor::{Exec, StoreActor};

/// Handed to every activity call.
///
/// ```no_run
/// use courier_runtime::ActivityContext;
/// use courier_core::{Progress, TaskError};
/// async fn import(ctx: ActivityContext, rows: Vec<String>) -> Result<usize, TaskError> {
///     let start = ctx.previous_checkpoint().and_then(|c| c.as_u64()).unwrap_or(0) as usize;
///     for (i, _row) in rows.iter().enumerate().skip(start) {
///         if i % 100 == 0 {
///             ctx.checkpoint(i).await?;
///             ctx.progress(Progress::percent(100.0 * i as f64 / rows.len() as f64, "importing")).await?;
///         }
///     }
///     Ok(rows.len())
/// }
/// ```
#[derive(Clone)]
pub struct ActivityContext {
    inner: Arc<Inner>,
}

struct Inner {
    task_id: TaskId,
    execution_id: ExecutionId,
    function: String,
    attempt: u32,
    checkpoint: Option<Value>,
    lease: LeaseKey,
    lease_length: Duration,
    store: Addr<StoreActor>,
}

fn lost(e: StoreError) -> TaskError {
    TaskError::new("lease_lost", e.to_string())
}

impl ActivityContext {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        task_id: TaskId,
        execution_id: ExecutionId,
        function: String,
        attempt: u32,
        checkpoint: Option<Value>,
        lease: LeaseKey,
        lease_length: Duration,
        store: Addr<StoreActor>,
    ) -> Self {
        ActivityContext {
            inner: Arc::new(Inner {
                task_id,
                execution_id,
                function,
                attempt,
                checkpoint,
                lease,
                lease_length,
                store,
            }),
        }
    }

    /// This call's task.
    pub fn task_id(&self) -> TaskId {
        self.inner.task_id
    }

    /// The execution it belongs to.
    pub fn execution_id(&self) -> ExecutionId {
        self.inner.execution_id
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        &self.inner.function
    }

    /// Which attempt this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The last checkpoint an earlier attempt saved.
    pub fn previous_checkpoint(&self) -> Option<&Value> {
        self.inner.checkpoint.as_ref()
    }

    /// Tells the cluster this attempt is alive (renews its lease at once and
    /// records a `task.heartbeat` event). Leases are also renewed automatically;
    /// call this to attach details or to prove liveness from a long loop.
    /// Fails once the task is no longer this attempt's (cancelled, reclaimed).
    pub async fn heartbeat(&self, details: Option<Value>) -> Result<(), TaskError> {
        let (lease, extend) = (self.inner.lease, self.inner.lease_length);
        self.inner
            .store
            .send(Exec(Box::new(move |store| {
                async move { store.heartbeat(lease, extend, details).await.map(|_| ()) }.boxed()
            })))
            .await
            .map_err(|e| TaskError::new("lease_lost", e.to_string()))?
            .map_err(lost)
    }

    /// Saves `data` for the next attempt to resume from (`task.checkpoint` event).
    pub async fn checkpoint(&self, data: impl Serialize) -> Result<(), TaskError> {
        let data = serde_json::to_value(data)?;
        let lease = self.inner.lease;
        self.inner
            .store
            .send(Exec(Box::new(move |store| {
                async move { store.checkpoint(lease, data).await }.boxed()
            })))
            .await
            .map_err(|e| TaskError::new("lease_lost", e.to_string()))?
            .map_err(lost)
    }

    /// Reports progress (`task.progress` event, listed in the execution's progress).
    pub async fn progress(&self, progress: Progress) -> Result<(), TaskError> {
        let (execution, task) = (self.inner.execution_id, self.inner.task_id);
        self.inner
            .store
            .send(Exec(Box::new(move |store| {
                async move { store.append_progress(execution, Some(task), &progress).await }.boxed()
            })))
            .await
            .map_err(|e| TaskError::new(TaskError::ERROR, e.to_string()))?
            .map_err(|e| TaskError::new(TaskError::ERROR, e.to_string()))
    }
}
