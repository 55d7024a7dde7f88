//! `/v1/executions`: create, list, inspect, wait for, cancel and signal executions.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use courier_core::{Dispatched, ExecutionFilter, ExecutionId, parse_duration};
use courier_runtime::{DispatchOptions, RuntimeError};
use serde_json::{Value, json};

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::params::{check_duration, execution_id, page_limit};
use crate::wire::{
    CancelBody, CreateExecution, ExecutionDetail, ExecutionList, ListExecutions, ResultBody, ResultQuery,
};

/// Steps listed with an execution; the rest are paged via the event log or tasks.
const STEPS_SHOWN: u32 = 1000;

/// Longest names accepted for functions, queues, tags, keys.
pub(crate) const MAX_NAME: usize = 200;

pub(crate) fn check_name(field: &str, value: &str) -> ApiResult<()> {
    if value.trim().is_empty() || value.len() > MAX_NAME {
        return Err(ApiError::bad_request(
            format!("{field} must be 1 to {MAX_NAME} characters"),
            json!({ "field": field }),
        ));
    }
    Ok(())
}

/// Creates an execution: 201 with it, or 200 with the existing one for a used idempotency key.
pub(crate) async fn create(http: web::Data<Http>, body: web::Json<CreateExecution>) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    check_name("function", &body.function)?;
    if let Some(queue) = &body.queue {
        check_name("queue", queue)?;
    }
    for tag in body.tags.iter().flatten() {
        check_name("tags", tag)?;
    }
    if let Some(key) = &body.idempotency_key {
        check_name("idempotency_key", key)?;
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
pub(crate) async fn list(http: web::Data<Http>, query: web::Query<ListExecutions>) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let offset = query.offset.unwrap_or(0);
    let executions = http
        .courier()
        .list_executions(&ExecutionFilter {
            state: query.state,
            function: query.function,
            include_internal: query.internal.unwrap_or(false),
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
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    let courier = http.courier();
    let view = courier.state_of(id).await?;
    let mut steps = courier.steps(id, None, STEPS_SHOWN + 1).await?;
    let steps_truncated = steps.len() > STEPS_SHOWN as usize;
    steps.truncate(STEPS_SHOWN as usize);
    Ok(HttpResponse::Ok().json(ExecutionDetail {
        execution: view.execution,
        counters: view.counters,
        values: view.state,
        progress: view.progress,
        steps,
        steps_truncated,
    }))
}

/// The result: 200 once finished, 202 with the state if still running after `?wait=`.
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
    match http.courier().wait_for(id, Some(wait)).await {
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
pub(crate) async fn cancel(http: web::Data<Http>, id: web::Path<String>, body: web::Bytes) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    let body: Option<CancelBody> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())))?
    };
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
