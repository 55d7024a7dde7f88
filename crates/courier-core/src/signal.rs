//! Signals: named messages sent to an execution from outside.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::id::{ExecutionId, TaskId};

/// A signal as stored. Signals of one name queue up: each wait consumes the oldest
/// unconsumed one, and a signal sent before anyone waits is kept until someone does.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(description = "A signal sent to an execution, and the wait that consumed it.")
)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalRecord {
    /// Its id.
    pub id: Uuid,
    /// The execution it was sent to.
    pub execution_id: ExecutionId,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Value,
    /// When it was sent (store clock).
    pub created_at: DateTime<Utc>,
    /// The signal-wait task that consumed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_by: Option<TaskId>,
    /// When it was consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_at: Option<DateTime<Utc>>,
}

/// What sending a signal did.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalSent {
    /// The stored signal.
    pub signal_id: Uuid,
    /// The waiting task it completed at once, if one was waiting.
    pub delivered_to: Option<TaskId>,
    /// That task's orchestrator, to wake.
    pub parent_id: Option<TaskId>,
}
