//! State-changing requests under `/v1` carry JSON or nothing.
//!
//! A page on another site can make a browser send a POST with a form or
//! `text/plain` body, and the browser attaches whatever ambient credentials it
//! has (a cookie, a Basic login in front of the node) without asking anyone:
//! cross-site request forgery. Such requests always name one of those content
//! types, so refusing every body that is not JSON (415) closes that door;
//! a request with no body and no `Content-Type` (a cancel, a replay) is fine.

use actix_web::HttpResponse;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use serde_json::json;

use crate::error::ErrorBody;

/// Whether a `Content-Type` names JSON (`application/json`, `application/*+json`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Refuses a state-changing request whose body is declared as anything but JSON.
pub(crate) async fn json_only<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let changes_state = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let declared = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("?").to_string());
    match declared {
        Some(content_type) if changes_state && !is_json(&content_type) => {
            let response = HttpResponse::UnsupportedMediaType().json(ErrorBody {
                error: "the body must be application/json".into(),
                detail: json!({ "content_type": content_type }),
            });
            Ok(req.into_response(response).map_into_right_body())
        }
        _ => Ok(next.call(req).await?.map_into_left_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_and_json_suffixed_types_pass_forms_and_text_do_not() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(ok), "{ok}");
        }
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "?",
        ] {
            assert!(!is_json(refused), "{refused}");
        }
    }
}
