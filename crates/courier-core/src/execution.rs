//! Executions: one dispatched durable function and everything it starts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TaskError;
use crate::id::{ExecutionId, TaskId};
use crate::state::ExecutionState;
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
}

impl NewExecution {
    /// A new execution with a fresh id running `spec`.
    pub fn new(spec: TaskSpec) -> Self {
        NewExecution {
            id: ExecutionId::new(),
            spec,
            expiry: None,
            idempotency_key: None,
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
