//! API errors: always a JSON body `{"error": ..., "detail": ...}` with the right status.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use courier_core::StoreError;
use courier_runtime::RuntimeError;
use serde_json::{Value, json};

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short sentence saying what went wrong.
    pub error: String,
    /// Anything that helps: the id concerned, the field, the state.
    pub detail: Value,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, error: impl Into<String>, detail: Value) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(error: impl Into<String>, detail: Value) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail)
    }

    /// 404: nothing has this id.
    pub fn not_found(what: &str, id: impl ToString) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("{what} not found"),
            json!({ "id": id.to_string() }),
        )
    }

    /// 503: something the request needs is not running.
    pub fn unavailable(error: impl Into<String>, detail: Value) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, error, detail)
    }

    /// 409: the resource's state forbids it.
    pub fn conflict(error: impl Into<String>, detail: Value) -> Self {
        Self::new(StatusCode::CONFLICT, error, detail)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(json!({"error": self.error, "detail": self.detail}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::ExecutionNotFound(id) => ApiError::not_found("execution", id),
            StoreError::TaskNotFound(id) => ApiError::not_found("task", id),
            StoreError::DeadLetterNotFound(id) => ApiError::not_found("dead letter", id),
            StoreError::LeaseLost { task_id, reason } => ApiError::conflict(
                "the lease is no longer held",
                json!({"task_id": task_id, "reason": reason.to_string()}),
            ),
            StoreError::ExecutionState { id, state, detail } => ApiError::conflict(
                format!("execution is {state}"),
                json!({"execution_id": id, "state": state, "reason": detail}),
            ),
            StoreError::Conflict { id, detail } => ApiError::conflict("conflict", json!({"id": id, "reason": detail})),
            StoreError::Invalid(detail) => ApiError::bad_request("invalid request", json!(detail)),
            StoreError::Unavailable(detail) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", json!(detail))
            }
            StoreError::Backend(detail) => {
                tracing::error!(error = %detail, "store backend error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store error", json!(detail))
            }
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Store(e) => e.into(),
            RuntimeError::ExecutionNotFound(id) => ApiError::not_found("execution", id),
            RuntimeError::Notify(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "notifier unavailable",
                json!(e.to_string()),
            ),
            RuntimeError::Serialization(e) => ApiError::bad_request("cannot serialize", json!(e)),
            RuntimeError::Invalid(e) => ApiError::bad_request("invalid request", json!(e)),
            RuntimeError::Stopped(e) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down", json!(e)),
            RuntimeError::WaitTimedOut { execution_id, state } => ApiError::new(
                StatusCode::ACCEPTED,
                "still running",
                json!({"execution_id": execution_id, "state": state}),
            ),
            RuntimeError::ExecutionFailed {
                execution_id,
                state,
                error,
            } => ApiError::conflict(
                format!("execution {state}"),
                json!({"execution_id": execution_id, "state": state, "error": error}),
            ),
        }
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
