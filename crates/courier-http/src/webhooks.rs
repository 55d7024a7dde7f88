//! `/v1/webhooks`: registering webhooks, rotating their secrets and reading
//! their deliveries, served from `courier-webhooks` (which keeps the records,
//! seals the secrets, signs and delivers).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::{WebhookRecord, format_duration, serde_duration};
use courier_webhooks::{
    DEFAULT_GRACE_PERIOD, DeliveryView, MAX_GRACE_PERIOD, NewWebhook, ReplayedDeliveries, WebhookError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use crate::Http;
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, PayloadTooLarge, StoreError, Unavailable, UnsupportedMediaType,
};
use crate::params::JsonObject;
use crate::params::{Page, optional_body, page_limit, page_offset, uuid};
use crate::routes::Routes;

/// Adds the webhooks' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_create, create)
        .add(__path_list, list)
        .add(__path_get, get)
        .add(__path_delete, delete)
        .add(__path_enable, enable)
        .add(__path_disable, disable)
        .add(__path_rotate_secret, rotate_secret)
        .add(__path_deliveries, deliveries)
        .add(__path_replay, replay)
        .add(__path_recover, recover)
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid { field, message, detail } => {
                ApiError::bad_request(message, json!({ "field": field, "value": detail }))
            }
            WebhookError::NotFound(id) => ApiError::not_found("webhook", id),
            // 409 rather than 429: waiting doesn't help, deleting a webhook does.
            WebhookError::TooMany { limit } => ApiError::conflict(
                "too many webhooks",
                json!({ "max_endpoints": limit, "hint": "delete a webhook or raise webhooks.max_endpoints" }),
            ),
            WebhookError::Disabled(id) => ApiError::conflict(
                "webhook is disabled",
                json!({ "webhook_id": id, "hint": "enable it first: POST /v1/webhooks/{id}/enable" }),
            ),
            // 409: the node's settings forbid it until the operator sets a key.
            WebhookError::NoSecretKey => ApiError::conflict(
                "webhook secrets can't be stored: no webhooks.secret_key is set",
                json!({
                    "setting": "webhooks.secret_key",
                    "env": "COURIER_WEBHOOKS_SECRET_KEY",
                    "hint": "set webhooks.secret_key (or COURIER_WEBHOOKS_SECRET_KEY) to 32 random bytes in base64, \
                             the same on every node, e.g. the output of `openssl rand -base64 32`",
                }),
            ),
            WebhookError::Runtime(e) => e.into(),
        }
    }
}

/// A webhook as listed: everything but its secrets (see [`view`]). Its schema,
/// `Webhook`, is the record's without `secret` (the record never serializes
/// its previous secret, so neither schema has it).
pub(crate) struct Webhook;

impl PartialSchema for Webhook {
    fn schema() -> RefOr<Schema> {
        let mut schema = serde_json::to_value(WebhookRecord::schema()).unwrap_or_default();
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            properties.remove("secret");
        }
        if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|name| name != "secret");
        }
        schema["description"] = json!("A registered webhook (without its secret).");
        courier_core::openapi::schema(schema)
    }
}

impl ToSchema for Webhook {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <WebhookRecord as ToSchema>::schemas(schemas);
    }
}

/// A webhook as listed: everything but its secret (stored sealed, shown in the
/// open only by registration and rotation).
fn view(hook: &WebhookRecord) -> Value {
    let mut value = serde_json::to_value(hook).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("secret");
        // A `read` token lists webhooks: it must not learn the receivers'
        // credentials a URL may carry (`https://***@host/`).
        map.insert(
            "url".into(),
            Value::String(courier_webhooks::destination::redact(&hook.url)),
        );
    }
    value
}

/// `GET /v1/webhooks` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A page of webhooks, oldest first.")]
pub(crate) struct WebhookList {
    /// The webhooks (without secrets).
    #[schema(value_type = Vec<Webhook>)]
    pub webhooks: Vec<Value>,
    /// The page size used.
    pub limit: u32,
    /// Items skipped.
    pub offset: u32,
}

/// `GET /v1/webhooks/{id}/deliveries` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A page of a webhook's deliveries, newest first.")]
pub(crate) struct DeliveryList {
    /// The deliveries, each with its attempts.
    pub deliveries: Vec<DeliveryView>,
    /// The page size used.
    pub limit: u32,
    /// Items skipped.
    pub offset: u32,
}

/// Registers a webhook; the answer (201) is the only time its secret is shown.
#[utoipa::path(
    post, path = "/v1/webhooks", operation_id = "createWebhook", tag = "webhooks",
    summary = "Register a webhook.",
    description = "The answer is the only time its signing secret is shown. Refused with 400: URLs that are not http(s) or whose host is a literal non-global address (loopback, private, link-local, ...) not in `webhooks.allow_private`, and headers Courier sets itself (`Host`, `Content-Length`, `Transfer-Encoding`, `Connection`, the signature headers, ...). Refused with 409 once `webhooks.max_endpoints` webhooks are registered.",
    request_body(content = NewWebhook, example = json!({"url": "https://hooks.example.com/courier", "event_types": ["execution.completed", "execution.failed"], "headers": {"x-team": "billing"}, "description": "billing events"})),
    responses(
        (status = 201, description = "Registered.", body = WebhookRecord, links(
            ("GetWebhook" = (operation_id = "getWebhook", parameters(("id" = "$response.body#/id")))),
            ("Enable" = (operation_id = "enableWebhook", parameters(("id" = "$response.body#/id")))),
            ("Disable" = (operation_id = "disableWebhook", parameters(("id" = "$response.body#/id")))),
            ("RotateSecret" = (operation_id = "rotateWebhookSecret", parameters(("id" = "$response.body#/id")))),
            ("Deliveries" = (operation_id = "listDeliveries", parameters(("id" = "$response.body#/id")))),
            ("Delete" = (operation_id = "deleteWebhook", parameters(("id" = "$response.body#/id")))),
        ), example = json!({"id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "url": "https://hooks.example.com/courier", "event_types": ["execution.completed"], "headers": {}, "secret": "whsec_gWGptwtfkDBn6ZrHMDUHG06x2ghDTEez", "description": "billing events", "enabled": true, "created_at": "2026-12-05T00:46:19.479094Z", "updated_at": "2026-12-05T00:46:19.479094Z"})),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn create(http: web::Data<Http>, body: JsonObject<NewWebhook>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().create(body.into_inner()).await?;
    Ok(HttpResponse::Created().json(hook))
}

/// Webhooks, oldest first (without secrets).
#[utoipa::path(
    get, path = "/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks",
    summary = "Webhooks, oldest first (without secrets).",
    params(Page),
    responses(
        (status = 200, description = "A page of webhooks.", body = WebhookList, example = json!({"webhooks": [{"created_at": "2026-12-05T00:46:19.479094Z", "description": "billing events", "enabled": true, "event_types": ["execution.completed"], "headers": {}, "id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "updated_at": "2026-12-05T00:46:19.479094Z", "url": "https://hooks.example.com/courier"}], "limit": 1, "offset": 0})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>, page: web::Query<Page>) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page_offset(page.offset)?;
    let hooks = http.webhooks().list(limit, offset).await?;
    let webhooks: Vec<Value> = hooks.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(WebhookList {
        webhooks,
        limit,
        offset,
    }))
}

/// One webhook (without its secret).
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", operation_id = "getWebhook", tag = "webhooks",
    summary = "One webhook (without its secret).",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    responses(
        (status = 200, description = "The webhook.", body = Webhook, example = json!({"created_at": "2026-12-05T00:46:19.479094Z", "description": "billing events", "enabled": true, "event_types": ["execution.completed"], "headers": {}, "id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "updated_at": "2026-12-05T00:46:19.479094Z", "url": "https://hooks.example.com/courier"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().get(uuid("webhook", &id)?).await?;
    Ok(HttpResponse::Ok().json(view(&hook)))
}

/// Deletes a webhook with its deliveries.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", operation_id = "deleteWebhook", tag = "webhooks",
    summary = "Delete a webhook with its deliveries.",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn delete(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    http.webhooks().delete(uuid("webhook", &id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Enables a webhook (after a 410 disabled it, say).
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/enable", operation_id = "enableWebhook", tag = "webhooks",
    summary = "Enable a webhook.",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    responses(
        (status = 200, description = "The webhook.", body = Webhook, example = json!({"created_at": "2026-12-05T00:46:19.479094Z", "description": "billing events", "enabled": true, "event_types": ["execution.completed"], "headers": {}, "id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "updated_at": "2026-12-05T00:46:21.001017Z", "url": "https://hooks.example.com/courier"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn enable(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().set_enabled(uuid("webhook", &id)?, true).await?;
    Ok(HttpResponse::Ok().json(view(&hook)))
}

/// Disables a webhook.
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/disable", operation_id = "disableWebhook", tag = "webhooks",
    summary = "Disable a webhook.",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    responses(
        (status = 200, description = "The webhook.", body = Webhook, example = json!({"created_at": "2026-12-05T00:46:19.479094Z", "description": "billing events", "disabled_reason": "disabled over the API", "enabled": false, "event_types": ["execution.completed"], "headers": {}, "id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "updated_at": "2026-12-05T00:46:20.999866Z", "url": "https://hooks.example.com/courier"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn disable(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().set_enabled(uuid("webhook", &id)?, false).await?;
    Ok(HttpResponse::Ok().json(view(&hook)))
}

/// `POST /v1/webhooks/{id}/rotate-secret` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(description = "How long the replaced secret goes on signing deliveries.")]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateSecretBody {
    /// How long deliveries still carry a signature made with the replaced
    /// secret (default `24h`, at most `7d`, `0`: none).
    #[serde(default, with = "serde_duration::option")]
    #[schema(schema_with = grace_period)]
    pub grace_period: Option<Duration>,
}

/// The `grace_period` a rotation accepts: at most [`MAX_GRACE_PERIOD`].
fn grace_period() -> RefOr<Schema> {
    crate::params::nullable(crate::params::duration_input(
        &format!(
            "A duration: a string such as `\"1h\"` or `\"24h\"`, or a number of seconds; at most `{}` (default `{}`, `0`: the replaced secret stops signing at once).",
            format_duration(MAX_GRACE_PERIOD),
            format_duration(DEFAULT_GRACE_PERIOD),
        ),
        0,
        Some(MAX_GRACE_PERIOD.as_secs()),
    ))
}

/// Gives a webhook a new signing secret, shown this once; the replaced one
/// signs on for the grace period. The body is optional (none, or `null`).
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/rotate-secret", operation_id = "rotateWebhookSecret", tag = "webhooks",
    summary = "Rotate a webhook's signing secret.",
    description = "The answer is the only time the new secret is shown. For the grace period (default 24h, at most 7d, 0: none) deliveries carry both signatures in `webhook-signature` (`v1,<new> v1,<previous>`), so a receiver verifies with either while it moves to the new secret; `X-Webhook-Signature` is signed with the new secret only. A secret replaced by an earlier rotation stops signing at once. Refused with 409 while no `webhooks.secret_key` is set.",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    request_body(content = Option<RotateSecretBody>, content_type = "application/json", example = json!({"grace_period": "24h"})),
    responses(
        (status = 200, description = "The webhook with its new secret.", body = WebhookRecord, example = json!({"created_at": "2026-12-05T00:46:19.479094Z", "description": "billing events", "enabled": true, "event_types": ["execution.completed"], "headers": {}, "id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "previous_secret_until": "2026-12-06T00:46:21.002420Z", "secret": "whsec_clT452l3khHta6N3EZT5ZDPn8qXldA9J", "updated_at": "2026-12-05T00:46:21.002420Z", "url": "https://hooks.example.com/courier"})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn rotate_secret(
    http: web::Data<Http>,
    id: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let id = uuid("webhook", &id)?;
    let body: Option<RotateSecretBody> = optional_body(&body)?;
    let grace = body.and_then(|b| b.grace_period).unwrap_or(DEFAULT_GRACE_PERIOD);
    let hook = http.webhooks().rotate_secret(id, grace).await?;
    let mut answer = view(&hook);
    answer["secret"] = json!(hook.secret);
    Ok(HttpResponse::Ok().json(answer))
}

/// A webhook's deliveries, newest first, each with its attempts.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", operation_id = "listDeliveries", tag = "webhooks",
    summary = "A webhook's deliveries, newest first, each with its attempts.",
    params(("id" = Uuid, Path, description = "The webhook's id."), Page),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryList, example = json!({"deliveries": [{"id": "01a243aa-895b-77a1-a2be-67b48a899085", "webhook_id": "01a243aa-8957-70b4-86ac-69cebec53e7a", "event_seq": 7, "event_type": "execution.completed", "execution_id": "01a243aa-895b-77a1-a2be-67b5e9b8e24a", "state": "delivered", "attempts": 1, "last_status": 200, "created_at": "2026-12-05T00:46:19.483967Z", "updated_at": "2026-12-05T00:46:19.486951Z", "attempt_log": [{"delivery_id": "01a243aa-895b-77a1-a2be-67b48a899085", "attempt": 1, "status": 200, "latency_ms": 0, "response": "ok", "at": "2026-12-05T00:46:19.486951Z"}]}], "limit": 1, "offset": 0})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn deliveries(
    http: web::Data<Http>,
    id: web::Path<String>,
    page: web::Query<Page>,
) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page_offset(page.offset)?;
    let deliveries = http.webhooks().deliveries(uuid("webhook", &id)?, limit, offset).await?;
    Ok(HttpResponse::Ok().json(DeliveryList {
        deliveries,
        limit,
        offset,
    }))
}

/// `POST /v1/webhooks/{id}/replay` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(description = "Which deliveries to replay (skipped) or recover (failed).")]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayBody {
    /// Only those recorded at or after this instant (RFC 3339); default: all.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
}

/// Replays the deliveries skipped while the webhook was disabled.
/// The body is optional (none, or `null`); one that is there must be a valid [`ReplayBody`].
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/replay", operation_id = "replaySkippedDeliveries", tag = "webhooks",
    summary = "Replay the deliveries skipped while the webhook was disabled.",
    description = "Events that arrive while a webhook is disabled (or whose attempt comes up then) are recorded as `skipped` deliveries. Once the webhook is enabled again, this makes each of them (at or after `since`, oldest first) pending again, made by a new execution; each is replayed once however many callers race. At most 10,000 per call: `more` says to call again. 409 while the webhook is disabled.",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    request_body(content = Option<ReplayBody>, content_type = "application/json", example = json!({"since": "2026-12-04T09:00:00Z"})),
    responses(
        (status = 200, description = "The deliveries replayed.", body = ReplayedDeliveries, example = json!({"replayed": [], "more": false})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn replay(http: web::Data<Http>, id: web::Path<String>, body: web::Bytes) -> ApiResult<HttpResponse> {
    let id = uuid("webhook", &id)?;
    let body: Option<ReplayBody> = optional_body(&body)?;
    let since = body.and_then(|b| b.since);
    let report = http.webhooks().replay_skipped(id, since).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// Recovers the deliveries that failed (every attempt used).
/// The body is optional (none, or `null`); one that is there must be a valid [`ReplayBody`].
#[utoipa::path(
    post, path = "/v1/webhooks/{id}/recover", operation_id = "recoverFailedDeliveries", tag = "webhooks",
    summary = "Try the deliveries that failed again (all, or those since a time), as after an outage of the endpoint.",
    description = "Each delivery that used every attempt (recorded at or after `since`, oldest first) has its dead-lettered step replayed: its execution tries the endpoint again from the first step of the retry schedule, and the delivery turns `pending`, then `delivered` or `failed` again. Each is recovered once however many callers race. At most 10,000 per call: `more` says to call again. 409 while the webhook is disabled.",
    params(("id" = Uuid, Path, description = "The webhook's id.")),
    request_body(content = Option<ReplayBody>, content_type = "application/json", example = json!({"since": "2026-12-04T09:00:00Z"})),
    responses(
        (status = 200, description = "The deliveries recovered.", body = ReplayedDeliveries, example = json!({"replayed": ["01a2457e-3df6-70c4-9329-5e4c14cd8f2a"], "more": false})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn recover(http: web::Data<Http>, id: web::Path<String>, body: web::Bytes) -> ApiResult<HttpResponse> {
    let id = uuid("webhook", &id)?;
    let body: Option<ReplayBody> = optional_body(&body)?;
    let since = body.and_then(|b| b.since);
    let report = http.webhooks().recover_failed(id, since).await?;
    Ok(HttpResponse::Ok().json(report))
}
