//! `/v1/tasks/{id}` and `/v1/queues`: reading tasks and queue depths.

use actix_web::{HttpResponse, web};
use courier_core::{QueueDepth, TaskRecord};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Http;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound, StoreError, Unavailable};
use crate::params::task_id;
use crate::routes::Routes;

/// Adds the tasks' and queues' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_get, get).add(__path_queues, queues)
}

/// `GET /v1/queues` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Work per queue.")]
pub(crate) struct QueueList {
    /// Every queue with work.
    pub queues: Vec<QueueDepth>,
}

/// One task.
#[utoipa::path(
    get, path = "/v1/tasks/{id}", operation_id = "getTask", tag = "tasks",
    summary = "One task.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "The task.", body = TaskRecord),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = task_id(&id)?;
    let task = http
        .courier()
        .task(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task", id))?;
    Ok(HttpResponse::Ok().json(without_lease_token(task)))
}

/// A task as readers see it: without its lease token, which lets whoever holds
/// it write the task's result (only the claim's answer carries it).
pub(crate) fn without_lease_token(mut task: TaskRecord) -> TaskRecord {
    task.lease_token = None;
    task
}

/// Work per queue: ready, scheduled, running.
#[utoipa::path(
    get, path = "/v1/queues", operation_id = "listQueues", tag = "tasks",
    summary = "Work per queue: ready, scheduled, running.",
    responses(
        (status = 200, description = "Queue depths.", body = QueueList),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn queues(http: web::Data<Http>) -> ApiResult<HttpResponse> {
    let queues = http.courier().queue_depth().await?;
    Ok(HttpResponse::Ok().json(QueueList { queues }))
}
