//! What every actor of one node shares: the store, the notifier, the registry,
//! and the orchestrators live on this node.

use std::sync::Arc;

use courier_core::{Clock, ExecutionId, Notifier, Store};
use dashmap::DashMap;

use crate::function::Registry;
use crate::options::{MaintenanceOptions, WorkerOptions};

/// A node's shared state. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    id: String,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    registry: Registry,
    worker: WorkerOptions,
    maintenance: MaintenanceOptions,
    /// This node's wall clock (shifted only in tests that play a skewed node).
    clock: Clock,
    /// Orchestrators held in memory here, so the store actor can hand them their
    /// children's results directly instead of through a store round trip.
    live: DashMap<ExecutionId, actix::Recipient<crate::execution::ChildrenSettled>>,
}

impl Node {
    pub(crate) fn new(
        id: String,
        store: Arc<dyn Store>,
        notifier: Arc<dyn Notifier>,
        registry: Registry,
        worker: WorkerOptions,
        maintenance: MaintenanceOptions,
        clock: Clock,
    ) -> Self {
        Node {
            inner: Arc::new(NodeInner {
                id,
                store,
                notifier,
                registry,
                worker,
                maintenance,
                clock,
                live: DashMap::new(),
            }),
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.inner.id
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.inner.notifier
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn worker_options(&self) -> &WorkerOptions {
        &self.inner.worker
    }

    pub(crate) fn maintenance_options(&self) -> &MaintenanceOptions {
        &self.inner.maintenance
    }

    pub(crate) fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub(crate) fn live_executions(&self) -> &DashMap<ExecutionId, actix::Recipient<crate::execution::ChildrenSettled>> {
        &self.inner.live
    }
}
