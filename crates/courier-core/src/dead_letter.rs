//! Dead letters: tasks that failed for good, kept for inspection and replay.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{ExecutionId, TaskId};
use crate::task::TaskRecord;

/// A dead letter as stored: the task as it was when it failed, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = DeadLetter))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// The task (one dead letter per task).
    pub task_id: TaskId,
    /// Its execution.
    pub execution_id: ExecutionId,
    /// Why it was given up on.
    pub reason: String,
    /// When it was moved here (store clock).
    pub failed_at: DateTime<Utc>,
    /// The task as it was.
    pub task: TaskRecord,
}

/// What replaying a dead letter did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    /// The task, pending again with its attempts reset.
    pub task_id: TaskId,
    /// Its execution.
    pub execution_id: ExecutionId,
    /// Whether the execution was reopened (it had failed because of this task).
    pub execution_resumed: bool,
}
