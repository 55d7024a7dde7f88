//! `Coordinator`: the root of a node's actor tree.
//!
//! It starts the `StoreActor`, the `WorkerActor` and the `MaintenanceActor`
//! under actix supervisors (an actor that stops unexpectedly is restarted with
//! the same address), starts one `ExecutionActor` per claimed orchestrator and
//! keeps track of them, and runs the shutdown order: drain the worker, hand
//! live executions back, let the last commits land.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use courier_core::{Claimed, ExecutionId};

use crate::execution::{Drain, ExecutionActor, ExecutionEnded};
use crate::maintenance::{MaintenanceActor, StopMaintenance};
use crate::node::Node;
use crate::store_actor::StoreActor;
use crate::worker::{DrainWorker, WorkerActor};

/// Start an `ExecutionActor` for a claimed orchestrator task.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StartExecution(pub Claimed);

/// Shut the node down in order; answers when done.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// How many executions this node holds in memory.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct LiveCount;

/// The actor. See the module documentation.
pub(crate) struct Coordinator {
    node: Node,
    store: Addr<StoreActor>,
    run_worker: bool,
    worker: Option<Addr<WorkerActor>>,
    maintenance: Option<Addr<MaintenanceActor>>,
    executions: HashMap<ExecutionId, Addr<ExecutionActor>>,
    shutting_down: bool,
}

impl Coordinator {
    pub(crate) fn new(node: Node, store: Addr<StoreActor>, run_worker: bool) -> Self {
        Coordinator {
            node,
            store,
            run_worker,
            worker: None,
            maintenance: None,
            executions: HashMap::new(),
            shutting_down: false,
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(65_536);
        if self.run_worker {
            let (node, store, me) = (self.node.clone(), self.store.clone(), ctx.address());
            self.worker = Some(Supervisor::start(move |_| WorkerActor::new(node, store, me)));
            let node = self.node.clone();
            self.maintenance = Some(Supervisor::start(move |_| MaintenanceActor::new(node)));
        }
    }
}

/// Starts an orchestrator's actor (replacing a stale one for the same execution).
impl Handler<StartExecution> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: StartExecution, ctx: &mut Self::Context) {
        let execution = msg.0.task.execution_id;
        if self.shutting_down {
            // Claimed just as we stopped: give it straight back.
            let store = self.store.clone();
            let lease = msg.0.lease.key();
            actix::spawn(async move {
                let _ = store
                    .send(crate::store_actor::Exec(Box::new(move |s| {
                        Box::pin(async move { s.release_task(lease, Duration::ZERO).await })
                    })))
                    .await;
            });
            return;
        }
        if let Some(old) = self.executions.remove(&execution) {
            // Its lease was lost and the task claimed again; the old actor stops on its own.
            old.do_send(Drain);
        }
        let actor =
            ExecutionActor::new(self.node.clone(), self.store.clone(), ctx.address().recipient(), msg.0).start();
        self.executions.insert(execution, actor);
    }
}

/// Forgets an execution whose actor stopped.
impl Handler<ExecutionEnded> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: ExecutionEnded, _: &mut Self::Context) {
        self.executions.remove(&msg.execution_id);
    }
}

/// Counts live executions.
impl Handler<LiveCount> for Coordinator {
    type Result = usize;

    fn handle(&mut self, _: LiveCount, _: &mut Self::Context) -> usize {
        self.executions.len()
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
        let worker = self.worker.clone();
        let drain = async move {
            if let Some(worker) = worker {
                let _ = worker.send(DrainWorker).await;
            }
        };
        Box::pin(
            drain
                .into_actor(self)
                .then(|_, act, _| {
                    for execution in act.executions.values() {
                        execution.do_send(Drain);
                    }
                    async {
                        // Executions stop once their lease is handed back.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    .into_actor(act)
                })
                .then(|_, act, _| {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                    let addrs: Vec<_> = act.executions.values().cloned().collect();
                    async move {
                        for addr in addrs {
                            while addr.connected() && tokio::time::Instant::now() < deadline {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }
                    .into_actor(act)
                }),
        )
    }
}
