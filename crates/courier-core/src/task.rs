//! Tasks: the units a worker claims, and what goes into and out of a claim.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TaskError;
use crate::id::{ExecutionId, LeaseToken, TaskId};
use crate::retry::RetryPolicy;
use crate::state::{ExecutionState, TaskKind, TaskState};

/// The queue tasks go to when none is named.
pub const DEFAULT_QUEUE: &str = "default";

/// What a task runs and how it is routed: the part of a task its creator chooses.
///
/// ```
/// use courier_core::{TaskKind, TaskSpec};
/// let spec = TaskSpec::new(TaskKind::Activity, "resize", serde_json::json!([800, 600]))
///     .on_queue("images")
///     .with_tags(["gpu"])
///     .with_priority(5);
/// assert_eq!(spec.tags, vec!["gpu".to_string()]);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// What it is.
    pub kind: TaskKind,
    /// The function it calls (for a signal wait: the signal's name; for a sleep: `courier.sleep`).
    pub function: String,
    /// The function's registered version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Arguments, as JSON.
    pub args: Value,
    /// Only workers on this queue claim it.
    pub queue: String,
    /// A worker that names tags claims it only if they overlap these; an untagged task matches every worker.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// How failures are retried (persisted with the task).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Not claimable until this long after creation (store clock). For a sleep, its length;
    /// for a signal wait, its timeout (none = wait forever).
    #[serde(default, with = "crate::duration::serde_duration::option")]
    pub delay: Option<Duration>,
    /// One attempt may run this long before it counts as failed with kind `timeout`.
    #[serde(default, with = "crate::duration::serde_duration::option")]
    pub timeout: Option<Duration>,
}

impl TaskSpec {
    /// A spec on the default queue with default retry policy.
    pub fn new(kind: TaskKind, function: impl Into<String>, args: Value) -> Self {
        TaskSpec {
            kind,
            function: function.into(),
            version: None,
            args,
            queue: DEFAULT_QUEUE.to_string(),
            tags: Vec::new(),
            priority: 0,
            retry: RetryPolicy::default(),
            delay: None,
            timeout: None,
        }
    }

    /// Routes it to `queue`.
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets its tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets its priority: higher is claimed first, each level worth the store's
    /// [`PriorityAgeing`](crate::PriorityAgeing) of waiting.
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets its retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Delays it.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// A task as stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Task))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Its id (`TaskId::for_step(execution_id, step)` for tasks the runtime creates).
    pub id: TaskId,
    /// The execution it belongs to.
    pub execution_id: ExecutionId,
    /// The orchestrator task that started it (none for a root task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<TaskId>,
    /// Its position in the execution's history: 0 for the root, then 1, 2, … in the
    /// order the orchestrator reached them. Unique per execution.
    pub step: i64,
    /// What it is.
    pub kind: TaskKind,
    /// The function it calls.
    pub function: String,
    /// The function's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its queue.
    pub queue: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its priority.
    pub priority: i32,
    /// Where it is in its life.
    pub state: TaskState,
    /// Arguments.
    pub args: Value,
    /// Result once completed (`Some(Value::Null)` is a real result, not an absent one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// The last checkpoint an attempt saved, offered to the next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
    /// How many times it has been claimed (the current or last attempt's number).
    pub attempt: u32,
    /// Its retry policy.
    pub retry: RetryPolicy,
    /// The per-attempt time limit.
    #[serde(
        default,
        with = "crate::duration::serde_duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::DurationText>))]
    pub timeout: Option<Duration>,
    /// The worker holding (or that last held) its lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    /// The token of the current claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<LeaseToken>,
    /// When the current lease runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The last heartbeat (or the claim, if none since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// When it was reported stuck during the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_at: Option<DateTime<Utc>>,
    /// Bumped each time one of its children settles; a suspending orchestrator
    /// compares it to what it has seen so that no wake-up slips between.
    pub wake_gen: i64,
    /// Not claimable before this.
    pub scheduled_for: DateTime<Utc>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its latest attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A request to create a task under an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    /// The execution it belongs to.
    pub execution_id: ExecutionId,
    /// The orchestrator task creating it.
    pub parent_id: Option<TaskId>,
    /// Its step in the execution; its id is `TaskId::for_step(execution_id, step)`.
    pub step: i64,
    /// What it runs.
    pub spec: TaskSpec,
    /// For [`TaskKind::Effect`] tasks: the recorded outcome (they are created completed).
    #[serde(default)]
    pub result: Option<Value>,
}

impl NewTask {
    /// The id the task will have.
    pub fn id(&self) -> TaskId {
        TaskId::for_step(self.execution_id, self.step)
    }
}

/// What creating one child did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum ChildCreated {
    /// A new task row; `state` is where it starts (`completed` for a signal wait
    /// that found its signal already sent, or for an effect).
    Created {
        /// The task.
        id: TaskId,
        /// Its initial state.
        state: TaskState,
    },
    /// A task already sits at that step (a replay, or a race with another replayer);
    /// nothing was written. The caller compares `kind`/`function` with what it
    /// wanted to detect non-determinism.
    Existing {
        /// The task.
        id: TaskId,
        /// What was recorded at the step.
        kind: TaskKind,
        /// The function recorded at the step.
        function: String,
        /// Its state now.
        state: TaskState,
    },
}

/// Identifies one claim of one task: what every fenced write must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseKey {
    /// The task.
    pub task_id: TaskId,
    /// The claim's token.
    pub token: LeaseToken,
}

/// A held lease: which claim, by whom, which attempt, until when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    /// The task.
    pub task_id: TaskId,
    /// The claim's token.
    pub token: LeaseToken,
    /// The worker that claimed it.
    pub owner: String,
    /// The attempt this claim is.
    pub attempt: u32,
    /// When it runs out unless renewed (store clock).
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// The key fenced writes present.
    pub fn key(&self) -> LeaseKey {
        LeaseKey {
            task_id: self.task_id,
            token: self.token,
        }
    }
}

/// What to claim.
///
/// ```
/// use std::time::Duration;
/// use courier_core::ClaimRequest;
/// let req = ClaimRequest::new("worker-1", 100, Duration::from_secs(30)).queues(["default"]);
/// assert_eq!(req.max, 100);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Who claims (recorded as lease owner).
    pub worker_id: String,
    /// Only these queues (`None`: every queue).
    pub queues: Option<Vec<String>>,
    /// The worker's tags (`None`: no tag filter). A tagged task is claimable only if
    /// its tags overlap these; an untagged task always is.
    pub tags: Option<Vec<String>>,
    /// Only orchestrators and activities of these functions (`None`: any).
    /// Timers ignore this filter.
    pub functions: Option<Vec<String>>,
    /// Only these kinds (empty: orchestrator, activity, sleep and signal wait).
    pub kinds: Vec<TaskKind>,
    /// At most this many.
    pub max: u32,
    /// Lease length (from the store's clock).
    #[serde(with = "crate::duration::serde_duration")]
    pub lease: Duration,
    /// Per-function cap on tasks running with a live lease, cluster-wide.
    #[serde(default)]
    pub limits: HashMap<String, u32>,
    /// Never these functions (orchestrators and activities). An external claim
    /// lists those a node serves in process, so an HTTP worker cannot take them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_functions: Vec<String>,
    /// Leave Courier's own functions (named under
    /// [`INTERNAL_PREFIX`](crate::INTERNAL_PREFIX): webhook deliveries, ingested
    /// messages) alone, even with no function filter.
    #[serde(default)]
    pub exclude_internal: bool,
}

impl ClaimRequest {
    /// Claim up to `max` of anything for `lease`.
    pub fn new(worker_id: impl Into<String>, max: u32, lease: Duration) -> Self {
        ClaimRequest {
            worker_id: worker_id.into(),
            queues: None,
            tags: None,
            functions: None,
            kinds: Vec::new(),
            max,
            lease,
            limits: HashMap::new(),
            exclude_functions: Vec::new(),
            exclude_internal: false,
        }
    }

    /// Restricts to `queues`.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the worker's tags.
    pub fn tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = Some(tags.into_iter().map(Into::into).collect());
        self
    }

    /// Restricts to `functions`.
    pub fn functions<I: IntoIterator<Item = S>, S: Into<String>>(mut self, functions: I) -> Self {
        self.functions = Some(functions.into_iter().map(Into::into).collect());
        self
    }

    /// Restricts to `kinds`.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = TaskKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Caps `function` at `max` running tasks.
    pub fn limit(mut self, function: impl Into<String>, max: u32) -> Self {
        self.limits.insert(function.into(), max);
        self
    }

    /// Whether a new task of `spec`, due now, is work this request would
    /// claim, judged on the spec alone (not on limits or pauses, which the
    /// claim itself applies).
    ///
    /// ```
    /// use std::time::Duration;
    /// use courier_core::{ClaimRequest, TaskKind, TaskSpec};
    /// let req = ClaimRequest::new("w", 8, Duration::from_secs(30)).queues(["default"]).functions(["echo"]);
    /// let spec = TaskSpec::new(TaskKind::Activity, "echo", serde_json::json!(1));
    /// assert!(req.would_claim(&spec));
    /// assert!(!req.would_claim(&TaskSpec { queue: "other".into(), ..spec.clone() }));
    /// assert!(!req.would_claim(&TaskSpec { delay: Some(Duration::from_secs(1)), ..spec }));
    /// ```
    pub fn would_claim(&self, spec: &TaskSpec) -> bool {
        let runs_code = matches!(spec.kind, TaskKind::Orchestrator | TaskKind::Activity);
        self.effective_kinds().contains(&spec.kind)
            && spec.delay.is_none_or(|d| d.is_zero())
            && self.queues.as_ref().is_none_or(|q| q.contains(&spec.queue))
            && (spec.tags.is_empty()
                || self
                    .tags
                    .as_ref()
                    .is_none_or(|t| spec.tags.iter().any(|x| t.contains(x))))
            && (!runs_code
                || (self.functions.as_ref().is_none_or(|f| f.contains(&spec.function))
                    && !self.exclude_functions.contains(&spec.function)
                    && !(self.exclude_internal && crate::is_internal(&spec.function))))
    }

    /// The kinds this request claims.
    pub fn effective_kinds(&self) -> Vec<TaskKind> {
        if self.kinds.is_empty() {
            vec![
                TaskKind::Orchestrator,
                TaskKind::Activity,
                TaskKind::Sleep,
                TaskKind::SignalWait,
            ]
        } else {
            self.kinds.clone()
        }
    }
}

/// One claimed task: the record as it is after the claim, and the lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claimed {
    /// The task (state `running`, attempt already incremented).
    pub task: TaskRecord,
    /// The lease to present on every write.
    pub lease: Lease,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// It returned a result.
    Succeeded {
        /// The result.
        result: Value,
        /// Also record the result under these keys, in the same transaction.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        remember: Vec<Remember>,
    },
    /// It failed and goes back to the queue, due after `delay`.
    Retry {
        /// The error.
        error: TaskError,
        /// How long until it is claimable again.
        #[serde(with = "crate::duration::serde_duration")]
        delay: Duration,
    },
    /// It failed for good: the task fails (and, if `dead_letter`, is kept as a dead letter).
    Failed {
        /// The error.
        error: TaskError,
        /// Why it will not be retried (recorded on the dead letter).
        reason: String,
        /// Whether to keep a dead letter for replay (false for expected failures
        /// such as a signal wait timing out).
        #[serde(default = "yes")]
        dead_letter: bool,
    },
}

/// A place a successful result is recorded besides the task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "into")]
pub enum Remember {
    /// The result cache, for `ttl` (forever if none).
    Cache {
        /// The cache key.
        key: String,
        /// How long the entry lives.
        #[serde(default, with = "crate::duration::serde_duration::option")]
        ttl: Option<Duration>,
    },
    /// The idempotency table (and releases this task's reservation of the key).
    Idempotency {
        /// The idempotency key.
        key: String,
    },
}

/// One fenced completion, success or failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The claim finishing.
    pub lease: LeaseKey,
    /// How it ended.
    pub outcome: Outcome,
}

fn yes() -> bool {
    true
}

/// What a completion changed, so the caller can notify the right waiters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completed {
    /// The task.
    pub task_id: TaskId,
    /// Its execution.
    pub execution_id: ExecutionId,
    /// The task's new state (`completed`, `failed`, or `pending` for a retry).
    pub state: TaskState,
    /// The orchestrator to wake, if the task has a parent and reached a terminal state.
    pub parent_id: Option<TaskId>,
    /// The execution's new state, if this completion changed it (root tasks).
    pub execution_state: Option<ExecutionState>,
}

/// A successful lease renewal.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Renewed {
    /// The task.
    pub task_id: TaskId,
    /// The lease's new end.
    pub expires_at: DateTime<Utc>,
}

/// Which tasks to list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Only tasks of this execution (then ordered by step; otherwise newest first).
    pub execution_id: Option<ExecutionId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only tasks on this queue.
    pub queue: Option<String>,
    /// Only steps after this one (with `execution_id`; for paging through a history).
    pub after_step: Option<i64>,
    /// At most this many.
    pub limit: u32,
    /// Skip this many.
    pub offset: u32,
}

/// How much work waits on a queue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// The queue.
    pub queue: String,
    /// Pending and due now.
    pub ready: u64,
    /// Pending but not due yet.
    pub scheduled: u64,
    /// Running.
    pub running: u64,
}
