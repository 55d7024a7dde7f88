//! Errors of the runtime's API.

use courier_core::{ExecutionId, ExecutionState, NotifyError, StoreError, TaskError};
use thiserror::Error;

/// What a [`Courier`](crate::Courier) call can fail with.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The notifier failed.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// No execution has this id.
    #[error("execution {0} not found")]
    ExecutionNotFound(ExecutionId),
    /// `wait_for` gave up before the execution finished.
    #[error("execution {execution_id} is still {state} after the wait")]
    WaitTimedOut {
        /// The execution.
        execution_id: ExecutionId,
        /// Its state when the wait ended.
        state: ExecutionState,
    },
    /// The execution finished without a result of the expected type.
    #[error("execution {execution_id} ended {state}: {error}")]
    ExecutionFailed {
        /// The execution.
        execution_id: ExecutionId,
        /// How it ended.
        state: ExecutionState,
        /// Why.
        error: TaskError,
    },
    /// Arguments or a result could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(String),
    /// The node's actors are not running (not started, or shut down).
    #[error("the runtime is not running: {0}")]
    Stopped(String),
    /// Invalid configuration or input.
    #[error("invalid: {0}")]
    Invalid(String),
    /// No schedule has this id.
    #[error("schedule {0} not found")]
    ScheduleNotFound(String),
}

impl From<actix::MailboxError> for RuntimeError {
    fn from(e: actix::MailboxError) -> Self {
        RuntimeError::Stopped(e.to_string())
    }
}

impl From<serde_json::Error> for RuntimeError {
    fn from(e: serde_json::Error) -> Self {
        RuntimeError::Serialization(e.to_string())
    }
}
