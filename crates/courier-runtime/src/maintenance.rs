//! `MaintenanceActor`: housekeeping that one node of the cluster does at a time.
//!
//! Every interval it tries to hold the cluster-wide `courier.maintenance` role
//! (a lease in the store); the holder times out expired executions, reports
//! stuck tasks, every cleanup interval deletes finished executions and dead
//! letters past their retention, trims the event log, purges the cache and
//! forgets nodes silent for an hour, and every notification cleanup interval deletes expired notifications. Other
//! nodes do nothing, so each job runs once per cluster, not once per node.

use std::time::Instant;

use actix::prelude::*;
use courier_core::StoreResult;
use courier_core::metric;

use crate::node::Node;
use crate::presence::FORGET_AFTER;
use crate::store_actor::{
    AcquireRole, Cleanup, DetectStuckTasks, ForgetNodes, SweepNotifications, TimeOutExecutions, unreachable,
};

/// Expired notifications deleted per statement.
const SWEEP_BATCH: u32 = 5000;

/// The role whose holder does housekeeping.
const ROLE: &str = "courier.maintenance";

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
    last_sweep: Option<Instant>,
}

impl MaintenanceActor {
    pub(crate) fn new(node: Node) -> Self {
        MaintenanceActor {
            node,
            running: false,
            stopped: false,
            last_cleanup: None,
            last_sweep: None,
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
        let sweep_due = self
            .last_sweep
            .is_none_or(|t| t.elapsed() >= node.notification_options().cleanup_interval);
        async move {
            let writes = node.writes();
            let held = writes
                .send(AcquireRole {
                    name: ROLE,
                    owner: node.id().to_string(),
                    ttl: options.interval * 3,
                })
                .await
                .map_err(unreachable)??;
            if !held {
                return Ok((false, false));
            }
            // Counted per node: across a cluster only the role holder's grows.
            metrics::counter!(metric::MAINTENANCE_ROUNDS).increment(1);
            let timed_out = writes
                .send(TimeOutExecutions { limit: 500 })
                .await
                .map_err(unreachable)??;
            if !timed_out.is_empty() {
                metrics::counter!(metric::EXECUTIONS_TIMED_OUT).increment(timed_out.len() as u64);
            }
            let stuck = writes
                .send(DetectStuckTasks {
                    heartbeat_timeout: options.stuck_after,
                    limit: 500,
                })
                .await
                .map_err(unreachable)??;
            if !stuck.is_empty() {
                tracing::warn!(count = stuck.len(), "tasks stuck: heartbeats are late");
                metrics::counter!(metric::TASKS_STUCK).increment(stuck.len() as u64);
            }
            if cleanup_due {
                metrics::counter!(metric::CLEANUP_RUNS).increment(1);
                let now = node.store().now().await?;
                let before = |age: std::time::Duration| {
                    chrono::Duration::from_std(age)
                        .ok()
                        .and_then(|age| now.checked_sub_signed(age))
                        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
                };
                let report = writes
                    .send(Cleanup {
                        executions_before: Some(before(options.retention)),
                        dead_letters_before: Some(before(options.retention)),
                        events_before: Some(before(options.event_retention)),
                        idempotency_before: Some(before(options.idempotency_retention)),
                        expired_cache: true,
                    })
                    .await
                    .map_err(unreachable)??;
                if report.executions
                    + report.dead_letters
                    + report.events
                    + report.cache_entries
                    + report.idempotency_keys
                    > 0
                {
                    tracing::info!(
                        executions = report.executions,
                        dead_letters = report.dead_letters,
                        events = report.events,
                        cache = report.cache_entries,
                        idempotency_keys = report.idempotency_keys,
                        "cleanup"
                    );
                }
            }
            if cleanup_due {
                let forgotten = writes.send(ForgetNodes(FORGET_AFTER)).await.map_err(unreachable)??;
                if forgotten > 0 {
                    tracing::info!(nodes = forgotten, "nodes silent for an hour forgotten");
                }
            }
            if sweep_due {
                // Expired notifications, a bounded batch at a time.
                let mut swept = 0;
                loop {
                    let n = writes
                        .send(SweepNotifications { limit: SWEEP_BATCH })
                        .await
                        .map_err(unreachable)??;
                    swept += n;
                    if n < u64::from(SWEEP_BATCH) {
                        break;
                    }
                }
                if swept > 0 {
                    tracing::info!(notifications = swept, "expired notifications deleted");
                }
            }
            StoreResult::Ok((cleanup_due, sweep_due))
        }
        .into_actor(self)
        .map(|result, act, _| {
            act.running = false;
            match result {
                Ok((cleaned, swept)) => {
                    if cleaned {
                        act.last_cleanup = Some(Instant::now());
                    }
                    if swept {
                        act.last_sweep = Some(Instant::now());
                    }
                }
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
