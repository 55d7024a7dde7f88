//! `/v1/executions/{id}/pause|resume` and `/v1/queues/{name}/pause|resume`:
//! holding an execution's or a queue's work back from every claimer in the
//! cluster, and letting it go again.

use actix_web::{HttpResponse, web};
use courier_core::PauseState;

use crate::Http;
use crate::error::{ApiResult, BadRequest, Conflict, NotFound, StoreError, Unavailable};
use crate::params::{check_name, execution_id};
use crate::routes::Routes;

/// Adds the pause routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_pause_execution, pause_execution)
        .add(__path_resume_execution, resume_execution)
        .add(__path_pause_queue, pause_queue)
        .add(__path_resume_queue, resume_queue)
}

/// Pauses an execution.
#[utoipa::path(
    post, path = "/v1/executions/{id}/pause", operation_id = "pauseExecution", tag = "executions",
    summary = "Pause an execution: no worker claims its tasks until it is resumed.",
    description = "Tasks already running finish and their results are kept; the steps they start wait. Logged as `execution.paused`. Pausing a paused execution answers 200 with `changed: false`; one that has ended gets 409.",
    params(("id" = Uuid, Path, description = "The execution's id.")),
    responses(
        (status = 200, description = "Paused.", body = PauseState, example = json!({"paused_at": "2026-12-05T16:40:00.125000Z", "changed": true})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn pause_execution(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    Ok(HttpResponse::Ok().json(http.courier().pause_execution(id).await?))
}

/// Resumes a paused execution.
#[utoipa::path(
    post, path = "/v1/executions/{id}/resume", operation_id = "resumeExecution", tag = "executions",
    summary = "Resume a paused execution: its waiting tasks are claimed again.",
    description = "Logged as `execution.unpaused`. Resuming an execution that is not paused answers 200 with `changed: false`.",
    params(("id" = Uuid, Path, description = "The execution's id.")),
    responses(
        (status = 200, description = "Not paused (any more).", body = PauseState, example = json!({"changed": true})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn resume_execution(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = execution_id(&id)?;
    Ok(HttpResponse::Ok().json(http.courier().resume_execution(id).await?))
}

/// Pauses a queue.
#[utoipa::path(
    post, path = "/v1/queues/{name}/pause", operation_id = "pauseQueue", tag = "tasks",
    summary = "Pause a queue: no worker claims its tasks until it is resumed.",
    description = "Running tasks finish; dispatches to the queue are still taken and wait. The queue need not have work yet. Logged as `queue.paused`; pausing a paused queue answers 200 with `changed: false`.",
    params(("name" = String, Path, description = "The queue.", min_length = 1, max_length = 200)),
    responses(
        (status = 200, description = "Paused.", body = PauseState, example = json!({"paused_at": "2026-12-05T16:40:00.125000Z", "changed": true})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn pause_queue(http: web::Data<Http>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    check_name("queue", &name)?;
    let state: PauseState = http.courier().pause_queue(&name).await?;
    Ok(HttpResponse::Ok().json(state))
}

/// Resumes a paused queue.
#[utoipa::path(
    post, path = "/v1/queues/{name}/resume", operation_id = "resumeQueue", tag = "tasks",
    summary = "Resume a paused queue: its tasks are claimed again.",
    description = "Logged as `queue.resumed`; resuming a queue that is not paused answers 200 with `changed: false`.",
    params(("name" = String, Path, description = "The queue.", min_length = 1, max_length = 200)),
    responses(
        (status = 200, description = "Not paused (any more).", body = PauseState, example = json!({"changed": true})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn resume_queue(http: web::Data<Http>, name: web::Path<String>) -> ApiResult<HttpResponse> {
    check_name("queue", &name)?;
    Ok(HttpResponse::Ok().json(http.courier().resume_queue(&name).await?))
}
