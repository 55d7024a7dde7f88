//! Executions: one dispatched durable function and everything it starts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TaskError;
use crate::id::{ExecutionId, TaskId};
use crate::state::{ExecutionState, string_enum};
use crate::task::TaskSpec;

/// An execution as stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Execution))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// Its id.
    pub id: ExecutionId,
    /// The function dispatched (the root task's function).
    pub function: String,
    /// The function's registered version at dispatch, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where it is in its life.
    pub state: ExecutionState,
    /// The arguments it was dispatched with.
    pub args: Value,
    /// The root task's result, once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed, timed out or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// The queue of its root task.
    pub queue: String,
    /// Tags of its root task.
    pub tags: Vec<String>,
    /// Priority of its root task (higher runs first).
    pub priority: i32,
    /// The caller's deduplication key: dispatching twice with it yields this execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When it was dispatched (store clock).
    pub created_at: DateTime<Utc>,
    /// When its state last changed.
    pub updated_at: DateTime<Utc>,
    /// When its root task first started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When it times out if still unfinished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// The orchestrator that started it as a child execution, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
}

impl ExecutionRecord {
    /// The id of its root task.
    pub fn root_task_id(&self) -> TaskId {
        TaskId::root_of(self.id)
    }
}

/// A request to start an execution: the store creates the execution and its root
/// task (step 0) atomically, stamping times with its own clock.
///
/// ```
/// use courier_core::{NewExecution, TaskKind, TaskSpec};
/// let new = NewExecution::new(TaskSpec::new(TaskKind::Activity, "send_email", serde_json::json!({"to": "a@b.c"})))
///     .with_idempotency_key("welcome-42");
/// assert_eq!(new.spec.queue, "default");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewExecution {
    /// The id to give it (chosen by the caller so it can be returned before commit).
    pub id: ExecutionId,
    /// What the root task runs.
    pub spec: TaskSpec,
    /// Time the execution out this long after dispatch.
    #[serde(default, with = "crate::duration::serde_duration::option")]
    pub expiry: Option<Duration>,
    /// Deduplicates dispatches: a second dispatch with the same key returns the first execution.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Makes it a child execution: its end is reported to this parent, and the
    /// parent's end applies the link's close policy to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
}

impl NewExecution {
    /// This execution as the child started at `step` of `parent`: linked to it
    /// (with the default close policy unless it says otherwise), refused if it
    /// names another parent.
    pub fn as_child_of(&self, parent: ExecutionId, step: i64) -> Result<NewExecution, crate::StoreError> {
        let mut child = self.clone();
        let link = child.parent.get_or_insert(ParentLink {
            execution_id: parent,
            step,
            close: ParentClose::Cancel,
        });
        if link.execution_id != parent || link.step != step {
            return Err(crate::StoreError::Conflict {
                id: child.id.to_string(),
                detail: format!("a child started at step {step} of execution {parent} names another parent or step"),
            });
        }
        Ok(child)
    }

    /// A new execution with a fresh id running `spec`.
    pub fn new(spec: TaskSpec) -> Self {
        NewExecution {
            id: ExecutionId::new(),
            spec,
            expiry: None,
            idempotency_key: None,
            parent: None,
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the expiry.
    pub fn with_expiry(mut self, expiry: Duration) -> Self {
        self.expiry = Some(expiry);
        self
    }
}

/// What dispatching one [`NewExecution`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "id")]
pub enum Dispatched {
    /// A new execution was created.
    Created(ExecutionId),
    /// The idempotency key was already used; this is the execution it names.
    Existing(ExecutionId),
}

impl Dispatched {
    /// The execution, new or existing.
    pub fn id(self) -> ExecutionId {
        match self {
            Dispatched::Created(id) | Dispatched::Existing(id) => id,
        }
    }
}

/// Which executions to list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutionFilter {
    /// Only executions in this state.
    pub state: Option<ExecutionState>,
    /// Only executions of this function.
    pub function: Option<String>,
    /// Only executions whose root task went to this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Only executions created at or after this instant.
    #[serde(default)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only executions created before this instant.
    #[serde(default)]
    pub created_before: Option<DateTime<Utc>>,
    /// Only the execution dispatched with this idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Only the child executions this execution started.
    #[serde(default)]
    pub parent: Option<ExecutionId>,
    /// Also Courier's own executions (functions named `courier.*`, such as webhook
    /// deliveries); without this they are left out.
    #[serde(default)]
    pub include_internal: bool,
    /// At most this many (newest first).
    pub limit: u32,
    /// Skip this many.
    pub offset: u32,
}

/// What cancelling an execution did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Its state before the cancel. If it was already terminal nothing changed.
    pub previous: ExecutionState,
    /// Tasks that were cancelled with it (running ones lose their lease).
    pub tasks: Vec<TaskId>,
}

string_enum! {
    /// What becomes of a child execution when its parent ends first, whether it
    /// completed, failed, timed out or was cancelled (Temporal's parent-close policy).
    ///
    /// ```
    /// use courier_core::ParentClose;
    /// assert_eq!("abandon".parse::<ParentClose>().unwrap(), ParentClose::Abandon);
    /// assert_eq!(ParentClose::default(), ParentClose::Cancel);
    /// ```
    ParentClose {
        /// The child is cancelled with its parent (and its own children by their policies).
        Cancel => "cancel",
        /// The child runs on by itself.
        Abandon => "abandon",
    }
}

// `string_enum!` derives for its own enums, so the default is written out.
#[allow(clippy::derivable_impls)]
impl Default for ParentClose {
    fn default() -> Self {
        ParentClose::Cancel
    }
}

/// A child execution's tie to the orchestrator that started it.
///
/// ```
/// use courier_core::{ExecutionId, ParentClose, ParentLink};
/// let parent = ExecutionId::new();
/// let link = ParentLink { execution_id: parent, step: 4, close: ParentClose::Cancel };
/// assert_eq!(link.signal_name(), "courier.child:4");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent execution.
    pub execution_id: ExecutionId,
    /// The parent's step that started the child: the child's end reaches the
    /// parent as the signal [`signal_name`](Self::signal_name) names.
    pub step: i64,
    /// What the parent's end does to the child.
    pub close: ParentClose,
}

impl ParentLink {
    /// The prefix of the signals that carry children's ends; signals sent from
    /// outside may not use it.
    pub const SIGNAL_PREFIX: &'static str = "courier.child:";

    /// The signal the child's end is delivered to the parent as. It names the
    /// parent's step, not the child, so a child that continues as new hands the
    /// same wait on to its successor.
    pub fn signal_name(&self) -> String {
        Self::signal_at(self.step)
    }

    /// The signal that carries the end of the child started at the parent's `step`.
    pub fn signal_at(step: i64) -> String {
        format!("{}{}", Self::SIGNAL_PREFIX, step)
    }
}

/// How a child execution ended: the payload of the signal its parent receives.
///
/// ```
/// use courier_core::{ChildOutcome, ExecutionState, TaskError};
/// let done = ChildOutcome { state: ExecutionState::Completed, result: Some(serde_json::json!(3)), error: None };
/// assert_eq!(done.into_result().unwrap(), serde_json::json!(3));
/// let failed = ChildOutcome { state: ExecutionState::Failed, result: None, error: Some(TaskError::new("boom", "no")) };
/// assert_eq!(failed.into_result().unwrap_err().kind, "boom");
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildOutcome {
    /// Its terminal state.
    pub state: ExecutionState,
    /// Its result, if it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it did not complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

impl ChildOutcome {
    /// The result for the parent's code: the child's result, or an error saying
    /// why there is none (its own error for a failure; `cancelled` or `timeout`).
    pub fn into_result(self) -> Result<Value, TaskError> {
        match self.state {
            ExecutionState::Completed => Ok(self.result.unwrap_or(Value::Null)),
            ExecutionState::Cancelled => Err(self
                .error
                .unwrap_or_else(|| TaskError::new(TaskError::CANCELLED, "the child execution was cancelled"))),
            ExecutionState::TimedOut => Err(self
                .error
                .unwrap_or_else(|| TaskError::new(TaskError::TIMEOUT, "the child execution timed out"))),
            _ => Err(self
                .error
                .unwrap_or_else(|| TaskError::new(TaskError::ERROR, "the child execution failed"))),
        }
    }
}

impl ChildOutcome {
    /// The signal payload that carries it to the parent.
    pub fn payload(&self) -> Value {
        serde_json::json!({ "state": self.state, "result": self.result, "error": self.error })
    }

    /// The outcome of an execution that ended in `state`, as its `ExecutionEnded`
    /// describes it (a cancel or time-out carries a reason, not an error).
    pub fn ended(state: ExecutionState, result: Option<Value>, error: Option<TaskError>, reason: Option<&str>) -> Self {
        let error = error.or_else(|| match state {
            ExecutionState::Cancelled => Some(TaskError::new(
                TaskError::CANCELLED,
                reason.unwrap_or("the child execution was cancelled"),
            )),
            ExecutionState::TimedOut => Some(TaskError::new(
                TaskError::TIMEOUT,
                reason.unwrap_or("the child execution outlived its expiry"),
            )),
            _ => None,
        });
        ChildOutcome { state, result, error }
    }
}
