//! External workers, so any language can run activities: long-poll claims, then
//! heartbeat / progress / checkpoint / complete / fail, every write fenced by the
//! claim's lease token (a stale token gets 409).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::{
    ClaimRequest, Completed, ExecutionId, LeaseKey, LeaseToken, Progress, Renewed, TaskError, TaskId, serde_duration,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::Http;
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, PayloadTooLarge, StoreError, TooManyWaiters, Unavailable,
    UnsupportedMediaType,
};
use crate::params::JsonObject;
use crate::params::{check_duration, check_name, duration_input, nullable, task_id};
use crate::routes::Routes;

/// Adds the external workers' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_claim, claim)
        .add(__path_heartbeat, heartbeat)
        .add(__path_checkpoint, checkpoint)
        .add(__path_progress, progress)
        .add(__path_complete, complete)
        .add(__path_fail, fail)
}

/// `POST /v1/workers/claim`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "What an external worker claims.")]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimBody {
    /// Who claims (recorded as the lease owner). 1 to 200 bytes, not blank.
    #[schema(min_length = 1, max_length = 200)]
    pub worker_id: String,
    /// Only these queues (default: every queue).
    #[serde(default)]
    #[schema(schema_with = crate::params::queue_names)]
    pub queues: Option<Vec<String>>,
    /// The worker's tags: a tagged task is claimed only if they overlap.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Only these functions.
    #[serde(default)]
    #[schema(schema_with = crate::params::function_names)]
    pub functions: Option<Vec<String>>,
    /// At most this many (default 1).
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub max: Option<u32>,
    /// Lease length, 1s to 1d (default 30s).
    #[serde(default, with = "serde_duration::option")]
    #[schema(schema_with = lease_input)]
    pub lease: Option<Duration>,
    /// Long-poll up to this long (capped by the server's `http.max_wait`; default 0).
    #[serde(default, with = "serde_duration::option")]
    #[schema(schema_with = wait_input)]
    pub wait: Option<Duration>,
}

fn lease_input() -> RefOr<Schema> {
    nullable(duration_input("Lease length, 1s to 1d (default 30s).", 1, Some(86_400)))
}

fn wait_input() -> RefOr<Schema> {
    nullable(duration_input(
        "Long-poll up to this long (capped by the server's `http.max_wait`; default 0).",
        0,
        None,
    ))
}

/// One claimed task, as an external worker sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClaimedTask {
    /// The task.
    pub task_id: TaskId,
    /// Its execution.
    pub execution_id: ExecutionId,
    /// The activity to run.
    pub function: String,
    /// Its arguments.
    pub args: Value,
    /// Which attempt this claim is (1-based).
    pub attempt: u32,
    /// Present it on every write of this claim.
    pub lease_token: LeaseToken,
    /// When the lease runs out unless renewed.
    pub lease_expires_at: DateTime<Utc>,
    /// Its queue.
    pub queue: String,
    /// The checkpoint an earlier attempt saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Value>,
}

/// `POST /v1/tasks/{id}/heartbeat`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A heartbeat of a claim.")]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatBody {
    /// The `lease_token` of the claim (a stale one gets 409).
    pub lease_token: LeaseToken,
    /// Recorded with the `task.heartbeat` event.
    #[serde(default)]
    pub details: Option<Value>,
}

/// `POST /v1/tasks/{id}/checkpoint`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A checkpoint for the next attempt.")]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointBody {
    /// The `lease_token` of the claim (a stale one gets 409).
    pub lease_token: LeaseToken,
    /// Offered to the next attempt.
    pub checkpoint: Value,
}

/// `POST /v1/tasks/{id}/progress`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A progress report.")]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgressBody {
    /// The `lease_token` of the claim (a stale one gets 409).
    pub lease_token: LeaseToken,
    /// How far along.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100)]
    pub percent: Option<f64>,
    /// A human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// The step it concerns.
    #[serde(default)]
    pub step: Option<String>,
    /// A short status word.
    #[serde(default)]
    pub status: Option<String>,
    /// Anything else.
    #[serde(default)]
    pub detail: Option<Value>,
}

/// `POST /v1/tasks/{id}/complete`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A task's result.")]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    /// The `lease_token` of the claim (a stale one gets 409).
    pub lease_token: LeaseToken,
    /// The result (default `null`).
    #[serde(default)]
    pub result: Value,
}

/// An error as an external worker reports it: a message, or a full error.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "The error: a message, or a full error.")]
#[serde(untagged)]
pub(crate) enum WorkerError {
    /// A message (kind `error`).
    Message(String),
    /// A full error.
    Full {
        /// A short machine-readable class that retry policies match on (default `error`).
        #[serde(default)]
        kind: Option<String>,
        /// A human-readable explanation.
        message: String,
        /// Anything else worth keeping.
        #[serde(default)]
        details: Option<Value>,
    },
}

/// `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A failed attempt.")]
#[serde(deny_unknown_fields)]
pub(crate) struct FailBody {
    /// The `lease_token` of the claim (a stale one gets 409).
    pub lease_token: LeaseToken,
    /// The error: a message, or a full error.
    pub error: WorkerError,
    /// `false`: never retry, whatever the policy says.
    #[serde(default)]
    pub retryable: Option<bool>,
    /// Retry no sooner than this.
    #[serde(default, with = "serde_duration::option")]
    #[schema(schema_with = crate::params::optional_duration)]
    pub retry_after: Option<Duration>,
}

impl FailBody {
    /// The error as the runtime records it.
    pub fn task_error(&self) -> TaskError {
        let mut error = match &self.error {
            WorkerError::Message(message) => TaskError::new(TaskError::ERROR, message.clone()),
            WorkerError::Full { kind, message, details } => {
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

/// What a checkpoint or a progress report answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TaskAck {
    /// The task.
    pub task_id: TaskId,
}

/// Most tasks one claim may take.
const MAX_CLAIM: u32 = 1000;

/// Claims activities, waiting up to `wait` for some to appear.
#[utoipa::path(
    post, path = "/v1/workers/claim", operation_id = "claimTasks", tag = "workers",
    summary = "Claim activities for an external worker.",
    description = "Long-polls up to `wait` for work; an empty array if none came.",
    request_body(content = ClaimBody, example = json!({"worker_id": "py-worker-1", "functions": ["resize"], "queues": ["images"], "max": 10, "lease": "30s", "wait": "2s"})),
    responses(
        (status = 200, description = "The claimed tasks.", body = Vec<ClaimedTask>, links(
            ("GetTask" = (operation_id = "getTask", parameters(("id" = "$response.body#/0/task_id")))),
            ("Heartbeat" = (operation_id = "heartbeatTask", parameters(("id" = "$response.body#/0/task_id")), request_body = json!({"lease_token": "$response.body#/0/lease_token"}))),
            ("Checkpoint" = (operation_id = "checkpointTask", parameters(("id" = "$response.body#/0/task_id")), request_body = json!({"lease_token": "$response.body#/0/lease_token"}))),
            ("Progress" = (operation_id = "reportProgress", parameters(("id" = "$response.body#/0/task_id")), request_body = json!({"lease_token": "$response.body#/0/lease_token"}))),
            ("Complete" = (operation_id = "completeTask", parameters(("id" = "$response.body#/0/task_id")), request_body = json!({"lease_token": "$response.body#/0/lease_token"}))),
            ("Fail" = (operation_id = "failTask", parameters(("id" = "$response.body#/0/task_id")), request_body = json!({"lease_token": "$response.body#/0/lease_token"}))),
        ), example = json!([{"task_id": "01a243a8-d945-733e-56dd-049fbe515111", "execution_id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "function": "resize", "args": {"image": "cat.png", "width": 800}, "attempt": 1, "lease_token": "674cbf99-1fb4-48ec-a867-efee652f0b1d", "lease_expires_at": "2026-12-05T00:44:58.880692Z", "queue": "images"}])),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = TooManyWaiters),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn claim(http: web::Data<Http>, body: JsonObject<ClaimBody>) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    check_name("worker_id", &body.worker_id)?;
    for name in body.queues.iter().flatten().chain(body.functions.iter().flatten()) {
        check_name("queue or function", name)?;
    }
    let max = body.max.unwrap_or(1);
    if max == 0 || max > MAX_CLAIM {
        return Err(ApiError::bad_request(
            format!("max must be 1 to {MAX_CLAIM}"),
            json!({ "max": max }),
        ));
    }
    let lease = body.lease.unwrap_or(Duration::from_secs(30));
    if lease < Duration::from_secs(1) || lease > Duration::from_secs(86_400) {
        return Err(ApiError::bad_request(
            "lease must be between 1s and 1d",
            json!({ "lease": courier_core::format_duration(lease) }),
        ));
    }
    let wait = body.wait.unwrap_or(Duration::ZERO).min(http.options().max_wait);
    http.seen_workers().saw(
        &body.worker_id,
        body.functions.as_deref().unwrap_or_default(),
        body.queues.as_deref().unwrap_or_default(),
    );
    // A long-poll holds a place under `http.max_waiters` until it is answered.
    let _slot = if wait.is_zero() {
        None
    } else {
        Some(http.caps().waiter()?)
    };
    let request = ClaimRequest {
        worker_id: body.worker_id,
        queues: body.queues,
        tags: body.tags,
        functions: body.functions,
        kinds: Vec::new(),
        max,
        lease,
        limits: Default::default(),
        exclude_functions: Vec::new(),
        exclude_internal: true,
    };
    // A shutting-down node answers an open long-poll with no work (the worker
    // asks again, elsewhere) rather than dropping the connection unanswered.
    let claimed = http
        .courier()
        .claim_external_until(request, wait, http.closing())
        .await?;
    let tasks: Vec<ClaimedTask> = claimed
        .into_iter()
        .map(|c| ClaimedTask {
            task_id: c.task.id,
            execution_id: c.task.execution_id,
            function: c.task.function,
            args: c.task.args,
            attempt: c.lease.attempt,
            lease_token: c.lease.token,
            lease_expires_at: c.lease.expires_at,
            queue: c.task.queue,
            checkpoint: c.task.checkpoint,
        })
        .collect();
    Ok(HttpResponse::Ok().json(tasks))
}

fn lease(id: &str, token: courier_core::LeaseToken) -> ApiResult<LeaseKey> {
    Ok(LeaseKey {
        task_id: task_id(id)?,
        token,
    })
}

/// Renews the lease (by the worker's lease length, 30 s) and records a heartbeat.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/heartbeat", operation_id = "heartbeatTask", tag = "workers",
    summary = "Renew the lease and record a heartbeat.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    request_body(content = HeartbeatBody, example = json!({"lease_token": "0193a5e2-7c1e-7a55-9d3c-2f6b1e8a4c10", "details": {"rows_done": 1200}})),
    responses(
        (status = 200, description = "Renewed.", body = Renewed, example = json!({"task_id": "01a243a8-d945-733e-56dd-049fbe515111", "expires_at": "2026-12-05T00:44:59.202785Z"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn heartbeat(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: JsonObject<HeartbeatBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let key = lease(&id, body.lease_token)?;
    let extend = http.courier().worker_options().lease;
    let renewed = http.courier().heartbeat_external(key, extend, body.details).await?;
    Ok(HttpResponse::Ok().json(renewed))
}

/// Saves a checkpoint for the next attempt.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/checkpoint", operation_id = "checkpointTask", tag = "workers",
    summary = "Save a checkpoint for the next attempt.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    request_body(content = CheckpointBody, example = json!({"lease_token": "0193a5e2-7c1e-7a55-9d3c-2f6b1e8a4c10", "checkpoint": {"offset": 1200}})),
    responses(
        (status = 200, description = "Saved.", body = TaskAck, example = json!({"task_id": "01a243a8-d945-733e-56dd-049fbe515111"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn checkpoint(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: JsonObject<CheckpointBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let key = lease(&id, body.lease_token)?;
    http.courier().checkpoint_external(key, body.checkpoint).await?;
    Ok(HttpResponse::Ok().json(TaskAck { task_id: key.task_id }))
}

/// Reports progress.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/progress", operation_id = "reportProgress", tag = "workers",
    summary = "Report progress.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    request_body(content = ProgressBody, example = json!({"lease_token": "0193a5e2-7c1e-7a55-9d3c-2f6b1e8a4c10", "percent": 40.0, "message": "resizing", "step": "resize"})),
    responses(
        (status = 200, description = "Recorded.", body = TaskAck, example = json!({"task_id": "01a243a8-d945-733e-56dd-049fbe515111"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn progress(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: JsonObject<ProgressBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    if let Some(p) = body.percent
        && !(0.0..=100.0).contains(&p)
    {
        return Err(ApiError::bad_request(
            "percent must be 0 to 100",
            json!({ "percent": p }),
        ));
    }
    let key = lease(&id, body.lease_token)?;
    let progress = Progress {
        step: body.step,
        status: body.status,
        percent: body.percent,
        message: body.message,
        detail: body.detail,
    };
    http.courier().progress_external(key, progress).await?;
    Ok(HttpResponse::Ok().json(TaskAck { task_id: key.task_id }))
}

/// Completes the task with its result.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/complete", operation_id = "completeTask", tag = "workers",
    summary = "Complete the task with its result.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    request_body(content = CompleteBody, example = json!({"lease_token": "0193a5e2-7c1e-7a55-9d3c-2f6b1e8a4c10", "result": {"url": "https://cdn.example.com/cat-800.png"}})),
    responses(
        (status = 200, description = "Completed.", body = Completed, links(
            ("GetResult" = (operation_id = "getExecutionResult", parameters(("id" = "$response.body#/execution_id")))),
        ), example = json!({"task_id": "01a243a8-d945-733e-56dd-049fbe515111", "execution_id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "state": "completed", "parent_id": null, "execution_state": "completed"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn complete(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: JsonObject<CompleteBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let key = lease(&id, body.lease_token)?;
    let done = http.courier().complete_external(key, body.result).await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Fails the attempt: retried by the task's policy unless `retryable` is false.
#[utoipa::path(
    post, path = "/v1/tasks/{id}/fail", operation_id = "failTask", tag = "workers",
    summary = "Fail the attempt.",
    description = "Retried by the task's policy unless `retryable` is false.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    request_body(content = FailBody, example = json!({"lease_token": "0193a5e2-7c1e-7a55-9d3c-2f6b1e8a4c10", "error": {"kind": "http_503", "message": "the image store is unavailable"}, "retryable": true, "retry_after": "10s"})),
    responses(
        (status = 200, description = "Recorded (`state` is `pending` for a retry).", body = Completed, links(
            ("GetDeadLetter" = (operation_id = "getDeadLetter", parameters(("id" = "$response.body#/task_id")))),
            ("Replay" = (operation_id = "replayDeadLetter", parameters(("id" = "$response.body#/task_id")))),
            ("Discard" = (operation_id = "discardDeadLetter", parameters(("id" = "$response.body#/task_id")))),
        ), example = json!({"task_id": "01a243a8-d945-733e-56dd-049fbe515111", "execution_id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "state": "pending", "parent_id": null, "execution_state": "running"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn fail(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: JsonObject<FailBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    check_duration("retry_after", body.retry_after)?;
    let key = lease(&id, body.lease_token)?;
    let done = http.courier().fail_external(key, body.task_error()).await?;
    Ok(HttpResponse::Ok().json(done))
}
