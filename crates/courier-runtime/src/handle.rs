//! The [`Courier`] handle: dispatching work, waiting for it, and reading what
//! the store knows. Steering work (cancel, signals, dead letters, cleanup) is in
//! `admin.rs`; external workers' calls are in `external.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use courier_core::metric;
use courier_core::{
    DeadLetterRecord, Dispatched, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, NewExecution,
    NodeRecord, Notice, Notifier, ProgressEntry, QueueDepth, SignalRecord, Store, TaskFilter, TaskId, TaskKind,
    TaskRecord, Topic,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::coordinator::{Coordinator, Shutdown};
use crate::error::RuntimeError;
use crate::function::Registry;
use crate::node::Node;
use crate::options::{DispatchOptions, WorkerOptions};
use crate::presence::ReportSource;
use crate::readiness::Lane;
use crate::store_actor::Dispatch;

/// Dispatches sent to the store actor in one message at most.
const DISPATCH_CHUNK: usize = 5000;
/// Signals an [`ExecutionView`] lists (the latest).
const SIGNALS_SHOWN: u32 = 50;

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
    /// The latest signals sent to it, oldest first, each with the wait that
    /// consumed it.
    pub signals: Vec<SignalRecord>,
}

/// A running node: dispatch work, wait for it, inspect and steer it.
///
/// ```no_run
/// # #[actix::main] async fn main() -> Result<(), courier_runtime::RuntimeError> {
/// use std::sync::Arc;
/// use courier_runtime::{Courier, WorkerOptions};
/// use courier_core::TaskError;
/// use courier_store_sqlite::{SqliteOptions, SqliteStore};
/// let store = Arc::new(SqliteStore::open(SqliteOptions::memory()).await?);
/// let courier = Courier::builder()
///     .store(store)
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
    pub(crate) node: Node,
    coordinator: Addr<Coordinator>,
}

impl Courier {
    pub(crate) fn new(node: Node, coordinator: Addr<Coordinator>) -> Self {
        Courier { node, coordinator }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        self.node.id()
    }

    /// Why this node should not take traffic now, if it should not: a group
    /// commit, a claim or a lease renewal panicked, and no call of the same kind
    /// has succeeded since.
    /// `/readyz` answers 503 with it.
    pub fn unready_reason(&self) -> Option<String> {
        self.node.readiness().reason()
    }

    /// Makes this node's next group commit panic, once: the fault a test injects
    /// to see the node answer the batch's callers with an error, turn not ready,
    /// restart its store actor and recover. Never call it in production.
    #[doc(hidden)]
    pub fn panic_on_next_group_commit(&self) {
        self.node.store_fault().arm(Lane::Commit);
    }

    /// Makes this node's next claim panic, once (as
    /// [`panic_on_next_group_commit`](Self::panic_on_next_group_commit) does for
    /// a commit). Never call it in production.
    #[doc(hidden)]
    pub fn panic_on_next_claim(&self) {
        self.node.store_fault().arm(Lane::Claim);
    }

    /// Makes this node's next lease renewal panic, once. Never call it in production.
    #[doc(hidden)]
    pub fn panic_on_next_lease_renewal(&self) {
        self.node.store_fault().arm(Lane::Renewal);
    }

    /// The store, for reads. Every write goes through the runtime (the handle's
    /// methods), which publishes whom it wakes; a write made on the store directly
    /// would wake nobody.
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

    /// The new-execution request for `function(args)` with `options` over the
    /// function's registered options.
    pub fn new_execution(&self, function: &str, args: Value, options: &DispatchOptions) -> NewExecution {
        let mut spec = self.node.functions().spec(function, args);
        options.apply(&mut spec);
        NewExecution {
            id: ExecutionId::new(),
            spec,
            expiry: options.expiry,
            idempotency_key: options.idempotency_key.clone(),
            parent: None,
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
            let chunk = std::mem::replace(&mut rest, tail);
            let node = self.node.clone();
            pending.push(async move {
                // Each chunk waits for room in the store actor before it is sent.
                let admitted = node.admit(chunk.len()).await?;
                node.writes()
                    .send(Dispatch(chunk, admitted))
                    .await
                    .map_err(RuntimeError::from)
            });
        }
        for chunk in futures::future::join_all(pending).await {
            out.extend(chunk??);
        }
        metrics::counter!(metric::DISPATCHES).increment(out.len() as u64);
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

    /// The execution's state, counters, state values, latest progress and latest
    /// signals.
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
            signals: store.list_signals(id, SIGNALS_SHOWN).await?,
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

    /// How many executions this node holds in memory.
    pub async fn live_executions(&self) -> Result<usize, RuntimeError> {
        Ok(self.node.live().len())
    }

    /// The cluster's nodes as they last reported in, by id: what each runs and
    /// holds, idle or busy, and when it was last heard from
    /// ([`NodeRecord::is_up`] tells the ones that stopped without leaving).
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, RuntimeError> {
        Ok(self.node.store().list_nodes().await?)
    }

    /// Adds what a part beside the runtime keeps (streams, ingestion, outside
    /// workers) to what this node reports of itself (see [`nodes`](Self::nodes)),
    /// read each time it reports in.
    ///
    /// ```no_run
    /// # async fn example(courier: courier_runtime::Courier) {
    /// use std::sync::Arc;
    /// use courier_runtime::ReportPart;
    /// use futures::FutureExt;
    ///
    /// courier.add_to_node_report(Arc::new(|| {
    ///     async {
    ///         ReportPart { gauges: vec![("jobs.imported".into(), 42)], ..ReportPart::default() }
    ///     }
    ///     .boxed_local()
    /// }));
    /// # }
    /// ```
    pub fn add_to_node_report(&self, source: ReportSource) {
        self.node.presence().add_source(source);
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
