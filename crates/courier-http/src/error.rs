//! API errors: always a JSON body `{"error": ..., "detail": ...}` with the right status,
//! and the document's shared error answers that describe them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use courier_core::StoreError as StoreFailure;
use courier_runtime::RuntimeError;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response;
use utoipa::{ToResponse, ToSchema};

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short sentence saying what went wrong.
    pub error: String,
    /// Anything that helps: the id concerned, the field, the state.
    pub detail: Value,
    /// Seconds the client should wait before trying again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: StatusCode, error: impl Into<String>, detail: Value) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail,
            retry_after: None,
        }
    }

    /// The same error, answered with `Retry-After: seconds` (at least 1).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
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
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(ErrorBody {
            error: self.error.clone(),
            detail: self.detail.clone(),
        })
    }
}

impl From<StoreFailure> for ApiError {
    fn from(e: StoreFailure) -> Self {
        match &e {
            StoreFailure::ExecutionNotFound(id) => ApiError::not_found("execution", id),
            StoreFailure::TaskNotFound(id) => ApiError::not_found("task", id),
            StoreFailure::DeadLetterNotFound(id) => ApiError::not_found("dead letter", id),
            StoreFailure::LeaseLost { task_id, reason } => ApiError::conflict(
                "the lease is no longer held",
                json!({"task_id": task_id, "reason": reason.to_string()}),
            ),
            StoreFailure::ExecutionState { id, state, detail } => ApiError::conflict(
                format!("execution is {state}"),
                json!({"execution_id": id, "state": state, "reason": detail}),
            ),
            StoreFailure::Conflict { id, detail } => {
                ApiError::conflict("conflict", json!({"id": id, "reason": detail}))
            }
            StoreFailure::Invalid(detail) => ApiError::bad_request("invalid request", json!(detail)),
            // The database's own words (host names, SQL, constraint names) stay in
            // the node's log: an answer says only what the caller can act on.
            StoreFailure::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store unavailable",
                    json!("the store cannot be reached now; try again (the node's log has the cause)"),
                )
            }
            // The node has turned not ready and restarts what panicked: like an
            // outage, worth trying again (perhaps on another node).
            StoreFailure::Panicked(detail) => {
                tracing::error!(panic = %detail, "a store call panicked");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store unavailable",
                    json!("a store call failed on this node; try again (the node's log has the cause)"),
                )
            }
            StoreFailure::Backend(detail) => {
                tracing::error!(error = %detail, "store backend error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store error",
                    json!("the store failed; the node's log has the cause"),
                )
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
            RuntimeError::ScheduleNotFound(id) => ApiError::not_found("schedule", id),
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

/// Every error answer's body (the schema `Error`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error, description = "Every error answer.")]
#[serde(deny_unknown_fields)]
pub(crate) struct ErrorBody {
    /// A short sentence saying what went wrong.
    pub error: String,
    /// Anything that helps: the id concerned, the field, the state.
    pub detail: Value,
}

/// An error answer of the document: `description`, with an [`ErrorBody`].
fn error_answer(description: &str) -> RefOr<Response> {
    answer(json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    }))
}

/// A response written as JSON (constant fragments only: a malformed one fails the
/// first test that builds the document).
fn answer(value: Value) -> RefOr<Response> {
    RefOr::T(serde_json::from_value(value).unwrap_or_else(|e| panic!("a well-formed response: {e}")))
}

/// The shared error answers (`#/components/responses/...`): a handler names
/// them in its `#[utoipa::path]` as `(status = 404, response = NotFound)`.
macro_rules! error_answers {
    ($($(#[$doc:meta])* $name:ident: $description:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            pub(crate) struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), error_answer($description))
                }
            }
        )*

        /// Every shared error answer, for the document's components.
        pub(crate) fn error_answers() -> Vec<(&'static str, RefOr<Response>)> {
            let mut answers = vec![$(<$name as ToResponse>::response()),*];
            answers.push(<TooManyRequests as ToResponse>::response());
            answers.push(<QueueFull as ToResponse>::response());
            answers.push(<TooManyStreams as ToResponse>::response());
            answers.push(<TooManyWaiters as ToResponse>::response());
            answers
        }
    };
}

error_answers! {
    /// 400.
    BadRequest: "A malformed id, query parameter or body.",
    /// 401 under `/v1` and on `/metrics` (added to those operations by the document).
    Unauthorized: "A missing or unknown bearer token (only when `api.tokens` is set; on `/metrics` only with `metrics.require_token`).",
    /// 403 (added to every operation with a scope by the document).
    Forbidden: "The bearer token lacks the scope this operation needs (`{\"error\": \"forbidden\", \"detail\": \"this token lacks the <scope> scope\"}`), or a WebSocket was opened from a page whose origin is neither this node's nor in `http.cors_origins`.",
    /// 404.
    NotFound: "Nothing has this id.",
    /// 409.
    Conflict: "The resource's state, or the node's settings, forbid it (a lost lease, a finished execution, `webhooks.max_endpoints` reached, no `webhooks.secret_key` to seal webhook secrets with).",
    /// 413.
    PayloadTooLarge: "The body is larger than `http.body_limit`.",
    /// 415.
    UnsupportedMediaType: "The body is not `application/json`.",
    /// 500.
    StoreError: "The store failed.",
    /// 503.
    Unavailable: "The store is unreachable, or the node is shutting down.",
    /// 422.
    Unprocessable: "The body names no valid target (an unknown `target`, or its id missing or invalid).",
    /// 401 on `/notifications/...`.
    NotSignedIn: "The connection has no valid identity: a missing, invalid or expired connection token, or (without tokens) no anonymous session yet.",
    /// 401 on `POST /notifications/webhook`.
    WrongWebhookSecret: "A missing or wrong webhook secret.",
}

/// The shared error answers that also carry `Retry-After`: `$retry` describes
/// the header.
macro_rules! retry_after_answers {
    ($($(#[$doc:meta])* $name:ident: $description:literal, $retry:literal;)*) => {
        $(
            $(#[$doc])*
            pub(crate) struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let response = answer(json!({
                        "description": $description,
                        "headers": { "Retry-After": { "description": $retry, "schema": { "type": "integer", "minimum": 1 } } },
                        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                    }));
                    (stringify!($name), response)
                }
            }
        )*
    };
}

retry_after_answers! {
    /// 429 on `POST /notifications/webhook`.
    TooManyRequests: "Authentication failed from this client within `notifications.webhook_failure_window`.",
        "Seconds to wait.";
    /// 429 on `POST /v1/notify`.
    QueueFull: "More messages are waiting to be committed than `ingest.queue_size`; `detail.retry_after_ms` says when to try again.",
        "Seconds to wait.";
    /// 503 on the event streams.
    TooManyStreams: "As many streams (SSE, WebSocket and notification streams together) are open on this node as `http.max_streams` allows (`Retry-After` says when to try again); or the store is unreachable, or the node is shutting down.",
        "Seconds to wait (with a full node).";
    /// 429 on the long-polls (a claim's or a result's `wait`).
    TooManyWaiters: "As many long-polls are waiting on this node as `http.max_waiters` allows; `Retry-After` says when to try again (or ask without `wait`).",
        "Seconds to wait.";
}
