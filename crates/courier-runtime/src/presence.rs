//! `PresenceActor`: this node's entry in the cluster's list of nodes.
//!
//! Running tasks only say which nodes are busy; an idle node, or one that only
//! serves the API, leaves no trace in them. So every node joins the store's
//! list when it starts, reports what it runs and holds every
//! [`report interval`](crate::CourierBuilder::report_every) (functions, worker
//! slots, activities running, executions held, and what the parts beside the
//! runtime add: streams open, messages being taken in, outside workers that
//! claim through it), and leaves when it
//! shuts down. A node that stops without leaving simply stops reporting: readers
//! call it gone after three of its intervals
//! ([`NodeRecord::is_up`](courier_core::NodeRecord::is_up)), and the maintenance role forgets it
//! after [`FORGET_AFTER`]. A failed report is logged and tried again at the next
//! tick; a node whose row was forgotten (the store was cleaned, or it lost the
//! store for an hour) joins again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use courier_core::{ExternalWorker, NodeReport, StoreResult};
use futures::future::LocalBoxFuture;

use crate::node::Node;
use crate::store_actor::{JoinNode, LeaveNode, ReportNode};

/// How often a node reports in unless the builder says otherwise.
pub const DEFAULT_REPORT_EVERY: Duration = Duration::from_secs(5);

/// Nodes not seen for this long are forgotten by the maintenance role.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// What a part beside the runtime (the HTTP API, ingestion) adds to the node's
/// report each time it reports in.
#[derive(Debug, Default)]
pub struct ReportPart {
    /// Counts it keeps, as `(name, value)`, names dotted by part (`streams.events`).
    pub gauges: Vec<(String, u64)>,
    /// Outside workers that claimed through it lately.
    pub external_workers: Vec<ExternalWorker>,
}

/// Reads a [`ReportPart`]; runs on the node's actix system.
pub type ReportSource = Arc<dyn Fn() -> LocalBoxFuture<'static, ReportPart> + Send + Sync>;

/// What the node's actors share with its presence: activities running now, and
/// the report sources added after start.
#[derive(Clone, Default)]
pub(crate) struct Presence {
    running: Arc<AtomicU32>,
    sources: Arc<Mutex<Vec<ReportSource>>>,
}

impl Presence {
    /// The worker says how many activities it runs after each change.
    pub(crate) fn set_running(&self, running: usize) {
        self.running
            .store(u32::try_from(running).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    pub(crate) fn add_source(&self, source: ReportSource) {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).push(source);
    }

    fn sources(&self) -> Vec<ReportSource> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Leave the list (the node is shutting down); answers once the row is gone
/// or the attempt failed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave;

/// The actor. See the module documentation.
pub(crate) struct PresenceActor {
    node: Node,
    worker: bool,
    /// Whether the node's row is known to exist (joined, and not found missing since).
    joined: bool,
    reporting: bool,
    left: bool,
}

impl PresenceActor {
    pub(crate) fn new(node: Node, worker: bool) -> Self {
        PresenceActor {
            node,
            worker,
            joined: false,
            reporting: false,
            left: false,
        }
    }

    fn report(&mut self, ctx: &mut Context<Self>) {
        if self.reporting || self.left {
            return;
        }
        self.reporting = true;
        let (node, worker, joined) = (self.node.clone(), self.worker, self.joined);
        async move {
            let report = what_to_report(&node, worker).await;
            let id = node.id().to_string();
            let writes = node.writes();
            if joined
                && writes
                    .send(ReportNode {
                        id: id.clone(),
                        report: report.clone(),
                    })
                    .await
                    .map_err(crate::store_actor::unreachable)??
            {
                return StoreResult::Ok(());
            }
            // Not joined yet, or forgotten since: join (again).
            writes
                .send(JoinNode { id, report })
                .await
                .map_err(crate::store_actor::unreachable)??;
            Ok(())
        }
        .into_actor(self)
        .map(|outcome, act, _| {
            act.reporting = false;
            match outcome {
                Ok(()) => act.joined = true,
                Err(e) => {
                    tracing::warn!(node = act.node.id(), error = %e, "could not report this node in; trying again")
                }
            }
        })
        .spawn(ctx);
    }
}

/// The node's report now.
async fn what_to_report(node: &Node, worker: bool) -> NodeReport {
    let (mut gauges, mut external_workers) = (BTreeMap::new(), Vec::new());
    for source in node.presence().sources() {
        let part = source().await;
        gauges.extend(part.gauges);
        external_workers.extend(part.external_workers);
    }
    NodeReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        functions: node.registry().runnable(),
        worker,
        capacity: if worker {
            u32::try_from(node.worker_options().max_concurrency).unwrap_or(u32::MAX)
        } else {
            0
        },
        running: node.presence().running.load(Ordering::Relaxed),
        live_executions: u32::try_from(node.live().len()).unwrap_or(u32::MAX),
        ready: node.readiness().reason().is_none(),
        interval: node.report_every(),
        gauges,
        external_workers,
    }
}

impl Actor for PresenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.report(ctx);
        ctx.run_interval(self.node.report_every(), |act, ctx| act.report(ctx));
    }
}

/// Stops reporting and removes the node's row.
impl Handler<Leave> for PresenceActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Leave, _: &mut Self::Context) -> Self::Result {
        self.left = true;
        let (writes, id) = (self.node.writes().clone(), self.node.id().to_string());
        Box::pin(
            async move {
                match writes.send(LeaveNode(id.clone())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(node = id, error = %e, "could not leave the list of nodes"),
                    Err(_) => tracing::warn!(node = id, "could not leave the list of nodes: the store actor is gone"),
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
