//! Activities: what activity code sees of the runtime ([`ActivityContext`]), and
//! the runner that turns one attempt of it into an [`Outcome`].
//!
//! The runner answers cached and idempotent calls from the store instead of
//! running the code, bounds an attempt by its time limit, turns a panic into an
//! error of kind `panic`, and asks the persisted retry policy what an error
//! becomes. It does not hold the lease: the `TaskLeaseActor` runs the runner's
//! future under the lease and drops it if the lease is lost.
//!
//! What the code attaches to its outcome ([`ActivityContext::record_delivery_attempt`])
//! ends the attempt with it ([`Ended`]) and is written in the completion's commit.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use courier_core::metric;
use courier_core::{
    AttemptWrite, DeliveryAttempt, DeliveryState, ExecutionId, LeaseKey, Notifier, Outcome, Progress, Remember,
    Reservation, Store, StoreError, StoreResult, TaskError, TaskId, TaskRecord, Topic,
};
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::options::{FunctionOptions, PollBackoff};
use crate::retry::outcome_of_error;
use crate::store_actor::{Checkpoint, Heartbeat, ReleaseKey, ReportProgress, ReserveKey, StoreActor};

/// An activity's code, type-erased to speak JSON.
pub(crate) type ActivityFn =
    Arc<dyn Fn(ActivityContext, Value) -> LocalBoxFuture<'static, Result<Value, TaskError>> + Send + Sync>;

/// The writes an activity (its context and its runner) makes, each a message to
/// the node's `StoreActor`. One per node, shared behind an `Arc`.
pub(crate) struct ActivityPort {
    heartbeat: Recipient<Heartbeat>,
    checkpoint: Recipient<Checkpoint>,
    progress: Recipient<ReportProgress>,
    reserve: Recipient<ReserveKey>,
    release: Recipient<ReleaseKey>,
}

impl ActivityPort {
    pub(crate) fn new(store: &Addr<StoreActor>) -> Self {
        ActivityPort {
            heartbeat: store.clone().recipient(),
            checkpoint: store.clone().recipient(),
            progress: store.clone().recipient(),
            reserve: store.clone().recipient(),
            release: store.clone().recipient(),
        }
    }
}

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
    port: Arc<ActivityPort>,
    /// Delivery attempts to write with the outcome.
    attached: Mutex<Vec<AttemptWrite>>,
}

/// How an activity attempt ended: its outcome, and the delivery attempts its
/// code attached, written in the same commit as the completion.
pub(crate) struct Ended {
    pub outcome: Outcome,
    pub attempts: Vec<AttemptWrite>,
}

impl From<Outcome> for Ended {
    fn from(outcome: Outcome) -> Self {
        Ended {
            outcome,
            attempts: Vec::new(),
        }
    }
}

fn lost(e: StoreError) -> TaskError {
    match e {
        StoreError::LeaseLost { .. } | StoreError::TaskNotFound(_) => TaskError::new("lease_lost", e.to_string()),
        other => TaskError::new(TaskError::ERROR, other.to_string()),
    }
}

fn unreachable_store(e: MailboxError) -> TaskError {
    TaskError::new(TaskError::ERROR, format!("the store actor is unreachable: {e}"))
}

impl ActivityContext {
    fn new(task: &TaskRecord, lease: LeaseKey, lease_length: Duration, port: Arc<ActivityPort>) -> Self {
        ActivityContext {
            inner: Arc::new(Inner {
                task_id: task.id,
                execution_id: task.execution_id,
                function: task.function.clone(),
                attempt: task.attempt,
                checkpoint: task.checkpoint.clone(),
                lease,
                lease_length,
                port,
                attached: Mutex::new(Vec::new()),
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
        let write = Heartbeat {
            lease: self.inner.lease,
            extend: self.inner.lease_length,
            details,
        };
        self.inner
            .port
            .heartbeat
            .send(write)
            .await
            .map_err(unreachable_store)?
            .map(|_| ())
            .map_err(lost)
    }

    /// Saves `data` for the next attempt to resume from (`task.checkpoint` event).
    pub async fn checkpoint(&self, data: impl Serialize) -> Result<(), TaskError> {
        let write = Checkpoint {
            lease: self.inner.lease,
            data: serde_json::to_value(data)?,
        };
        self.inner
            .port
            .checkpoint
            .send(write)
            .await
            .map_err(unreachable_store)?
            .map_err(lost)
    }

    /// Records a webhook delivery's attempt, and the delivery's new `state`, with
    /// this call's outcome: in the commit that completes the task, so the record
    /// costs the delivery no commit of its own. It is written even when the
    /// completion is refused (the lease was lost), since the attempt happened.
    pub fn record_delivery_attempt(&self, attempt: DeliveryAttempt, state: DeliveryState) {
        self.inner
            .attached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(AttemptWrite { attempt, state });
    }

    fn take_attached(&self) -> Vec<AttemptWrite> {
        std::mem::take(
            &mut *self
                .inner
                .attached
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Reports progress (`task.progress` event, listed in the execution's progress).
    pub async fn progress(&self, progress: Progress) -> Result<(), TaskError> {
        let write = ReportProgress {
            execution: self.inner.execution_id,
            task: Some(self.inner.task_id),
            progress,
            fence: Some(self.inner.lease),
        };
        self.inner
            .port
            .progress
            .send(write)
            .await
            .map_err(unreachable_store)?
            .map_err(lost)
    }
}

/// What running an activity attempt needs besides the code.
#[derive(Clone)]
pub(crate) struct Runner {
    /// For reads (cached results, the holder of an idempotency key).
    pub store: Arc<dyn Store>,
    /// To wait for another holder of an idempotency key.
    pub notifier: Arc<dyn Notifier>,
    /// Shared by every attempt: cloning five `Recipient`s per task was measurable.
    pub port: Arc<ActivityPort>,
    pub poll: PollBackoff,
    pub lease_length: Duration,
}

impl Runner {
    /// One attempt of `code` on the claimed `task`, as what to write.
    pub(crate) fn attempt(
        &self,
        code: ActivityFn,
        options: &FunctionOptions,
        task: TaskRecord,
        lease: LeaseKey,
    ) -> LocalBoxFuture<'static, Ended> {
        let runner = self.clone();
        let ctx = ActivityContext::new(&task, lease, self.lease_length, self.port.clone());
        let cache = options.cache;
        let key_fn = options.idempotency_key.clone();
        async move {
            let started = Instant::now();
            let cache_key = cache.map(|ttl| (cache_key(&task), ttl));
            if let Some((key, _)) = &cache_key
                && let Ok(Some(hit)) = runner.store.get_cached_result(key).await
            {
                metrics::counter!(metric::CACHE_HITS).increment(1);
                return Outcome::Succeeded {
                    result: hit,
                    remember: Vec::new(),
                }
                .into();
            }
            let idempotency_key = key_fn.map(|key_fn| format!("{}:{}", task.function, key_fn(&task.args)));
            if let Some(key) = &idempotency_key {
                match runner.reserve(key, task.id).await {
                    Ok(Some(result)) => {
                        return Outcome::Succeeded {
                            result,
                            remember: Vec::new(),
                        }
                        .into();
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Outcome::Retry {
                            error: TaskError::new("store", e.to_string()),
                            delay: Duration::from_secs(1),
                        }
                        .into();
                    }
                }
            }
            let code_fut = AssertUnwindSafe(code(ctx.clone(), task.args.clone())).catch_unwind();
            let result = match task.timeout {
                Some(limit) => match tokio::time::timeout(limit, code_fut).await {
                    Ok(r) => r,
                    Err(_) => Ok(Err(TaskError::new(
                        TaskError::TIMEOUT,
                        format!("attempt exceeded its {limit:?} time limit"),
                    ))),
                },
                None => code_fut.await,
            };
            let result = result.unwrap_or_else(|panic| Err(TaskError::new(TaskError::PANIC, panic_message(&panic))));
            metrics::histogram!(metric::ACTIVITY_SECONDS).record(started.elapsed().as_secs_f64());
            // Taken even from a call that failed, panicked or ran out of time:
            // what it attached happened.
            let attempts = ctx.take_attached();
            let outcome = match result {
                Ok(value) => {
                    let mut remember = Vec::new();
                    if let Some((key, ttl)) = cache_key {
                        remember.push(Remember::Cache { key, ttl });
                    }
                    if let Some(key) = idempotency_key {
                        remember.push(Remember::Idempotency { key });
                    }
                    Outcome::Succeeded {
                        result: value,
                        remember,
                    }
                }
                Err(error) => {
                    if let Some(key) = idempotency_key {
                        // The work did not happen: let the next attempt (or another call) take the key.
                        let _ = runner.port.release.send(ReleaseKey { key, owner: task.id }).await;
                    }
                    outcome_of_error(&task, error)
                }
            };
            Ended { outcome, attempts }
        }
        .boxed_local()
    }

    /// Holds `key` for `task`, waiting while another task holds it. `Some(result)`
    /// if the work already ran.
    async fn reserve(&self, key: &str, task: TaskId) -> StoreResult<Option<Value>> {
        let mut wait = self.poll.min;
        loop {
            let reservation = self
                .port
                .reserve
                .send(ReserveKey {
                    key: key.to_string(),
                    owner: task,
                })
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))??;
            match reservation {
                Reservation::Acquired => return Ok(None),
                Reservation::Completed(result) => return Ok(Some(result)),
                Reservation::HeldBy(other) => {
                    // Subscribe, then re-check, so the holder's completion cannot slip between.
                    let mut sub = self
                        .notifier
                        .subscribe(vec![Topic::Task(other)])
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    if let Some(t) = self.store.get_task(other).await?
                        && !t.state.is_terminal()
                    {
                        sub.next_within(wait).await;
                        wait = self.poll.next(wait);
                    }
                }
            }
        }
    }
}

/// The cache key of a call: function, version and a digest of the arguments
/// (serde_json maps are ordered, so equal arguments digest equally).
fn cache_key(task: &TaskRecord) -> String {
    let digest = Sha256::digest(task.args.to_string().as_bytes());
    format!(
        "{}@{}:{}",
        task.function,
        task.version.as_deref().unwrap_or(""),
        hex::encode(digest)
    )
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_arguments_share_a_cache_key_and_versions_do_not() {
        let execution = ExecutionId::new();
        let mut a = crate::retry::tests_support::task(execution);
        a.args = serde_json::json!({"b": 2, "a": 1});
        let mut b = a.clone();
        b.args = serde_json::json!({"a": 1, "b": 2});
        assert_eq!(cache_key(&a), cache_key(&b));
        b.version = Some("v2".into());
        assert_ne!(cache_key(&a), cache_key(&b));
    }

    #[test]
    fn a_panic_says_what_it_said() {
        let panic = std::panic::catch_unwind(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(panic_message(&panic), "panicked: boom 7");
    }
}
