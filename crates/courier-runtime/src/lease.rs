//! `TaskLeaseActor`: one per lease this node holds.
//!
//! It keeps the lease alive (renewing it through the `StoreActor` every
//! heartbeat interval), writes the attempt's outcome fenced by the lease, and
//! gives the lease up on drain. For an activity it also runs the code: cached
//! and idempotent calls are answered from the store without running, panics and
//! timeouts become errors, and the persisted retry policy turns an error into a
//! retry or a final failure. If the lease is lost (cancelled, reclaimed after a
//! stall) the actor stops at once, dropping the running code: a lost lease's
//! result could not be written anyway.
//!
//! For an orchestrator the `ExecutionActor` runs the code and sends `Finish`,
//! `Suspend` or `Release` here; the lease actor tells it via `LeaseEnded` if the
//! lease is lost.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use actix::prelude::*;
use courier_core::{
    Claimed, Completed, Completion, Lease, Outcome, Remember, Reservation, RetryVerdict, StoreError, StoreResult,
    TaskError, TaskId, TaskKind, TaskRecord, Topic,
};
use futures::FutureExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::activity::ActivityContext;
use crate::function::{ActivityFn, FunctionDef, Handler as FnHandler};
use crate::node::Node;
use crate::store_actor::{Complete, Exec, Renew, StoreActor};

/// Writes the attempt's outcome, fenced by the lease, then stops.
#[derive(Message)]
#[rtype(result = "StoreResult<Completed>")]
pub(crate) struct Finish(pub Outcome);

/// Parks the orchestrator (see `Store::suspend_task`); stops if parked.
#[derive(Message)]
#[rtype(result = "StoreResult<bool>")]
pub(crate) struct Suspend {
    pub seen_wake_gen: i64,
}

/// Gives the lease back without using the attempt (drain, wrong version), claimable
/// again after `delay`, then stops.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Release {
    pub delay: Duration,
}

impl Release {
    /// Claimable again at once.
    pub(crate) fn now() -> Self {
        Release { delay: Duration::ZERO }
    }
}

/// Sent to the owner when the lease is gone for good.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub(crate) struct LeaseEnded {
    pub task_id: TaskId,
    pub reason: String,
}

/// Sent to the worker when an activity's lease actor stops, freeing its slot.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SlotFreed {
    pub task_id: TaskId,
}

/// The actor. See the module documentation.
pub(crate) struct TaskLeaseActor {
    node: Node,
    store: Addr<StoreActor>,
    lease: Lease,
    task: TaskRecord,
    /// Whether the function has a cluster-wide concurrency limit.
    limited: bool,
    /// Set for activities: the code to run.
    activity: Option<(ActivityFn, FunctionDef)>,
    /// Who to tell when the lease ends (the orchestrator's actor).
    owner: Option<Recipient<LeaseEnded>>,
    /// Who to tell when an activity's slot frees up.
    worker: Option<Recipient<SlotFreed>>,
    /// When the lease was last known to be held, for giving up on a store that
    /// stays unreachable past the lease's length.
    last_renewed: Instant,
    finishing: bool,
}

impl TaskLeaseActor {
    /// A lease actor that runs an activity.
    pub(crate) fn activity(
        node: Node,
        store: Addr<StoreActor>,
        claimed: Claimed,
        def: FunctionDef,
        worker: Recipient<SlotFreed>,
    ) -> Self {
        let code = match &def.handler {
            Some(FnHandler::Activity(f)) => Some((f.clone(), def.clone())),
            _ => None,
        };
        TaskLeaseActor {
            node,
            store,
            lease: claimed.lease,
            task: claimed.task,
            limited: def.options.max_concurrent.is_some(),
            activity: code,
            owner: None,
            worker: Some(worker),
            last_renewed: Instant::now(),
            finishing: false,
        }
    }

    /// A lease actor that only keeps an orchestrator's lease.
    pub(crate) fn keep_alive(
        node: Node,
        store: Addr<StoreActor>,
        claimed: Claimed,
        owner: Recipient<LeaseEnded>,
    ) -> Self {
        TaskLeaseActor {
            node,
            store,
            lease: claimed.lease,
            task: claimed.task,
            limited: false,
            activity: None,
            owner: Some(owner),
            worker: None,
            last_renewed: Instant::now(),
            finishing: false,
        }
    }

    fn lease_length(&self) -> Duration {
        self.node.worker_options().lease
    }

    fn lost(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::info!(task = %self.task.id, function = %self.task.function, %reason, "lease lost; abandoning the attempt");
        metrics::counter!("courier_leases_lost_total").increment(1);
        if let Some(owner) = &self.owner {
            owner.do_send(LeaseEnded {
                task_id: self.task.id,
                reason,
            });
        }
        ctx.stop();
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        let msg = Renew {
            lease: self.lease.key(),
            extend: self.lease_length(),
        };
        self.store
            .send(msg)
            .into_actor(self)
            .map(|result, act, ctx| {
                let error = match result.unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string()))) {
                    Ok(renewed) => {
                        act.lease.expires_at = renewed.expires_at;
                        act.last_renewed = Instant::now();
                        return;
                    }
                    Err(StoreError::LeaseLost { reason, .. }) => return act.lost(reason.to_string(), ctx),
                    Err(StoreError::TaskNotFound(_)) => return act.lost("the task no longer exists".into(), ctx),
                    Err(e) => e,
                };
                if act.last_renewed.elapsed() > act.lease_length() {
                    act.lost(format!("could not renew for a whole lease length: {error}"), ctx);
                } else {
                    tracing::warn!(task = %act.task.id, %error, "lease renewal failed; will retry");
                }
            })
            .spawn(ctx);
    }

    /// Writes `outcome`, retrying while the store is unreachable (the result must
    /// not be lost while the lease may still be ours).
    fn finish(
        &mut self,
        outcome: Outcome,
        ctx: &mut Context<Self>,
    ) -> impl ActorFuture<Self, Output = StoreResult<Completed>> + use<> {
        self.finishing = true;
        let store = self.store.clone();
        let completion = Completion {
            lease: self.lease.key(),
            outcome,
        };
        let task = self.task.id;
        let frees_slot_on = self.limited.then(|| self.task.queue.clone());
        let fut = async move {
            let mut wait = Duration::from_millis(50);
            loop {
                let result = store
                    .send(Complete {
                        completion: completion.clone(),
                        frees_slot_on: frees_slot_on.clone(),
                    })
                    .await
                    .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())));
                match result {
                    Err(e) if e.is_transient() => {
                        tracing::warn!(%task, error = %e, "could not write the outcome yet; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                    other => return other,
                }
            }
        };
        let _ = ctx;
        fut.into_actor(self).map(|result, act, ctx| {
            match &result {
                Ok(done) => {
                    if done.state == courier_core::TaskState::Completed {
                        metrics::counter!("courier_completions_total").increment(1);
                    } else if done.state == courier_core::TaskState::Pending {
                        metrics::counter!("courier_retries_total").increment(1);
                    } else {
                        metrics::counter!("courier_failures_total").increment(1);
                    }
                }
                Err(StoreError::LeaseLost { reason, .. }) => {
                    tracing::info!(task = %act.task.id, %reason, "outcome refused: the lease was lost");
                    metrics::counter!("courier_fenced_writes_total").increment(1);
                }
                Err(e) => tracing::error!(task = %act.task.id, error = %e, "could not write the outcome"),
            }
            ctx.stop();
            result
        })
    }

    /// Runs the activity's code and returns its outcome.
    fn run_activity(&mut self, ctx: &mut Context<Self>) {
        let Some((code, def)) = self.activity.clone() else {
            // A function registered as external: nothing to run here.
            let outcome = Outcome::Failed {
                error: TaskError::non_retryable(TaskError::UNKNOWN_FUNCTION, "no handler on this node"),
                reason: "no handler".into(),
                dead_letter: true,
            };
            self.finish(outcome, ctx).map(|_, _, _| ()).spawn(ctx);
            return;
        };
        let task = self.task.clone();
        let store_actor = self.store.clone();
        let node = self.node.clone();
        let activity_ctx = ActivityContext::new(
            task.id,
            task.execution_id,
            task.function.clone(),
            task.attempt,
            task.checkpoint.clone(),
            self.lease.key(),
            self.lease_length(),
            self.store.clone(),
        );
        let run = async move {
            let started = Instant::now();
            let cache_key = def.options.cache.map(|ttl| (cache_key(&task), ttl));
            if let Some((key, _)) = &cache_key
                && let Ok(Some(hit)) = node.store().get_cached_result(key).await
            {
                metrics::counter!("courier_cache_hits_total").increment(1);
                return Outcome::Succeeded {
                    result: hit,
                    remember: Vec::new(),
                };
            }
            let idempotency_key = def
                .options
                .idempotency_key
                .as_ref()
                .map(|key_fn| format!("{}:{}", task.function, key_fn(&task.args)));
            if let Some(key) = &idempotency_key {
                match reserve(&node, key, task.id).await {
                    Ok(Some(result)) => {
                        return Outcome::Succeeded {
                            result,
                            remember: Vec::new(),
                        };
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Outcome::Retry {
                            error: TaskError::new("store", e.to_string()),
                            delay: Duration::from_secs(1),
                        };
                    }
                }
            }
            let code_fut = AssertUnwindSafe(code(activity_ctx, task.args.clone())).catch_unwind();
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
            metrics::histogram!("courier_activity_seconds").record(started.elapsed().as_secs_f64());
            match result {
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
                    if let Some(key) = &idempotency_key {
                        // The work did not happen: let the next attempt (or another call) take the key.
                        let _ = node.store().release_idempotency_key(key, task.id).await;
                    }
                    outcome_of_error(&task, error)
                }
            }
        };
        let _ = store_actor;
        run.into_actor(self)
            .then(|outcome, act, ctx| act.finish(outcome, ctx))
            .map(|_, _, _| ())
            .spawn(ctx);
    }
}

/// The retry policy's verdict on an error, as an outcome.
pub(crate) fn outcome_of_error(task: &TaskRecord, error: TaskError) -> Outcome {
    match task.retry.verdict(&error, task.attempt, rand::random::<f64>()) {
        RetryVerdict::RetryAfter(delay) => Outcome::Retry { error, delay },
        RetryVerdict::Exhausted => Outcome::Failed {
            reason: format!("attempts exhausted ({} of {})", task.attempt, task.retry.attempts()),
            error,
            dead_letter: true,
        },
        RetryVerdict::NotRetryable => Outcome::Failed {
            reason: format!("error kind {:?} is not retryable", error.kind),
            error,
            dead_letter: true,
        },
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

/// Holds `key` for `task`, waiting while another task holds it. `Some(result)`
/// if the work already ran.
async fn reserve(node: &Node, key: &str, task: TaskId) -> StoreResult<Option<Value>> {
    let poll = node.worker_options().poll;
    let mut wait = poll.min;
    loop {
        match node.store().reserve_idempotency_key(key, task).await? {
            Reservation::Acquired => return Ok(None),
            Reservation::Completed(result) => return Ok(Some(result)),
            Reservation::HeldBy(other) => {
                // Subscribe, then re-check, so the holder's completion cannot slip between.
                let mut sub = node
                    .notifier()
                    .subscribe(vec![Topic::Task(other)])
                    .await
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                if let Some(t) = node.store().get_task(other).await?
                    && !t.state.is_terminal()
                {
                    sub.next_within(wait).await;
                    wait = poll.next(wait);
                }
            }
        }
    }
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

impl Actor for TaskLeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let heartbeat = self.node.worker_options().heartbeat.max(Duration::from_millis(10));
        ctx.run_interval(heartbeat, |act, ctx| {
            if !act.finishing {
                act.renew(ctx)
            }
        });
        if self.task.kind == TaskKind::Activity {
            self.run_activity(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(worker) = &self.worker {
            worker.do_send(SlotFreed { task_id: self.task.id });
        }
    }
}

/// Writes the outcome (orchestrators); the actor stops afterwards.
impl Handler<Finish> for TaskLeaseActor {
    type Result = ResponseActFuture<Self, StoreResult<Completed>>;

    fn handle(&mut self, msg: Finish, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.finish(msg.0, ctx))
    }
}

/// Parks the orchestrator if nothing settled since it looked; stops if parked.
impl Handler<Suspend> for TaskLeaseActor {
    type Result = ResponseActFuture<Self, StoreResult<bool>>;

    fn handle(&mut self, msg: Suspend, _: &mut Self::Context) -> Self::Result {
        let lease = self.lease.key();
        let seen = msg.seen_wake_gen;
        let fut = self.store.send(Exec(Box::new(move |store| {
            async move { store.suspend_task(lease, seen).await }.boxed()
        })));
        Box::pin(fut.into_actor(self).map(|result, act, ctx| {
            let result = result.unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())));
            if let Ok(true) = result {
                act.finishing = true;
                ctx.stop();
            }
            result
        }))
    }
}

/// Gives the lease back (drain); the actor stops afterwards.
impl Handler<Release> for TaskLeaseActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Release, _: &mut Self::Context) -> Self::Result {
        self.finishing = true;
        let lease = self.lease.key();
        let fut = self.store.send(Exec(Box::new(move |store| {
            async move { store.release_task(lease, msg.delay).await }.boxed()
        })));
        Box::pin(fut.into_actor(self).map(|result, act, ctx| {
            if let Ok(Err(e)) | Err(e) = result.map_err(|e| StoreError::Unavailable(e.to_string())) {
                tracing::warn!(task = %act.task.id, error = %e, "could not release the lease; it will expire instead");
            }
            ctx.stop();
        }))
    }
}
