//! `TaskLeaseActor`: one per lease this node holds.
//!
//! It keeps the lease alive (renewing it through the `StoreActor` every
//! heartbeat interval), writes the attempt's outcome fenced by the lease, and
//! gives the lease up on drain. Given work (an activity attempt, built by the
//! activity runner), it runs it under the lease and writes its outcome, with the
//! delivery attempts the code attached, in one commit; if the
//! lease is lost (cancelled, reclaimed after a stall) the actor stops at once,
//! dropping the work: a lost lease's result could not be written anyway.
//!
//! For an orchestrator the `ExecutionActor` runs the code and sends `Finish`,
//! `Suspend` or `Release` here; the lease actor tells it via `LeaseEnded` if the
//! lease is lost.

use std::time::{Duration, Instant};

use actix::prelude::*;
use courier_core::metric;
use courier_core::{
    Claimed, Completed, Completion, Lease, Outcome, StoreError, StoreResult, TaskError, TaskId, TaskRecord, TaskState,
};
use futures::future::LocalBoxFuture;

use crate::activity::Ended;
use crate::admission::Admission;
use crate::store_actor::{Complete, ReleaseLeases, Renew, StoreActor, SuspendTask};

/// Writes the attempt's outcome, fenced by the lease, then stops.
#[derive(Message)]
#[rtype(result = "StoreResult<Completed>")]
pub(crate) struct Finish(pub Outcome);

/// Parks the orchestrator (see `TaskStore::suspend_task`); stops if parked.
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

/// Sent to the worker when a lease actor running work stops, freeing its slot.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SlotFreed {
    pub task_id: TaskId,
}

/// How long a lease lasts and how often it is renewed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LeaseTerms {
    pub length: Duration,
    pub renew_every: Duration,
}

/// The actor. See the module documentation.
pub(crate) struct TaskLeaseActor {
    store: Addr<StoreActor>,
    /// Permits for the outcome's write (see `admission`).
    admission: Admission,
    terms: LeaseTerms,
    lease: Lease,
    task: TaskRecord,
    /// The queue whose cluster-wide concurrency slot the outcome frees (a limited function).
    frees_slot_on: Option<String>,
    /// The work to run under the lease, until it starts.
    work: Option<LocalBoxFuture<'static, Ended>>,
    /// Who to tell when the lease ends (an orchestrator's actor).
    owner: Option<Recipient<LeaseEnded>>,
    /// Who to tell when this actor stops (the worker, whose slot it held).
    slot: Option<Recipient<SlotFreed>>,
    /// When the lease was last known to be held, for giving up on a store that
    /// stays unreachable past the lease's length.
    last_renewed: Instant,
    finishing: bool,
}

impl TaskLeaseActor {
    /// A lease actor that runs `work` under the lease, writes its outcome, and
    /// frees `slot` when it stops.
    pub(crate) fn running(
        store: Addr<StoreActor>,
        admission: Admission,
        terms: LeaseTerms,
        claimed: Claimed,
        work: LocalBoxFuture<'static, Ended>,
        frees_slot_on: Option<String>,
        slot: Recipient<SlotFreed>,
    ) -> Self {
        TaskLeaseActor {
            store,
            admission,
            terms,
            lease: claimed.lease,
            task: claimed.task,
            frees_slot_on,
            work: Some(work),
            owner: None,
            slot: Some(slot),
            last_renewed: Instant::now(),
            finishing: false,
        }
    }

    /// A lease actor that only keeps the lease for its `owner` (an orchestrator's actor).
    pub(crate) fn keep_alive(
        store: Addr<StoreActor>,
        admission: Admission,
        terms: LeaseTerms,
        claimed: Claimed,
        owner: Recipient<LeaseEnded>,
    ) -> Self {
        TaskLeaseActor {
            store,
            admission,
            terms,
            lease: claimed.lease,
            task: claimed.task,
            frees_slot_on: None,
            work: None,
            owner: Some(owner),
            slot: None,
            last_renewed: Instant::now(),
            finishing: false,
        }
    }

    fn lost(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::info!(task = %self.task.id, function = %self.task.function, %reason, "lease lost; abandoning the attempt");
        metrics::counter!(metric::LEASES_LOST).increment(1);
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
            extend: self.terms.length,
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
                if act.last_renewed.elapsed() > act.terms.length {
                    act.lost(format!("could not renew for a whole lease length: {error}"), ctx);
                } else {
                    tracing::warn!(task = %act.task.id, %error, "lease renewal failed; will retry");
                }
            })
            .spawn(ctx);
    }

    /// Writes `outcome`, retrying while the store is unreachable (the result must
    /// not be lost while the lease may still be ours), then stops.
    fn finish(&mut self, ended: Ended) -> impl ActorFuture<Self, Output = StoreResult<Completed>> + use<> {
        let Ended { outcome, attempts } = ended;
        self.finishing = true;
        let store = self.store.clone();
        let admission = self.admission.clone();
        let completion = Completion {
            lease: self.lease.key(),
            outcome,
        };
        let task = self.task.id;
        let frees_slot_on = self.frees_slot_on.clone();
        let write = async move {
            let mut completion = completion;
            let mut wait = Duration::from_millis(50);
            loop {
                let result = match admission.admit(1 + attempts.len()).await {
                    Ok(admitted) => store
                        .send(Complete {
                            completion: completion.clone(),
                            frees_slot_on: frees_slot_on.clone(),
                            attempts: attempts.clone(),
                            admitted,
                        })
                        .await
                        .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string()))),
                    Err(e) => Err(e),
                };
                match result {
                    // The store refused the outcome itself (a NUL in the result or error):
                    // retrying it could never succeed, so the task fails for good
                    // with a dead letter saying why, instead of re-running at every
                    // lease expiry.
                    Err(StoreError::Invalid(why)) if !matches!(&completion.outcome, Outcome::Failed { error, .. } if error.kind == TaskError::UNSTORABLE) =>
                    {
                        tracing::error!(%task, %why, "the outcome cannot be stored; failing the task");
                        completion.outcome = Outcome::Failed {
                            error: TaskError::non_retryable(TaskError::UNSTORABLE, why),
                            reason: "the outcome could not be stored".into(),
                            dead_letter: true,
                        };
                    }
                    Err(e) if e.is_transient() => {
                        tracing::warn!(%task, error = %e, "could not write the outcome yet; retrying");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                    other => return other,
                }
            }
        };
        write.into_actor(self).map(|result, act, ctx| {
            match &result {
                Ok(done) => match done.state {
                    TaskState::Completed => metrics::counter!(metric::COMPLETIONS).increment(1),
                    TaskState::Pending => metrics::counter!(metric::RETRIES).increment(1),
                    _ => metrics::counter!(metric::FAILURES).increment(1),
                },
                Err(StoreError::LeaseLost { reason, .. }) => {
                    tracing::info!(task = %act.task.id, %reason, "outcome refused: the lease was lost");
                    metrics::counter!(metric::FENCED_WRITES).increment(1);
                }
                Err(e) => tracing::error!(task = %act.task.id, error = %e, "could not write the outcome"),
            }
            ctx.stop();
            result
        })
    }
}

impl Actor for TaskLeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = self.terms.renew_every.max(Duration::from_millis(10));
        ctx.run_interval(every, |act, ctx| {
            if !act.finishing {
                act.renew(ctx)
            }
        });
        if let Some(work) = self.work.take() {
            // Spawned into this actor's context: stopping the actor drops the work.
            work.into_actor(self)
                .then(|ended, act, _| act.finish(ended))
                .map(|_, _, _| ())
                .spawn(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(slot) = &self.slot {
            slot.do_send(SlotFreed { task_id: self.task.id });
        }
    }
}

/// Writes the outcome (orchestrators); the actor stops afterwards.
impl Handler<Finish> for TaskLeaseActor {
    type Result = ResponseActFuture<Self, StoreResult<Completed>>;

    fn handle(&mut self, msg: Finish, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.finish(msg.0.into()))
    }
}

/// Parks the orchestrator if nothing settled since it looked; stops if parked.
impl Handler<Suspend> for TaskLeaseActor {
    type Result = ResponseActFuture<Self, StoreResult<bool>>;

    fn handle(&mut self, msg: Suspend, _: &mut Self::Context) -> Self::Result {
        let write = SuspendTask {
            lease: self.lease.key(),
            seen_wake_gen: msg.seen_wake_gen,
        };
        Box::pin(self.store.send(write).into_actor(self).map(|result, act, ctx| {
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
        let release = courier_core::Release {
            lease: self.lease.key(),
            delay: msg.delay,
        };
        let (store, admission) = (self.store.clone(), self.admission.clone());
        let released = async move {
            ReleaseLeases::send(&store, &admission, vec![release])
                .await
                .and_then(|mut results| results.pop().unwrap_or(Ok(())))
        };
        Box::pin(released.into_actor(self).map(|result, act, ctx| {
            if let Err(e) = result {
                tracing::warn!(task = %act.task.id, error = %e, "could not release the lease; it will expire instead");
            }
            ctx.stop();
        }))
    }
}
