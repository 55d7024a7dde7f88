//! Group commit: the writes that happen many times a second, gathered from many
//! callers into one transaction.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::change::Change;
use crate::error::StoreResult;
use crate::execution::{Dispatched, NewExecution};
use crate::id::{ExecutionId, TaskId};
use crate::notification::{NewNotification, NotificationTtl};
use crate::progress::Progress;
use crate::task::{ChildCreated, ClaimRequest, Claimed, Completed, Completion, LeaseKey, NewTask};
use crate::webhook::{DeliveryAttempt, DeliveryState};

/// Writes that group-commit: everything in one batch lands in one transaction.
///
/// Applied in this order: dispatches, child groups, effects, delivery attempts,
/// releases, completions, then the claim riding the batch, if any. The runtime's `StoreActor` fills one of these from many
/// concurrent requests.
///
/// ```
/// use courier_core::{NewExecution, TaskKind, TaskSpec, WriteBatch};
/// let batch = WriteBatch {
///     dispatches: vec![NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", serde_json::Value::Null))],
///     ..WriteBatch::default()
/// };
/// assert_eq!(batch.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteBatch {
    /// New executions. Each is created with its root task (step 0, id
    /// `TaskId::root_of`), atomically per execution. If an execution with the same
    /// idempotency key exists (or appears earlier in the batch) nothing is written
    /// and its id is returned as [`Dispatched::Existing`]; concurrent dispatches with
    /// one key create one execution. The root task is `pending`, due
    /// `now + spec.delay`; the execution is `pending` with `deadline = now + expiry`.
    /// Changes: `ExecutionCreated`, `TaskCreated`.
    pub dispatches: Vec<NewExecution>,
    /// Groups of children, each fenced by its orchestrator's lease (all of a group
    /// refused with `LeaseLost` if it no longer holds it). A step that already has a
    /// task is left alone and reported as [`ChildCreated::Existing`].
    ///
    /// Initial states: activities, orchestrators and sleeps `pending` due
    /// `now + delay`; a signal wait consumes the oldest unconsumed signal of its name
    /// if there is one (created `completed` with the payload as result, which also
    /// wakes the parent), else it is `waiting` (no timeout) or `pending` due at its
    /// timeout. Changes: `TaskCreated` per task (and `AttemptEnded` for a signal
    /// wait that found its signal; `TaskQueued` for a parent it woke).
    pub children: Vec<ChildGroup>,
    /// Recorded orchestrator side effects: the first write of a step applies the
    /// effect and stores its result on an `effect` task at that step (created
    /// `completed`); later writes for the same step apply nothing and return the
    /// recorded result. Changes: a progress effect makes `TaskProgress`, a
    /// notification `NotificationSent`.
    pub effects: Vec<EffectWrite>,
    /// Webhook delivery attempts, each recorded as
    /// [`WebhookStore::record_delivery_attempt`](super::WebhookStore::record_delivery_attempt)
    /// records one (refused with `Invalid` if the delivery does not exist). They
    /// ride the group commit so that a busy delivery queue costs one transaction
    /// per batch, not one per attempt. Changes: none.
    #[serde(default)]
    pub delivery_attempts: Vec<AttemptWrite>,
    /// Claims given back without using their attempts, each as
    /// [`TaskStore::release_task`](super::TaskStore::release_task) gives one
    /// back: the task is `pending` again, due `now + delay`, its attempt count
    /// as it was before the claim. Fenced like completions (refused with
    /// `LeaseLost` or `TaskNotFound` for that item only). A node hands back what
    /// its limits refused in one claim, so many at once are the common case.
    /// Changes: `TaskQueued` (reason `released`).
    #[serde(default)]
    pub releases: Vec<Release>,
    /// Fenced completions (see [`Outcome`](crate::Outcome)):
    ///
    /// * `Succeeded`: task `completed` with the result, also written to every
    ///   [`Remember`](crate::Remember) place. Root task: execution `completed`.
    /// * `Retry`: task back to `pending`, due `now + delay`, error kept, lease cleared.
    /// * `Failed`: task `failed`; a dead letter with `reason` if `dead_letter`.
    ///   Root task: execution `failed` with the error.
    ///
    /// A task that reached a terminal state wakes its parent: the parent's
    /// `wake_gen` is bumped, and a `waiting` parent becomes `pending`, due now.
    /// Changes: `AttemptEnded`; `TaskQueued` for a retry or a woken parent;
    /// `ExecutionEnded` for a root task that settled its execution.
    pub completions: Vec<Completion>,
    /// A claim run after every write above, in the same transaction, as
    /// [`TaskStore::claim_tasks`](super::TaskStore::claim_tasks) runs one (the
    /// same order, limits, pauses and filters), its tasks in
    /// [`WriteResults::claimed`]. A node whose worker sits idle rides its claim
    /// on the commit that creates the work, so the work starts without a
    /// transaction of its own. Changes: `TaskStarted` (and `ExecutionStarted`)
    /// per task, after the batch's other changes.
    #[serde(default)]
    pub claim: Option<ClaimRequest>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
            && self.children.is_empty()
            && self.effects.is_empty()
            && self.delivery_attempts.is_empty()
            && self.releases.is_empty()
            && self.completions.is_empty()
            && self.claim.is_none()
    }

    /// How many operations the batch carries.
    pub fn len(&self) -> usize {
        self.dispatches.len()
            + self.children.len()
            + self.effects.len()
            + self.delivery_attempts.len()
            + self.releases.len()
            + self.completions.len()
    }
}

/// A webhook delivery attempt to record, and the state it leaves the delivery in.
///
/// ```
/// use courier_core::{AttemptWrite, DeliveryAttempt, DeliveryState, WriteBatch};
/// let attempt = DeliveryAttempt {
///     delivery_id: uuid::Uuid::new_v4(),
///     attempt: 1,
///     status: Some(200),
///     latency_ms: 12,
///     response: Some("ok".into()),
///     error: None,
///     at: chrono::Utc::now(),
/// };
/// let batch = WriteBatch {
///     delivery_attempts: vec![AttemptWrite { attempt, state: DeliveryState::Delivered }],
///     ..WriteBatch::default()
/// };
/// assert_eq!(batch.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptWrite {
    /// The attempt.
    pub attempt: DeliveryAttempt,
    /// The delivery's state after it.
    pub state: DeliveryState,
}

/// A claim to give back, due again after `delay`, without using its attempt.
///
/// ```
/// use std::time::Duration;
/// use courier_core::{LeaseKey, LeaseToken, Release, TaskId, WriteBatch};
/// let lease = LeaseKey { task_id: TaskId(uuid::Uuid::new_v4()), token: LeaseToken(uuid::Uuid::new_v4()) };
/// let batch = WriteBatch {
///     releases: vec![Release { lease, delay: Duration::from_millis(250) }],
///     ..WriteBatch::default()
/// };
/// assert_eq!(batch.len(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The claim.
    pub lease: LeaseKey,
    /// How long the task waits before it may be claimed again.
    #[serde(with = "crate::duration::serde_duration")]
    pub delay: Duration,
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
    /// Send a notification for people (see
    /// [`NotificationStore::send_notification`](super::NotificationStore::send_notification));
    /// the result is its id.
    Notify {
        /// The notification.
        notification: NewNotification,
        /// How long stored modes are kept.
        ttl: NotificationTtl,
    },
    /// Record a value the orchestrator made on its first run (a time, a random
    /// number, an id), so every replay reads the same one; the result is the value.
    Record {
        /// What it is (`now`, `random`, `uuid`, or a name the code chose).
        name: String,
        /// The value.
        value: Value,
    },
    /// Start a child execution (its `parent` link set, its id
    /// [`ExecutionId::started_at`](crate::ExecutionId::started_at) the step);
    /// the result is its id.
    StartChild {
        /// The child.
        execution: NewExecution,
    },
    /// Start the execution that carries this one on with a fresh history; it
    /// takes over this execution's parent link, if any. The result is its id.
    ContinueAsNew {
        /// The successor.
        execution: NewExecution,
    },
    /// Cancel a child execution this one started (and its children, by their
    /// policies); its end reaches this execution like any other. The result is
    /// the child's state before (a child that had ended is left alone).
    CancelChild {
        /// The child.
        execution_id: ExecutionId,
        /// Why (recorded with the cancellation).
        reason: String,
    },
}

impl Effect {
    /// The function name recorded on the effect's task row, compared on replay.
    pub fn function_name(&self) -> String {
        match self {
            Effect::Increment { name, .. } => format!("courier.counter:{name}"),
            Effect::SetState { key, .. } => format!("courier.state:{key}"),
            Effect::Progress(_) => "courier.progress".to_string(),
            Effect::Notify { .. } => "courier.notify".to_string(),
            Effect::Record { name, .. } => format!("courier.record:{name}"),
            Effect::StartChild { execution } => format!("courier.child:{}", execution.spec.function),
            Effect::ContinueAsNew { .. } => "courier.continue_as_new".to_string(),
            Effect::CancelChild { .. } => "courier.cancel_child".to_string(),
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

/// One result per item of a [`WriteBatch`], in the same order, and what the whole
/// batch changed.
#[derive(Clone, Debug, Default)]
pub struct WriteResults {
    /// Per dispatch.
    pub dispatches: Vec<StoreResult<Dispatched>>,
    /// Per child group.
    pub children: Vec<StoreResult<Vec<ChildCreated>>>,
    /// Per effect.
    pub effects: Vec<StoreResult<EffectApplied>>,
    /// Per delivery attempt.
    pub delivery_attempts: Vec<StoreResult<()>>,
    /// Per release.
    pub releases: Vec<StoreResult<()>>,
    /// Per completion.
    pub completions: Vec<StoreResult<Completed>>,
    /// What the batch's [`claim`](WriteBatch::claim) claimed, in claim order.
    pub claimed: Vec<Claimed>,
    /// Everything the batch changed, in the order its events were appended.
    pub changes: Vec<Change>,
}
