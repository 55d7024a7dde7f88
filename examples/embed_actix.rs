//! Embedding Courier in an existing actix-web app: your own routes beside
//! Courier's API, streams, webhooks and dashboard, on one server.
//!
//! Run: `cargo run --example embed_actix`, then
//! `curl -X POST localhost:8081/orders/42` (your route, which dispatches work)
//! and watch `curl -N localhost:8081/v1/events/stream` (Courier's).

use actix_web::{App, HttpResponse, HttpServer, web};
use courier::core::TaskError;
use courier::http::{Http, HttpOptions};
use courier::{Courier, CourierBuilderExt, WorkerOptions};

/// An ordinary route of the host app that starts durable work.
async fn place_order(http: web::Data<Http>, id: web::Path<u64>) -> HttpResponse {
    match http.courier().dispatch("ship_order", id.into_inner()).await {
        Ok(execution) => HttpResponse::Accepted().json(serde_json::json!({ "execution_id": execution })),
        Err(e) => HttpResponse::ServiceUnavailable().json(serde_json::json!({ "error": e.to_string() })),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let builder = Courier::builder()
        .store_url(std::env::var("COURIER_STORE_URL").unwrap_or_else(|_| "./embedded.db".into()))
        .activity("ship_order", |_ctx, order: u64| async move {
            Ok::<_, TaskError>(format!("order {order} shipped"))
        })
        .worker(WorkerOptions::default());
    let options = HttpOptions::default();
    let http = courier::http::prepare(builder, options.clone())
        .start()
        .await
        .map_err(std::io::Error::other)?;

    let for_app = http.clone();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(courier::http::json_errors())
            .wrap(courier::http::cors(&options))
            .route("/orders/{id}", web::post().to(place_order))
            .configure(|cfg| courier::http::configure(cfg, &for_app))
    })
    .bind(std::env::var("COURIER_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8081".into()))?
    .run();
    println!("serving your routes and Courier's on http://127.0.0.1:8081");
    server.await?;
    http.shutdown().await;
    Ok(())
}
