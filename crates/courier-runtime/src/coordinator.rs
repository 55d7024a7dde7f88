//! `Coordinator`: the root of a node's actor tree.
//!
//! It starts the `FunctionSettingsWatch` and the `PresenceActor`, and the
//! `WorkerActor`, the `MaintenanceActor` and the `SchedulerActor` under actix
//! supervisors (an actor that stops unexpectedly is restarted with the same
//! address), starts one `ExecutionActor` per claimed orchestrator (each
//! registers itself in the node's live registry), and runs the shutdown order:
//! drain the worker, hand live executions back, let the last commits land,
//! leave the list of nodes.

use std::time::Duration;

use actix::prelude::*;
use courier_core::Release;

use crate::execution::ExecutionActor;
use crate::function_settings::{FunctionSettingsWatch, StopWatch};
use crate::live::Drain;
use crate::maintenance::{MaintenanceActor, StopMaintenance};
use crate::node::Node;
use crate::presence::{Leave, PresenceActor};
use crate::scheduler::{SchedulerActor, StopScheduler};
use crate::store_actor::ReleaseLeases;
use crate::worker::{DrainWorker, StartExecution, WorkerActor};

/// Shut the node down in order; answers when done.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// The actor. See the module documentation.
pub(crate) struct Coordinator {
    node: Node,
    run_worker: bool,
    worker: Option<Addr<WorkerActor>>,
    maintenance: Option<Addr<MaintenanceActor>>,
    scheduler: Option<Addr<SchedulerActor>>,
    settings_watch: Option<Addr<FunctionSettingsWatch>>,
    presence: Option<Addr<PresenceActor>>,
    shutting_down: bool,
}

impl Coordinator {
    pub(crate) fn new(node: Node, run_worker: bool) -> Self {
        Coordinator {
            node,
            run_worker,
            worker: None,
            maintenance: None,
            scheduler: None,
            settings_watch: None,
            presence: None,
            shutting_down: false,
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        // Every node dispatches, worker or not, so every node keeps the
        // functions' settings fresh.
        self.settings_watch = Some(FunctionSettingsWatch::new(self.node.clone()).start());
        self.presence = Some(PresenceActor::new(self.node.clone(), self.run_worker).start());
        if self.run_worker {
            let (node, me) = (self.node.clone(), ctx.address().recipient());
            self.worker = Some(Supervisor::start(move |_| WorkerActor::new(node, me)));
            let node = self.node.clone();
            self.maintenance = Some(Supervisor::start(move |_| MaintenanceActor::new(node)));
            let node = self.node.clone();
            self.scheduler = Some(Supervisor::start(move |_| SchedulerActor::new(node)));
        }
    }
}

/// Starts an orchestrator's actor (which replaces a stale one for the same execution).
impl Handler<StartExecution> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: StartExecution, _: &mut Self::Context) {
        if self.shutting_down {
            // Claimed just as we stopped: give it straight back.
            let release = Release {
                lease: msg.0.lease.key(),
                delay: Duration::ZERO,
            };
            let node = self.node.clone();
            actix::spawn(async move {
                // Not given back, the lease expires and the task is claimed then.
                let _ = ReleaseLeases::send(node.writes(), node.admission(), vec![release]).await;
            });
            return;
        }
        ExecutionActor::new(self.node.clone(), msg.0).start();
    }
}

/// Drains the worker, hands executions back, waits for them to stop.
impl Handler<Shutdown> for Coordinator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        if let Some(maintenance) = &self.maintenance {
            maintenance.do_send(StopMaintenance);
        }
        if let Some(scheduler) = &self.scheduler {
            scheduler.do_send(StopScheduler);
        }
        if let Some(watch) = self.settings_watch.take() {
            watch.do_send(StopWatch);
        }
        let worker = self.worker.clone();
        let presence = self.presence.take();
        let live = self.node.live().clone();
        Box::pin(
            async move {
                if let Some(worker) = worker {
                    let _ = worker.send(DrainWorker).await;
                }
                for execution in live.all() {
                    execution.drain.do_send(Drain);
                }
                // Executions stop once their lease is handed back.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while live.len() > 0 && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Last, so the list shows the node until it holds nothing.
                if let Some(presence) = presence {
                    let _ = presence.send(Leave).await;
                }
            }
            .into_actor(self),
        )
    }
}
