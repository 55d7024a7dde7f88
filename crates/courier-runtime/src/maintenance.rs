//! `MaintenanceActor`: housekeeping that one node of the cluster does at a time.
//!
//! Every interval it tries to hold the cluster-wide `courier.maintenance` role
//! (a lease in the store); the holder times out expired executions, reports
//! stuck tasks, and every cleanup interval deletes finished executions and dead
//! letters past their retention, trims the event log and purges the cache. Other
//! nodes do nothing, so each job runs once per cluster, not once per node.

use std::time::Instant;

use actix::prelude::*;
use courier_core::{ExecutionState, Notice};

use crate::node::Node;

/// Stop doing housekeeping (node shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopMaintenance;

/// The actor. See the module documentation.
pub(crate) struct MaintenanceActor {
    node: Node,
    running: bool,
    stopped: bool,
    last_cleanup: Option<Instant>,
}

impl MaintenanceActor {
    pub(crate) fn new(node: Node) -> Self {
        MaintenanceActor {
            node,
            running: false,
            stopped: false,
            last_cleanup: None,
        }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.stopped {
            return;
        }
        self.running = true;
        let node = self.node.clone();
        let options = node.maintenance_options().clone();
        let cleanup_due = self
            .last_cleanup
            .is_none_or(|t| t.elapsed() >= options.cleanup_interval);
        async move {
            let store = node.store();
            let held = store
                .try_acquire_singleton("courier.maintenance", node.id(), options.interval * 3)
                .await?;
            if !held {
                return Ok(false);
            }
            // Counted per node: across a cluster only the role holder's grows.
            metrics::counter!("courier_maintenance_rounds_total").increment(1);
            let timed_out = store.time_out_executions(500).await?;
            if !timed_out.is_empty() {
                metrics::counter!("courier_executions_timed_out_total").increment(timed_out.len() as u64);
                let notices = timed_out
                    .iter()
                    .map(|c| Notice::Execution {
                        execution_id: c.execution_id,
                        state: ExecutionState::TimedOut,
                        child: None,
                    })
                    .chain([Notice::Events])
                    .collect();
                let _ = node.notifier().publish(notices).await;
            }
            let stuck = store.detect_stuck_tasks(options.stuck_after, 500).await?;
            if !stuck.is_empty() {
                tracing::warn!(count = stuck.len(), "tasks stuck: heartbeats are late");
                metrics::counter!("courier_tasks_stuck_total").increment(stuck.len() as u64);
                let _ = node.notifier().publish(vec![Notice::Events]).await;
            }
            if cleanup_due {
                metrics::counter!("courier_cleanup_runs_total").increment(1);
                let now = store.now().await?;
                let cutoff = now - chrono::Duration::from_std(options.retention).unwrap_or(chrono::Duration::MAX);
                let executions = store.cleanup_executions(cutoff).await?;
                let dead = store.cleanup_dead_letters(cutoff).await?;
                let event_cutoff =
                    now - chrono::Duration::from_std(options.event_retention).unwrap_or(chrono::Duration::MAX);
                let events = store.trim_events(event_cutoff).await?;
                let cache = store.purge_expired_cache().await?;
                if executions + dead + events + cache > 0 {
                    tracing::info!(executions, dead_letters = dead, events, cache, "cleanup");
                }
            }
            Ok::<_, courier_core::StoreError>(cleanup_due)
        }
        .into_actor(self)
        .map(|result, act, _| {
            act.running = false;
            match result {
                Ok(true) => act.last_cleanup = Some(Instant::now()),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "maintenance round failed"),
            }
        })
        .spawn(ctx);
    }
}

impl Actor for MaintenanceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let interval = self.node.maintenance_options().interval;
        ctx.run_interval(interval, |act, ctx| act.round(ctx));
    }
}

impl Supervised for MaintenanceActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.running = false;
    }
}

/// Stops for good: a supervised actor would be restarted if it stopped, so it goes idle.
impl Handler<StopMaintenance> for MaintenanceActor {
    type Result = ();

    fn handle(&mut self, _: StopMaintenance, _: &mut Self::Context) {
        self.stopped = true;
    }
}
