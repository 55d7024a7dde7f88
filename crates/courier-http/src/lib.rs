//! Courier over HTTP: the REST API, the event log as SSE, WebSocket and
//! polling, webhooks, Prometheus metrics, health checks, the OpenAPI document
//! and the dashboard, mountable into any actix-web app.
//!
//! This crate is the outside world's door; it holds no durable state of its own
//! (that is the store's) and runs no user code (that is the runtime's).
//!
//! ```no_run
//! # #[actix_web::main] async fn main() -> std::io::Result<()> {
//! use actix_web::{App, HttpServer};
//! use courier_http::{HttpOptions, configure};
//! use courier_runtime::{Courier, WorkerOptions};
//!
//! # let store: std::sync::Arc<dyn courier_core::Store> = unimplemented!();
//! // `store`: any courier_core::Store (the `courier` facade opens one by URL).
//! let options = HttpOptions::default();
//! let builder = Courier::builder().store(store).worker(WorkerOptions::default());
//! let http = courier_http::prepare(builder, options).start().await.expect("node starts");
//! let for_app = http.clone();
//! HttpServer::new(move || App::new().configure(|cfg| configure(cfg, &for_app)))
//!     .bind("127.0.0.1:8080")?
//!     .run()
//!     .await?;
//! http.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod auth;
mod caps;
mod cleanup;
mod dashboard;
mod dead_letters;
pub mod descriptors;
mod error;
mod events;
mod executions;
mod functions;
mod health;
mod ingest;
mod json_only;
pub mod listener;
mod metrics;
mod nodes;
pub mod notifications;
mod openapi;
mod options;
mod outbox;
mod page_policy;
mod params;
mod pauses;
mod routes;
mod schedules;
mod stats;
mod stream;
mod tasks;
mod webhooks;
mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use actix::prelude::*;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::web;
use courier_runtime::{Courier, CourierBuilder, RuntimeError};
use routes::Routes;

pub use auth::{ApiToken, Scope, TokenError};
pub use error::ApiError;
pub use notifications::{IdentityProvider, NotificationHttpOptions, NotificationIdentity};
pub use options::{HttpOptions, WebhookOptions};

/// A node with its HTTP surface: the runtime handle plus the actors that feed
/// streams and webhooks. Cheap to clone; pass it to [`configure`].
#[derive(Clone)]
pub struct Http {
    inner: Arc<Inner>,
}

struct Inner {
    courier: Courier,
    webhooks: courier_webhooks::Webhooks,
    ingest: Option<courier_ingest::Ingest>,
    options: HttpOptions,
    tail: Addr<stream::tail::LogTail>,
    tail_cursor: Arc<AtomicI64>,
    notification_hub: Addr<notifications::hub::NotificationHub>,
    /// The cluster's anonymous-session key, once read from the store.
    session_key: std::sync::OnceLock<Vec<u8>>,
    webhook_failures: notifications::Failures,
    stopping: AtomicBool,
    /// Turns true when [`Http::shutdown`] starts: long-polls answer at once.
    closing: tokio::sync::watch::Sender<bool>,
    /// Queues `/metrics` has reported, so an emptied one reads 0.
    seen_queues: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Open streams and waiting long-polls (`http.max_streams`, `http.max_waiters`).
    caps: caps::Caps,
    /// The last hour, counted for `/v1/stats`.
    stats: Arc<stats::Stats>,
    /// Outside workers that asked this node for work lately (`/v1/nodes`).
    seen_workers: nodes::SeenWorkers,
}

/// A node builder with the webhook delivery activity and dispatcher installed
/// (`courier-webhooks`) and ingestion's delivery functions (`courier-ingest`);
/// [`start`](Prepared::start) it.
pub struct Prepared {
    builder: CourierBuilder,
    options: HttpOptions,
    ingest: Result<courier_ingest::Ingest, courier_ingest::IngestError>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime did not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Ingestion's settings are wrong or an input could not start.
    #[error(transparent)]
    Ingest(#[from] courier_ingest::IngestError),
}

/// Installs webhooks (`courier_webhooks::install`) and ingestion
/// (`courier_ingest::install`, with `options.ingest`) on `builder`, to be
/// started with its HTTP surface.
pub fn prepare(builder: CourierBuilder, options: HttpOptions) -> Prepared {
    prepare_with(builder, options, None)
}

/// [`prepare`], with a hook run once per recipient result of an ingested message.
pub fn prepare_with(
    builder: CourierBuilder,
    options: HttpOptions,
    ingest_hook: Option<courier_ingest::ResultHook>,
) -> Prepared {
    let builder = courier_webhooks::install(builder, options.webhooks.clone());
    let (builder, ingest) = match courier_ingest::Setup::new(options.ingest.clone(), ingest_hook) {
        Ok(setup) => {
            let (builder, ingest) = setup.install(builder);
            (builder, Ok(ingest))
        }
        Err(error) => (builder, Err(error)),
    };
    Prepared {
        builder,
        options,
        ingest,
    }
}

impl Prepared {
    /// Starts the node (in the current actix system), its HTTP actors, then the
    /// configured ingestion inputs (TCP, Redis).
    pub async fn start(self) -> Result<Http, StartError> {
        let ingest = self.ingest?;
        let courier = self.builder.start().await?;
        let http = Http::start_with(courier, self.options, Some(ingest.clone()));
        if let Err(error) = ingest.start_inputs().await {
            http.shutdown().await;
            return Err(error.into());
        }
        Ok(http)
    }
}

impl Http {
    /// Starts the HTTP actors (the event log tail) for a running node. Webhooks
    /// are delivered only by nodes whose builder went through [`prepare`] (or
    /// `courier_webhooks::install`).
    pub fn start(courier: Courier, options: HttpOptions) -> Http {
        Http::start_with(courier, options, None)
    }

    fn start_with(courier: Courier, options: HttpOptions, ingest: Option<courier_ingest::Ingest>) -> Http {
        metrics::handle();
        let tail_cursor = Arc::new(AtomicI64::new(0));
        let stats = Arc::new(stats::Stats::default());
        let tail = stream::tail::LogTail::new(
            courier.store().clone(),
            courier.notifier().clone(),
            options.tail_poll,
            options.max_event_bytes,
            tail_cursor.clone(),
            stats.clone(),
        )
        .start();
        stats::QueueSampler::new(courier.store().clone(), stats.clone()).start();
        let notification_hub = notifications::hub::NotificationHub::new(
            courier.store().clone(),
            courier.notifier().clone(),
            options.notifications.keepalive,
        )
        .start();
        let caps = caps::Caps::new(options.max_streams, options.max_waiters);
        let http = Http {
            inner: Arc::new(Inner {
                caps,
                stats,
                webhooks: courier_webhooks::Webhooks::with_options(courier.clone(), options.webhooks.clone()),
                ingest,
                courier,
                options,
                tail,
                tail_cursor,
                notification_hub,
                session_key: std::sync::OnceLock::new(),
                webhook_failures: notifications::Failures::default(),
                stopping: AtomicBool::new(false),
                closing: tokio::sync::watch::Sender::new(false),
                seen_queues: Default::default(),
                seen_workers: Default::default(),
            }),
        };
        nodes::add_to_report(&http);
        http
    }

    /// The runtime.
    pub fn courier(&self) -> &Courier {
        &self.inner.courier
    }

    pub(crate) fn notification_hub(&self) -> &Addr<notifications::hub::NotificationHub> {
        &self.inner.notification_hub
    }

    /// How many event-log streams (SSE and WebSocket) are open on this node.
    pub async fn event_streams(&self) -> usize {
        self.tail().send(stream::tail::Members).await.unwrap_or(0)
    }

    /// Outside workers that asked this node for work lately.
    pub(crate) fn seen_workers(&self) -> &nodes::SeenWorkers {
        &self.inner.seen_workers
    }

    /// How many notification streams are open on this node.
    pub async fn notification_streams(&self) -> usize {
        self.inner
            .notification_hub
            .send(notifications::hub::Count)
            .await
            .unwrap_or(0)
    }

    pub(crate) fn session_key(&self) -> Option<Vec<u8>> {
        self.inner.session_key.get().cloned()
    }

    pub(crate) fn remember_session_key(&self, key: Vec<u8>) {
        let _ = self.inner.session_key.set(key);
    }

    pub(crate) fn webhook_failures(&self) -> &notifications::Failures {
        &self.inner.webhook_failures
    }

    /// The cluster's webhooks.
    pub fn webhooks(&self) -> &courier_webhooks::Webhooks {
        &self.inner.webhooks
    }

    /// Ingestion (`POST /v1/notify`, the TCP and Redis inputs), when installed
    /// through [`prepare`].
    pub fn ingest(&self) -> Option<&courier_ingest::Ingest> {
        self.inner.ingest.as_ref()
    }

    /// The options in force.
    pub fn options(&self) -> &HttpOptions {
        &self.inner.options
    }

    pub(crate) fn caps(&self) -> &caps::Caps {
        &self.inner.caps
    }

    pub(crate) fn stats(&self) -> &stats::Stats {
        &self.inner.stats
    }

    pub(crate) fn tail(&self) -> &Addr<stream::tail::LogTail> {
        &self.inner.tail
    }

    /// The last event sequence number the streams have seen.
    pub fn tail_cursor(&self) -> i64 {
        self.inner.tail_cursor.load(Ordering::SeqCst)
    }

    /// Adds `queues` (and the default queue) to those `/metrics` has reported, and
    /// returns them all.
    pub(crate) fn remember_queues(&self, queues: impl Iterator<Item = String>) -> Vec<String> {
        let mut seen = self
            .inner
            .seen_queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.insert(courier_core::DEFAULT_QUEUE.to_string());
        seen.extend(queues);
        seen.iter().cloned().collect()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Resolves once [`shutdown`](Self::shutdown) has started; a long-poll races
    /// it so that a stopping node answers its waiters instead of dropping them.
    pub(crate) async fn closing(&self) {
        let mut closing = self.inner.closing.subscribe();
        // An error means the sender is gone, which only happens with the node.
        let _ = closing.wait_for(|closing| *closing).await;
    }

    /// The first step of a graceful stop: `/readyz` turns 503 while everything
    /// else keeps answering, so a load balancer can take this node out before
    /// [`shutdown`](Self::shutdown) closes anything.
    pub fn begin_drain(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Graceful shutdown: `/readyz` turns 503, long-polls (claims, result waits)
    /// are answered as if their wait ran out, every SSE and WebSocket stream gets
    /// a final event and closes, and the node drains its workers.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.closing.send_replace(true);
        if let Some(ingest) = &self.inner.ingest {
            ingest.shutdown().await;
        }
        let _ = self.inner.tail.send(stream::tail::CloseAll).await;
        let _ = self.inner.notification_hub.send(notifications::hub::CloseAll).await;
        if let Err(e) = self.inner.courier.shutdown().await {
            tracing::warn!(error = %e, "node shutdown");
        }
    }
}

/// CORS for the configured origins (none: no CORS headers).
pub fn cors(options: &HttpOptions) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers(["Content-Type"])
        .max_age(3600);
    for origin in &options.cors_origins {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    cors
}

/// Turns every error response that is not already JSON (extractor errors,
/// unknown routes, wrong methods, oversized bodies) into `{"error","detail"}`.
pub fn json_errors<B: actix_web::body::MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: actix_web::dev::ServiceResponse<B>| {
        let is_json = res
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let status = res.status();
        let error = match status.as_u16() {
            404 => "not found",
            405 => "method not allowed",
            413 => "payload too large",
            415 => "unsupported media type",
            _ => status.canonical_reason().unwrap_or("error"),
        };
        let (req, old) = res.into_parts();
        let detail = old
            .error()
            .map(|e| serde_json::Value::String(e.to_string()))
            .unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({"error": error, "detail": detail}).to_string();
        let mut response = actix_web::HttpResponse::build(status)
            .content_type("application/json")
            .body(body);
        for (name, value) in old.headers() {
            if name != actix_web::http::header::CONTENT_TYPE && name != actix_web::http::header::CONTENT_LENGTH {
                response.headers_mut().insert(name.clone(), value.clone());
            }
        }
        Ok(ErrorHandlerResponse::Response(
            actix_web::dev::ServiceResponse::new(req, response).map_into_right_body(),
        ))
    })
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(|err, _| {
        use actix_web::error::JsonPayloadError as E;
        let api = match &err {
            E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "payload too large",
                serde_json::json!({ "limit": limit }),
            ),
            E::ContentType => ApiError::new(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be application/json",
                serde_json::Value::Null,
            ),
            other => ApiError::bad_request("invalid JSON body", serde_json::json!(other.to_string())),
        };
        api.into()
    })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _| ApiError::bad_request("invalid query", serde_json::json!(err.to_string())).into())
}

/// Mounts Courier's endpoints (see `/openapi.json`) into an actix-web app.
/// Wrap the app with [`json_errors`] (and [`cors`] if wanted) so that every
/// error is a JSON body.
pub fn configure(cfg: &mut web::ServiceConfig, http: &Http) {
    let limit = http.options().body_limit;
    cfg.app_data(web::Data::new(http.clone()))
        .app_data(json_config(limit))
        .app_data(web::PayloadConfig::new(limit))
        .app_data(query_config());
    Routes::all().mount(cfg);
}

/// Every route: each resource adds its own, whose method and path its handlers'
/// `#[utoipa::path]` say (see `routes.rs`).
fn routes(routes: Routes) -> Routes {
    let routes = dashboard::routes(routes);
    let routes = metrics::routes(routes);
    let routes = health::routes(routes);
    let routes = openapi::routes(routes);
    let routes = executions::routes(routes);
    let routes = ingest::routes(routes);
    let routes = tasks::routes(routes);
    let routes = pauses::routes(routes);
    let routes = workers::routes(routes);
    let routes = dead_letters::routes(routes);
    let routes = functions::routes(routes);
    let routes = schedules::routes(routes);
    let routes = cleanup::routes(routes);
    let routes = events::routes(routes);
    let routes = stats::routes(routes);
    let routes = nodes::routes(routes);
    let routes = stream::sse::routes(routes);
    let routes = stream::ws::routes(routes);
    let routes = webhooks::routes(routes);
    notifications::routes(routes)
}
