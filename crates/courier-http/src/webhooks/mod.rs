//! Webhooks: registration (`/v1/webhooks`), signing, the dispatcher that turns
//! events into durable deliveries once per cluster, and the delivery activity.

pub(crate) mod deliver;
pub(crate) mod dispatcher;
pub mod signing;

use actix_web::{HttpResponse, web};
use courier_core::WebhookRecord;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::params::{page_limit, uuid};
use crate::wire::{CreateWebhook, Page};

/// A webhook as listed: everything but its secret.
fn view(hook: &WebhookRecord) -> Value {
    let mut value = serde_json::to_value(hook).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("secret");
    }
    value
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// Registers a webhook; the answer (201) is the only time its secret is shown.
pub(crate) async fn create(http: web::Data<Http>, body: web::Json<CreateWebhook>) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let url = reqwest::Url::parse(&body.url)
        .map_err(|e| ApiError::bad_request("invalid url", json!({"url": body.url, "reason": e.to_string()})))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || body.url.len() > 2048 {
        return Err(ApiError::bad_request(
            "the url must be http(s) with a host, at most 2048 characters",
            json!({"url": body.url}),
        ));
    }
    for (name, value) in &body.headers {
        if !valid_header_name(name) || value.len() > 4096 || value.contains(['\r', '\n']) {
            return Err(ApiError::bad_request("invalid header", json!({"header": name})));
        }
    }
    let now = http.courier().store().now().await?;
    let hook = WebhookRecord {
        id: Uuid::now_v7(),
        url: body.url,
        event_types: body.event_types,
        execution_id: body.execution_id,
        task_id: body.task_id,
        headers: body.headers,
        secret: signing::new_secret(),
        description: body.description,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    };
    http.courier().create_webhook(hook.clone()).await?;
    Ok(HttpResponse::Created().json(hook))
}

/// Webhooks, oldest first (without secrets).
pub(crate) async fn list(http: web::Data<Http>, page: web::Query<Page>) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page.offset.unwrap_or(0);
    let hooks = http.courier().store().list_webhooks(limit, offset).await?;
    let webhooks: Vec<Value> = hooks.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(json!({"webhooks": webhooks, "limit": limit, "offset": offset})))
}

async fn find(http: &Http, id: &str) -> ApiResult<WebhookRecord> {
    let id = uuid("webhook", id)?;
    http.courier()
        .store()
        .get_webhook(id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook", id))
}

/// One webhook (without its secret).
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(view(&find(&http, &id).await?)))
}

/// Deletes a webhook with its deliveries.
pub(crate) async fn delete(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = uuid("webhook", &id)?;
    if http.courier().delete_webhook(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("webhook", id))
    }
}

/// Enables a webhook (after a 410 disabled it, say).
pub(crate) async fn enable(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    set_enabled(&http, &id, true).await
}

/// Disables a webhook.
pub(crate) async fn disable(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    set_enabled(&http, &id, false).await
}

async fn set_enabled(http: &Http, id: &str, enabled: bool) -> ApiResult<HttpResponse> {
    let hook = find(http, id).await?;
    let reason = (!enabled).then_some("disabled over the API");
    http.courier().set_webhook_enabled(hook.id, enabled, reason).await?;
    Ok(HttpResponse::Ok().json(view(&find(http, id).await?)))
}

/// A webhook's deliveries, newest first, each with its attempts.
pub(crate) async fn deliveries(
    http: web::Data<Http>,
    id: web::Path<String>,
    page: web::Query<Page>,
) -> ApiResult<HttpResponse> {
    let hook = find(&http, &id).await?;
    let limit = page_limit(page.limit)?;
    let offset = page.offset.unwrap_or(0);
    let store = http.courier().store();
    let mut out = Vec::new();
    for delivery in store.list_deliveries(hook.id, limit, offset).await? {
        let attempts = store.list_delivery_attempts(delivery.id).await?;
        let mut value = serde_json::to_value(&delivery).unwrap_or(Value::Null);
        value["attempt_log"] = json!(attempts);
        out.push(value);
    }
    Ok(HttpResponse::Ok().json(json!({"deliveries": out, "limit": limit, "offset": offset})))
}
