//! `/v1/webhooks`: registering webhooks and reading their deliveries, served
//! from `courier-webhooks` (which keeps the records, signs and delivers).

use actix_web::{HttpResponse, web};
use courier_core::WebhookRecord;
use courier_webhooks::{NewWebhook, WebhookError};
use serde_json::{Value, json};

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::params::{page_limit, uuid};
use crate::wire::Page;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid { field, message, detail } => {
                ApiError::bad_request(message, json!({ "field": field, "value": detail }))
            }
            WebhookError::NotFound(id) => ApiError::not_found("webhook", id),
            WebhookError::Runtime(e) => e.into(),
        }
    }
}

/// A webhook as listed: everything but its secret.
fn view(hook: &WebhookRecord) -> Value {
    let mut value = serde_json::to_value(hook).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("secret");
    }
    value
}

/// Registers a webhook; the answer (201) is the only time its secret is shown.
pub(crate) async fn create(http: web::Data<Http>, body: web::Json<NewWebhook>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().create(body.into_inner()).await?;
    Ok(HttpResponse::Created().json(hook))
}

/// Webhooks, oldest first (without secrets).
pub(crate) async fn list(http: web::Data<Http>, page: web::Query<Page>) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page.offset.unwrap_or(0);
    let hooks = http.webhooks().list(limit, offset).await?;
    let webhooks: Vec<Value> = hooks.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(json!({"webhooks": webhooks, "limit": limit, "offset": offset})))
}

/// One webhook (without its secret).
pub(crate) async fn get(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().get(uuid("webhook", &id)?).await?;
    Ok(HttpResponse::Ok().json(view(&hook)))
}

/// Deletes a webhook with its deliveries.
pub(crate) async fn delete(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    http.webhooks().delete(uuid("webhook", &id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Enables a webhook (after a 410 disabled it, say).
pub(crate) async fn enable(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().set_enabled(uuid("webhook", &id)?, true).await?;
    Ok(HttpResponse::Ok().json(view(&hook)))
}

/// Disables a webhook.
pub(crate) async fn disable(http: web::Data<Http>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let hook = http.webhooks().set_enabled(uuid("webhook", &id)?, false).await?;
    Ok(HttpResponse::Ok().json(view(&hook)))
}

/// A webhook's deliveries, newest first, each with its attempts.
pub(crate) async fn deliveries(
    http: web::Data<Http>,
    id: web::Path<String>,
    page: web::Query<Page>,
) -> ApiResult<HttpResponse> {
    let limit = page_limit(page.limit)?;
    let offset = page.offset.unwrap_or(0);
    let deliveries = http.webhooks().deliveries(uuid("webhook", &id)?, limit, offset).await?;
    Ok(HttpResponse::Ok().json(json!({"deliveries": deliveries, "limit": limit, "offset": offset})))
}
