//! The browser client, served by every node: `GET /notifications.js` (a classic
//! script), `GET /notifications.mjs` (the ES module) and `GET /notifications/demo`
//! (a page to try them). The client's source is `clients/browser-notifications/`
//! at the repository's root; it is compiled in, so a node needs no files beside it.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

/// One served file: its bytes, type and strong validator.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Self {
        let digest = Sha256::digest(body.as_bytes());
        Self {
            body,
            content_type,
            etag: format!("\"{}\"", hex::encode(&digest[..12])),
        }
    }

    /// 200 with the body, or 304 when the browser already holds this version.
    fn serve(&self, req: &HttpRequest, cache_control: &str) -> HttpResponse {
        let fresh = req
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == self.etag || tag == "*");
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, self.etag.as_str()))
            .insert_header((header::CACHE_CONTROL, cache_control))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if fresh {
            return response.finish();
        }
        response.content_type(self.content_type).body(self.body)
    }
}

/// The URLs are not versioned, so browsers revalidate after a few minutes (a
/// cheap 304) and pick up a new client soon after a node is upgraded.
const SCRIPT_CACHE: &str = "public, max-age=300, stale-while-revalidate=86400";

static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../../../clients/browser-notifications/notifications.js"),
        "text/javascript; charset=utf-8",
    )
});
static MODULE: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../../../clients/browser-notifications/notifications.mjs"),
        "text/javascript; charset=utf-8",
    )
});
static DEMO: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        include_str!("../../assets/notifications-demo.html"),
        "text/html; charset=utf-8",
    )
});

/// `GET /notifications.js`: the client as a classic script.
#[utoipa::path(
    get, path = "/notifications.js", operation_id = "notificationsScript", tag = "notifications",
    summary = "The browser client, as a classic script.",
    description = "Defines `window.Courier.notifications(options)`; a script tag with `data-courier-auto` starts a client at once (`data-token`, `data-url`) as `window.courierNotifications`. Sent with an `ETag` (a matching `If-None-Match` gets 304) and `Cache-Control`.",
    responses(
        (status = 200, description = "The script.", content_type = "text/javascript", body = String),
        (status = 304, description = "The copy the browser holds is current."),
    )
)]
pub(crate) async fn script(req: HttpRequest) -> HttpResponse {
    SCRIPT.serve(&req, SCRIPT_CACHE)
}

/// `GET /notifications.mjs`: the client as an ES module.
#[utoipa::path(
    get, path = "/notifications.mjs", operation_id = "notificationsModule", tag = "notifications",
    summary = "The browser client, as an ES module.",
    description = "Exports `notifications(options)` (also the default export); it loads `/notifications.js` beside it. Sent with an `ETag` and `Cache-Control`.",
    responses(
        (status = 200, description = "The module.", content_type = "text/javascript", body = String),
        (status = 304, description = "The copy the browser holds is current."),
    )
)]
pub(crate) async fn module(req: HttpRequest) -> HttpResponse {
    MODULE.serve(&req, SCRIPT_CACHE)
}

/// `GET /notifications/demo`: send notifications to yourself and watch the toasts.
#[utoipa::path(
    get, path = "/notifications/demo", operation_id = "notificationsDemo", tag = "notifications",
    summary = "A page to send yourself notifications and watch the toasts.",
    responses(
        (status = 200, description = "The demo page.", content_type = "text/html", body = String),
        (status = 304, description = "The copy the browser holds is current."),
    )
)]
pub(crate) async fn demo(req: HttpRequest) -> HttpResponse {
    static POLICY: LazyLock<crate::page_policy::PagePolicy> = LazyLock::new(|| {
        crate::page_policy::PagePolicy::for_page(include_str!("../../assets/notifications-demo.html"))
    });
    let mut response = DEMO.serve(&req, "no-cache");
    POLICY.apply(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn a_matching_if_none_match_gets_304_and_anything_else_the_body() {
        let asset = Asset::new("let x = 1;", "text/javascript; charset=utf-8");
        let fresh = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, format!("\"nope\", W/{}", asset.etag)))
            .to_http_request();
        let response = asset.serve(&fresh, SCRIPT_CACHE);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers().get(header::ETAG).unwrap(), asset.etag.as_str());

        let stale = TestRequest::default()
            .insert_header((header::IF_NONE_MATCH, "\"nope\""))
            .to_http_request();
        let response = asset.serve(&stale, SCRIPT_CACHE);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers().get(header::CACHE_CONTROL).unwrap(), SCRIPT_CACHE);
    }

    #[test]
    fn the_module_loads_the_script_it_is_served_beside() {
        // notifications.mjs imports "./notifications.js": both must stay side by side.
        assert!(MODULE.body.contains("import \"./notifications.js\";"));
        assert!(SCRIPT.body.contains("root.Courier.notifications = notifications;"));
    }
}
