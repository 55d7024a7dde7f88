//! Typed errors. Each carries the id it concerns, so a log line or an HTTP error
//! body says which execution or task went wrong.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::id::{ExecutionId, TaskId};
use crate::state::{ExecutionState, TaskState};

/// A string that names no value of an enum.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} {value:?}")]
pub struct ParseEnumError {
    /// The enum's name.
    pub what: &'static str,
    /// The string that was given.
    pub value: String,
}

/// The error a task or an execution finished with, as stored and as shown on the wire.
///
/// `kind` is what retry policies match on; well-known kinds are the constants below.
/// Any `std::error::Error` converts into one (kind `error`), so `?` works in
/// activity code; `TaskError` itself is a record, not an `Error`, which is what
/// lets that conversion exist.
///
/// ```
/// use courier_core::TaskError;
/// let e = TaskError::new("http_503", "upstream unavailable");
/// assert_eq!(e.to_string(), "http_503: upstream unavailable");
///
/// fn parse(s: &str) -> Result<i64, TaskError> {
///     Ok(s.parse::<i64>()?)
/// }
/// assert_eq!(parse("x").unwrap_err().kind, "error");
/// assert!(TaskError::non_retryable("bad_input", "no").non_retryable);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "Why a task failed: a machine-readable kind and a human message.")
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskError {
    /// A short machine-readable class, e.g. `timeout` or `http_503`.
    pub kind: String,
    /// A human-readable explanation.
    pub message: String,
    /// Anything else worth keeping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Never retry this error, whatever the policy says.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_retryable: bool,
    /// Retry no sooner than this many milliseconds (an HTTP `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl TaskError {
    /// A timer or a deadline ran out.
    pub const TIMEOUT: &'static str = "timeout";
    /// An orchestrator's replay did not match its recorded history.
    pub const NON_DETERMINISM: &'static str = "non_determinism";
    /// The task's code panicked.
    pub const PANIC: &'static str = "panic";
    /// The task was cancelled.
    pub const CANCELLED: &'static str = "cancelled";
    /// No handler is registered for the function.
    pub const UNKNOWN_FUNCTION: &'static str = "unknown_function";
    /// Arguments or a result could not be (de)serialized.
    pub const SERIALIZATION: &'static str = "serialization";
    /// The store refused the outcome itself (a result holding a NUL character).
    pub const UNSTORABLE: &'static str = "unstorable";
    /// The default kind for an error that names none.
    pub const ERROR: &'static str = "error";
    /// Not a failure: what `continue_as_new` hands the orchestrator to return,
    /// so that its execution completes and its successor carries on.
    pub const CONTINUED_AS_NEW: &'static str = "continued_as_new";

    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        TaskError {
            kind: kind.into(),
            message: message.into(),
            details: None,
            non_retryable: false,
            retry_after_ms: None,
        }
    }

    /// An error of `kind` that is never retried.
    pub fn non_retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        TaskError {
            non_retryable: true,
            ..TaskError::new(kind, message)
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError::new(TaskError::ERROR, e.to_string())
    }
}

/// Why a write made under a lease was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseLost {
    /// The task was claimed again since (a newer token holds it).
    Reclaimed,
    /// The task is no longer running (finished, cancelled, released).
    NotRunning(TaskState),
}

impl fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseLost::Reclaimed => f.write_str("the task was claimed again by a newer lease"),
            LeaseLost::NotRunning(state) => write!(f, "the task is {state}, not running"),
        }
    }
}

/// Everything a [`Store`](crate::Store) operation can fail with.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// No execution has this id.
    #[error("execution {0} not found")]
    ExecutionNotFound(ExecutionId),
    /// No task has this id.
    #[error("task {0} not found")]
    TaskNotFound(TaskId),
    /// No dead letter holds this task.
    #[error("no dead letter for task {0}")]
    DeadLetterNotFound(TaskId),
    /// A fenced write came from a claim that no longer holds the task.
    #[error("lease on task {task_id} lost: {reason}")]
    LeaseLost {
        /// The task the write was for.
        task_id: TaskId,
        /// Why the claim no longer holds it.
        reason: LeaseLost,
    },
    /// The execution's state does not allow the operation.
    #[error("execution {id} is {state}: {detail}")]
    ExecutionState {
        /// The execution.
        id: ExecutionId,
        /// Its current state.
        state: ExecutionState,
        /// What was refused.
        detail: String,
    },
    /// A record with this identity already exists, or a uniqueness rule was broken.
    #[error("conflict on {id}: {detail}")]
    Conflict {
        /// The id of the record that conflicts.
        id: String,
        /// What conflicts.
        detail: String,
    },
    /// The request itself is malformed.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The store cannot be reached now; the operation may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The store's own code panicked while running the operation (caught where
    /// it ran, so the store stays usable). Not transient: the same operation may
    /// panic again. The runtime marks the node not ready until the store proves
    /// it works again.
    #[error("a store operation panicked: {0}")]
    Panicked(String),
}

impl StoreError {
    /// The error for a store operation that panicked, carrying what the panic
    /// said when it said it with a string.
    ///
    /// ```
    /// use courier_core::StoreError;
    /// let payload = std::panic::catch_unwind(|| panic!("index {} out of range", 3)).unwrap_err();
    /// let e = StoreError::from_panic(payload.as_ref());
    /// assert_eq!(e.to_string(), "a store operation panicked: index 3 out of range");
    /// ```
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> StoreError {
        let said = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        StoreError::Panicked(said)
    }

    /// Whether retrying the same call later may succeed (connection trouble,
    /// serialization failures), as opposed to a definite answer.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;
