//! `GET /openapi.json`: the API document (being written).

use actix_web::HttpResponse;

/// The OpenAPI document.
pub(crate) async fn document() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"openapi": "3.1.0", "info": {"title": "Courier", "version": env!("CARGO_PKG_VERSION")}, "paths": {}}))
}
