//! `/v1/executions`: create, list, inspect, wait for, cancel and signal executions.
//!
//! Request bodies refuse unknown fields, so a typo is a 400, not a silent default;
//! query strings ignore unknown parameters (such as `access_token`), as is usual.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::{
    Cancelled, Dispatched, ExecutionFilter, ExecutionId, ExecutionRecord, ExecutionState, ProgressEntry, SignalRecord,
    SignalSent, TaskError, TaskRecord, parse_duration, serde_duration,
};
use courier_runtime::{DispatchOptions, RuntimeError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::Http;
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, PayloadTooLarge, StoreError, TooManyWaiters, Unavailable,
    UnsupportedMediaType,
};
use crate::params::JsonObject;
use crate::params::{
    check_duration, check_name, check_public_name, execution_id, optional_body, page_limit, page_offset,
};
use crate::routes::Routes;

/// Steps listed with an execution; the rest are paged via the event log or tasks.
const STEPS_SHOWN: u32 = 1000;

/// Adds the executions' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_create, create)
        .add(__path_list, list)
        .add(__path_get, get)
        .add(__path_result, result)
        .add(__path_cancel, cancel)
        .add(__path_signal, signal)
}

/// `POST /v1/executions`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "An execution to dispatch.")]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateExecution {
    /// The function to run. 1 to 200 bytes, not blank.
    #[schema(min_length = 1, max_length = 200)]
    pub function: String,
    /// Its arguments (default `null`).
    #[serde(default)]
    pub args: Value,
    /// Wait this long before it may start.
    #[serde(default, with = "serde_duration::option")]
    #[schema(schema_with = crate::params::optional_duration)]
    pub delay: Option<Duration>,
    /// Time it out if unfinished after this long.
    #[serde(default, with = "serde_duration::option")]
    #[schema(schema_with = crate::params::optional_duration)]
    pub expiry: Option<Duration>,
    /// The queue (default `default`). 1 to 200 bytes, not blank.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub queue: Option<String>,
    /// Tags.
    #[serde(default)]
    #[schema(schema_with = crate::params::tag_names)]
    pub tags: Option<Vec<String>>,
    /// Higher runs first (default 0).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Dispatching again with this key answers the first execution (200). 1 to 200 bytes, not blank.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub idempotency_key: Option<String>,
}

/// `GET /v1/executions` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListExecutions {
    /// Only executions in this state.
    pub state: Option<ExecutionState>,
    /// Only executions of this function.
    pub function: Option<String>,
    /// Only executions whose root task went to this queue.
    pub queue: Option<String>,
    /// Only executions created at or after this instant (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Only executions created before this instant (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// Only the execution dispatched with this idempotency key.
    pub idempotency_key: Option<String>,
    /// Only the child executions this execution started.
    #[param(value_type = Option<String>, format = Uuid)]
    pub parent: Option<String>,
    /// Include Courier's own executions (`courier.*`: webhook deliveries, ingested
    /// messages); default false, unless `function` names one of them.
    pub internal: Option<bool>,
    /// Most items returned.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<u32>,
    /// Items skipped.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 100000, default = 0)]
    pub offset: Option<u32>,
}

/// `GET /v1/executions` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A page of executions, newest first.")]
pub(crate) struct ExecutionList {
    /// The executions.
    pub executions: Vec<ExecutionRecord>,
    /// The page size used.
    pub limit: u32,
    /// Items skipped.
    pub offset: u32,
}

/// `GET /v1/executions/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "An execution with its progress, counters, state values and steps.")]
pub(crate) struct ExecutionDetail {
    /// The execution.
    pub execution: ExecutionRecord,
    /// Its counters.
    pub counters: BTreeMap<String, f64>,
    /// Its custom state values.
    pub values: BTreeMap<String, Value>,
    /// Its latest progress reports, oldest first.
    pub progress: Vec<ProgressEntry>,
    /// The latest 50 signals sent to it, oldest first, each with the wait that
    /// consumed it (signals awaited are its `signal_wait` steps).
    pub signals: Vec<SignalRecord>,
    /// Its tasks by step (the first 1000).
    pub steps: Vec<TaskRecord>,
    /// Whether it has more steps than listed.
    pub steps_truncated: bool,
    /// Since when it has been paused (no worker claims its tasks), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
}

/// `GET /v1/executions/{id}/result` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultQuery {
    /// How long to wait for the end (capped by the server's `http.max_wait`; default 0).
    #[param(value_type = Option<courier_core::openapi::DurationText>)]
    pub wait: Option<String>,
}

/// `GET /v1/executions/{id}/result` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "An execution's outcome, or its state while unfinished.")]
pub(crate) struct ResultBody {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Its state.
    pub state: ExecutionState,
    /// Its result, if it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Its error, if it failed, timed out or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
}

/// `POST /v1/executions/{id}/cancel` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(description = "Why an execution is cancelled.")]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBody {
    /// Why (default `cancelled over the API`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Creates an execution: 201 with it, or 200 with the existing one for a used idempotency key.
#[utoipa::path(
    post, path = "/v1/executions", operation_id = "createExecution", tag = "executions",
    summary = "Dispatch an execution.",
    description = "201 with the new execution, or 200 with the existing one when `idempotency_key` was used before.",
    request_body(content = CreateExecution, example = json!({"function": "resize", "args": {"image": "cat.png", "width": 800}, "queue": "images", "priority": 5, "expiry": "1h", "idempotency_key": "resize-cat-800"})),
    responses(
        (status = 201, description = "Created.", body = ExecutionRecord, links(
            ("GetExecution" = (operation_id = "getExecution", parameters(("id" = "$response.body#/id")))),
            ("GetResult" = (operation_id = "getExecutionResult", parameters(("id" = "$response.body#/id")))),
            ("Cancel" = (operation_id = "cancelExecution", parameters(("id" = "$response.body#/id")))),
            ("Signal" = (operation_id = "sendSignal", parameters(("id" = "$response.body#/id")))),
            ("Events" = (operation_id = "pollEvents", parameters(("execution_id" = "$response.body#/id")))),
            ("Claim" = (operation_id = "claimTasks", request_body = json!({"functions": ["$response.body#/function"], "queues": ["$response.body#/queue"], "tags": null}))),
        ), example = json!({"id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "function": "resize", "state": "pending", "args": {"image": "cat.png", "width": 800}, "queue": "images", "tags": [], "priority": 5, "idempotency_key": "resize-cat-800", "created_at": "2026-12-05T00:44:28.869870Z", "updated_at": "2026-12-05T00:44:28.869870Z"})),
        (status = 200, description = "The execution dispatched earlier with this idempotency key.", body = ExecutionRecord, links(
            ("GetExecution" = (operation_id = "getExecution", parameters(("id" = "$response.body#/id")))),
            ("GetResult" = (operation_id = "getExecutionResult", parameters(("id" = "$response.body#/id")))),
            ("Cancel" = (operation_id = "cancelExecution", parameters(("id" = "$response.body#/id")))),
            ("Signal" = (operation_id = "sendSignal", parameters(("id" = "$response.body#/id")))),
            ("Events" = (operation_id = "pollEvents", parameters(("execution_id" = "$response.body#/id")))),
            ("Claim" = (operation_id = "claimTasks", request_body = json!({"functions": ["$response.body#/function"], "queues": ["$response.body#/queue"], "tags": null}))),
        ), example = json!({"id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "function": "resize", "state": "pending", "args": {"image": "cat.png", "width": 800}, "queue": "images", "tags": [], "priority": 5, "idempotency_key": "resize-cat-800", "created_at": "2026-12-05T00:44:28.869870Z", "updated_at": "2026-12-05T00:44:28.869870Z"})),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn create(http: web::Data<Http>, body: JsonObject<CreateExecution>) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    check_public_name("function", &body.function)?;
    if let Some(queue) = &body.queue {
        check_name("queue", queue)?;
    }
    for tag in body.tags.iter().flatten() {
        check_name("tags", tag)?;
    }
    if let Some(key) = &body.idempotency_key {
        check_public_name("idempotency_key", key)?;
    }
    check_duration("delay", body.delay)?;
    check_duration("expiry", body.expiry)?;
    let options = DispatchOptions {
        delay: body.delay,
        expiry: body.expiry,
        queue: body.queue,
        tags: body.tags,
        priority: body.priority,
        idempotency_key: body.idempotency_key,
    };
    let courier = http.courier();
    let new = courier.new_execution(&body.function, body.args, &options);
    let dispatched = courier
        .dispatch_many(vec![new])
        .await?
        .pop()
        .ok_or_else(|| ApiError::from(RuntimeError::Stopped("no dispatch result".into())))?;
    let status = match dispatched {
        Dispatched::Created(_) => StatusCode::CREATED,
        Dispatched::Existing(_) => StatusCode::OK,
    };
    let execution = courier
        .store()
        .get_execution(dispatched.id())
        .await?
        .ok_or_else(|| ApiError::not_found("execution", dispatched.id()))?;
    Ok(HttpResponse::build(status).json(execution))
}

/// Lists executions, newest first.
#[utoipa::path(
    get, path = "/v1/executions", operation_id = "listExecutions", tag = "executions",
    summary = "List executions, newest first.",
    params(ListExecutions),
    responses(
        (status = 200, description = "A page of executions.", body = ExecutionList, example = json!({"executions": [{"id": "01a243aa-895b-77a1-a2be-67b61f2a41dd", "function": "charge", "state": "failed", "args": {"order": 77}, "error": {"kind": "card_declined", "message": "the card was declined", "non_retryable": true}, "queue": "default", "tags": [], "priority": 0, "created_at": "2026-12-05T00:46:19.484654Z", "updated_at": "2026-12-05T00:46:19.487820Z", "started_at": "2026-12-05T00:46:19.486313Z", "completed_at": "2026-12-05T00:46:19.487820Z"}], "limit": 1, "offset": 0})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>, query: web::Query<ListExecutions>) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let offset = page_offset(query.offset)?;
    let parent = query.parent.as_deref().map(execution_id).transpose()?;
    // Asking for one of Courier's own functions by name is asking to see it.
    let named_internal = query.function.as_deref().is_some_and(courier_core::is_internal);
    let executions = http
        .courier()
        .list_executions(&ExecutionFilter {
            state: query.state,
            function: query.function,
            queue: query.queue,
            created_after: query.created_after,
            created_before: query.created_before,
            idempotency_key: query.idempotency_key,
            parent,
            include_internal: query.internal.unwrap_or(named_internal),
            limit,
            offset,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ExecutionList {
        executions,
        limit,
        offset,
    }))
}

/// One execution: state, result or error, progress, counters, state values, steps.
#[utoipa::path(
    get, path = "/v1/executions/{id}", operation_id = "getExecution", tag = "executions",
    summary = "One execution: state, result or error, progress, counters, state values, steps.",
    params(("id" = Uuid, Path, description = "The execution's id.")),
    responses(
        (status = 200, description = "The execution.", body = ExecutionDetail, links(
            ("GetRootTask" = (operation_id = "getTask", parameters(("id" = "$response.body#/steps/0/id")))),
        ), example = json!({"execution": {"id": "01a243aa-8957-70b4-86ac-69cf99e8a9f6", "function": "resize", "state": "completed", "args": {"image": "cat.png", "width": 800}, "result": {"url": "https://cdn.example.com/cat-800.png"}, "queue": "images", "tags": [], "priority": 0, "created_at": "2026-12-05T00:46:19.479900Z", "updated_at": "2026-12-05T00:46:19.483189Z", "started_at": "2026-12-05T00:46:19.481007Z", "completed_at": "2026-12-05T00:46:19.483189Z"}, "counters": {}, "values": {}, "progress": [{"execution_id": "01a243aa-8957-70b4-86ac-69cf99e8a9f6", "task_id": "01a243aa-8957-70b4-648c-c1f6e2f56459", "percent": 40.0, "message": "resizing", "created_at": "2026-12-05T00:46:19.482355Z"}], "signals": [{"id": "01a243a8-db17-720b-b523-300e37d22190", "execution_id": "01a243aa-8957-70b4-86ac-69cf99e8a9f6", "name": "approve", "payload": {"by": "ann"}, "created_at": "2026-12-05T00:46:19.480100Z", "consumed_by": "01a243aa-8957-70b4-648c-c1f6e2f56459", "consumed_at": "2026-12-05T00:46:19.480900Z"}], "steps": [{"id": "01a243aa-8957-70b4-648c-c1f6e2f56459", "execution_id": "01a243aa-8957-70b4-86ac-69cf99e8a9f6", "step": 0, "kind": "activity", "function": "resize", "queue": "images", "tags": [], "priority": 0, "state": "completed", "args": {"image": "cat.png", "width": 800}, "result": {"url": "https://cdn.example.com/cat-800.png"}, "attempt": 1, "retry": {"max_attempts": 3, "initial_delay": "1s", "backoff_factor": 2.0, "max_delay": "5m", "jitter": 0.1}, "lease_owner": "external:py-worker-1", "heartbeat_at": "2026-12-05T00:46:19.481007Z", "wake_gen": 0, "scheduled_for": "2026-12-05T00:46:19.479900Z", "created_at": "2026-12-05T00:46:19.479900Z", "started_at": "2026-12-05T00:46:19.481007Z", "completed_at": "2026-12-05T00:46:19.483189Z"}], "steps_truncated": false})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    let courier = http.courier();
    let view = courier.state_of(id).await?;
    let mut steps = courier.steps(id, None, STEPS_SHOWN + 1).await?;
    let steps_truncated = steps.len() > STEPS_SHOWN as usize;
    steps.truncate(STEPS_SHOWN as usize);
    let steps = steps.into_iter().map(crate::tasks::without_lease_token).collect();
    // A pause outlives the execution's end until cleanup; only a live one is shown.
    let paused_at = if view.execution.state.is_terminal() {
        None
    } else {
        courier.execution_paused_at(id).await?
    };
    Ok(HttpResponse::Ok().json(ExecutionDetail {
        execution: view.execution,
        counters: view.counters,
        values: view.state,
        progress: view.progress,
        signals: view.signals,
        steps,
        steps_truncated,
        paused_at,
    }))
}

/// The result: 200 once finished, 202 with the state if still running after `?wait=`.
#[utoipa::path(
    get, path = "/v1/executions/{id}/result", operation_id = "getExecutionResult", tag = "executions",
    summary = "Its result, waiting up to `wait` for it.",
    description = "200 once finished (`result` if it completed, `error` otherwise); 202 with the state if still unfinished after the wait.",
    params(("id" = Uuid, Path, description = "The execution's id."), ResultQuery),
    responses(
        (status = 200, description = "Finished.", body = ResultBody, example = json!({"execution_id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "state": "completed", "result": {"url": "https://cdn.example.com/cat-800.png"}})),
        (status = 202, description = "Still unfinished after the wait (`execution_id` and `state` only).", body = ResultBody, example = json!({"execution_id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "state": "running"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyWaiters),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn result(
    http: web::Data<Http>,
    id: web::Path<String>,
    query: web::Query<ResultQuery>,
) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    let wait = match &query.wait {
        Some(text) => parse_duration(text)
            .map_err(|e| ApiError::bad_request("invalid wait", json!(e.to_string())))?
            .min(http.options().max_wait),
        None => Duration::ZERO,
    };
    // A long-poll holds a place under `http.max_waiters` until it is answered.
    let _slot = if wait.is_zero() {
        None
    } else {
        Some(http.caps().waiter()?)
    };
    let waited = tokio::select! {
        waited = http.courier().wait_for(id, Some(wait)) => waited,
        // A stopping node answers an open wait with where the execution stands
        // (the client asks again, elsewhere) rather than dropping it unanswered.
        () = http.closing() => http.courier().wait_for(id, Some(Duration::ZERO)).await,
    };
    match waited {
        Ok(execution) => Ok(HttpResponse::Ok().json(ResultBody {
            execution_id: id,
            state: execution.state,
            result: execution.result,
            error: execution.error,
        })),
        Err(RuntimeError::WaitTimedOut { state, .. }) => Ok(HttpResponse::Accepted().json(ResultBody {
            execution_id: id,
            state,
            result: None,
            error: None,
        })),
        Err(e) => Err(e.into()),
    }
}

/// Cancels an execution and its unfinished tasks (409 if it already finished otherwise).
/// The body is optional (none, or `null`); one that is there must be a valid [`CancelBody`].
#[utoipa::path(
    post, path = "/v1/executions/{id}/cancel", operation_id = "cancelExecution", tag = "executions",
    summary = "Cancel an execution and its unfinished tasks.",
    description = "Cancelling a cancelled execution succeeds again; one that finished otherwise gets 409.",
    params(("id" = Uuid, Path, description = "The execution's id.")),
    request_body(content = Option<CancelBody>, content_type = "application/json", example = json!({"reason": "the customer withdrew the order"})),
    responses(
        (status = 200, description = "Cancelled.", body = Cancelled, example = json!({"execution_id": "01a243a8-d945-733e-b4fd-aca6c54c9cbe", "previous": "pending", "tasks": ["01a243a8-d945-733e-56dd-049fbe515111"]})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn cancel(http: web::Data<Http>, id: web::Path<String>, body: web::Bytes) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    let body: Option<CancelBody> = optional_body(&body)?;
    let reason = body
        .and_then(|b| b.reason)
        .unwrap_or_else(|| "cancelled over the API".into());
    let cancelled = http.courier().cancel(id, &reason).await?;
    if cancelled.previous.is_terminal() && cancelled.previous != courier_core::ExecutionState::Cancelled {
        return Err(ApiError::conflict(
            format!("execution is already {}", cancelled.previous),
            json!({"execution_id": id, "state": cancelled.previous}),
        ));
    }
    Ok(HttpResponse::Ok().json(cancelled))
}

/// Sends a signal; the body (any JSON, or nothing) is its payload.
#[utoipa::path(
    post, path = "/v1/executions/{id}/signals/{name}", operation_id = "sendSignal", tag = "executions",
    summary = "Send a named signal; the body (any JSON, or none) is its payload.",
    params(
        ("id" = Uuid, Path, description = "The execution's id."),
        ("name" = String, Path, description = "The signal's name.", min_length = 1, max_length = 200),
    ),
    request_body(content = Option<Value>, content_type = "application/json", description = "The payload (none: `null`).", example = json!({"approved": true, "by": "ada"})),
    responses(
        (status = 202, description = "Sent (kept until a wait consumes it).", body = SignalSent, example = json!({"signal_id": "01a243a8-db17-720b-b523-300e37d22190", "delivered_to": null, "parent_id": null})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn signal(
    http: web::Data<Http>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let (id, name) = path.into_inner();
    let id: ExecutionId = execution_id(&id)?;
    check_name("signal name", &name)?;
    let payload: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request("the body is not JSON", json!(e.to_string())))?
    };
    let sent = http.courier().send_signal(id, &name, payload).await?;
    Ok(HttpResponse::Accepted().json(sent))
}
