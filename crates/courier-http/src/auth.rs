//! Bearer-token authentication for `/v1` (when `api.tokens` is set).
//!
//! A token comes in `Authorization: Bearer <token>` (the scheme in any case), or,
//! on the two routes whose browser clients cannot set headers (`EventSource` on
//! `/v1/events/stream`, a WebSocket on `/v1/ws`), in `?access_token=`: a token
//! in a URL ends up in histories and proxies, so nowhere else. A 401 says
//! `WWW-Authenticate: Bearer`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Http;
use crate::error::ErrorBody;

/// Constant-time comparison that leaks neither the bytes nor the length: both
/// sides are hashed first, so every comparison is of 32 bytes.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(req: &ServiceRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string());
    }
    if !takes_query_token(req.path()) {
        return None;
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("access_token").cloned())
}

/// Whether `path` accepts the token as `?access_token=`.
pub(crate) fn takes_query_token(path: &str) -> bool {
    matches!(path, "/v1/events/stream" | "/v1/ws")
}

/// Refuses requests without a configured token (401) when tokens are configured.
pub(crate) async fn require_token<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tokens = req
        .app_data::<web::Data<Http>>()
        .map(|http| http.options().tokens.clone())
        .unwrap_or_default();
    if tokens.is_empty() {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let refusal = match presented(&req) {
        // An empty token never matches, even if one was configured by mistake.
        Some(token)
            if !token.is_empty()
                && tokens
                    .iter()
                    .any(|t| !t.is_empty() && same(t.as_bytes(), token.as_bytes())) =>
        {
            return Ok(next.call(req).await?.map_into_left_body());
        }
        Some(_) => ErrorBody {
            error: "invalid token".into(),
            detail: json!(null),
        },
        None => ErrorBody {
            error: "missing bearer token".into(),
            detail: json!("send Authorization: Bearer <token>"),
        },
    };
    let response = HttpResponse::Unauthorized()
        .insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"))
        .json(refusal);
    Ok(req.into_response(response).map_into_right_body())
}
