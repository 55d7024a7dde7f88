//! `/metrics`: Prometheus text exposition of the process's metrics.
//!
//! Counters are recorded where things happen (claims, completions, failures,
//! retries, lease renewals in the runtime; webhook attempts in the delivery
//! activity; stream connections in the sessions). Gauges that describe the
//! store (queue depth, event log head and lag) are refreshed at scrape time.

use std::sync::OnceLock;

use actix_web::{HttpResponse, web};
use courier_core::metric;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Http;
use crate::error::{ApiResult, StoreError, Unavailable};
use crate::routes::Routes;

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once (several servers in one
/// process share it). `None` if another recorder was installed first.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
                None
            }
        })
        .as_ref()
}

/// Adds the metrics route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_render, render)
}

/// Renders the metrics.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "node",
    summary = "Prometheus metrics.",
    responses(
        (status = 200, description = "Prometheus text exposition (version 0.0.4).", content_type = "text/plain", body = String, example = json!("# TYPE courier_dispatches_total counter\ncourier_dispatches_total 1042\n")),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn render(http: web::Data<Http>) -> ApiResult<HttpResponse> {
    let store = http.courier().store();
    let depths = store.queue_depths().await?;
    // A queue that emptied reads 0 rather than vanishing; the default queue always shows.
    for queue in http.remember_queues(depths.iter().map(|d| d.queue.clone())) {
        let depth = depths.iter().find(|d| d.queue == queue);
        let (ready, scheduled, running) = depth.map_or((0, 0, 0), |d| (d.ready, d.scheduled, d.running));
        metrics::gauge!(metric::QUEUE_READY, "queue" => queue.clone()).set(ready as f64);
        metrics::gauge!(metric::QUEUE_SCHEDULED, "queue" => queue.clone()).set(scheduled as f64);
        metrics::gauge!(metric::QUEUE_RUNNING, "queue" => queue).set(running as f64);
    }
    let head = store.last_event_seq().await?;
    metrics::gauge!(metric::EVENT_LOG_HEAD).set(head as f64);
    metrics::gauge!(metric::EVENT_LOG_LAG).set((head - http.tail_cursor()).max(0) as f64);
    // The notifier's own counters, read as gauges of their running totals.
    let notifier = http.courier().notifier();
    let stats = notifier.stats();
    let backend = notifier.backend();
    metrics::gauge!(metric::NOTIFIER_PUBLISHED, "backend" => backend).set(stats.published as f64);
    metrics::gauge!(metric::NOTIFIER_PUBLISH_FAILURES, "backend" => backend).set(stats.publish_failures as f64);
    metrics::gauge!(metric::NOTIFIER_RECEIVED, "backend" => backend).set(stats.received as f64);
    metrics::gauge!(metric::NOTIFIER_RECONNECTS, "backend" => backend).set(stats.reconnects as f64);
    metrics::gauge!(metric::NOTIFIER_MALFORMED, "backend" => backend).set(stats.malformed as f64);
    metrics::gauge!(metric::NOTIFIER_CONNECTED, "backend" => backend).set(if stats.connected { 1.0 } else { 0.0 });
    metrics::gauge!(metric::NOTIFIER_CHANNELS, "backend" => backend).set(stats.subscribed_channels as f64);
    metrics::gauge!(metric::NOTIFICATION_STREAMS).set(http.notification_streams().await as f64);
    let body = handle().map(|h| h.render()).unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
