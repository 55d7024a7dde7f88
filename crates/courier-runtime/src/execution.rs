//! `ExecutionActor`: one per execution whose orchestrator this node holds.
//!
//! Started by the `Coordinator` when the worker claims an orchestrator task, it
//! loads the execution's history, runs the orchestrator's code through a
//! [`Driver`], creates the children the code asks for (in batches, fenced by the
//! orchestrator's lease, through the `StoreActor`), and resolves the code's
//! waits as children settle: straight from the `StoreActor` when they settle on
//! this node (`ChildrenSettled`), from notices and a polling safety net when they
//! settle elsewhere. While it holds the execution, the code continues in
//! memory; after a crash another node replays it from history.
//!
//! When the code has waited for `suspend_after` with nothing settling, the actor
//! parks the orchestrator task (`waiting`) and stops, freeing memory; the next
//! settling child makes the task claimable again and a fresh actor replays it.
//! A cancel or timeout of the execution stops the actor and drops the code.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use courier_core::metric;
use courier_core::{
    ChildGroup, Claimed, ExecutionId, Notice, Outcome, StoreError, TaskError, TaskFilter, TaskId, TaskRecord, Topic,
};

use crate::function::Handler as Code;
use crate::lease::{Finish, LeaseEnded, Release, Suspend, TaskLeaseActor};
use crate::live::{ChildrenSettled, Drain, Entry, Settled};
use crate::node::Node;
use crate::orchestrator::{
    Driver, DriverPort, FlushOutbox, NonDeterminism, OrchestratorContext, SleepStarted, StepRecord, settled_outcome,
};
use crate::retry::outcome_of_error;
use crate::store_actor::CreateChildren;
use crate::wake;
use crate::wake_count::{Unexplained, WakeCount};

/// Children created per `ChildGroup`.
const CHILD_CHUNK: usize = 1000;
/// Tasks read per history page or status check.
const READ_PAGE: u32 = 5000;

/// The actor. See the module documentation.
pub(crate) struct ExecutionActor {
    node: Node,
    /// Which registration in the node's live registry is this actor's.
    generation: u64,
    claimed: Option<Claimed>,
    task: TaskRecord,
    lease_actor: Option<Addr<TaskLeaseActor>>,
    driver: Option<Rc<RefCell<Driver>>>,
    /// The outcome is being written (or was): no more suspending or draining.
    finishing: bool,
    /// Child groups sent to the store and not yet answered.
    creating: usize,
    /// Tasks whose state must be read from the store.
    to_fetch: HashSet<TaskId>,
    fetching: bool,
    last_activity: Instant,
    poll_wait: Duration,
    last_poll: Instant,
    /// What the actor knows of its row's `wake_gen`: when its polls must read
    /// the awaited children back.
    wake_count: WakeCount,
    suspending: bool,
    /// Children that settled while the history was loading, applied once it is.
    early: Vec<Settled>,
}

impl ExecutionActor {
    pub(crate) fn new(node: Node, claimed: Claimed) -> Self {
        let poll = node.worker_options().poll.min;
        ExecutionActor {
            task: claimed.task.clone(),
            wake_count: WakeCount::new(claimed.task.wake_gen),
            generation: node.live().next_generation(),
            node,
            claimed: Some(claimed),
            lease_actor: None,
            driver: None,
            finishing: false,
            creating: 0,
            to_fetch: HashSet::new(),
            fetching: false,
            last_activity: Instant::now(),
            poll_wait: poll,
            last_poll: Instant::now(),
            suspending: false,
            early: Vec::new(),
        }
    }

    fn execution_id(&self) -> ExecutionId {
        self.task.execution_id
    }

    fn touch(&mut self) {
        self.last_activity = Instant::now();
        self.poll_wait = self.node.worker_options().poll.min;
    }

    /// Loads the history, then starts the code.
    fn load_and_run(&mut self, ctx: &mut Context<Self>) {
        let store = self.node.store().clone();
        let execution = self.execution_id();
        let load = async move {
            let mut history = HashMap::new();
            let mut after = Some(0i64);
            loop {
                let page = store
                    .list_tasks(&TaskFilter {
                        execution_id: Some(execution),
                        after_step: after,
                        limit: READ_PAGE,
                        ..TaskFilter::default()
                    })
                    .await?;
                let full = page.len() as u32 == READ_PAGE;
                after = page.last().map(|t| t.step);
                for task in &page {
                    history.insert(task.step, StepRecord::of(task));
                }
                if !full {
                    return Ok::<_, StoreError>(history);
                }
            }
        };
        load.into_actor(self)
            .map(|history, act, ctx| match history {
                Ok(history) => act.run(history, ctx),
                Err(e) => {
                    tracing::warn!(execution = %act.execution_id(), error = %e, "could not load history; giving the execution back");
                    act.give_back(Duration::ZERO, ctx);
                }
            })
            .spawn(ctx);
    }

    fn run(&mut self, mut history: HashMap<i64, StepRecord>, ctx: &mut Context<Self>) {
        // Children that settled after their page of history was read.
        let execution = self.execution_id();
        for early in std::mem::take(&mut self.early) {
            if let Some((_, record)) = history
                .iter_mut()
                .find(|(step, _)| TaskId::for_step(execution, **step) == early.task_id)
            {
                record.state = early.state;
                record.result = early.result;
                record.error = early.error;
            }
        }
        let Some((Code::Orchestrator(code), version)) = self
            .node
            .registry()
            .get(&self.task.function)
            .and_then(|def| def.handler.clone().map(|h| (h, def.options.version.clone())))
        else {
            let error = TaskError::non_retryable(TaskError::UNKNOWN_FUNCTION, "no orchestrator of that name here");
            self.finish(outcome_of_error(&self.task, error), ctx);
            return;
        };
        // Replaying history with other code risks non-determinism: leave an
        // execution started under another version to a node that runs that version.
        if let (Some(recorded), Some(ours)) = (&self.task.version, &version)
            && recorded != ours
        {
            let delay = self.node.worker_options().version_backoff;
            tracing::warn!(
                execution = %self.execution_id(), function = %self.task.function, %recorded, running = %ours,
                "orchestrator version differs from this node's; handing it back"
            );
            metrics::counter!(metric::VERSION_MISMATCHES).increment(1);
            self.give_back(delay, ctx);
            return;
        }
        let me = ctx.address();
        let port = DriverPort {
            flush: me.clone().recipient(),
            diverged: me.clone().recipient(),
            sleeping: me.recipient(),
            effects: self.node.writes().clone().recipient(),
            admission: self.node.admission().clone(),
        };
        let driver = Rc::new(RefCell::new(Driver::new(
            self.execution_id(),
            self.task.id,
            self.task.function.clone(),
            self.claimed.as_ref().map(|c| c.lease.key()).expect("claimed"),
            history,
            self.node.functions().clone(),
            self.node.notification_options().ttl,
            port,
        )));
        self.driver = Some(driver.clone());
        let code_fut = std::panic::AssertUnwindSafe(code(OrchestratorContext::new(driver), self.task.args.clone()));
        futures::FutureExt::catch_unwind(code_fut)
            .into_actor(self)
            .map(|result, act, ctx| {
                let result =
                    result.unwrap_or_else(|_| Err(TaskError::new(TaskError::PANIC, "the orchestrator panicked")));
                let failed = act.driver.as_ref().and_then(|d| d.borrow().failed.clone());
                let continued = act.driver.as_ref().and_then(|d| d.borrow().continued);
                let outcome = match (failed, result) {
                    (Some(error), _) => non_determinism(error),
                    // The code returned what `continue_as_new` gave it: this
                    // execution is done, its successor carries on.
                    (None, Err(error)) if error.kind == TaskError::CONTINUED_AS_NEW && continued.is_some() => {
                        Outcome::Succeeded {
                            result: serde_json::json!({ "continued_as_new": continued }),
                            remember: Vec::new(),
                        }
                    }
                    (None, Ok(value)) => Outcome::Succeeded {
                        result: value,
                        remember: Vec::new(),
                    },
                    (None, Err(error)) => outcome_of_error(&act.task, error),
                };
                act.finish_after_flush(outcome, ctx);
            })
            .spawn(ctx);
    }

    /// Writes the outcome once every queued child has been created.
    fn finish_after_flush(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        let queued = self.driver.as_ref().is_some_and(|d| !d.borrow().outbox.is_empty());
        if queued || self.creating > 0 {
            self.flush(ctx);
            ctx.run_later(Duration::from_millis(5), move |act, ctx| {
                act.finish_after_flush(outcome, ctx)
            });
            return;
        }
        self.finish(outcome, ctx);
    }

    fn finish(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        if self.finishing {
            return;
        }
        self.finishing = true;
        let Some(lease) = self.lease_actor.clone() else {
            ctx.stop();
            return;
        };
        lease
            .send(Finish(outcome))
            .into_actor(self)
            .map(|result, act, ctx| {
                if let Ok(Err(e)) = &result {
                    tracing::info!(execution = %act.execution_id(), error = %e, "orchestrator outcome not written");
                }
                ctx.stop();
            })
            .spawn(ctx);
    }

    /// Stops and hands the task back so it is replayed (here or elsewhere) after `delay`.
    fn give_back(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        self.finishing = true;
        if let Some(lease) = self.lease_actor.take() {
            lease.do_send(Release { delay });
        }
        ctx.stop();
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        let Some(driver) = self.driver.clone() else { return };
        let tasks = driver.borrow_mut().take_outbox();
        if tasks.is_empty() {
            return;
        }
        let fence = driver.borrow().lease;
        let mut chunks = Vec::new();
        let mut rest = tasks;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(CHILD_CHUNK));
            chunks.push(std::mem::replace(&mut rest, tail));
        }
        for chunk in chunks {
            self.creating += 1;
            let ids: Vec<TaskId> = chunk.iter().map(|t| t.id()).collect();
            let group = ChildGroup {
                fence: Some(fence),
                tasks: chunk.clone(),
            };
            let node = self.node.clone();
            let weight = group.tasks.len();
            async move {
                // Waits for room in the store actor before the group is sent.
                match node.admit(weight).await {
                    Ok(admitted) => node.writes().send(CreateChildren(group, admitted)).await,
                    Err(e) => Ok(Err(e)),
                }
            }
            .into_actor(self)
                .map(move |result, act, ctx| {
                    act.creating -= 1;
                    let result = result.unwrap_or_else(|e| Err(StoreError::Unavailable(e.to_string())));
                    match result {
                        Ok(created) => {
                            let Some(driver) = act.driver.clone() else { return };
                            for (id, outcome) in ids.iter().zip(&created) {
                                if driver.borrow_mut().check_existing(*id, outcome).is_err() {
                                    continue;
                                }
                                let settled = match outcome {
                                    courier_core::ChildCreated::Created { state, .. }
                                    | courier_core::ChildCreated::Existing { state, .. } => state.is_terminal(),
                                };
                                if settled {
                                    act.to_fetch.insert(*id);
                                }
                            }
                            act.fetch(ctx);
                        }
                        Err(StoreError::LeaseLost { reason, .. }) => {
                            tracing::info!(execution = %act.execution_id(), %reason, "lost the orchestrator's lease while creating children");
                            act.finishing = true;
                            ctx.stop();
                        }
                        Err(e) => {
                            tracing::warn!(execution = %act.execution_id(), error = %e, "could not create children; retrying");
                            if let Some(driver) = &act.driver {
                                driver.borrow_mut().outbox.extend(chunk);
                            }
                            ctx.run_later(Duration::from_millis(200), |act, ctx| act.flush(ctx));
                        }
                    }
                })
                .spawn(ctx);
        }
    }

    /// Reads the tasks in `to_fetch` and settles those that have.
    fn fetch(&mut self, ctx: &mut Context<Self>) {
        if self.fetching || self.to_fetch.is_empty() {
            return;
        }
        self.fetching = true;
        let ids: Vec<TaskId> = self.to_fetch.drain().collect();
        metrics::counter!(metric::CHILDREN_READ).increment(ids.len() as u64);
        let store = self.node.store().clone();
        let asked = ids.clone();
        async move {
            let mut out = Vec::with_capacity(ids.len());
            for page in ids.chunks(READ_PAGE as usize) {
                out.extend(store.get_tasks(page).await?);
            }
            Ok::<_, StoreError>(out)
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            act.fetching = false;
            match result {
                Ok(tasks) => act.settle_from_store(tasks),
                Err(e) => {
                    // Keep what we meant to read: the wake-up that asked for it has
                    // been spent, and the poll only looks again when something new
                    // settles, so dropping these ids would leave the code waiting
                    // for a child that settled long ago.
                    tracing::warn!(execution = %act.execution_id(), error = %e, "could not read children; retrying");
                    act.to_fetch.extend(asked);
                    ctx.run_later(Duration::from_millis(200), |act, ctx| act.fetch(ctx));
                    return;
                }
            }
            act.fetch(ctx);
        })
        .spawn(ctx);
    }

    fn settle_from_store(&mut self, tasks: Vec<TaskRecord>) {
        let Some(driver) = self.driver.clone() else { return };
        let mut any = false;
        for task in tasks {
            if let Some(outcome) = settled_outcome(task.state, task.result, task.error) {
                any |= driver.borrow_mut().settle(task.id, outcome);
            }
        }
        if any {
            self.touch();
        }
    }

    /// The safety net: if a child settled that we were not told about, find it.
    ///
    /// Only the orchestrator's row is read; the awaited children are read back
    /// only when its `wake_gen` counts more settled children than the actor was
    /// told of. Reading them all whenever the row had moved made a busy
    /// fan-out read every child's row several times over.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        self.last_poll = Instant::now();
        self.poll_wait = self.node.worker_options().poll.next(self.poll_wait);
        let store = self.node.store().clone();
        let id = self.task.id;
        let sent = self.wake_count.read_sent();
        store_get(store, id)
            .into_actor(self)
            .map(move |result, act, ctx| {
                let Ok(Some(task)) = result else { return };
                if act.wake_count.read(task.wake_gen, sent) == Unexplained::Some
                    && let Some(driver) = &act.driver
                {
                    act.to_fetch.extend(driver.borrow().awaited());
                    act.fetch(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Parks the orchestrator if nothing settled since it last looked.
    fn try_suspend(&mut self, ctx: &mut Context<Self>) {
        let (Some(driver), Some(lease)) = (self.driver.clone(), self.lease_actor.clone()) else {
            return;
        };
        self.suspending = true;
        let awaited = driver.borrow().awaited();
        metrics::counter!(metric::CHILDREN_READ).increment(awaited.len() as u64);
        let store = self.node.store().clone();
        let id = self.task.id;
        async move {
            // Read the wake generation first: anything settling after this bumps it
            // and makes the suspension fail, so no wake-up slips between.
            let me = store.get_task(id).await?.ok_or(StoreError::TaskNotFound(id))?;
            let mut found = Vec::with_capacity(awaited.len());
            for page in awaited.chunks(READ_PAGE as usize) {
                found.extend(store.get_tasks(page).await?);
            }
            let missing = awaited.len() - found.len();
            found.retain(|t| t.state.is_terminal());
            Ok::<_, StoreError>((me.wake_gen, found, missing))
        }
        .into_actor(self)
        .then(move |result, act, ctx| {
            let seen = match result {
                // Every awaited child was acknowledged as created, and task rows
                // are only deleted with their finished execution: a missing one
                // is a write the database lost (a crash with asynchronous
                // commit, a failover to a lagging standby). Parking would wait
                // for it forever; a replay creates it again.
                Ok((_, _, missing)) if missing > 0 => {
                    tracing::warn!(
                        execution = %act.execution_id(), missing,
                        "children this orchestrator waits for are gone from the store; replaying it to create them again"
                    );
                    metrics::counter!(metric::LOST_CHILDREN).increment(missing as u64);
                    act.give_back(Duration::ZERO, ctx);
                    None
                }
                Ok((wake_gen, settled, _)) if settled.is_empty() => Some(wake_gen),
                Ok((_, settled, _)) => {
                    act.settle_from_store(settled);
                    None
                }
                Err(_) => None,
            };
            async move {
                match seen {
                    Some(seen_wake_gen) => lease.send(Suspend { seen_wake_gen }).await.ok().and_then(|r| r.ok()),
                    None => None,
                }
            }
            .into_actor(act)
        })
        .map(|parked, act, ctx| {
            act.suspending = false;
            if parked == Some(true) {
                tracing::debug!(execution = %act.execution_id(), "orchestrator suspended until a child settles");
                act.finishing = true;
                act.lease_actor = None;
                ctx.stop();
            } else {
                act.touch();
            }
        })
        .spawn(ctx);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.finishing || self.suspending || self.driver.is_none() {
            return;
        }
        let idle = self.last_activity.elapsed();
        let busy = self.creating > 0 || self.driver.as_ref().is_some_and(|d| !d.borrow().outbox.is_empty());
        if !busy && idle >= self.node.worker_options().suspend_after {
            self.try_suspend(ctx);
        } else if idle >= self.poll_wait && self.last_poll.elapsed() >= self.poll_wait {
            self.poll(ctx);
        }
    }
}

async fn store_get(
    store: std::sync::Arc<dyn courier_core::Store>,
    id: TaskId,
) -> Result<Option<TaskRecord>, StoreError> {
    store.get_task(id).await
}

fn non_determinism(error: TaskError) -> Outcome {
    Outcome::Failed {
        reason: "non-determinism: the replay diverged from the history".into(),
        error,
        dead_letter: true,
    }
}

impl Actor for ExecutionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let execution = self.execution_id();
        let me = ctx.address();
        let replaced = self.node.live().register(
            execution,
            Entry {
                generation: self.generation,
                settled: me.clone().recipient(),
                drain: me.clone().recipient(),
            },
        );
        if let Some(stale) = replaced {
            // Its lease was lost and the task claimed again; it stops on its own.
            stale.drain.do_send(Drain);
        }
        let claimed = self.claimed.clone().expect("claimed");
        let lease = TaskLeaseActor::keep_alive(
            self.node.writes().clone(),
            self.node.admission().clone(),
            self.node.lease_terms(),
            claimed,
            me.recipient(),
        );
        self.lease_actor = Some(lease.start());

        let notifier = self.node.notifier().clone();
        async move { notifier.subscribe(vec![Topic::Execution(execution)]).await }
            .into_actor(self)
            .map(|sub, act, ctx| match sub {
                Ok(sub) => {
                    ctx.add_stream(futures::stream::unfold(sub, |mut sub| async move {
                        sub.next().await.map(|n| (n, sub))
                    }));
                }
                Err(e) => tracing::warn!(execution = %act.execution_id(), error = %e, "no notices; relying on polling"),
            })
            .spawn(ctx);

        let tick = self.node.worker_options().poll.min;
        ctx.run_interval(tick, |act, ctx| act.tick(ctx));
        self.load_and_run(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.node.live().deregister(self.execution_id(), self.generation);
        if !self.finishing
            && let Some(lease) = self.lease_actor.take()
        {
            lease.do_send(Release::now());
        }
    }
}

/// Resolves the code's waits for children that settled on this node.
impl Handler<ChildrenSettled> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, msg: ChildrenSettled, _: &mut Self::Context) {
        let mine: Vec<Settled> = msg.0.into_iter().filter(|s| s.parent_id == self.task.id).collect();
        // Each was settled by a commit that bumped this orchestrator's wake_gen.
        self.wake_count.told(mine.len());
        let Some(driver) = &self.driver else {
            // Still loading the history, which may have read these before they settled.
            self.early.extend(mine);
            return;
        };
        let mut any = false;
        for settled in mine {
            if let Some(outcome) = settled_outcome(settled.state, settled.result, settled.error) {
                any |= driver.borrow_mut().settle(settled.task_id, outcome);
            }
        }
        if any {
            self.touch();
        }
    }
}

/// Creates the children the code queued.
impl Handler<FlushOutbox> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, _: FlushOutbox, ctx: &mut Self::Context) {
        self.touch();
        self.flush(ctx);
    }
}

/// Fails the execution: its code no longer matches its history.
impl Handler<NonDeterminism> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, msg: NonDeterminism, ctx: &mut Self::Context) {
        tracing::error!(execution = %self.execution_id(), error = %msg.0, "non-determinism");
        metrics::counter!(metric::NON_DETERMINISM).increment(1);
        self.finish(non_determinism(msg.0), ctx);
    }
}

/// Nudges idle workers when a sleep falls due, so it ends on time.
impl Handler<SleepStarted> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, msg: SleepStarted, ctx: &mut Self::Context) {
        let due = match msg {
            SleepStarted::After(delay) => delay,
            SleepStarted::Until(at) => (at - self.node.clock().now()).to_std().unwrap_or_default(),
        };
        if due >= self.node.worker_options().suspend_after {
            return;
        }
        let notifier = self.node.notifier().clone();
        let queue = self.task.queue.clone();
        ctx.run_later(due + Duration::from_millis(2), move |_, _| {
            actix::spawn(async move { wake::publish(&notifier, wake::timer_due(queue)).await });
        });
    }
}

/// The lease is gone (cancelled, reclaimed): stop without writing anything.
impl Handler<LeaseEnded> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseEnded, ctx: &mut Self::Context) {
        tracing::info!(execution = %self.execution_id(), task = %msg.task_id, reason = %msg.reason, "orchestrator lease ended");
        self.finishing = true;
        self.lease_actor = None;
        ctx.stop();
    }
}

/// Node shutdown: hand the execution back for replay elsewhere.
impl Handler<Drain> for ExecutionActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        if !self.finishing {
            self.give_back(Duration::ZERO, ctx);
        }
    }
}

/// Notices about this execution.
impl StreamHandler<Notice> for ExecutionActor {
    fn handle(&mut self, notice: Notice, ctx: &mut Self::Context) {
        match notice {
            Notice::Execution { child: None, state, .. } if state.is_terminal() && !self.finishing => {
                tracing::info!(execution = %self.execution_id(), %state, "execution ended elsewhere; stopping its orchestrator");
                self.finishing = true;
                ctx.stop();
            }
            Notice::Execution {
                child: Some((task, state)),
                ..
            } if state.is_terminal()
                && self
                    .driver
                    .as_ref()
                    .is_some_and(|d| d.borrow().expected(task).is_some()) =>
            {
                self.to_fetch.insert(task);
                self.fetch(ctx);
            }
            Notice::Resync => {
                if let Some(driver) = &self.driver {
                    self.to_fetch.extend(driver.borrow().awaited());
                    self.fetch(ctx);
                }
            }
            _ => {}
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The subscription ended (notifier closed); polling carries on.
    }
}
