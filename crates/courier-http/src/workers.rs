//! External workers, so any language can run activities: long-poll claims, then
//! heartbeat / progress / checkpoint / complete / fail, every write fenced by the
//! claim's lease token (a stale token gets 409).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use courier_core::{ClaimRequest, LeaseKey, Progress};
use serde_json::json;

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::executions::check_name;
use crate::params::{check_duration, task_id};
use crate::wire::{CheckpointBody, ClaimBody, ClaimedTask, CompleteBody, FailBody, HeartbeatBody, ProgressBody};

/// Most tasks one claim may take.
const MAX_CLAIM: u32 = 1000;

/// Claims activities, waiting up to `wait` for some to appear.
pub(crate) async fn claim(http: web::Data<Http>, body: web::Json<ClaimBody>) -> ApiResult<HttpResponse> {
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
    let request = ClaimRequest {
        worker_id: body.worker_id,
        queues: body.queues,
        tags: body.tags,
        functions: body.functions,
        kinds: Vec::new(),
        max,
        lease,
        limits: Default::default(),
    };
    let claimed = http.courier().claim_external(request, wait).await?;
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
pub(crate) async fn heartbeat(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Json<HeartbeatBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let key = lease(&id, body.lease_token)?;
    let extend = http.courier().worker_options().lease;
    let renewed = http.courier().heartbeat_external(key, extend, body.details).await?;
    Ok(HttpResponse::Ok().json(renewed))
}

/// Saves a checkpoint for the next attempt.
pub(crate) async fn checkpoint(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Json<CheckpointBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let key = lease(&id, body.lease_token)?;
    http.courier().checkpoint_external(key, body.checkpoint).await?;
    Ok(HttpResponse::Ok().json(json!({"task_id": key.task_id})))
}

/// Reports progress.
pub(crate) async fn progress(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Json<ProgressBody>,
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
    Ok(HttpResponse::Ok().json(json!({"task_id": key.task_id})))
}

/// Completes the task with its result.
pub(crate) async fn complete(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Json<CompleteBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let key = lease(&id, body.lease_token)?;
    let done = http.courier().complete_external(key, body.result).await?;
    Ok(HttpResponse::Ok().json(done))
}

/// Fails the attempt: retried by the task's policy unless `retryable` is false.
pub(crate) async fn fail(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Json<FailBody>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    check_duration("retry_after", body.retry_after)?;
    let key = lease(&id, body.lease_token)?;
    let done = http.courier().fail_external(key, body.task_error()).await?;
    Ok(HttpResponse::Ok().json(done))
}
