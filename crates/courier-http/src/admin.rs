//! `/v1/dead-letters` and `/v1/cleanup`: inspecting and replaying failures, and
//! deleting old history.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::params::{check_duration, page_limit, task_id};
use crate::wire::{CleanupBody, Page};

/// Dead letters, newest first.
pub(crate) async fn dead_letters(http: web::Data<Http>, page: web::Query<Page>) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page.offset.unwrap_or(0);
    let items = http.courier().dead_letters(limit, offset).await?;
    let total = http.courier().store().count_dead_letters().await?;
    Ok(HttpResponse::Ok().json(json!({"dead_letters": items, "total": total, "limit": limit, "offset": offset})))
}

/// One dead letter, by its task's id.
pub(crate) async fn dead_letter(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    let item = http
        .courier()
        .dead_letter(id)
        .await?
        .ok_or_else(|| ApiError::not_found("dead letter", id))?;
    Ok(HttpResponse::Ok().json(item))
}

/// Replays a dead letter: the task runs again and its execution resumes.
pub(crate) async fn replay(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    let replayed = http.courier().replay_dead_letter(id).await?;
    Ok(HttpResponse::Ok().json(replayed))
}

/// Discards a dead letter.
pub(crate) async fn discard(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    if http.courier().discard_dead_letter(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("dead letter", id))
    }
}

/// Deletes finished executions and dead letters older than `older_than`.
pub(crate) async fn cleanup(http: web::Data<Http>, body: web::Json<CleanupBody>) -> ApiResult<HttpResponse> {
    check_duration("older_than", Some(body.older_than))?;
    let report = http.courier().cleanup(body.older_than).await?;
    Ok(HttpResponse::Ok().json(report))
}
