//! `/healthz` (the process answers) and `/readyz` (it can serve: the store
//! answers and the node is not shutting down).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::Http;

/// Alive.
pub(crate) async fn healthz(http: web::Data<Http>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "node": http.courier().node_id()}))
}

/// Ready to serve.
pub(crate) async fn readyz(http: web::Data<Http>) -> HttpResponse {
    if http.is_stopping() {
        return HttpResponse::ServiceUnavailable().json(json!({"error": "not ready", "detail": "shutting down"}));
    }
    match http.courier().store().now().await {
        Ok(now) => HttpResponse::Ok().json(json!({
            "status": "ready",
            "node": http.courier().node_id(),
            "store": http.courier().store().backend(),
            "notifier": http.courier().notifier().backend(),
            "store_time": now,
        })),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({"error": "not ready", "detail": e.to_string()})),
    }
}
