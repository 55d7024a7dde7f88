//! `GET /v1/nodes`: the cluster's nodes as they last reported in, idle or busy,
//! with the outside workers that claim through each; and what this node adds
//! to its own report (its open streams, ingestion's messages in flight, the
//! outside workers seen asking it for work).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::{ExternalWorker, NodeReport};
use courier_runtime::ReportPart;
use futures::FutureExt;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiResult, StoreError, Unavailable};
use crate::routes::Routes;
use crate::{Http, Inner};

/// An outside worker that has not asked for work for this long is left out of
/// the node's report (it stopped, or asks another node now).
const WORKER_SEEN_WITHIN: Duration = Duration::from_secs(60);
/// Most outside workers one node remembers (the most recent are kept).
const MAX_WORKERS: usize = 1_000;

/// Adds the route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_list, list)
}

/// The outside workers that asked this node for work lately.
#[derive(Default)]
pub(crate) struct SeenWorkers {
    workers: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    worker: ExternalWorker,
    at: Instant,
}

impl Seen {
    /// Newest last; ties (one clock tick) broken by id so eviction is exact.
    fn age_key(&self) -> (Instant, &str) {
        (self.at, &self.worker.id)
    }
}

impl SeenWorkers {
    /// `id` asked for work now, for these functions and queues (empty: any).
    pub(crate) fn saw(&self, id: &str, functions: &[String], queues: &[String]) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        workers.insert(
            id.to_string(),
            Seen {
                worker: ExternalWorker {
                    id: id.to_string(),
                    functions: functions.to_vec(),
                    queues: queues.to_vec(),
                    last_claim_at: Utc::now(),
                },
                at: now,
            },
        );
        if workers.len() > MAX_WORKERS {
            workers.retain(|_, seen| now.duration_since(seen.at) < WORKER_SEEN_WITHIN);
            if workers.len() > MAX_WORKERS {
                let mut by_age: Vec<(Instant, String)> =
                    workers.values().map(|s| (s.at, s.worker.id.clone())).collect();
                by_age.sort_unstable();
                let oldest_kept = by_age.swap_remove(by_age.len() - MAX_WORKERS);
                workers.retain(|_, seen| seen.age_key() >= (oldest_kept.0, oldest_kept.1.as_str()));
            }
        }
    }

    /// The ones seen within [`WORKER_SEEN_WITHIN`], by id.
    fn recent(&self) -> Vec<ExternalWorker> {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|_, seen| seen.at.elapsed() < WORKER_SEEN_WITHIN);
        let mut recent: Vec<ExternalWorker> = workers.values().map(|s| s.worker.clone()).collect();
        recent.sort_by(|a, b| a.id.cmp(&b.id));
        recent
    }
}

/// Adds this node's streams, ingestion and outside workers to what the runtime
/// reports of it. Holds the HTTP surface weakly: the runtime outlives it.
pub(crate) fn add_to_report(http: &Http) {
    let weak: Weak<Inner> = Arc::downgrade(&http.inner);
    http.courier().add_to_node_report(Arc::new(move || {
        let http = weak.upgrade().map(|inner| Http { inner });
        async move {
            let Some(http) = http else {
                return ReportPart::default();
            };
            let mut gauges = vec![
                ("streams.events".to_string(), http.event_streams().await as u64),
                (
                    "streams.notifications".to_string(),
                    http.notification_streams().await as u64,
                ),
            ];
            if let Some(ingest) = http.ingest() {
                gauges.push(("ingest.in_flight".to_string(), ingest.intake().in_flight() as u64));
            }
            ReportPart {
                gauges,
                external_workers: http.inner.seen_workers.recent(),
            }
        }
        .boxed_local()
    }));
}

/// `GET /v1/nodes` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "The cluster's nodes as they last reported in, by id.",
    example = json!({
        "now": "2026-12-05T10:00:04Z",
        "nodes": [{
            "id": "node-a", "up": true,
            "started_at": "2026-12-05T09:12:00Z", "seen_at": "2026-12-05T10:00:01Z",
            "report": {
                "version": "0.1.0", "functions": ["resize"], "worker": true, "capacity": 16, "running": 3,
                "live_executions": 1, "ready": true, "interval": "5s",
                "gauges": {"streams.events": 2, "streams.notifications": 40},
                "external_workers": [{"id": "py-worker-1", "functions": ["thumbnail"], "queues": [], "last_claim_at": "2026-12-05T10:00:00Z"}]
            }
        }]
    })
)]
pub(crate) struct NodeList {
    /// The store's clock when the list was read.
    pub now: DateTime<Utc>,
    /// The nodes, by id.
    pub nodes: Vec<NodeView>,
}

/// One node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeView {
    /// Its id (the lease owner of the tasks it runs).
    pub id: String,
    /// Whether it reported within three of its intervals (false: it stopped
    /// without leaving, or cannot reach the store; it is forgotten after an hour).
    pub up: bool,
    /// When it joined (the store's clock).
    pub started_at: DateTime<Utc>,
    /// When it last reported in (the store's clock).
    pub seen_at: DateTime<Utc>,
    /// What it said then.
    pub report: NodeReport,
}

/// The cluster's nodes as they last reported in.
#[utoipa::path(
    get, path = "/v1/nodes", operation_id = "listNodes", tag = "node",
    summary = "The cluster's nodes, idle or busy: what each runs and holds, and the outside workers claiming through it.",
    description = "Every node reports in every few seconds (`node.report_interval`) and leaves when it shuts down; one that stopped reporting shows `up: false` until it is forgotten an hour later.",
    responses(
        (status = 200, description = "The nodes.", body = NodeList),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>) -> ApiResult<HttpResponse> {
    let store = http.courier().store();
    let now = store.now().await?;
    let nodes = http
        .courier()
        .nodes()
        .await?
        .into_iter()
        .map(|node| NodeView {
            up: node.is_up(now),
            id: node.id,
            started_at: node.started_at,
            seen_at: node.seen_at,
            report: node.report,
        })
        .collect();
    Ok(HttpResponse::Ok().json(NodeList { now, nodes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_remembered_by_id_with_what_it_last_asked_for() {
        let seen = SeenWorkers::default();
        seen.saw("b", &[], &[]);
        seen.saw("a", &["resize".into()], &[]);
        seen.saw("a", &["thumbnail".into()], &["images".into()]);
        let recent = seen.recent();
        assert_eq!(recent.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(recent[0].functions, ["thumbnail"]);
        assert_eq!(recent[0].queues, ["images"]);
    }

    #[test]
    fn past_the_bound_the_least_recent_are_forgotten() {
        let seen = SeenWorkers::default();
        for i in 0..MAX_WORKERS + 10 {
            seen.saw(&format!("w{i:05}"), &[], &[]);
        }
        let recent = seen.recent();
        assert_eq!(recent.len(), MAX_WORKERS);
        assert!(recent.iter().all(|w| w.id.as_str() >= "w00010"), "the first ten went");
    }
}
