//! The `Store` contract: everything Courier persists, behind one trait, so the
//! runtime never sees SQL. `courier-store` implements it for SQLite and Postgres,
//! and one conformance suite holds both to the semantics written here.
//!
//! # Conventions every implementation follows
//!
//! * **Clock.** Every time the store writes or compares (`created_at`, lease
//!   expiry, `scheduled_for`, cache TTLs, deadlines) comes from the store's own
//!   clock: the database's `now()` on Postgres, so nodes with skewed clocks agree.
//! * **Events.** Semantic writes append their events to the event log *in the same
//!   transaction* as the state change they describe (listed per method). Raw
//!   record writes (`create_task`, `update_task`, ...) append none.
//! * **Event sequence.** `seq` is assigned in commit order, without gaps between
//!   committed events and never reused, so a reader that has seen `seq = n` has
//!   seen everything committed before it.
//! * **Fencing.** Writes made on behalf of a claim carry its [`LeaseKey`]. If the
//!   task is not `running` under that token the write is refused with
//!   [`StoreError::LeaseLost`] and changes nothing. A lease that has expired but
//!   whose task was not claimed again is still honoured.
//! * **Batches.** Batch methods return one result per input item, in input order.
//!   A refused item (fencing, a missing row) does not fail its neighbours; an error
//!   of the whole call (connection lost) means nothing was written.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dead_letter::{DeadLetterRecord, Replayed};
use crate::error::StoreResult;
use crate::event::{Event, EventFilter, NewEvent};
use crate::execution::{Cancelled, Dispatched, ExecutionFilter, ExecutionRecord, NewExecution};
use crate::id::{ExecutionId, TaskId};
use crate::progress::{Progress, ProgressEntry};
use crate::signal::{SignalRecord, SignalSent};
use crate::state::{ExecutionState, TaskState};
use crate::task::{
    ChildCreated, ClaimRequest, Claimed, Completed, Completion, LeaseKey, NewTask, QueueDepth, Renewed, TaskFilter,
    TaskRecord,
};
use crate::webhook::{DeliveryAttempt, DeliveryRecord, DeliveryState, NewDelivery, WebhookRecord};

/// Writes that group-commit: everything in one batch lands in one transaction.
///
/// Applied in this order: dispatches, child groups, effects, completions, events.
/// The runtime's `StoreActor` fills one of these from many concurrent requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// New executions (see [`Store::dispatch`]).
    pub dispatches: Vec<NewExecution>,
    /// Groups of children, each fenced by its orchestrator's lease (see [`Store::create_children`]).
    pub children: Vec<ChildGroup>,
    /// Recorded orchestrator side effects (see [`Store::apply_effect`]).
    pub effects: Vec<EffectWrite>,
    /// Fenced completions (see [`Store::complete_tasks`]).
    pub completions: Vec<Completion>,
    /// Free-standing events (see [`Store::append_events`]).
    pub events: Vec<NewEvent>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
            && self.children.is_empty()
            && self.effects.is_empty()
            && self.completions.is_empty()
            && self.events.is_empty()
    }

    /// How many operations the batch carries.
    pub fn len(&self) -> usize {
        self.dispatches.len() + self.children.len() + self.effects.len() + self.completions.len() + self.events.len()
    }
}

/// Children created together under one orchestrator lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildGroup {
    /// The orchestrator's lease; `None` creates them unfenced.
    pub fence: Option<LeaseKey>,
    /// The children.
    pub tasks: Vec<NewTask>,
}

/// An orchestrator side effect recorded at a step, applied once however often the
/// orchestrator replays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EffectWrite {
    /// The orchestrator's lease.
    pub fence: Option<LeaseKey>,
    /// The execution.
    pub execution_id: ExecutionId,
    /// The orchestrator task.
    pub parent_id: Option<TaskId>,
    /// The step the effect occupies.
    pub step: i64,
    /// What it does.
    pub effect: Effect,
}

/// The side effects an orchestrator can record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Add `amount` to counter `name`; the recorded result is the new value.
    Increment {
        /// The counter.
        name: String,
        /// How much to add.
        amount: f64,
    },
    /// Set state value `key`; the recorded result is null.
    SetState {
        /// The key.
        key: String,
        /// The value.
        value: Value,
    },
    /// Append a progress report (and its `task.progress` event); the result is null.
    Progress(Progress),
}

impl Effect {
    /// The function name recorded on the effect's task row, compared on replay.
    pub fn function_name(&self) -> String {
        match self {
            Effect::Increment { name, .. } => format!("courier.counter:{name}"),
            Effect::SetState { key, .. } => format!("courier.state:{key}"),
            Effect::Progress(_) => "courier.progress".to_string(),
        }
    }
}

/// What recording an effect did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EffectApplied {
    /// The step's task: `Created` if applied now, `Existing` if recorded before
    /// (then nothing was applied again).
    pub task: ChildCreated,
    /// The recorded result (the counter's value after the first application).
    pub result: Value,
}

/// One result per item of a [`WriteBatch`], in the same order.
#[derive(Clone, Debug, Default)]
pub struct WriteResults {
    /// Per dispatch.
    pub dispatches: Vec<StoreResult<Dispatched>>,
    /// Per child group.
    pub children: Vec<StoreResult<Vec<ChildCreated>>>,
    /// Per effect.
    pub effects: Vec<StoreResult<EffectApplied>>,
    /// Per completion.
    pub completions: Vec<StoreResult<Completed>>,
    /// The sequence numbers given to the free-standing events.
    pub events: Vec<i64>,
}

/// The answer to reserving an idempotency key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "value")]
pub enum Reservation {
    /// The caller holds the key and should run the work.
    Acquired,
    /// The work already ran; this is its result (possibly JSON `null`).
    Completed(Value),
    /// Another task holds the key and has not finished; wait for it.
    HeldBy(TaskId),
}

/// Everything Courier persists.
///
/// Methods are grouped as seed 003's `Backend` protocol groups them, with the
/// batch, fencing and event-log operations the runtime adds. See the module
/// documentation for the conventions every method follows.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ----- lifecycle ---------------------------------------------------------

    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Creates or migrates the schema. Idempotent, and safe when several nodes
    /// call it at once.
    async fn init(&self) -> StoreResult<()>;

    /// Releases connections. Later calls fail with [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    async fn close(&self);

    /// The store's clock.
    async fn now(&self) -> StoreResult<DateTime<Utc>>;

    /// Refreshes the query planner's statistics (after a burst into an emptied table
    /// a stale plan can cost a hundredfold).
    async fn analyze(&self) -> StoreResult<()>;

    // ----- group commit ------------------------------------------------------

    /// Applies `batch` in one transaction and reports per item. The single-purpose
    /// methods below are this with one kind of item. The batch is shared, not
    /// consumed, so the caller can still read it to route the results.
    async fn commit(&self, batch: Arc<WriteBatch>) -> StoreResult<WriteResults>;

    // ----- executions --------------------------------------------------------

    /// Creates each execution with its root task (step 0, id `TaskId::root_of`),
    /// atomically per execution. If an execution with the same idempotency key
    /// exists (or appears earlier in the batch) nothing is written and its id is
    /// returned as [`Dispatched::Existing`]; concurrent dispatches with one key
    /// create one execution.
    ///
    /// The root task is `pending`, due `now + spec.delay`; the execution is
    /// `pending` with `deadline = now + expiry`.
    /// Events: `execution.created`, `task.created`.
    async fn dispatch(&self, batch: Vec<NewExecution>) -> StoreResult<Vec<Dispatched>> {
        let n = batch.len();
        let results = self
            .commit(Arc::new(WriteBatch {
                dispatches: batch,
                ..WriteBatch::default()
            }))
            .await?;
        debug_assert_eq!(results.dispatches.len(), n);
        results.dispatches.into_iter().collect()
    }

    /// Inserts an execution record as given (seed parity; no root task, no events).
    async fn create_execution(&self, record: &ExecutionRecord) -> StoreResult<()>;

    /// Inserts an execution record and its root task record as given, both or
    /// neither (seed parity; no events). A conflict on either id fails the whole call.
    async fn create_execution_with_root_task(&self, record: &ExecutionRecord, task: &TaskRecord) -> StoreResult<()>;

    /// One execution.
    async fn get_execution(&self, id: ExecutionId) -> StoreResult<Option<ExecutionRecord>>;

    /// Overwrites an execution record's mutable fields as given (seed parity; no
    /// events). [`StoreError::ExecutionNotFound`](crate::StoreError::ExecutionNotFound) if absent.
    async fn update_execution(&self, record: &ExecutionRecord) -> StoreResult<()>;

    /// Executions matching `filter`, newest first.
    async fn list_executions(&self, filter: &ExecutionFilter) -> StoreResult<Vec<ExecutionRecord>>;

    /// How many executions (in `state`, if given).
    async fn count_executions(&self, state: Option<ExecutionState>) -> StoreResult<u64>;

    /// Cancels an execution and every unfinished task of it; running tasks lose
    /// their leases (their later fenced writes are refused). On an execution that
    /// is already terminal nothing changes and `previous` says what it is.
    /// Events: `task.cancelled` per task, `execution.cancelled`.
    async fn cancel_execution(&self, id: ExecutionId, reason: &str) -> StoreResult<Cancelled>;

    /// Times out up to `limit` unfinished executions whose deadline has passed,
    /// cancelling their unfinished tasks.
    /// Events: `task.cancelled` per task, `execution.timed_out`.
    async fn time_out_executions(&self, limit: u32) -> StoreResult<Vec<Cancelled>>;

    // ----- tasks -------------------------------------------------------------

    /// Inserts a task record as given (seed parity; no events).
    async fn create_task(&self, task: &TaskRecord) -> StoreResult<()> {
        self.create_tasks(std::slice::from_ref(task)).await
    }

    /// Inserts task records as given, all or none (seed parity; no events).
    async fn create_tasks(&self, tasks: &[TaskRecord]) -> StoreResult<()>;

    /// Creates an orchestrator's children, fenced by its lease (all refused with
    /// `LeaseLost` if it no longer holds it). A step that already has a task is left
    /// alone and reported as [`ChildCreated::Existing`].
    ///
    /// Initial states: activities and orchestrators `pending` due `now + delay`;
    /// sleeps `pending` due `now + delay`; a signal wait consumes the oldest
    /// unconsumed signal of its name if there is one (created `completed` with the
    /// payload as result, which also wakes the parent), else it is `waiting`
    /// (no timeout) or `pending` due at its timeout; effects `completed`.
    /// Events: `task.created` per new non-effect task (and `task.completed` for a
    /// signal wait that found its signal).
    async fn create_children(&self, fence: Option<LeaseKey>, tasks: Vec<NewTask>) -> StoreResult<Vec<ChildCreated>> {
        let mut results = self
            .commit(Arc::new(WriteBatch {
                children: vec![ChildGroup { fence, tasks }],
                ..WriteBatch::default()
            }))
            .await?;
        results.children.pop().expect("one result per child group")
    }

    /// Records an orchestrator side effect at a step, once: the first call applies
    /// it and stores its result on an `effect` task at that step; later calls for
    /// the same step apply nothing and return the recorded result.
    async fn apply_effect(&self, write: EffectWrite) -> StoreResult<EffectApplied> {
        let mut results = self
            .commit(Arc::new(WriteBatch {
                effects: vec![write],
                ..WriteBatch::default()
            }))
            .await?;
        results.effects.pop().expect("one result per effect")
    }

    /// One task.
    async fn get_task(&self, id: TaskId) -> StoreResult<Option<TaskRecord>>;

    /// The tasks among `ids` that exist, in no particular order.
    async fn get_tasks(&self, ids: &[TaskId]) -> StoreResult<Vec<TaskRecord>>;

    /// The task at `step` of `execution`.
    async fn get_task_at_step(&self, execution: ExecutionId, step: i64) -> StoreResult<Option<TaskRecord>>;

    /// Overwrites a task record's mutable fields as given (seed parity; no events).
    async fn update_task(&self, task: &TaskRecord) -> StoreResult<()>;

    /// Tasks matching `filter`: by step with `execution_id`, newest first otherwise.
    async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<TaskRecord>>;

    /// How many tasks (on `queue`, in `state`, if given).
    async fn count_tasks(&self, queue: Option<&str>, state: Option<TaskState>) -> StoreResult<u64>;

    /// Work per queue, for every queue that has pending or running tasks.
    async fn queue_depths(&self) -> StoreResult<Vec<QueueDepth>>;

    // ----- claims and leases -------------------------------------------------

    /// Atomically claims up to `req.max` claimable tasks: `pending` and due, or
    /// `running` with an expired lease. Honours queues, kinds, functions and tags
    /// (see [`ClaimRequest`]); orders by priority (high first), then due time, then
    /// creation. A function with a limit never has more than that many tasks
    /// running under live leases, however many claimers race (unlike the seed,
    /// which counted without a lock).
    ///
    /// Each claim: `running`, `attempt + 1`, a new token, `lease_expires_at =
    /// now + req.lease`, `heartbeat_at = started_at = now`, `stuck_at` cleared.
    /// A pending execution whose root task is claimed becomes `running`.
    /// Events: `task.started` per task; `execution.started` per execution started.
    async fn claim_tasks(&self, req: &ClaimRequest) -> StoreResult<Vec<Claimed>>;

    /// [`claim_tasks`](Store::claim_tasks) for at most one task (seed parity).
    async fn claim_next_task(&self, req: &ClaimRequest) -> StoreResult<Option<Claimed>> {
        let mut req = req.clone();
        req.max = 1;
        Ok(self.claim_tasks(&req).await?.pop())
    }

    /// Extends each lease to `now + extend` and records a heartbeat (no event).
    async fn renew_leases(&self, leases: &[LeaseKey], extend: Duration) -> StoreResult<Vec<StoreResult<Renewed>>>;

    /// [`renew_leases`](Store::renew_leases) for one lease (seed parity).
    async fn renew_task_lease(&self, lease: LeaseKey, extend: Duration) -> StoreResult<Renewed> {
        self.renew_leases(&[lease], extend)
            .await?
            .pop()
            .expect("one result per lease")
    }

    /// A heartbeat from the task's own code: renews the lease, clears `stuck_at`.
    /// Event: `task.heartbeat` with `details`.
    async fn heartbeat(&self, lease: LeaseKey, extend: Duration, details: Option<Value>) -> StoreResult<Renewed>;

    /// Saves a checkpoint the next attempt will see in `TaskRecord::checkpoint`.
    /// Event: `task.checkpoint`.
    async fn checkpoint(&self, lease: LeaseKey, data: Value) -> StoreResult<()>;

    /// Finishes attempts (see [`Outcome`](crate::Outcome)):
    ///
    /// * `Succeeded`: task `completed` with the result, also written to every
    ///   [`Remember`](crate::Remember) place. Root task: execution `completed`.
    /// * `Retry`: task back to `pending`, due `now + delay`, error kept, lease cleared.
    /// * `Failed`: task `failed`; a dead letter with `reason` if `dead_letter`.
    ///   Root task: execution `failed` with the error.
    ///
    /// A task that reached a terminal state wakes its parent: the parent's
    /// `wake_gen` is bumped, and a `waiting` parent becomes `pending`, due now.
    /// Events: `task.completed` or `task.failed` (data `will_retry`), `task.queued`
    /// for a retry or a woken parent, `execution.completed` / `execution.failed`.
    async fn complete_tasks(&self, completions: Vec<Completion>) -> StoreResult<Vec<StoreResult<Completed>>> {
        Ok(self
            .commit(Arc::new(WriteBatch {
                completions,
                ..WriteBatch::default()
            }))
            .await?
            .completions)
    }

    /// Gives a claim back without using an attempt (shutdown, drain): `pending`,
    /// due `now + delay`, `attempt - 1`, lease cleared. Event: `task.queued`.
    async fn release_task(&self, lease: LeaseKey, delay: Duration) -> StoreResult<()>;

    /// Parks a running orchestrator that has nothing to do: `waiting`, lease
    /// cleared, but only if its `wake_gen` still equals `seen_wake_gen` (no child
    /// settled since it last looked). Returns whether it was parked; if not, it
    /// is still running under the same lease. No event.
    async fn suspend_task(&self, lease: LeaseKey, seen_wake_gen: i64) -> StoreResult<bool>;

    // ----- dead letters ------------------------------------------------------

    /// Stores (or replaces) a dead letter for `task` as given (seed parity; the
    /// task row is not changed).
    async fn move_task_to_dead_letter(&self, task: &TaskRecord, reason: &str) -> StoreResult<()>;

    /// Dead letters, newest first.
    async fn list_dead_letters(&self, limit: u32, offset: u32) -> StoreResult<Vec<DeadLetterRecord>>;

    /// How many dead letters.
    async fn count_dead_letters(&self) -> StoreResult<u64>;

    /// The dead letter of a task.
    async fn get_dead_letter(&self, task_id: TaskId) -> StoreResult<Option<DeadLetterRecord>>;

    /// Deletes a dead letter (discard); whether there was one.
    async fn delete_dead_letter(&self, task_id: TaskId) -> StoreResult<bool>;

    /// Replays a dead letter: the task goes back to `pending` (due now, attempt 0,
    /// error cleared) and the dead letter is removed. If the execution is `failed`
    /// it is reopened (`running`, result and error cleared) and, when the task is
    /// not the root, a failed root orchestrator goes to `waiting` (its own dead
    /// letter removed) so the task's completion wakes it to replay. Refused with
    /// `ExecutionState` unless the execution is `failed` or still unfinished.
    /// Events: `execution.resumed` (if reopened), `task.queued`.
    async fn replay_dead_letter(&self, task_id: TaskId) -> StoreResult<Replayed>;

    // ----- cleanup -----------------------------------------------------------

    /// Deletes terminal executions finished before `older_than`, with all their
    /// rows (tasks, signals, progress, counters, state values, dead letters,
    /// events, and the webhook deliveries they made, with their attempts).
    /// Unfinished executions are kept however old. Returns how many executions
    /// were deleted.
    async fn cleanup_executions(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes dead letters that failed before `older_than`; how many.
    async fn cleanup_dead_letters(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes events appended before `older_than`; how many. Sequence numbers are
    /// never reused afterwards.
    async fn trim_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;

    /// Deletes expired cache entries; how many.
    async fn purge_expired_cache(&self) -> StoreResult<u64>;

    // ----- signals -----------------------------------------------------------

    /// Sends a signal: stores it and, in the same transaction, completes the
    /// oldest task waiting for that name (then the signal is consumed by it and its
    /// parent is woken). With nobody waiting it is kept for the next wait.
    /// `ExecutionNotFound` or `ExecutionState` (terminal) otherwise.
    /// Events: `task.completed` (and `task.queued` for a woken parent) if delivered.
    async fn send_signal(&self, execution_id: ExecutionId, name: &str, payload: Value) -> StoreResult<SignalSent>;

    /// Inserts a signal record as given (seed parity; delivers nothing).
    async fn create_signal(&self, signal: &SignalRecord) -> StoreResult<()>;

    /// The oldest unconsumed signal of `name`, or if none the newest consumed one.
    async fn get_signal(&self, execution_id: ExecutionId, name: &str) -> StoreResult<Option<SignalRecord>>;

    // ----- progress ----------------------------------------------------------

    /// Appends a progress report of an execution (of `task_id`, else of the root
    /// task). Event: `task.progress`.
    async fn append_progress(
        &self,
        execution_id: ExecutionId,
        task_id: Option<TaskId>,
        progress: &Progress,
    ) -> StoreResult<()>;

    /// The latest `limit` progress reports of an execution, oldest first. Reads
    /// only what it returns (per-report cost is constant, however many exist).
    async fn list_progress(&self, execution_id: ExecutionId, limit: u32) -> StoreResult<Vec<ProgressEntry>>;

    // ----- counters and custom state ----------------------------------------

    /// Creates counters that do not exist yet with these initial values.
    async fn ensure_execution_counters(&self, execution_id: ExecutionId, counters: &[(String, f64)])
    -> StoreResult<()>;

    /// Adds `amount` to a counter (created at 0) and returns its new value; exact
    /// under concurrent incrementers.
    async fn increment_execution_counter(&self, execution_id: ExecutionId, name: &str, amount: f64)
    -> StoreResult<f64>;

    /// All counters of an execution.
    async fn get_execution_counters(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, f64>>;

    /// Creates state values that do not exist yet.
    async fn ensure_execution_state_values(
        &self,
        execution_id: ExecutionId,
        values: &[(String, Value)],
    ) -> StoreResult<()>;

    /// Sets a state value.
    async fn set_execution_state_value(&self, execution_id: ExecutionId, key: &str, value: &Value) -> StoreResult<()>;

    /// All state values of an execution.
    async fn get_execution_state_values(&self, execution_id: ExecutionId) -> StoreResult<BTreeMap<String, Value>>;

    // ----- cache and idempotency --------------------------------------------

    /// A cached result that has not expired (`Some(Value::Null)` is a cached null).
    async fn get_cached_result(&self, key: &str) -> StoreResult<Option<Value>>;

    /// Caches a result for `ttl` (forever if none), replacing any entry.
    async fn set_cached_result(&self, key: &str, value: &Value, ttl: Option<Duration>) -> StoreResult<()>;

    /// The recorded result of an idempotency key, if its work finished.
    async fn get_idempotency_result(&self, key: &str) -> StoreResult<Option<Value>>;

    /// Records the result of an idempotency key (replacing any reservation).
    async fn set_idempotency_result(&self, key: &str, value: &Value) -> StoreResult<()>;

    /// Reserves a key for `owner` before running its work, so that two concurrent
    /// calls run it once. Re-entrant for the same owner. A reservation whose owner
    /// task is gone or finished without recording a result is taken over.
    async fn reserve_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<Reservation>;

    /// Drops `owner`'s reservation of a key that has no result (the work failed);
    /// whether one was dropped.
    async fn release_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<bool>;

    // ----- event log ---------------------------------------------------------

    /// Appends events; returns their sequence numbers in input order.
    async fn append_events(&self, events: Vec<NewEvent>) -> StoreResult<Vec<i64>> {
        Ok(self
            .commit(Arc::new(WriteBatch {
                events,
                ..WriteBatch::default()
            }))
            .await?
            .events)
    }

    /// Events matching `filter` with `seq > filter.after`, oldest first, at most `filter.limit`.
    async fn read_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;

    /// The highest sequence number ever assigned (0 if none).
    async fn last_event_seq(&self) -> StoreResult<i64>;

    // ----- maintenance -------------------------------------------------------

    /// Marks up to `limit` running tasks whose last heartbeat is older than
    /// `heartbeat_timeout` as stuck (once per attempt) and returns them.
    /// Event: `task.stuck`.
    async fn detect_stuck_tasks(&self, heartbeat_timeout: Duration, limit: u32) -> StoreResult<Vec<TaskId>>;

    /// Takes or keeps the named cluster-wide role (cleanup, stuck detection, ...)
    /// for `ttl`: true if `owner` holds it now (it was free, expired, or already
    /// `owner`'s).
    async fn try_acquire_singleton(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool>;

    // ----- webhooks ----------------------------------------------------------

    /// Registers a webhook as given. `Conflict` if the id is taken.
    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()>;

    /// One webhook.
    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>>;

    /// Webhooks, oldest first.
    async fn list_webhooks(&self, limit: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>>;

    /// Deletes a webhook with its deliveries and their attempts (the deliveries'
    /// executions stay, to finish or be cleaned up); whether it existed.
    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool>;

    /// Enables or disables a webhook, recording `reason` when disabling; whether it exists.
    async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool>;

    /// The webhook dispatcher's position in the event log (0 at first).
    async fn webhook_cursor(&self) -> StoreResult<i64>;

    /// Atomically, if the cursor still equals `from`: creates each delivery and
    /// its execution (exactly as [`dispatch`](Store::dispatch) would, events
    /// included) and moves the cursor to `to`. Returns false, writing nothing, if
    /// the cursor moved (another node enqueued these events), so each event is
    /// delivered once per webhook however many nodes race.
    async fn enqueue_deliveries(&self, from: i64, to: i64, deliveries: Vec<NewDelivery>) -> StoreResult<bool>;

    /// Records an attempt and sets the delivery's `state`, `attempts` (to the
    /// attempt's number), `last_status` and `last_error`. `Invalid` if the
    /// delivery does not exist.
    async fn record_delivery_attempt(&self, attempt: &DeliveryAttempt, state: DeliveryState) -> StoreResult<()>;

    /// One delivery.
    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<DeliveryRecord>>;

    /// A webhook's deliveries, newest first.
    async fn list_deliveries(&self, webhook_id: Uuid, limit: u32, offset: u32) -> StoreResult<Vec<DeliveryRecord>>;

    /// A delivery's attempts, oldest first.
    async fn list_delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<DeliveryAttempt>>;
}
