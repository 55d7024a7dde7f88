//! Notifications for the users of an app that already knows who they are:
//! the app plugs its own sign-in into Courier's notification stream
//! ([`NotificationIdentity`]) instead of minting connection tokens.
//!
//! Run: `cargo run --example notification_identity`, then
//!
//! ```text
//! curl -c jar -X POST localhost:8082/login/ada          # the app's own sign-in (a cookie)
//! curl -b jar -N localhost:8082/notifications/stream    # Ada's notifications, live
//! curl -X POST localhost:8082/ping/ada                  # the app notifies Ada (another shell)
//! ```
//!
//! A real app would check a signed session; this one trusts a plain cookie to
//! stay short.

use actix_web::cookie::Cookie;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use courier::core::Viewer;
use courier::http::{Http, HttpOptions, IdentityProvider, NotificationHttpOptions, NotificationIdentity};
use courier::{Courier, CourierBuilderExt};
use serde_json::json;

/// The app's session cookie.
const APP_COOKIE: &str = "app_user";

/// Who a request is, by the app's own cookie: every browser of a user reads
/// that user's notifications, and dismissals apply to all of them.
struct AppSession;

impl NotificationIdentity for AppSession {
    fn identify(&self, req: &HttpRequest) -> Option<Viewer> {
        let user = req.cookie(APP_COOKIE)?.value().to_string();
        if user.is_empty() {
            return None;
        }
        Some(Viewer {
            user: Some(user.clone()),
            sources: vec!["announcements".into()],
            ..Viewer::session(format!("{user}-browser"))
        })
    }
}

async fn login(user: web::Path<String>) -> HttpResponse {
    HttpResponse::Ok()
        .cookie(
            Cookie::build(APP_COOKIE, user.into_inner())
                .path("/")
                .http_only(true)
                .finish(),
        )
        .json(json!({ "signed_in": true }))
}

/// An app route that notifies a user, on every device they have open.
async fn ping(http: web::Data<Http>, user: web::Path<String>) -> HttpResponse {
    let sent = http
        .courier()
        .notifications()
        .user(user.as_str())
        .send("generic", json!({ "title": "Ping", "message": "Someone pinged you." }))
        .await;
    match sent {
        Ok(Some(sent)) => HttpResponse::Created().json(json!({ "id": sent.notification.id })),
        Ok(None) => HttpResponse::Ok().json(json!({ "suppressed": true })),
        Err(e) => HttpResponse::BadRequest().json(json!({ "error": e.to_string() })),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let builder =
        Courier::builder().store_url(std::env::var("COURIER_STORE_URL").unwrap_or_else(|_| "sqlite::memory:".into()));
    let options = HttpOptions {
        notifications: NotificationHttpOptions {
            identity: Some(IdentityProvider(std::sync::Arc::new(AppSession))),
            ..NotificationHttpOptions::default()
        },
        ..HttpOptions::default()
    };
    let http = courier::http::prepare(builder, options.clone())
        .start()
        .await
        .map_err(std::io::Error::other)?;

    let for_app = http.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(courier::http::json_errors())
            .route("/login/{user}", web::post().to(login))
            .route("/ping/{user}", web::post().to(ping))
            .configure(|cfg| courier::http::configure(cfg, &for_app))
    })
    .bind(std::env::var("COURIER_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8082".into()))?
    .run();
    println!("serving on http://127.0.0.1:8082");
    server.await?;
    http.shutdown().await;
    Ok(())
}
