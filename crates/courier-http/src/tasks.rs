//! `/v1/tasks/{id}` and `/v1/queues`: reading tasks and queue depths.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::params::task_id;

/// One task.
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    let task = http
        .courier()
        .task(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task", id))?;
    Ok(HttpResponse::Ok().json(task))
}

/// Work per queue: ready, scheduled, running.
pub(crate) async fn queues(http: web::Data<Http>) -> ApiResult<HttpResponse> {
    let queues = http.courier().queue_depth().await?;
    Ok(HttpResponse::Ok().json(json!({ "queues": queues })))
}
