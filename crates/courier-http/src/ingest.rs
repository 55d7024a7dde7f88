//! `POST /v1/notify`: ingestion over HTTP. The same message the TCP and Redis
//! inputs take (seed 001's `{provider, recipient, message, ...}`), through the
//! same intake: 202 once its delivery execution is committed, 429 with
//! `Retry-After` past `ingest.queue_size`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use courier_ingest::{IntakeError, Origin};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::Http;
use crate::error::{ApiError, ApiResult, BadRequest, PayloadTooLarge, QueueFull, Unavailable, UnsupportedMediaType};
use crate::routes::Routes;

/// Adds the ingestion route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_notify, notify)
}

/// A message taken in.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A message taken in: its delivery execution is committed.")]
pub(crate) struct Queued {
    /// The delivery execution; its result lists one outcome per recipient, in order.
    pub id: courier_core::ExecutionId,
    /// Always `queued`.
    #[schema(example = "queued")]
    pub status: &'static str,
}

/// The message (the schema of the body).
#[derive(Debug, ToSchema)]
#[schema(
    description = "Seed 001's message. Recipients: an actor `{name, account: {address | number | userid}}`, `{chat_id}`, `{channel_id}`, `{team_id}`, or a bare address. Every other field is a template variable.",
    example = json!({"provider": "email", "recipient": [{"name": "Ada", "account": {"address": "ada@example.com"}}], "subject": "Hello {{ name }}", "message": "Order {{ order }} shipped.", "order": 7})
)]
#[allow(dead_code)] // a schema only: the body is read as JSON and checked by the intake
pub(crate) struct NotifyMessage {
    /// The provider (a name under `[ingest.providers]`).
    provider: String,
    /// One recipient or a list of them.
    #[schema(value_type = Vec<Object>)]
    recipient: Value,
    /// The body, a template.
    message: Option<String>,
    /// The subject, a template.
    subject: Option<String>,
    /// A named template in `ingest.template_dir`, instead of `message`.
    template: Option<String>,
    /// An idempotency key: the same id twice is one execution.
    id: Option<String>,
}

/// Takes in one message for delivery.
#[utoipa::path(
    post, path = "/v1/notify", operation_id = "notify", tag = "ingestion",
    summary = "Take in a message for delivery by a provider (email, slack, teams, webhook, log).",
    description = "The message becomes an execution of `courier.ingest.deliver`, one provider call per recipient; `GET /v1/executions/{id}/result` lists `{recipient, ok, detail}` per recipient, in order.",
    request_body = NotifyMessage,
    responses(
        (status = 202, description = "Accepted: the delivery execution is committed.", body = Queued, example = json!({"id": "01a243aa-8f50-76ef-a707-f6e2900c5326", "status": "queued"})),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 429, response = QueueFull),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn notify(http: web::Data<Http>, body: web::Json<Value>) -> ApiResult<HttpResponse> {
    let ingest = http
        .ingest()
        .ok_or_else(|| ApiError::unavailable("ingestion is not installed on this node", Value::Null))?;
    let intake = ingest.intake();
    let limit = ingest.options().max_message_bytes;
    let size = serde_json::to_vec(&*body).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > limit {
        intake.refused_by_input(&Origin::Http, "too_large");
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message too large",
            json!({"limit_bytes": limit, "size_bytes": size}),
        ));
    }
    let message = intake.check(body.into_inner()).map_err(|invalid| {
        let error = IntakeError::Invalid(invalid);
        intake.refused(&Origin::Http, &error);
        refusal(error)
    })?;
    match intake.offer(message, Origin::Http).await {
        Ok(id) => Ok(HttpResponse::Accepted().json(Queued { id, status: "queued" })),
        // Said in the body and in `Retry-After` (whole seconds, at least 1).
        Err(IntakeError::QueueFull { retry_after_ms }) => Ok(HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after_ms.div_ceil(1000).max(1).to_string()))
            .json(json!({"error": "queue full", "detail": {"retry_after_ms": retry_after_ms}}))),
        Err(other) => Err(refusal(other)),
    }
}

/// The HTTP answer for a refusal.
fn refusal(error: IntakeError) -> ApiError {
    match error {
        IntakeError::Invalid(e) => {
            ApiError::bad_request("invalid message", json!({"field": e.field, "reason": e.detail}))
        }
        IntakeError::QueueFull { retry_after_ms } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue full",
            json!({"retry_after_ms": retry_after_ms}),
        ),
        IntakeError::NotRunning => ApiError::unavailable("the node is starting or stopping", Value::Null),
        IntakeError::Store(e) => e.into(),
    }
}
