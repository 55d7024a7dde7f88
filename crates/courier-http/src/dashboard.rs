//! `GET /`: the dashboard, one self-contained page that talks to the API.

use actix_web::HttpResponse;

const PAGE: &str = include_str!("../assets/dashboard.html");

/// The dashboard page.
pub(crate) async fn page() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE)
}
