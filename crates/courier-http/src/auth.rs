//! Bearer-token authentication for `/v1` (when `api.tokens` is set).
//!
//! A token comes in `Authorization: Bearer <token>`, or, for clients that cannot
//! set headers (a browser's `EventSource`, a WebSocket), in `?access_token=`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web;
use serde_json::json;

use crate::Http;
use crate::error::ApiError;

/// Constant-time comparison, so a token cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(req: &ServiceRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("access_token").cloned())
}

/// Refuses requests without a configured token (401) when tokens are configured.
pub(crate) async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tokens = req
        .app_data::<web::Data<Http>>()
        .map(|http| http.options().tokens.clone())
        .unwrap_or_default();
    if tokens.is_empty() {
        return next.call(req).await;
    }
    match presented(&req) {
        Some(token) if tokens.iter().any(|t| same(t.as_bytes(), token.as_bytes())) => next.call(req).await,
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid token", json!(null)).into()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
            json!("send Authorization: Bearer <token>"),
        )
        .into()),
    }
}
