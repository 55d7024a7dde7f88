//! `/healthz` (the process answers) and `/readyz` (it can serve: the store
//! answers, its writes work, and the node is not shutting down).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::Http;
use crate::error::Unavailable;
use crate::routes::Routes;

/// Adds the health checks' routes.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_healthz, healthz).add(__path_readyz, readyz)
}

/// `"ok"`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Alive {
    /// The process answers.
    Ok,
}

/// `"ready"`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Serving {
    /// The node can serve.
    Ready,
}

/// The one word a status answer is.
fn word(word: &str) -> RefOr<Schema> {
    courier_core::openapi::schema(json!({ "type": "string", "enum": [word] }))
}

fn ok() -> RefOr<Schema> {
    word("ok")
}

fn ready() -> RefOr<Schema> {
    word("ready")
}

/// `GET /healthz` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "The process answers.")]
pub(crate) struct Health {
    /// Always `ok`.
    #[schema(schema_with = ok)]
    pub status: Alive,
    /// This node's id.
    pub node: String,
}

/// `GET /readyz` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "The node can serve.")]
pub(crate) struct Ready {
    /// Always `ready`.
    #[schema(schema_with = ready)]
    pub status: Serving,
    /// This node's id.
    pub node: String,
    /// The store backend.
    pub store: &'static str,
    /// The notifier backend.
    pub notifier: &'static str,
    /// The store's clock.
    pub store_time: DateTime<Utc>,
}

/// Alive.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "node",
    summary = "Whether the process answers.",
    responses((status = 200, description = "Alive.", body = Health, example = json!({"status": "ok", "node": "node-46b92cc0"})))
)]
pub(crate) async fn healthz(http: web::Data<Http>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: Alive::Ok,
        node: http.courier().node_id().to_string(),
    })
}

/// Ready to serve.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "node",
    summary = "Whether the node can serve.",
    description = "503 when the store does not answer, a group commit panicked and the node has not committed since, or the node is shutting down.",
    responses(
        (status = 200, description = "Ready.", body = Ready, example = json!({"status": "ready", "node": "node-46b92cc0", "store": "sqlite", "notifier": "memory", "store_time": "2026-12-05T00:46:19.478404Z"})),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn readyz(http: web::Data<Http>) -> HttpResponse {
    if http.is_stopping() {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "not ready", "detail": "shutting down"}));
    }
    // A store that answers reads is not enough: the node's write door may be
    // down (a panicked group commit, its actor restarting).
    if let Some(reason) = http.courier().unready_reason() {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "not ready", "detail": reason}));
    }
    match http.courier().store().now().await {
        Ok(now) => HttpResponse::Ok().json(Ready {
            status: Serving::Ready,
            node: http.courier().node_id().to_string(),
            store: http.courier().store().backend(),
            notifier: http.courier().notifier().backend(),
            store_time: now,
        }),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({"error": "not ready", "detail": e.to_string()})),
    }
}
