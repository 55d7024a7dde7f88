//! [`CourierBuilder`]: registers functions, takes a store and a notifier, and
//! starts a node's actors.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use courier_core::{Clock, LocalNotifier, Notifier, ScheduleDefinition, Store, StoreResult};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::activity::ActivityContext;
use crate::admission::{Admission, MAX_PENDING_WRITES};
use crate::claim_offer::ClaimOffer;
use crate::coordinator::Coordinator;
use crate::error::RuntimeError;
use crate::function::Registry;
use crate::handle::Courier;
use crate::live::Live;
use crate::node::{Node, NodeParts};
use crate::notifications::{NotificationHooks, NotificationOptions};
use crate::options::{FunctionOptions, MaintenanceOptions, WorkerOptions};
use crate::orchestrator::OrchestratorContext;
use crate::presence::DEFAULT_REPORT_EVERY;
use crate::readiness::Readiness;
use crate::store_actor::{StoreActor, StoreActorParts, StoreFault};

/// Opens a store once the builder knows its clock (see [`CourierBuilder::open_store`]).
pub type StoreOpener = Box<dyn FnOnce(Clock) -> BoxFuture<'static, StoreResult<Arc<dyn Store>>> + Send>;

/// Something to start beside the node once it runs (see [`CourierBuilder::on_start`]).
type StartHook = Box<dyn FnOnce(&Courier)>;

/// Builds and starts a node. See [`Courier::builder`].
///
/// The runtime takes a store and a notifier as trait objects; opening one from a
/// URL is the `courier` facade's (`courier::CourierBuilderExt::store_url`). Without
/// a notifier the node uses the in-process one.
pub struct CourierBuilder {
    store: Option<StoreOpener>,
    notifier: Option<Arc<dyn Notifier>>,
    clock: Clock,
    registry: Registry,
    worker: Option<WorkerOptions>,
    maintenance: MaintenanceOptions,
    notifications: NotificationOptions,
    notification_hooks: NotificationHooks,
    node_id: Option<String>,
    report_every: Duration,
    schedules: Vec<(String, ScheduleDefinition)>,
    on_start: Vec<StartHook>,
}

impl Courier {
    /// Starts building a node.
    pub fn builder() -> CourierBuilder {
        CourierBuilder {
            store: None,
            notifier: None,
            clock: Clock::system(),
            registry: Registry::default(),
            worker: None,
            maintenance: MaintenanceOptions::default(),
            notifications: NotificationOptions::default(),
            notification_hooks: NotificationHooks::default(),
            node_id: None,
            report_every: DEFAULT_REPORT_EVERY,
            schedules: Vec::new(),
            on_start: Vec::new(),
        }
    }
}

impl CourierBuilder {
    /// Uses this store (already opened; `start` initialises it).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(Box::new(move |_| Box::pin(async move { Ok(store) })));
        self
    }

    /// Opens the store when the node starts, with the node's clock (which a
    /// SQLite store stamps its rows with).
    pub fn open_store<F, Fut>(mut self, open: F) -> Self
    where
        F: FnOnce(Clock) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<Arc<dyn Store>>> + Send + 'static,
    {
        self.store = Some(Box::new(move |clock| Box::pin(open(clock))));
        self
    }

    /// Uses this notifier (default: in-process).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Uses these registered functions.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Registers an activity with default options.
    pub fn activity<F, Fut, A, R>(self, name: &str, f: F) -> Self
    where
        F: Fn(ActivityContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.activity_with(name, FunctionOptions::default(), f)
    }

    /// Registers an activity.
    pub fn activity_with<F, Fut, A, R>(mut self, name: &str, options: FunctionOptions, f: F) -> Self
    where
        F: Fn(ActivityContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.registry.activity(name, options, f);
        self
    }

    /// Registers an orchestrator with default options.
    pub fn orchestrator<F, Fut, A, R>(self, name: &str, f: F) -> Self
    where
        F: Fn(OrchestratorContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.orchestrator_with(name, FunctionOptions::default(), f)
    }

    /// Registers an orchestrator.
    pub fn orchestrator_with<F, Fut, A, R>(mut self, name: &str, options: FunctionOptions, f: F) -> Self
    where
        F: Fn(OrchestratorContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, courier_core::TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        self.registry.orchestrator(name, options, f);
        self
    }

    /// Declares an activity run by external workers.
    pub fn external(mut self, name: &str, options: FunctionOptions) -> Self {
        self.registry.external(name, options);
        self
    }

    /// Runs an in-process worker with these options (without one, the node only
    /// dispatches and reads).
    pub fn worker(mut self, options: WorkerOptions) -> Self {
        self.worker = Some(options);
        self
    }

    /// Sets housekeeping options.
    pub fn maintenance(mut self, options: MaintenanceOptions) -> Self {
        self.maintenance = options;
        self
    }

    /// Sets how notifications for people are kept.
    pub fn notifications(mut self, options: NotificationOptions) -> Self {
        self.notifications = options;
        self
    }

    /// Runs `filter` on every notification this node is about to send: it may
    /// rewrite it, or return false to suppress it. Filters run in the order added.
    pub fn before_notification_sent(
        mut self,
        filter: impl Fn(&mut courier_core::NewNotification) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.notification_hooks.add_filter(Arc::new(filter));
        self
    }

    /// Runs `hook` after each notification this node sent.
    pub fn on_notification_sent(
        mut self,
        hook: impl Fn(&courier_core::NotificationSent) + Send + Sync + 'static,
    ) -> Self {
        self.notification_hooks.add_sent(Arc::new(hook));
        self
    }

    /// Runs `hook` after notifications were dismissed through this node.
    pub fn on_notification_dismissed(
        mut self,
        hook: impl Fn(&courier_core::Subscriber, &[uuid::Uuid]) + Send + Sync + 'static,
    ) -> Self {
        self.notification_hooks.add_dismissed(Arc::new(hook));
        self
    }

    /// This node's wall clock (default: the system's). Only tests shift it, to play
    /// a node whose clock is wrong; a store opened with [`open_store`](Self::open_store)
    /// gets the same clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Names this node (lease owner, role holder). Default: a random id.
    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// How often the node reports what it runs and holds to the cluster's list
    /// of nodes (see [`Courier::nodes`]); default 5 s. Readers call a node gone
    /// after three intervals without a report.
    pub fn report_every(mut self, every: Duration) -> Self {
        self.report_every = every.max(Duration::from_millis(10));
        self
    }

    /// Makes sure schedule `id` exists with `definition` when the node starts:
    /// created if missing, its definition replaced if it differs (its pause and
    /// runs kept). Every node may declare the same schedules; the cluster fires
    /// each slot once.
    pub fn schedule(mut self, id: impl Into<String>, definition: ScheduleDefinition) -> Self {
        self.schedules.push((id.into(), definition));
        self
    }

    /// Runs `hook` with the started node, before [`start`](Self::start) returns:
    /// for services that run beside the runtime and need its handle (the webhook
    /// dispatcher and its delivery activity, ingestion). Hooks run in the order
    /// they were added, on the actix system that called `start`.
    pub fn on_start(mut self, hook: impl FnOnce(&Courier) + 'static) -> Self {
        self.on_start.push(Box::new(hook));
        self
    }

    /// Initialises the store and starts the node's actors in the current actix
    /// system (call it from inside `actix::System` / `#[actix_web::main]`).
    pub async fn start(self) -> Result<Courier, RuntimeError> {
        let open = self.store.ok_or_else(|| {
            RuntimeError::Invalid("no store: give the builder one with .store(..) or .open_store(..)".into())
        })?;
        let store = open(self.clock).await?;
        store.init().await?;
        let notifier = self.notifier.unwrap_or_else(|| Arc::new(LocalNotifier::new()));
        let run_worker = self.worker.is_some();
        let node_id = self
            .node_id
            .unwrap_or_else(|| format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        let live = Live::default();
        let functions = self.registry.table();
        let claim_offer = ClaimOffer::new(functions.clone());
        let admission = Admission::new(MAX_PENDING_WRITES);
        let readiness = Readiness::default();
        let store_fault = StoreFault::default();
        let writes = {
            let parts = StoreActorParts {
                notifier: notifier.clone(),
                live: live.clone(),
                admission: admission.clone(),
                readiness: readiness.clone(),
                fault: store_fault.clone(),
                offer: claim_offer.clone(),
            };
            let store = store.clone();
            Supervisor::start(move |_| StoreActor::new(store, parts))
        };
        let node = Node::new(NodeParts {
            id: node_id,
            store,
            writes,
            admission,
            readiness,
            store_fault,
            notifier,
            registry: self.registry,
            functions,
            claim_offer,
            worker: self.worker.unwrap_or_default(),
            maintenance: self.maintenance,
            notifications: self.notifications,
            notification_hooks: self.notification_hooks,
            clock: self.clock,
            live,
            report_every: self.report_every,
        });
        // Read once before the first dispatch can be made; the node's
        // `FunctionSettingsWatch` keeps them fresh from here on.
        let settings = node.functions().writes_seen();
        node.functions()
            .reload(node.store().list_function_settings().await?, settings);
        let coordinator = Coordinator::new(node.clone(), run_worker).start();
        tracing::info!(
            node = node.id(),
            store = node.store().backend(),
            notifier = node.notifier().backend(),
            worker = run_worker,
            "courier node started"
        );
        let courier = Courier::new(node, coordinator);
        for (id, definition) in self.schedules {
            declare_schedule(&courier, id, definition).await?;
        }
        for hook in self.on_start {
            hook(&courier);
        }
        Ok(courier)
    }
}

/// Creates schedule `id`, or replaces its definition if it differs.
async fn declare_schedule(courier: &Courier, id: String, definition: ScheduleDefinition) -> Result<(), RuntimeError> {
    match courier
        .create_schedule(Some(id.clone()), definition.clone(), false)
        .await
    {
        Ok(_) => Ok(()),
        Err(RuntimeError::Store(courier_core::StoreError::Conflict { .. })) => {
            if courier.schedule(&id).await?.definition != definition {
                courier.replace_schedule(&id, definition).await?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
