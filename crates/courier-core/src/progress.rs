//! Progress reports of an execution.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{ExecutionId, TaskId};

/// One progress report (seed 003's step/status/detail plus seed 002's percent/message).
///
/// ```
/// use courier_core::Progress;
/// let p = Progress::percent(40.0, "resizing");
/// assert_eq!(p.message.as_deref(), Some("resizing"));
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(description = "One progress report."))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The step it concerns, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// A short status word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// How far along, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

impl Progress {
    /// A report of `percent` done with `message`.
    pub fn percent(percent: f64, message: impl Into<String>) -> Self {
        Progress {
            percent: Some(percent),
            message: Some(message.into()),
            ..Progress::default()
        }
    }
}

/// A stored progress report.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgressEntry {
    /// The execution.
    pub execution_id: ExecutionId,
    /// The task that reported it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// The report.
    #[serde(flatten)]
    pub progress: Progress,
    /// When it was recorded (store clock).
    pub created_at: DateTime<Utc>,
}
