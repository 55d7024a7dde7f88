//! `WorkerActor`: claims work for this node and hands it out.
//!
//! It claims in batches (up to its free activity slots), starts a
//! `TaskLeaseActor` per claimed activity (running the activity runner's attempt
//! under the lease), asks the `Coordinator` to start an `ExecutionActor` per
//! claimed orchestrator (`StartExecution`), and ends due timers itself. When a
//! claim comes back empty it backs off (seed 000: 0.1 s doubling to 5 s) but
//! wakes at once on a "new work" notice. While it has free slots and no claim
//! of its own in flight, it offers its next claim to the node's group commit
//! ([`ClaimOffer`](crate::claim_offer::ClaimOffer)): the first commit that makes
//! work for it claims that work in the same transaction and hands it over, so
//! an idle node starts a dispatch without a claim transaction of its own. On
//! drain it stops claiming and offering, waits for running activities up to
//! the drain timeout, then gives the rest back.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use courier_core::{
    ClaimRequest, Claimed, Completion, Notice, Outcome, StoreError, TaskError, TaskId, TaskKind, Topic,
};
use serde_json::Value;

use crate::flow_control::Admission;
use crate::function::Handler as Code;
use crate::lease::{Release, SlotFreed, TaskLeaseActor};
use crate::node::Node;
use crate::store_actor::{Claim, Complete};

/// Start an `ExecutionActor` for a claimed orchestrator task (to the `Coordinator`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartExecution(pub Claimed);

/// Stop claiming; finish or give back what runs. Answers when done.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DrainWorker;

/// Claim now (used by tests and by the coordinator after start).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PollNow;

/// The most due times of held-back work a worker keeps (the earliest).
const HELD_BACK_TRACKED: usize = 1024;

/// The actor. See the module documentation.
pub(crate) struct WorkerActor {
    node: Node,
    executions: Recipient<StartExecution>,
    worker_id: String,
    running: HashMap<TaskId, Addr<TaskLeaseActor>>,
    claiming: bool,
    /// A claim found nothing while this was set: claim again as soon as it returns.
    again: bool,
    /// The offer whose answer this worker awaits, by number (see [`ClaimOffer`](crate::claim_offer::ClaimOffer)).
    offered: Option<u64>,
    /// Offers made so far: numbers them, so that a withdrawn one's answer is ignored.
    offers: u64,
    idle_wait: Duration,
    next_poll: Option<SpawnHandle>,
    /// When each task flow control gave back is due again, in order, until a
    /// claim begun since then has looked (see [`claimed`](Self::claimed)).
    held_back_until: Vec<Instant>,
    draining: bool,
    /// While draining: until when to wait, and whom to tell when done.
    drain: Option<(Instant, tokio::sync::oneshot::Sender<()>)>,
}

impl WorkerActor {
    pub(crate) fn new(node: Node, executions: Recipient<StartExecution>) -> Self {
        let worker_id = format!("{}/worker", node.id());
        let idle_wait = node.worker_options().poll.min;
        WorkerActor {
            node,
            executions,
            worker_id,
            running: HashMap::new(),
            claiming: false,
            again: false,
            offered: None,
            offers: 0,
            idle_wait,
            next_poll: None,
            held_back_until: Vec::new(),
            draining: false,
            drain: None,
        }
    }

    fn request(&self) -> Option<ClaimRequest> {
        let options = self.node.worker_options();
        let free = options.max_concurrency.saturating_sub(self.running.len());
        let live = self.node.live().len();
        let mut kinds = vec![TaskKind::Sleep, TaskKind::SignalWait];
        if free > 0 {
            kinds.push(TaskKind::Activity);
        }
        if live < options.max_executions {
            kinds.push(TaskKind::Orchestrator);
        }
        if free == 0 && live >= options.max_executions {
            return None;
        }
        let max = if free > 0 {
            (free as u32).min(options.claim_batch)
        } else {
            options.claim_batch
        };
        Some(ClaimRequest {
            worker_id: self.worker_id.clone(),
            queues: options.queues.clone(),
            tags: options.tags.clone(),
            functions: Some(self.node.registry().runnable()),
            kinds,
            max,
            lease: options.lease,
            limits: self.node.functions().limits(),
            exclude_functions: self.node.functions().paused(),
            exclude_internal: false,
        })
    }

    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        if self.claiming {
            self.again = true;
            return;
        }
        if self.offered.is_some() {
            if !self.node.claim_offer().withdraw() {
                // A commit is claiming for this worker: claim again once it answers.
                self.claiming = true;
                self.again = true;
                return;
            }
            self.offered = None;
        }
        if let Some(handle) = self.next_poll.take() {
            ctx.cancel_future(handle);
        }
        let Some(request) = self.request() else { return };
        self.claiming = true;
        self.again = false;
        let max = request.max as usize;
        let began = Instant::now();
        let node = self.node.clone();
        async move {
            let claimed = node
                .writes()
                .send(Claim(request))
                .await
                .unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())))?;
            let took = claimed.len();
            Ok((took, crate::flow_control::admit(&node, claimed).await))
        }
        .into_actor(self)
        .map(move |result: Result<(usize, Admission), StoreError>, act, ctx| {
            act.claiming = false;
            match result {
                Ok((took, admission)) => act.claimed(took, max, admission, began, false, ctx),
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; backing off");
                    let wait = act.within_held_back(act.idle_wait);
                    act.schedule(ctx, wait);
                    act.idle_wait = act.node.worker_options().poll.next(act.idle_wait);
                }
            }
        })
        .spawn(ctx);
    }

    /// Starts what a claim (its own, or a commit's if `offered`; asked for at
    /// `began`) took: `took` of at most `max`, of which flow control let
    /// `admission.start` start. Then decides when to claim next, and offers the
    /// next claim to the group commit meanwhile.
    fn claimed(
        &mut self,
        took: usize,
        max: usize,
        admission: Admission,
        began: Instant,
        offered: bool,
        ctx: &mut Context<Self>,
    ) {
        let full = took >= max;
        let found = took > 0;
        self.held_back(admission.held_back_due, began);
        for c in admission.start {
            self.start(c, ctx);
        }
        if full || self.again {
            self.idle_wait = self.node.worker_options().poll.min;
            ctx.notify(PollNow);
            return;
        }
        let poll = self.node.worker_options().poll;
        let wait = if found && offered {
            // Work this node's own commit made says nothing of other work due,
            // so the backoff stands; but that claim was as good as a poll (the
            // store's whole claim), so the next poll is an interval from now.
            // A poll withdraws the offer for its span; polling at the backoff's
            // floor after every dispatch would keep the offer withdrawn just
            // when the next dispatch comes.
            self.idle_wait
        } else if found {
            self.idle_wait = poll.min;
            poll.min
        } else {
            let wait = self.idle_wait;
            self.idle_wait = poll.next(wait);
            wait
        };
        let wait = self.within_held_back(wait);
        self.schedule(ctx, wait);
        self.offer(ctx);
    }

    /// Notes that a claim begun at `began` has looked for the work held back
    /// until then, and gave back work of its own due in each of `due`.
    fn held_back(&mut self, due: Vec<Duration>, began: Instant) {
        self.held_back_until.retain(|at| *at > began);
        let now = Instant::now();
        self.held_back_until.extend(due.into_iter().map(|d| now + d));
        self.held_back_until.sort_unstable();
        // Bounded, the earliest kept: each claim at one of these times that
        // gives work back again adds that work's due times anew.
        self.held_back_until.truncate(HELD_BACK_TRACKED);
    }

    /// `wait`, or less if work flow control held back comes due sooner. No
    /// notice says when it does: a backoff grown while commits carried the
    /// claims would otherwise leave a rate-limited backlog idle while its
    /// bucket fills past its burst, and those tokens are lost.
    fn within_held_back(&self, wait: Duration) -> Duration {
        self.held_back_until
            .first()
            .map_or(wait, |at| wait.min(at.saturating_duration_since(Instant::now())))
    }

    /// Offers the next claim to the group commit (see the module documentation).
    fn offer(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let Some(request) = self.request() else { return };
        let max = request.max as usize;
        // The commit that takes the offer claims later, but no earlier.
        let began = Instant::now();
        self.offers += 1;
        let number = self.offers;
        self.offered = Some(number);
        let receipt = self.node.claim_offer().offer(request);
        let node = self.node.clone();
        async move {
            match receipt.await {
                Ok(Ok(claimed)) => Some(Ok((claimed.len(), crate::flow_control::admit(&node, claimed).await))),
                Ok(Err(e)) => Some(Err(e)),
                // Withdrawn, or the store actor stopped before answering.
                Err(_) => None,
            }
        }
        .into_actor(self)
        .map(move |answer, act, ctx| {
            if act.offered != Some(number) {
                return; // withdrawn: the worker claimed for itself since
            }
            act.offered = None;
            act.claiming = false;
            act.node.claim_offer().answered();
            match answer {
                Some(Ok((took, admission))) => act.claimed(took, max, admission, began, true, ctx),
                unanswered => {
                    if let Some(Err(e)) = unanswered {
                        tracing::debug!(error = %e, "the commit carrying this worker's claim failed; claiming now");
                    }
                    act.idle_wait = act.node.worker_options().poll.min;
                    act.poll(ctx);
                }
            }
        })
        .spawn(ctx);
    }

    /// Claims again `after` from now, unless something claims sooner.
    fn schedule(&mut self, ctx: &mut Context<Self>, after: Duration) {
        if let Some(handle) = self.next_poll.take() {
            ctx.cancel_future(handle);
        }
        self.next_poll = Some(ctx.notify_later(PollNow, after));
    }

    fn start(&mut self, claimed: Claimed, ctx: &mut Context<Self>) {
        match claimed.task.kind {
            TaskKind::Activity => {
                let Some((Some(Code::Activity(code)), def)) = self
                    .node
                    .registry()
                    .get(&claimed.task.function)
                    .map(|def| (def.handler.clone(), def.clone()))
                else {
                    // Claims only name functions this node runs; a stale registry is the only way here.
                    self.end_timer(claimed, unknown_function());
                    return;
                };
                let id = claimed.task.id;
                let work =
                    self.node
                        .activity_runner()
                        .attempt(code, &def.options, claimed.task.clone(), claimed.lease.key());
                let frees_slot_on = def.options.max_concurrent.map(|_| claimed.task.queue.clone());
                let actor = TaskLeaseActor::running(
                    self.node.writes().clone(),
                    self.node.admission().clone(),
                    self.node.lease_terms(),
                    claimed,
                    work,
                    frees_slot_on,
                    ctx.address().recipient(),
                )
                .start();
                self.running.insert(id, actor);
                self.node.presence().set_running(self.running.len());
            }
            TaskKind::Orchestrator => self.executions.do_send(StartExecution(claimed)),
            TaskKind::Sleep => self.end_timer(
                claimed,
                Outcome::Succeeded {
                    result: Value::Null,
                    remember: Vec::new(),
                },
            ),
            TaskKind::SignalWait => self.end_timer(
                claimed,
                Outcome::Failed {
                    error: TaskError::new(TaskError::TIMEOUT, "no signal arrived before the timeout"),
                    reason: "signal wait timed out".into(),
                    dead_letter: false,
                },
            ),
            TaskKind::Effect => {
                tracing::error!(task = %claimed.task.id, "an effect task was claimed; the store broke its contract");
            }
        }
    }

    /// Finishes a drain once nothing runs or the timeout passed, giving back what still runs.
    fn check_drain(&mut self, ctx: &mut Context<Self>) {
        let Some((deadline, _)) = &self.drain else { return };
        if !self.running.is_empty() && Instant::now() < *deadline {
            ctx.run_later(Duration::from_millis(20), |act, ctx| act.check_drain(ctx));
            return;
        }
        for (_, lease) in self.running.drain() {
            lease.do_send(Release::now());
        }
        self.node.presence().set_running(0);
        if let Some((_, done)) = self.drain.take() {
            let _ = done.send(());
        }
    }

    /// Ends a timer task (its claim is all the work it needs).
    fn end_timer(&self, claimed: Claimed, outcome: Outcome) {
        let completion = Completion {
            lease: claimed.lease.key(),
            outcome,
        };
        let node = self.node.clone();
        actix::spawn(async move {
            let sent = match node.admit(1).await {
                Ok(admitted) => node.writes().send(Complete::plain(completion, admitted)).await,
                Err(e) => Ok(Err(e)),
            };
            match sent {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(task = %claimed.task.id, error = %e, "could not end a timer; it will be reclaimed")
                }
                Err(e) => {
                    tracing::warn!(task = %claimed.task.id, error = %e, "could not end a timer; it will be reclaimed")
                }
            }
        });
    }
}

fn unknown_function() -> Outcome {
    Outcome::Failed {
        error: TaskError::non_retryable(
            TaskError::UNKNOWN_FUNCTION,
            "no handler registered on the claiming node",
        ),
        reason: "unknown function".into(),
        dead_letter: true,
    }
}

impl Actor for WorkerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        let notifier = self.node.notifier().clone();
        async move { notifier.subscribe(vec![Topic::Work]).await }
            .into_actor(self)
            .map(|sub, _, ctx| match sub {
                Ok(sub) => {
                    ctx.add_stream(futures::stream::unfold(sub, |mut sub| async move {
                        sub.next().await.map(|n| (n, sub))
                    }));
                }
                Err(e) => tracing::warn!(error = %e, "no work notices; polling only"),
            })
            .spawn(ctx);
        ctx.notify(PollNow);
    }
}

impl Supervised for WorkerActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        tracing::warn!("worker restarting");
        self.claiming = false;
        self.next_poll = None;
        self.offered = None;
        self.node.claim_offer().reset();
    }
}

/// Claims now.
impl Handler<PollNow> for WorkerActor {
    type Result = ();

    fn handle(&mut self, _: PollNow, ctx: &mut Self::Context) {
        self.next_poll = None;
        self.poll(ctx);
    }
}

/// An activity finished (or gave up): its slot is free.
impl Handler<SlotFreed> for WorkerActor {
    type Result = ();

    fn handle(&mut self, msg: SlotFreed, ctx: &mut Self::Context) {
        let was_full = self.running.len() >= self.node.worker_options().max_concurrency;
        self.running.remove(&msg.task_id);
        self.node.presence().set_running(self.running.len());
        if self.draining {
            self.check_drain(ctx);
        } else if was_full {
            self.idle_wait = self.node.worker_options().poll.min;
            self.poll(ctx);
        }
    }
}

/// New work somewhere: claim now rather than at the end of the backoff.
impl StreamHandler<Notice> for WorkerActor {
    fn handle(&mut self, notice: Notice, ctx: &mut Self::Context) {
        if matches!(notice, Notice::Work { .. } | Notice::Resync) {
            self.idle_wait = self.node.worker_options().poll.min;
            self.poll(ctx);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Stops claiming, waits for running activities (up to the drain timeout), then
/// gives the rest back.
impl Handler<DrainWorker> for WorkerActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: DrainWorker, ctx: &mut Self::Context) -> Self::Result {
        self.draining = true;
        if let Some(handle) = self.next_poll.take() {
            ctx.cancel_future(handle);
        }
        // A commit that took the offer already still hands its tasks over;
        // they run (or are given back) like any others.
        if self.offered.is_some() && self.node.claim_offer().withdraw() {
            self.offered = None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.drain = Some((Instant::now() + self.node.worker_options().drain_timeout, tx));
        self.check_drain(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
