//! `/v1/dead-letters`: inspecting, replaying and discarding tasks that failed for good.

use actix_web::{HttpResponse, web};
use courier_core::{DeadLetterRecord, Replayed};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Http;
use crate::error::{ApiError, ApiResult, BadRequest, Conflict, NotFound, StoreError, Unavailable};
use crate::params::{Page, page_limit, page_offset, task_id};
use crate::routes::Routes;

/// Adds the dead letters' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_list, list)
        .add(__path_get, get)
        .add(__path_discard, discard)
        .add(__path_replay, replay)
}

/// `GET /v1/dead-letters` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A page of dead letters, newest first.")]
pub(crate) struct DeadLetterList {
    /// The dead letters.
    pub dead_letters: Vec<DeadLetterRecord>,
    /// Dead letters in all.
    pub total: u64,
    /// The page size used.
    pub limit: u32,
    /// Items skipped.
    pub offset: u32,
}

/// Dead letters, newest first.
#[utoipa::path(
    get, path = "/v1/dead-letters", operation_id = "listDeadLetters", tag = "dead letters",
    summary = "Dead letters, newest first.",
    params(Page),
    responses(
        (status = 200, description = "A page of dead letters.", body = DeadLetterList, links(
            ("GetDeadLetter" = (operation_id = "getDeadLetter", parameters(("id" = "$response.body#/dead_letters/0/task_id")))),
            ("Replay" = (operation_id = "replayDeadLetter", parameters(("id" = "$response.body#/dead_letters/0/task_id")))),
            ("Discard" = (operation_id = "discardDeadLetter", parameters(("id" = "$response.body#/dead_letters/0/task_id")))),
        ), example = json!({"dead_letters": [{"task_id": "01a243aa-895b-77a1-409e-cf8f64378c72", "execution_id": "01a243aa-895b-77a1-a2be-67b61f2a41dd", "reason": "error kind \"card_declined\" is not retryable", "failed_at": "2026-12-05T00:46:19.487820Z", "task": {"id": "01a243aa-895b-77a1-409e-cf8f64378c72", "execution_id": "01a243aa-895b-77a1-a2be-67b61f2a41dd", "step": 0, "kind": "activity", "function": "charge", "queue": "default", "tags": [], "priority": 0, "state": "failed", "args": {"order": 77}, "error": {"kind": "card_declined", "message": "the card was declined", "non_retryable": true}, "attempt": 1, "retry": {"max_attempts": 3, "initial_delay": "1s", "backoff_factor": 2.0, "max_delay": "5m", "jitter": 0.1}, "lease_owner": "external:py-worker-1", "heartbeat_at": "2026-12-05T00:46:19.486313Z", "wake_gen": 0, "scheduled_for": "2026-12-05T00:46:19.484654Z", "created_at": "2026-12-05T00:46:19.484654Z", "started_at": "2026-12-05T00:46:19.486313Z", "completed_at": "2026-12-05T00:46:19.487820Z"}}], "total": 1, "limit": 1, "offset": 0})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>, page: web::Query<Page>) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page_offset(page.offset)?;
    let mut dead_letters = http.courier().dead_letters(limit, offset).await?;
    for item in &mut dead_letters {
        item.task.lease_token = None;
    }
    let total = http.courier().store().count_dead_letters().await?;
    Ok(HttpResponse::Ok().json(DeadLetterList {
        dead_letters,
        total,
        limit,
        offset,
    }))
}

/// One dead letter, by its task's id.
#[utoipa::path(
    get, path = "/v1/dead-letters/{id}", operation_id = "getDeadLetter", tag = "dead letters",
    summary = "One dead letter, by its task's id.",
    params(("id" = Uuid, Path, description = "The dead letter's task id.")),
    responses(
        (status = 200, description = "The dead letter.", body = DeadLetterRecord, example = json!({"task_id": "01a243aa-895b-77a1-409e-cf8f64378c72", "execution_id": "01a243aa-895b-77a1-a2be-67b61f2a41dd", "reason": "error kind \"card_declined\" is not retryable", "failed_at": "2026-12-05T00:46:19.487820Z", "task": {"id": "01a243aa-895b-77a1-409e-cf8f64378c72", "execution_id": "01a243aa-895b-77a1-a2be-67b61f2a41dd", "step": 0, "kind": "activity", "function": "charge", "queue": "default", "tags": [], "priority": 0, "state": "failed", "args": {"order": 77}, "error": {"kind": "card_declined", "message": "the card was declined", "non_retryable": true}, "attempt": 1, "retry": {"max_attempts": 3, "initial_delay": "1s", "backoff_factor": 2.0, "max_delay": "5m", "jitter": 0.1}, "lease_owner": "external:py-worker-1", "heartbeat_at": "2026-12-05T00:46:19.486313Z", "wake_gen": 0, "scheduled_for": "2026-12-05T00:46:19.484654Z", "created_at": "2026-12-05T00:46:19.484654Z", "started_at": "2026-12-05T00:46:19.486313Z", "completed_at": "2026-12-05T00:46:19.487820Z"}})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    let mut item = http
        .courier()
        .dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::not_found("dead letter", id))?;
    item.task = crate::tasks::without_lease_token(item.task);
    Ok(HttpResponse::Ok().json(item))
}

/// Discards a dead letter.
#[utoipa::path(
    delete, path = "/v1/dead-letters/{id}", operation_id = "discardDeadLetter", tag = "dead letters",
    summary = "Discard a dead letter.",
    params(("id" = Uuid, Path, description = "The dead letter's task id.")),
    responses(
        (status = 204, description = "Discarded."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn discard(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    if http.courier().discard_dead_letter(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("dead letter", id))
    }
}

/// Replays a dead letter: the task runs again and its execution resumes.
#[utoipa::path(
    post, path = "/v1/dead-letters/{id}/replay", operation_id = "replayDeadLetter", tag = "dead letters",
    summary = "Replay a dead letter: the task runs again and its execution resumes.",
    params(("id" = Uuid, Path, description = "The dead letter's task id.")),
    responses(
        (status = 200, description = "Replayed.", body = Replayed, example = json!({"task_id": "01a243aa-895b-77a1-409e-cf8f64378c72", "execution_id": "01a243aa-895b-77a1-a2be-67b61f2a41dd", "execution_resumed": true})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn replay(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    let replayed = http.courier().replay_dead_letter(id).await?;
    Ok(HttpResponse::Ok().json(replayed))
}
