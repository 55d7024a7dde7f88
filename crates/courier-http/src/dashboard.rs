//! `GET /`: the dashboard, one self-contained page that talks to the API.

use actix_web::HttpResponse;

use crate::routes::Routes;

pub(crate) const PAGE: &str = include_str!("../assets/dashboard.html");

/// Adds the dashboard's route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_page, page)
}

/// The dashboard page.
#[utoipa::path(
    get, path = "/", operation_id = "dashboard", tag = "node",
    summary = "The dashboard page.",
    responses((status = 200, description = "The dashboard.", content_type = "text/html", body = String))
)]
pub(crate) async fn page() -> HttpResponse {
    let mut response = HttpResponse::Ok().content_type("text/html; charset=utf-8").body(PAGE);
    crate::page_policy::DASHBOARD.apply(response.headers_mut());
    response
}
