//! The `Courier` handle: the runtime's public API, and the builder that starts a node.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use courier_core::{
    Cancelled, Clock, DeadLetterRecord, Dispatched, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState,
    NewExecution, Notice, Notifier, ProgressEntry, QueueDepth, Replayed, SignalSent, Store, StoreResult, TaskFilter,
    TaskId, TaskKind, TaskRecord, TaskState, Topic,
};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activity::ActivityContext;
use crate::coordinator::{Coordinator, Shutdown};
use crate::error::RuntimeError;
use crate::function::Registry;
use crate::node::Node;
use crate::options::{DispatchOptions, FunctionOptions, MaintenanceOptions, WorkerOptions};
use crate::orchestrator::OrchestratorContext;
use crate::store_actor::{Dispatch, Exec, StoreActor};

/// Dispatches sent to the store actor in one message at most.
const DISPATCH_CHUNK: usize = 5000;

/// Everything `state_of` knows about an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionView {
    /// The execution.
    pub execution: ExecutionRecord,
    /// Its counters.
    pub counters: BTreeMap<String, f64>,
    /// Its custom state values.
    pub state: BTreeMap<String, Value>,
    /// Its latest progress reports, oldest first.
    pub progress: Vec<ProgressEntry>,
}

/// What `cleanup` deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Finished executions (with all their rows).
    pub executions: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// Builds and starts a node. See [`Courier::builder`].
pub struct CourierBuilder {
    store: Option<Arc<dyn Store>>,
    store_url: Option<String>,
    notifier: Option<Arc<dyn Notifier>>,
    clock: Clock,
    registry: Registry,
    worker: Option<WorkerOptions>,
    maintenance: MaintenanceOptions,
    node_id: Option<String>,
}

impl CourierBuilder {
    /// Uses this store (already opened; `start` initialises it).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Opens the store this URL names (see `courier_store::open`).
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// Uses this notifier (default: in-process).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Uses these registered functions.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Registers an activity with default options.
    pub fn activity<F, Fut, A, R>(self, name: &str, f: F) -> Self
    where
        F: Fn(ActivityContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.activity_with(name, FunctionOptions::default(), f)
    }

    /// Registers an activity.
    pub fn activity_with<F, Fut, A, R>(mut self, name: &str, options: FunctionOptions, f: F) -> Self
    where
        F: Fn(ActivityContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.registry.activity(name, options, f);
        self
    }

    /// Registers an orchestrator with default options.
    pub fn orchestrator<F, Fut, A, R>(self, name: &str, f: F) -> Self
    where
        F: Fn(OrchestratorContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.orchestrator_with(name, FunctionOptions::default(), f)
    }

    /// Registers an orchestrator.
    pub fn orchestrator_with<F, Fut, A, R>(mut self, name: &str, options: FunctionOptions, f: F) -> Self
    where
        F: Fn(OrchestratorContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.registry.orchestrator(name, options, f);
        self
    }

    /// Declares an activity run by external workers.
    pub fn external(mut self, name: &str, options: FunctionOptions) -> Self {
        self.registry.external(name, options);
        self
    }

    /// Runs an in-process worker with these options (without one, the node only
    /// dispatches and reads).
    pub fn worker(mut self, options: WorkerOptions) -> Self {
        self.worker = Some(options);
        self
    }

    /// Sets housekeeping options.
    pub fn maintenance(mut self, options: MaintenanceOptions) -> Self {
        self.maintenance = options;
        self
    }

    /// This node's wall clock (default: the system's). Only tests shift it, to play
    /// a node whose clock is wrong; pass the same clock to the store you open.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Names this node (lease owner, maintenance role holder). Default: a random id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Initialises the store and starts the node's actors in the current actix
    /// system (call it from inside `actix::System` / `#[actix_web::main]`).
    pub async fn start(self) -> Result<Courier, RuntimeError> {
        let store = match (self.store, self.store_url) {
            (Some(store), _) => store,
            (None, Some(url)) => courier_store::open_with_clock(&url, self.clock).await?,
            (None, None) => courier_store::open_with_clock(crate::DEFAULT_STORE_URL, self.clock).await?,
        };
        store.init().await?;
        let notifier = self
            .notifier
            .unwrap_or_else(|| Arc::new(courier_notify::LocalNotifier::new()));
        let run_worker = self.worker.is_some();
        let node_id = self
            .node_id
            .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let node = Node::new(
            node_id,
            store,
            notifier,
            self.registry,
            self.worker.unwrap_or_default(),
            self.maintenance,
            self.clock,
        );
        let store_node = node.clone();
        let store_actor = Supervisor::start(move |_| StoreActor::new(store_node));
        let coordinator = Coordinator::new(node.clone(), store_actor.clone(), run_worker).start();
        tracing::info!(
            node = node.id(),
            store = node.store().backend(),
            notifier = node.notifier().backend(),
            worker = run_worker,
            "courier node started"
        );
        Ok(Courier {
            node,
            store_actor,
            coordinator,
        })
    }
}

/// A running node: dispatch work, wait for it, inspect and steer it.
///
/// ```no_run
/// # #[actix::main] async fn main() -> Result<(), courier_runtime::RuntimeError> {
/// use courier_runtime::{Courier, WorkerOptions};
/// use courier_core::TaskError;
/// let courier = Courier::builder()
///     .store_url("sqlite::memory:")
///     .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
///     .worker(WorkerOptions::default())
///     .start()
///     .await?;
/// let id = courier.dispatch("double", 21).await?;
/// let result: i64 = courier.result_when_done(id, None).await?;
/// assert_eq!(result, 42);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Courier {
    node: Node,
    store_actor: Addr<StoreActor>,
    coordinator: Addr<Coordinator>,
}

impl Courier {
    /// Starts building a node.
    pub fn builder() -> CourierBuilder {
        CourierBuilder {
            store: None,
            store_url: None,
            notifier: None,
            clock: Clock::system(),
            registry: Registry::default(),
            worker: None,
            maintenance: MaintenanceOptions::default(),
            node_id: None,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.node.id()
    }

    /// The store (for reads; writes go through the runtime).
    pub fn store(&self) -> &Arc<dyn Store> {
        self.node.store()
    }

    /// The notifier.
    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        self.node.notifier()
    }

    /// The registered functions.
    pub fn registry(&self) -> &Registry {
        self.node.registry()
    }

    /// The worker options in force.
    pub fn worker_options(&self) -> &WorkerOptions {
        self.node.worker_options()
    }

    pub(crate) fn store_actor(&self) -> &Addr<StoreActor> {
        &self.store_actor
    }

    pub(crate) fn registry_limits(&self) -> crate::options::Limits {
        self.node.registry().limits()
    }

    /// Runs a store write through the store actor (which owns this node's writes).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, RuntimeError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Store>) -> futures::future::BoxFuture<'static, StoreResult<T>> + Send + 'static,
    {
        Ok(self.store_actor.send(Exec(Box::new(f))).await??)
    }

    async fn publish(&self, notices: Vec<Notice>) {
        if let Err(e) = self.node.notifier().publish(notices).await {
            // The notifier counts and logs (rate-limited) its own failures.
            tracing::debug!(error = %e, "could not publish notices; waiters will poll");
        }
    }

    /// The new-execution request for `function(args)` with `options` over the
    /// function's registered options.
    pub fn new_execution(&self, function: &str, args: Value, options: &DispatchOptions) -> NewExecution {
        let mut spec = self.node.registry().spec(function, args);
        if let Some(queue) = &options.queue {
            spec.queue = queue.clone();
        }
        if let Some(tags) = &options.tags {
            spec.tags = tags.clone();
        }
        if let Some(priority) = options.priority {
            spec.priority = priority;
        }
        spec.delay = options.delay;
        NewExecution {
            id: ExecutionId::new(),
            spec,
            expiry: options.expiry,
            idempotency_key: options.idempotency_key.clone(),
        }
    }

    /// Starts `function(args)` and returns the execution's id.
    pub async fn dispatch<A: Serialize>(&self, function: &str, args: A) -> Result<ExecutionId, RuntimeError> {
        Ok(self
            .dispatch_with(function, args, DispatchOptions::default())
            .await?
            .id())
    }

    /// Starts `function(args)` with options; with an idempotency key already
    /// used, returns that execution as [`Dispatched::Existing`].
    pub async fn dispatch_with<A: Serialize>(
        &self,
        function: &str,
        args: A,
        options: DispatchOptions,
    ) -> Result<Dispatched, RuntimeError> {
        let new = self.new_execution(function, serde_json::to_value(args)?, &options);
        let mut out = self.dispatch_many(vec![new]).await?;
        out.pop()
            .ok_or_else(|| RuntimeError::Stopped("no dispatch result".into()))
    }

    /// Starts many executions in as few transactions as possible.
    pub async fn dispatch_many(&self, batch: Vec<NewExecution>) -> Result<Vec<Dispatched>, RuntimeError> {
        let mut out = Vec::with_capacity(batch.len());
        let mut pending = Vec::new();
        let mut rest = batch;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(DISPATCH_CHUNK));
            pending.push(self.store_actor.send(Dispatch(std::mem::replace(&mut rest, tail))));
        }
        for chunk in futures::future::join_all(pending).await {
            out.extend(chunk??);
        }
        metrics::counter!("courier_dispatches_total").increment(out.len() as u64);
        Ok(out)
    }

    /// Waits until the execution finishes and returns it; `expiry` bounds the wait
    /// ([`RuntimeError::WaitTimedOut`] after it). Wakes the moment the outcome is
    /// committed (subscribing before looking, so no wake-up is lost), and polls
    /// with backoff as a safety net.
    pub async fn wait_for(&self, id: ExecutionId, expiry: Option<Duration>) -> Result<ExecutionRecord, RuntimeError> {
        let deadline = expiry.map(|e| tokio::time::Instant::now() + e);
        let mut sub = self.node.notifier().subscribe(vec![Topic::Execution(id)]).await?;
        let poll = self.node.worker_options().poll;
        let mut wait = poll.min;
        loop {
            let execution = self
                .node
                .store()
                .get_execution(id)
                .await?
                .ok_or(RuntimeError::ExecutionNotFound(id))?;
            if execution.state.is_terminal() {
                return Ok(execution);
            }
            let mut budget = wait;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    return Err(RuntimeError::WaitTimedOut {
                        execution_id: id,
                        state: execution.state,
                    });
                }
                budget = budget.min(left);
            }
            // Skip notices about children settling: they do not end the execution.
            let started = tokio::time::Instant::now();
            loop {
                let left = budget.saturating_sub(started.elapsed());
                match sub.next_within(left).await {
                    Some(Notice::Execution { child: Some(_), .. }) => continue,
                    Some(_) => {
                        wait = poll.min;
                        break;
                    }
                    None => {
                        wait = poll.next(wait);
                        break;
                    }
                }
            }
        }
    }

    /// Waits for the execution and decodes its result, or returns why it has none.
    pub async fn result_when_done<R: DeserializeOwned>(
        &self,
        id: ExecutionId,
        expiry: Option<Duration>,
    ) -> Result<R, RuntimeError> {
        let execution = self.wait_for(id, expiry).await?;
        decode_result(execution)
    }

    /// The execution's state, counters, state values and latest progress.
    pub async fn state_of(&self, id: ExecutionId) -> Result<ExecutionView, RuntimeError> {
        let store = self.node.store();
        let execution = store
            .get_execution(id)
            .await?
            .ok_or(RuntimeError::ExecutionNotFound(id))?;
        Ok(ExecutionView {
            counters: store.get_execution_counters(id).await?,
            state: store.get_execution_state_values(id).await?,
            progress: store.list_progress(id, 20).await?,
            execution,
        })
    }

    /// The result if the execution completed, `None` while it runs, an error if
    /// it ended any other way.
    pub async fn result_of<R: DeserializeOwned>(&self, id: ExecutionId) -> Result<Option<R>, RuntimeError> {
        let execution = self
            .node
            .store()
            .get_execution(id)
            .await?
            .ok_or(RuntimeError::ExecutionNotFound(id))?;
        if !execution.state.is_terminal() {
            return Ok(None);
        }
        decode_result(execution).map(Some)
    }

    /// The execution's tasks by step (its history).
    pub async fn steps(
        &self,
        id: ExecutionId,
        after_step: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, RuntimeError> {
        Ok(self
            .node
            .store()
            .list_tasks(&TaskFilter {
                execution_id: Some(id),
                after_step,
                limit,
                ..TaskFilter::default()
            })
            .await?)
    }

    /// One task.
    pub async fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, RuntimeError> {
        Ok(self.node.store().get_task(id).await?)
    }

    /// Cancels an execution: it and its unfinished tasks stop, and no later write
    /// of theirs lands (cancel sticks, also while the orchestrator runs).
    pub async fn cancel(&self, id: ExecutionId, reason: &str) -> Result<Cancelled, RuntimeError> {
        let reason = reason.to_string();
        let cancelled = self
            .write(move |store| async move { store.cancel_execution(id, &reason).await }.boxed())
            .await?;
        if !cancelled.previous.is_terminal() {
            let mut notices: Vec<Notice> = cancelled
                .tasks
                .iter()
                .map(|t| Notice::Task {
                    task_id: *t,
                    state: TaskState::Cancelled,
                })
                .collect();
            notices.push(Notice::Execution {
                execution_id: id,
                state: ExecutionState::Cancelled,
                child: None,
            });
            notices.push(Notice::Events);
            self.publish(notices).await;
        }
        Ok(cancelled)
    }

    /// Sends a signal to an execution (kept until a wait consumes it).
    pub async fn send_signal<P: Serialize>(
        &self,
        id: ExecutionId,
        name: &str,
        payload: P,
    ) -> Result<SignalSent, RuntimeError> {
        let payload = serde_json::to_value(payload)?;
        let name = name.to_string();
        let sent = self
            .write(move |store| async move { store.send_signal(id, &name, payload).await }.boxed())
            .await?;
        if let Some(task) = sent.delivered_to {
            self.publish(vec![
                Notice::Task {
                    task_id: task,
                    state: TaskState::Completed,
                },
                Notice::Execution {
                    execution_id: id,
                    state: ExecutionState::Running,
                    child: Some((task, TaskState::Completed)),
                },
                Notice::Work { queue: String::new() },
                Notice::Events,
            ])
            .await;
        }
        Ok(sent)
    }

    /// Executions, newest first.
    pub async fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionRecord>, RuntimeError> {
        Ok(self.node.store().list_executions(filter).await?)
    }

    /// Work per queue.
    pub async fn queue_depth(&self) -> Result<Vec<QueueDepth>, RuntimeError> {
        Ok(self.node.store().queue_depths().await?)
    }

    /// Dead letters, newest first.
    pub async fn dead_letters(&self, limit: u32, offset: u32) -> Result<Vec<DeadLetterRecord>, RuntimeError> {
        Ok(self.node.store().list_dead_letters(limit, offset).await?)
    }

    /// One dead letter.
    pub async fn dead_letter(&self, task: TaskId) -> Result<Option<DeadLetterRecord>, RuntimeError> {
        Ok(self.node.store().get_dead_letter(task).await?)
    }

    /// Replays a dead letter: the task runs again and its execution resumes.
    pub async fn replay_dead_letter(&self, task: TaskId) -> Result<Replayed, RuntimeError> {
        let replayed = self
            .write(move |store| async move { store.replay_dead_letter(task).await }.boxed())
            .await?;
        self.publish(vec![
            Notice::Execution {
                execution_id: replayed.execution_id,
                state: ExecutionState::Running,
                child: None,
            },
            Notice::Work { queue: String::new() },
            Notice::Events,
        ])
        .await;
        Ok(replayed)
    }

    /// Discards a dead letter; whether there was one.
    pub async fn discard_dead_letter(&self, task: TaskId) -> Result<bool, RuntimeError> {
        self.write(move |store| async move { store.delete_dead_letter(task).await }.boxed())
            .await
    }

    /// Deletes finished executions and dead letters older than `older_than`.
    pub async fn cleanup(&self, older_than: Duration) -> Result<CleanupReport, RuntimeError> {
        let age = chrono::Duration::from_std(older_than).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        self.write(move |store| {
            async move {
                let cutoff = store.now().await? - age;
                Ok(CleanupReport {
                    executions: store.cleanup_executions(cutoff).await?,
                    dead_letters: store.cleanup_dead_letters(cutoff).await?,
                })
            }
            .boxed()
        })
        .await
    }

    /// How many executions this node holds in memory.
    pub async fn live_executions(&self) -> Result<usize, RuntimeError> {
        Ok(self.coordinator.send(crate::coordinator::LiveCount).await?)
    }

    /// Stops claiming, lets running activities finish (up to the drain
    /// timeout), hands the rest and live executions back, and stops the node.
    pub async fn shutdown(&self) -> Result<(), RuntimeError> {
        self.coordinator.send(Shutdown).await?;
        tracing::info!(node = self.node.id(), "courier node stopped");
        Ok(())
    }

    /// Whether `function` is an orchestrator registered here.
    pub fn is_orchestrator(&self, function: &str) -> bool {
        self.node
            .registry()
            .get(function)
            .is_some_and(|def| def.kind == TaskKind::Orchestrator)
    }
}

fn decode_result<R: DeserializeOwned>(execution: ExecutionRecord) -> Result<R, RuntimeError> {
    match execution.state {
        ExecutionState::Completed => Ok(serde_json::from_value(execution.result.unwrap_or(Value::Null))?),
        state => Err(RuntimeError::ExecutionFailed {
            execution_id: execution.id,
            state,
            error: execution
                .error
                .unwrap_or_else(|| courier_core::TaskError::new(state.as_str(), "no error recorded")),
        }),
    }
}
