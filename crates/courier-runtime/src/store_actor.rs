//! `StoreActor`: owns this node's writes to the store and group-commits them.
//!
//! Dispatches, child creations, recorded effects, completions and free events
//! queue here; whenever no commit is in flight, everything queued goes into one
//! [`WriteBatch`] (one transaction), so a busy node commits hundreds of writes
//! at once and an idle one commits each write immediately. After a commit it
//! publishes who to wake, and hands settled children's results straight to
//! orchestrators live on this node. Claims and lease renewals (renewals batched
//! the same way) take their own lane, so they never wait behind a big commit.
//!
//! Talks to: the store; the notifier; `ExecutionActor`s (via `ChildrenSettled`).
//! Callers: `WorkerActor`, `TaskLeaseActor`, `ExecutionActor`, the `Courier` handle.

use std::collections::BTreeSet;
use std::mem;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use courier_core::{
    ChildCreated, ChildGroup, ClaimRequest, Claimed, Completed, Completion, Dispatched, EffectApplied, EffectWrite,
    LeaseKey, NewEvent, NewExecution, Notice, Outcome, Renewed, Store, StoreError, StoreResult, TaskState, WriteBatch,
    WriteResults,
};
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::execution::{ChildrenSettled, Settled};
use crate::node::Node;

/// Most operations in one transaction; the rest wait for the next commit.
const MAX_BATCH: usize = 4096;

/// Creates executions with their root tasks.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Dispatched>>")]
pub(crate) struct Dispatch(pub Vec<NewExecution>);

/// Creates an orchestrator's children under its lease.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<ChildCreated>>")]
pub(crate) struct CreateChildren(pub ChildGroup);

/// Records an orchestrator side effect once.
#[derive(Message)]
#[rtype(result = "StoreResult<EffectApplied>")]
pub(crate) struct ApplyEffect(pub EffectWrite);

/// Finishes an attempt, fenced by its lease.
#[derive(Message)]
#[rtype(result = "StoreResult<Completed>")]
pub(crate) struct Complete {
    pub completion: Completion,
    /// The queue of a concurrency-limited function whose cluster-wide slot this
    /// frees: the commit announces work there, so any node's worker takes the
    /// next task at once instead of at the end of its backoff.
    pub frees_slot_on: Option<String>,
}

impl Complete {
    /// A completion that frees no limited slot.
    pub(crate) fn plain(completion: Completion) -> Self {
        Complete {
            completion,
            frees_slot_on: None,
        }
    }
}

/// Whom to answer for a queued completion, and the limited queue it frees.
struct CompletionReply {
    reply: Reply<Completed>,
    frees_slot_on: Option<String>,
}

/// Appends free-standing events.
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<i64>>")]
pub(crate) struct AppendEvents(pub Vec<NewEvent>);

/// Claims tasks (own lane, not batched).
#[derive(Message)]
#[rtype(result = "StoreResult<Vec<Claimed>>")]
pub(crate) struct Claim(pub ClaimRequest);

/// Renews one lease by `extend` (renewals are batched among themselves).
#[derive(Message)]
#[rtype(result = "StoreResult<Renewed>")]
pub(crate) struct Renew {
    pub lease: LeaseKey,
    pub extend: Duration,
}

/// A store call to run as is.
pub(crate) type StoreCall<T> = Box<dyn FnOnce(Arc<dyn Store>) -> BoxFuture<'static, StoreResult<T>> + Send>;

/// Any other store write, run as is (cancel, signals, heartbeats, admin).
pub(crate) struct Exec<T: Send + 'static>(pub StoreCall<T>);

impl<T: Send + 'static> Message for Exec<T> {
    type Result = StoreResult<T>;
}

type Reply<T> = oneshot::Sender<StoreResult<T>>;
type RenewGroup = Vec<(LeaseKey, Reply<Renewed>)>;

/// Writes waiting for the next commit, with whom to answer.
#[derive(Default)]
struct Queue {
    batch: WriteBatch,
    dispatches: Vec<Reply<Dispatched>>,
    children: Vec<Reply<Vec<ChildCreated>>>,
    effects: Vec<Reply<EffectApplied>>,
    completions: Vec<CompletionReply>,
    /// Per caller of `AppendEvents`: how many of `batch.events` are theirs.
    events: Vec<(usize, Reply<Vec<i64>>)>,
    /// Operations counted toward MAX_BATCH (a child group counts its tasks).
    weight: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    fn push(&mut self, item: Queued) {
        self.weight += item.weight();
        match item {
            Queued::Dispatch(new, reply) => {
                self.batch.dispatches.push(new);
                self.dispatches.push(reply);
            }
            Queued::Children(group, reply) => {
                self.batch.children.push(group);
                self.children.push(reply);
            }
            Queued::Effect(effect, reply) => {
                self.batch.effects.push(effect);
                self.effects.push(reply);
            }
            Queued::Completion(completion, reply) => {
                self.batch.completions.push(completion);
                self.completions.push(reply);
            }
            Queued::Events(events, reply) => {
                self.events.push((events.len(), reply));
                self.batch.events.extend(events);
            }
        }
    }
}

/// The actor. See the module documentation.
pub(crate) struct StoreActor {
    node: Node,
    queue: Queue,
    /// Writes that did not fit the current commit, in arrival order.
    overflow: Vec<Queued>,
    committing: bool,
    renewals: Vec<(Renew, Reply<Renewed>)>,
    renewing: bool,
}

/// One write waiting in the overflow.
enum Queued {
    Dispatch(NewExecution, Reply<Dispatched>),
    Children(ChildGroup, Reply<Vec<ChildCreated>>),
    Effect(EffectWrite, Reply<EffectApplied>),
    Completion(Completion, CompletionReply),
    Events(Vec<NewEvent>, Reply<Vec<i64>>),
}

impl Queued {
    fn weight(&self) -> usize {
        match self {
            Queued::Children(group, _) => group.tasks.len().max(1),
            Queued::Events(events, _) => events.len().max(1),
            _ => 1,
        }
    }
}

impl StoreActor {
    pub(crate) fn new(node: Node) -> Self {
        StoreActor {
            node,
            queue: Queue::default(),
            overflow: Vec::new(),
            committing: false,
            renewals: Vec::new(),
            renewing: false,
        }
    }

    fn enqueue(&mut self, item: Queued, ctx: &mut Context<Self>) {
        if self.queue.weight > 0 && (self.queue.weight + item.weight() > MAX_BATCH || !self.overflow.is_empty()) {
            self.overflow.push(item);
        } else {
            self.queue.push(item);
        }
        self.commit(ctx);
    }

    /// Starts a commit of everything queued, unless one is in flight (then the
    /// queue grows and goes in the next one).
    fn commit(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.queue.is_empty() {
            return;
        }
        self.committing = true;
        let queue = mem::take(&mut self.queue);
        // Refill from the overflow for the commit after this one.
        let overflow = mem::take(&mut self.overflow);
        let mut rest = Vec::new();
        for item in overflow {
            if rest.is_empty() && self.queue.weight + item.weight() <= MAX_BATCH {
                self.queue.push(item);
            } else {
                rest.push(item);
            }
        }
        self.overflow = rest;

        let mut queue = queue;
        let batch = Arc::new(mem::take(&mut queue.batch));
        let store = self.node.store().clone();
        let ops = queue.weight;
        let started = std::time::Instant::now();
        let fut = {
            let batch = batch.clone();
            async move { store.commit(batch).await }
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            metrics::histogram!("courier_commit_seconds").record(started.elapsed().as_secs_f64());
            metrics::counter!("courier_commit_operations_total").increment(ops as u64);
            match result {
                Ok(results) => act.answer(queue, batch, results),
                Err(e) if e.is_transient() || queue.weight <= 1 => fail_all(queue, e),
                // One bad write must not sink its neighbours: retry each alone.
                Err(e) => {
                    tracing::warn!(error = %e, ops, "group commit failed; retrying its writes one by one");
                    act.retry_one_by_one(queue, batch, ctx);
                }
            }
            act.committing = false;
            act.commit(ctx);
        }));
    }

    fn retry_one_by_one(&mut self, queue: Queue, batch: Arc<WriteBatch>, ctx: &mut Context<Self>) {
        let batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| (*shared).clone());
        let Queue {
            dispatches,
            children,
            effects,
            completions,
            events,
            ..
        } = queue;
        let mut singles = Vec::new();
        singles.extend(
            batch
                .dispatches
                .into_iter()
                .zip(dispatches)
                .map(|(n, r)| Queued::Dispatch(n, r)),
        );
        singles.extend(
            batch
                .children
                .into_iter()
                .zip(children)
                .map(|(g, r)| Queued::Children(g, r)),
        );
        singles.extend(
            batch
                .effects
                .into_iter()
                .zip(effects)
                .map(|(e, r)| Queued::Effect(e, r)),
        );
        singles.extend(
            batch
                .completions
                .into_iter()
                .zip(completions)
                .map(|(c, r)| Queued::Completion(c, r)),
        );
        let mut free = batch.events.into_iter();
        for (n, reply) in events {
            singles.push(Queued::Events(free.by_ref().take(n).collect(), reply));
        }
        let store = self.node.store().clone();
        let node = self.node.clone();
        ctx.spawn(
            async move {
                for item in singles {
                    let mut queue = Queue::default();
                    queue.push(item);
                    let batch = Arc::new(mem::take(&mut queue.batch));
                    match store.commit(batch.clone()).await {
                        Ok(results) => answer_and_publish(&node, queue, &batch, results).await,
                        Err(e) => fail_all(queue, e),
                    }
                }
            }
            .into_actor(self),
        );
    }

    fn answer(&mut self, queue: Queue, batch: Arc<WriteBatch>, results: WriteResults) {
        let node = self.node.clone();
        // Publishing is fire-and-forget: a lost notice costs latency, never correctness.
        actix::spawn(async move { answer_and_publish(&node, queue, &batch, results).await });
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        if self.renewing || self.renewals.is_empty() {
            return;
        }
        self.renewing = true;
        let pending = mem::take(&mut self.renewals);
        let store = self.node.store().clone();
        ctx.spawn(
            async move {
                // Group by extension so each group is one statement.
                let mut groups: Vec<(Duration, RenewGroup)> = Vec::new();
                for (msg, reply) in pending {
                    match groups.iter_mut().find(|(d, _)| *d == msg.extend) {
                        Some((_, g)) => g.push((msg.lease, reply)),
                        None => groups.push((msg.extend, vec![(msg.lease, reply)])),
                    }
                }
                for (extend, group) in groups {
                    let keys: Vec<LeaseKey> = group.iter().map(|(k, _)| *k).collect();
                    match store.renew_leases(&keys, extend).await {
                        Ok(results) => {
                            for ((_, reply), result) in group.into_iter().zip(results) {
                                let _ = reply.send(result);
                            }
                        }
                        Err(e) => {
                            for (_, reply) in group {
                                let _ = reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.renewing = false;
                act.renew(ctx);
            }),
        );
    }
}

fn fail_all(queue: Queue, e: StoreError) {
    for r in queue.dispatches {
        let _ = r.send(Err(e.clone()));
    }
    for r in queue.children {
        let _ = r.send(Err(e.clone()));
    }
    for r in queue.effects {
        let _ = r.send(Err(e.clone()));
    }
    for r in queue.completions {
        let _ = r.reply.send(Err(e.clone()));
    }
    for (_, r) in queue.events {
        let _ = r.send(Err(e.clone()));
    }
}

/// Answers every caller of a committed batch, routes settled children to
/// orchestrators on this node, and publishes the notices the batch calls for.
async fn answer_and_publish(node: &Node, queue: Queue, batch: &WriteBatch, results: WriteResults) {
    let Queue {
        dispatches,
        children,
        effects,
        completions,
        events,
        ..
    } = queue;
    let mut notices = Vec::new();
    let mut work_queues: BTreeSet<String> = BTreeSet::new();

    for ((new, reply), result) in batch.dispatches.iter().zip(dispatches).zip(results.dispatches) {
        if let Ok(Dispatched::Created(_)) = &result
            && new.spec.delay.is_none_or(|d| d.is_zero())
        {
            work_queues.insert(new.spec.queue.clone());
        }
        let _ = reply.send(result);
    }
    for ((group, reply), result) in batch.children.iter().zip(children).zip(results.children) {
        if let Ok(created) = &result {
            for (task, outcome) in group.tasks.iter().zip(created) {
                if let ChildCreated::Created {
                    state: TaskState::Pending,
                    ..
                } = outcome
                    && task.spec.delay.is_none_or(|d| d.is_zero())
                {
                    work_queues.insert(task.spec.queue.clone());
                }
            }
        }
        let _ = reply.send(result);
    }
    for (reply, result) in effects.into_iter().zip(results.effects) {
        let _ = reply.send(result);
    }
    let mut settled = 0u64;
    // Settled children by the execution whose orchestrator waits for them.
    let mut routes: std::collections::HashMap<courier_core::ExecutionId, Vec<Settled>> =
        std::collections::HashMap::new();
    for ((completion, answer), result) in batch.completions.iter().zip(completions).zip(results.completions) {
        if let Ok(done) = &result {
            settled += 1;
            if let Some(queue) = answer.frees_slot_on {
                work_queues.insert(queue);
            }
            notices.push(Notice::Task {
                task_id: done.task_id,
                state: done.state,
            });
            if let Some(state) = done.execution_state {
                notices.push(Notice::Execution {
                    execution_id: done.execution_id,
                    state,
                    child: None,
                });
            }
            if done.parent_id.is_some() && done.state.is_terminal() {
                match settled_of(done, &completion.outcome) {
                    // The orchestrator lives here: hand it the result directly.
                    Some(s) if node.live_executions().contains_key(&done.execution_id) => {
                        routes.entry(done.execution_id).or_default().push(s);
                    }
                    // It lives elsewhere (or nowhere yet): tell whoever holds it.
                    _ => notices.push(Notice::Execution {
                        execution_id: done.execution_id,
                        state: courier_core::ExecutionState::Running,
                        child: Some((done.task_id, done.state)),
                    }),
                }
                // The parent may have been woken from `waiting`.
                work_queues.insert(String::new());
            }
        }
        let _ = answer.reply.send(result);
    }
    for (execution, children) in routes {
        let delivered = node
            .live_executions()
            .get(&execution)
            .map(|r| r.clone())
            .map(|recipient| recipient.try_send(ChildrenSettled(children.clone())).is_ok())
            .unwrap_or(false);
        if !delivered {
            // Its mailbox is full or it just stopped: fall back to notices (it, or
            // its replay, reads the store).
            notices.extend(children.iter().map(|c| Notice::Execution {
                execution_id: execution,
                state: courier_core::ExecutionState::Running,
                child: Some((c.task_id, c.state)),
            }));
        }
    }
    metrics::counter!("courier_tasks_settled_total").increment(settled);
    let mut seqs = results.events.into_iter();
    for (n, reply) in events {
        let _ = reply.send(Ok(seqs.by_ref().take(n).collect()));
    }

    notices.extend(work_queues.into_iter().map(|queue| Notice::Work { queue }));
    notices.push(Notice::Events);
    if let Err(e) = node.notifier().publish(notices).await {
        // The notifier counts and logs (rate-limited) its own failures.
        tracing::debug!(error = %e, "could not publish notices; waiters will find out by polling");
    }
}

/// A settled child's outcome, as its orchestrator needs it.
fn settled_of(done: &Completed, outcome: &Outcome) -> Option<Settled> {
    let (result, error) = match outcome {
        Outcome::Succeeded { result, .. } => (Some(result.clone()), None),
        Outcome::Failed { error, .. } => (None, Some(error.clone())),
        Outcome::Retry { .. } => return None,
    };
    Some(Settled {
        parent_id: done.parent_id?,
        task_id: done.task_id,
        state: done.state,
        result,
        error,
    })
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Callers wait for their commit; the mailbox bound only limits how far
        // ahead of the store callers may run.
        ctx.set_mailbox_capacity(65_536);
    }
}

impl Supervised for StoreActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!("store actor restarting");
        self.committing = false;
        self.renewing = false;
    }
}

macro_rules! queued_handler {
    ($msg:ty, $out:ty, |$m:ident, $reply:ident| $item:expr) => {
        impl Handler<$msg> for StoreActor {
            type Result = ResponseFuture<StoreResult<$out>>;

            fn handle(&mut self, $m: $msg, ctx: &mut Self::Context) -> Self::Result {
                let ($reply, rx) = oneshot::channel();
                self.enqueue($item, ctx);
                Box::pin(async move {
                    rx.await
                        .unwrap_or_else(|_| Err(StoreError::Unavailable("store actor stopped".into())))
                })
            }
        }
    };
}

/// Dispatches queue for the next commit; the reply lists each execution created or found.
impl Handler<Dispatch> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Dispatched>>>;

    fn handle(&mut self, msg: Dispatch, ctx: &mut Self::Context) -> Self::Result {
        let receivers: Vec<_> = msg
            .0
            .into_iter()
            .map(|new| {
                let (tx, rx) = oneshot::channel();
                self.enqueue(Queued::Dispatch(new, tx), ctx);
                rx
            })
            .collect();
        Box::pin(async move {
            let mut out = Vec::with_capacity(receivers.len());
            for rx in receivers {
                out.push(
                    rx.await
                        .unwrap_or_else(|_| Err(StoreError::Unavailable("store actor stopped".into())))?,
                );
            }
            Ok(out)
        })
    }
}

queued_handler!(CreateChildren, Vec<ChildCreated>, |msg, reply| Queued::Children(
    msg.0, reply
));
queued_handler!(ApplyEffect, EffectApplied, |msg, reply| Queued::Effect(msg.0, reply));
queued_handler!(Complete, Completed, |msg, reply| Queued::Completion(
    msg.completion,
    CompletionReply {
        reply,
        frees_slot_on: msg.frees_slot_on
    }
));
queued_handler!(AppendEvents, Vec<i64>, |msg, reply| Queued::Events(msg.0, reply));

/// Claims run at once on their own lane.
impl Handler<Claim> for StoreActor {
    type Result = ResponseFuture<StoreResult<Vec<Claimed>>>;

    fn handle(&mut self, msg: Claim, _: &mut Self::Context) -> Self::Result {
        let store = self.node.store().clone();
        Box::pin(async move {
            let claimed = store.claim_tasks(&msg.0).await?;
            metrics::counter!("courier_claims_total").increment(claimed.len() as u64);
            Ok(claimed)
        })
    }
}

/// Renewals batch among themselves.
impl Handler<Renew> for StoreActor {
    type Result = ResponseFuture<StoreResult<Renewed>>;

    fn handle(&mut self, msg: Renew, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.renewals.push((msg, tx));
        self.renew(ctx);
        Box::pin(async move {
            let renewed = rx
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("store actor stopped".into())));
            if renewed.is_ok() {
                metrics::counter!("courier_lease_renewals_total").increment(1);
            }
            renewed
        })
    }
}

/// Other writes run as given.
impl<T: Send + 'static> Handler<Exec<T>> for StoreActor {
    type Result = ResponseFuture<StoreResult<T>>;

    fn handle(&mut self, msg: Exec<T>, _: &mut Self::Context) -> Self::Result {
        let store = self.node.store().clone();
        Box::pin((msg.0)(store))
    }
}
