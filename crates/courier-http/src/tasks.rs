//! `/v1/tasks/{id}` and `/v1/queues`: reading tasks and queue depths.

use actix_web::{HttpResponse, web};
use courier_core::{PausedQueue, QueueDepth, TaskRecord};
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
    /// The paused queues (with work or not): no worker claims their tasks.
    pub paused: Vec<PausedQueue>,
}

/// One task.
#[utoipa::path(
    get, path = "/v1/tasks/{id}", operation_id = "getTask", tag = "tasks",
    summary = "One task.",
    params(("id" = Uuid, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "The task.", body = TaskRecord, example = json!({"id": "01a243aa-8957-70b4-648c-c1f6e2f56459", "execution_id": "01a243aa-8957-70b4-86ac-69cf99e8a9f6", "step": 0, "kind": "activity", "function": "resize", "queue": "images", "tags": [], "priority": 0, "state": "completed", "args": {"image": "cat.png", "width": 800}, "result": {"url": "https://cdn.example.com/cat-800.png"}, "attempt": 1, "retry": {"max_attempts": 3, "initial_delay": "1s", "backoff_factor": 2.0, "max_delay": "5m", "jitter": 0.1}, "lease_owner": "external:py-worker-1", "heartbeat_at": "2026-12-05T00:46:19.481007Z", "wake_gen": 0, "scheduled_for": "2026-12-05T00:46:19.479900Z", "created_at": "2026-12-05T00:46:19.479900Z", "started_at": "2026-12-05T00:46:19.481007Z", "completed_at": "2026-12-05T00:46:19.483189Z"})),
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
        (status = 200, description = "Queue depths.", body = QueueList, example = json!({"queues": [{"queue": "images", "ready": 1, "scheduled": 0, "running": 0}], "paused": [{"queue": "email", "paused_at": "2026-12-05T16:40:00.125000Z"}]})),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn queues(http: web::Data<Http>) -> ApiResult<HttpResponse> {
    let queues = http.courier().queue_depth().await?;
    let paused = http.courier().paused_queues().await?;
    Ok(HttpResponse::Ok().json(QueueList { queues, paused }))
}
