//! Request and response bodies of the API that are not core records.
//!
//! Core records (executions, tasks, events, dead letters, webhooks' deliveries)
//! go on the wire as their serde form; these types are the API's own envelopes.
//! Request bodies refuse unknown fields, so a typo is a 400, not a silent default;
//! query strings ignore unknown parameters (such as `access_token`), as is usual.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use courier_core::{
    ExecutionId, ExecutionRecord, ExecutionState, LeaseToken, ProgressEntry, TaskError, TaskId, TaskRecord,
    serde_duration,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/executions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateExecution {
    pub function: String,
    #[serde(default)]
    pub args: Value,
    #[serde(default, with = "serde_duration::option")]
    pub delay: Option<Duration>,
    #[serde(default, with = "serde_duration::option")]
    pub expiry: Option<Duration>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `GET /v1/executions` query.
#[derive(Debug, Deserialize)]
pub struct ListExecutions {
    pub state: Option<ExecutionState>,
    pub function: Option<String>,
    /// Include Courier's own executions (webhook deliveries); default false.
    pub internal: Option<bool>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// `GET /v1/executions` answer.
#[derive(Debug, Serialize)]
pub struct ExecutionList {
    pub executions: Vec<ExecutionRecord>,
    pub limit: u32,
    pub offset: u32,
}

/// `GET /v1/executions/{id}` answer.
#[derive(Debug, Serialize)]
pub struct ExecutionDetail {
    pub execution: ExecutionRecord,
    pub counters: BTreeMap<String, f64>,
    pub values: BTreeMap<String, Value>,
    pub progress: Vec<ProgressEntry>,
    pub steps: Vec<TaskRecord>,
    pub steps_truncated: bool,
}

/// `GET /v1/executions/{id}/result` query.
#[derive(Debug, Deserialize)]
pub struct ResultQuery {
    pub wait: Option<String>,
}

/// `GET /v1/executions/{id}/result` answer.
#[derive(Debug, Serialize)]
pub struct ResultBody {
    pub execution_id: ExecutionId,
    pub state: ExecutionState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

/// `POST /v1/executions/{id}/cancel` body (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /v1/dead-letters` and other paged queries.
#[derive(Debug, Deserialize)]
pub struct Page {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// `POST /v1/cleanup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupBody {
    #[serde(with = "serde_duration")]
    pub older_than: Duration,
}

/// `POST /v1/workers/claim`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub worker_id: String,
    #[serde(default)]
    pub queues: Option<Vec<String>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    #[serde(default)]
    pub max: Option<u32>,
    #[serde(default, with = "serde_duration::option")]
    pub lease: Option<Duration>,
    #[serde(default, with = "serde_duration::option")]
    pub wait: Option<Duration>,
}

/// One claimed task, as an external worker sees it.
#[derive(Debug, Serialize)]
pub struct ClaimedTask {
    pub task_id: TaskId,
    pub execution_id: ExecutionId,
    pub function: String,
    pub args: Value,
    pub attempt: u32,
    pub lease_token: LeaseToken,
    pub lease_expires_at: DateTime<Utc>,
    pub queue: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
}

/// `POST /v1/tasks/{id}/heartbeat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    pub lease_token: LeaseToken,
    #[serde(default)]
    pub details: Option<Value>,
}

/// `POST /v1/tasks/{id}/checkpoint`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    pub lease_token: LeaseToken,
    pub checkpoint: Value,
}

/// `POST /v1/tasks/{id}/progress`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    pub lease_token: LeaseToken,
    #[serde(default)]
    pub percent: Option<f64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub detail: Option<Value>,
}

/// `POST /v1/tasks/{id}/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    pub lease_token: LeaseToken,
    #[serde(default)]
    pub result: Value,
}

/// An error as an external worker reports it: a message, or a full error.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ErrorBody {
    Message(String),
    Full {
        #[serde(default)]
        kind: Option<String>,
        message: String,
        #[serde(default)]
        details: Option<Value>,
    },
}

/// `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    pub lease_token: LeaseToken,
    pub error: ErrorBody,
    #[serde(default)]
    pub retryable: Option<bool>,
    #[serde(default, with = "serde_duration::option")]
    pub retry_after: Option<Duration>,
}

impl FailBody {
    /// The error as the runtime records it.
    pub fn task_error(&self) -> TaskError {
        let mut error = match &self.error {
            ErrorBody::Message(message) => TaskError::new(TaskError::ERROR, message.clone()),
            ErrorBody::Full { kind, message, details } => {
                let mut e = TaskError::new(kind.clone().unwrap_or_else(|| TaskError::ERROR.into()), message.clone());
                e.details = details.clone();
                e
            }
        };
        error.non_retryable = self.retryable == Some(false);
        error.retry_after_ms = self.retry_after.map(|d| d.as_millis() as u64);
        error
    }
}

/// `GET /v1/events` query (also the SSE stream's).
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    pub execution_id: Option<ExecutionId>,
    pub task_id: Option<TaskId>,
    /// Comma-separated event types.
    #[serde(rename = "type")]
    pub types: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<u32>,
}

/// `GET /v1/events` answer.
#[derive(Debug, Serialize)]
pub struct EventsPage {
    pub events: Vec<courier_core::Event>,
    pub next: i64,
    pub has_more: bool,
}
