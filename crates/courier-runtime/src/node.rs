//! What every actor of one node shares: the store (for reads), the `StoreActor`
//! (for writes), the notifier, the registered functions, the options, the clock,
//! and the executions live here.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use courier_core::{Clock, Notifier, Store};

use crate::activity::{ActivityPort, Runner};
use crate::admission::Admission;
use crate::claim_offer::ClaimOffer;
use crate::function::Registry;
use crate::lease::LeaseTerms;
use crate::live::Live;
use crate::notifications::{NotificationHooks, NotificationOptions};
use crate::options::{FunctionTable, MaintenanceOptions, WorkerOptions};
use crate::presence::Presence;
use crate::readiness::Readiness;
use crate::store_actor::{StoreActor, StoreFault};

/// A node's shared state. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    id: String,
    store: Arc<dyn Store>,
    writes: Addr<StoreActor>,
    /// Permits a group-commit write takes before it is sent to `writes`.
    admission: Admission,
    /// Whether `writes` works (`/readyz`).
    readiness: Readiness,
    store_fault: StoreFault,
    notifier: Arc<dyn Notifier>,
    registry: Registry,
    functions: FunctionTable,
    claim_offer: ClaimOffer,
    worker: WorkerOptions,
    maintenance: MaintenanceOptions,
    notifications: NotificationOptions,
    notification_hooks: NotificationHooks,
    /// This node's wall clock (shifted only in tests that play a skewed node).
    clock: Clock,
    live: Live,
    /// What the node reports of itself to the list of nodes, and how often.
    presence: Presence,
    report_every: Duration,
    /// Built once: every activity attempt on this node shares it.
    runner: Runner,
}

/// What a node is made of (see [`Node`]).
pub(crate) struct NodeParts {
    pub id: String,
    pub store: Arc<dyn Store>,
    pub writes: Addr<StoreActor>,
    pub admission: Admission,
    pub readiness: Readiness,
    pub store_fault: StoreFault,
    pub notifier: Arc<dyn Notifier>,
    pub registry: Registry,
    /// The registry's table, shared with the `StoreActor`'s `claim_offer`.
    pub functions: FunctionTable,
    pub claim_offer: ClaimOffer,
    pub worker: WorkerOptions,
    pub maintenance: MaintenanceOptions,
    pub notifications: NotificationOptions,
    pub notification_hooks: NotificationHooks,
    pub clock: Clock,
    pub live: Live,
    pub report_every: Duration,
}

impl Node {
    pub(crate) fn new(parts: NodeParts) -> Self {
        let runner = Runner {
            store: parts.store.clone(),
            notifier: parts.notifier.clone(),
            port: Arc::new(ActivityPort::new(&parts.writes)),
            poll: parts.worker.poll,
            lease_length: parts.worker.lease,
        };
        Node {
            inner: Arc::new(NodeInner {
                id: parts.id,
                store: parts.store,
                writes: parts.writes,
                admission: parts.admission,
                readiness: parts.readiness,
                store_fault: parts.store_fault,
                notifier: parts.notifier,
                registry: parts.registry,
                functions: parts.functions,
                claim_offer: parts.claim_offer,
                worker: parts.worker,
                maintenance: parts.maintenance,
                notifications: parts.notifications,
                notification_hooks: parts.notification_hooks,
                clock: parts.clock,
                live: parts.live,
                presence: Presence::default(),
                report_every: parts.report_every,
                runner,
            }),
        }
    }

    pub(crate) fn id(&self) -> &str {
        &self.inner.id
    }

    /// The store, for reads. Writes go through [`writes`](Self::writes).
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The worker's standing claim, which the next commit that makes work for it runs.
    pub(crate) fn claim_offer(&self) -> &ClaimOffer {
        &self.inner.claim_offer
    }

    /// The `StoreActor`: the node's one door for writes.
    pub(crate) fn writes(&self) -> &Addr<StoreActor> {
        &self.inner.writes
    }

    /// Permits for `n` group-commit writes (dispatches, children, effects,
    /// completions), taken before the message that carries them is sent to
    /// [`writes`](Self::writes): waits while the store actor holds its bound.
    pub(crate) async fn admit(&self, n: usize) -> courier_core::StoreResult<crate::admission::Admitted> {
        self.inner.admission.admit(n).await
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub(crate) fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    pub(crate) fn report_every(&self) -> Duration {
        self.inner.report_every
    }

    pub(crate) fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    pub(crate) fn store_fault(&self) -> &StoreFault {
        &self.inner.store_fault
    }

    pub(crate) fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.inner.notifier
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub(crate) fn functions(&self) -> &FunctionTable {
        &self.inner.functions
    }

    pub(crate) fn worker_options(&self) -> &WorkerOptions {
        &self.inner.worker
    }

    pub(crate) fn maintenance_options(&self) -> &MaintenanceOptions {
        &self.inner.maintenance
    }

    pub(crate) fn notification_options(&self) -> &NotificationOptions {
        &self.inner.notifications
    }

    pub(crate) fn notification_hooks(&self) -> &NotificationHooks {
        &self.inner.notification_hooks
    }

    pub(crate) fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub(crate) fn live(&self) -> &Live {
        &self.inner.live
    }

    /// How this node's leases last and renew.
    pub(crate) fn lease_terms(&self) -> LeaseTerms {
        LeaseTerms {
            length: self.inner.worker.lease,
            renew_every: self.inner.worker.heartbeat,
        }
    }

    /// What activity attempts on this node run with.
    pub(crate) fn activity_runner(&self) -> &Runner {
        &self.inner.runner
    }
}
