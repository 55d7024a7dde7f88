//! `SchedulerActor`: fires the cluster's schedules, on one node at a time.
//!
//! Every [`TICK`] it makes sure it holds the cluster-wide `courier.scheduler`
//! role (a lease in the store, renewed every second), reads the schedules due
//! by the store's clock and plans each one's firing ([`plan`]): the slots
//! passed since its next slot, those older than its catch-up window recorded
//! as one skipped run, the rest fired in order (or skipped, or one buffered,
//! while the previous execution runs, as its overlap policy says), each slot
//! put off by its jitter. The firing is written with a compare-and-set of the
//! schedule's revision in the transaction that dispatches the slots'
//! executions, so a slot fires once however many nodes try, and a slot is not
//! lost when the role's holder dies: the next holder finds it still due.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use courier_core::{
    ExecutionId, Firing, NewExecution, NewRun, Overlap, RunOutcome, ScheduleRecord, StoreResult, jitter_of, slot_key,
};

use crate::node::Node;
use crate::store_actor::{AcquireRole, FireSchedules, unreachable};

/// The role whose holder fires the schedules.
pub(crate) const ROLE: &str = "courier.scheduler";
/// How often the holder reads the due schedules.
pub const TICK: Duration = Duration::from_millis(200);
/// How long the role is held without renewal (a dead holder's successor takes
/// over after it).
const ROLE_TTL: Duration = Duration::from_secs(3);
/// How often the role is renewed.
const ROLE_RENEW: Duration = Duration::from_secs(1);
/// Schedules read per tick.
const DUE_READ: u32 = 500;
/// Slots one firing covers at most (a schedule far behind catches up over
/// several ticks).
const MAX_SLOTS: usize = 1000;

/// Stop firing (the node is shutting down).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopScheduler;

/// The actor. See the module documentation.
pub(crate) struct SchedulerActor {
    node: Node,
    /// Until when the role is known held (renewed past it).
    held_until: Option<Instant>,
    running: bool,
    stopped: bool,
}

impl SchedulerActor {
    pub(crate) fn new(node: Node) -> Self {
        SchedulerActor {
            node,
            held_until: None,
            running: false,
            stopped: false,
        }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.running || self.stopped {
            return;
        }
        self.running = true;
        let node = self.node.clone();
        let renew = self.held_until.is_none_or(|until| Instant::now() >= until);
        async move {
            if renew {
                let held = node
                    .writes()
                    .send(AcquireRole {
                        name: ROLE,
                        owner: node.id().to_string(),
                        ttl: ROLE_TTL,
                    })
                    .await
                    .map_err(unreachable)??;
                if !held {
                    return StoreResult::Ok(false);
                }
            }
            fire_due(&node).await?;
            Ok(true)
        }
        .into_actor(self)
        .map(move |outcome, act, _| {
            act.running = false;
            match outcome {
                Ok(true) if renew => act.held_until = Some(Instant::now() + ROLE_RENEW),
                Ok(true) => {}
                Ok(false) => act.held_until = None,
                Err(e) => {
                    act.held_until = None;
                    tracing::warn!(error = %e, "scheduler round failed; trying again");
                }
            }
        })
        .spawn(ctx);
    }
}

/// Firings written in one transaction: one event-log append and one
/// dispatch batch for all of them.
const FIRINGS_PER_WRITE: usize = 250;

/// Reads the due schedules and fires each.
async fn fire_due(node: &Node) -> StoreResult<()> {
    let store = node.store();
    let due = store.due_schedules(DUE_READ).await?;
    if due.is_empty() {
        return Ok(());
    }
    let now = store.now().await?;
    let mut firings = Vec::with_capacity(due.len());
    for schedule in &due {
        // Only a policy that waits needs to know whether the last one still runs.
        let previous_running = match (schedule.definition.overlap, schedule.last_execution_id) {
            (Overlap::Allow, _) | (_, None) => false,
            (_, Some(id)) => store.get_execution(id).await?.is_some_and(|x| !x.state.is_terminal()),
        };
        if let Some(firing) = plan(schedule, now, previous_running, |slot| {
            slot_execution(node, schedule, slot)
        }) {
            firings.push(firing);
        }
    }
    let writes = node.writes().clone();
    while !firings.is_empty() {
        let batch: Vec<Firing> = firings.drain(..firings.len().min(FIRINGS_PER_WRITE)).collect();
        let fired: Vec<usize> = batch
            .iter()
            .map(|f| f.runs.iter().filter(|r| r.outcome == RunOutcome::Fired).count())
            .collect();
        match writes.send(FireSchedules(batch)).await.map_err(unreachable)? {
            Ok(written) => {
                // A `None` was edited (or fired by a former holder) since it was read: next tick.
                let slots: usize = written
                    .iter()
                    .zip(&fired)
                    .filter(|(w, _)| w.is_some())
                    .map(|(_, n)| n)
                    .sum();
                if slots > 0 {
                    metrics::counter!(courier_core::metric::SCHEDULE_SLOTS_FIRED).increment(slots as u64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not fire schedules' slots"),
        }
    }
    Ok(())
}

/// The execution a slot starts: the function's registered and stored options,
/// the schedule's queue and priority over them, the slot's idempotency key.
pub(crate) fn slot_execution(node: &Node, schedule: &ScheduleRecord, slot: DateTime<Utc>) -> NewExecution {
    let definition = &schedule.definition;
    let mut spec = node.functions().spec(&definition.function, definition.args.clone());
    if let Some(queue) = &definition.queue {
        spec.queue = queue.clone();
    }
    if let Some(priority) = definition.priority {
        spec.priority = priority;
    }
    NewExecution {
        id: ExecutionId::new(),
        spec,
        expiry: None,
        idempotency_key: Some(slot_key(&schedule.id, slot)),
        parent: None,
    }
}

/// What firing `schedule` at `now` writes, if anything: its buffered slot (if
/// the previous execution ended), then its due slots, as its catch-up window,
/// overlap policy and jitter say. `execution` makes a slot's execution.
pub(crate) fn plan(
    schedule: &ScheduleRecord,
    now: DateTime<Utc>,
    mut previous_running: bool,
    execution: impl Fn(DateTime<Utc>) -> NewExecution,
) -> Option<Firing> {
    let spec = match schedule.spec() {
        Ok(spec) => spec,
        Err(e) => {
            tracing::warn!(schedule = schedule.id, error = %e, "a stored schedule does not parse; not fired");
            return None;
        }
    };
    let definition = &schedule.definition;
    let fire = |slot: DateTime<Utc>, reason: &str| NewRun {
        slot,
        outcome: RunOutcome::Fired,
        count: 1,
        reason: reason.into(),
        execution: Some(execution(slot)),
    };
    let skip = |slot: DateTime<Utc>, count: u32, reason: &str| NewRun {
        slot,
        outcome: RunOutcome::Skipped,
        count,
        reason: reason.into(),
        execution: None,
    };
    let mut runs = Vec::new();
    let mut buffered = schedule.buffered_slot;
    if let Some(slot) = buffered
        && !previous_running
    {
        runs.push(fire(slot, "buffered"));
        buffered = None;
        previous_running = true;
    }

    let mut slots = Vec::new();
    let mut next = schedule.next_slot;
    while let Some(slot) = next {
        let due_at = TimeDelta::from_std(jitter_of(&schedule.id, slot, definition.jitter))
            .ok()
            .and_then(|j| slot.checked_add_signed(j))
            .unwrap_or(slot);
        if due_at > now || slots.len() >= MAX_SLOTS {
            break;
        }
        slots.push(slot);
        next = spec.next_after(slot);
    }
    if slots.is_empty() && runs.is_empty() {
        return None;
    }

    let cutoff = TimeDelta::from_std(definition.catchup_window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let missed = slots.iter().take_while(|slot| **slot < cutoff).count();
    if missed > 0 {
        runs.push(skip(
            slots[0],
            u32::try_from(missed).unwrap_or(u32::MAX),
            "catchup_window",
        ));
    }
    for &slot in &slots[missed..] {
        match definition.overlap {
            Overlap::Allow => runs.push(fire(slot, "schedule")),
            _ if !previous_running => {
                runs.push(fire(slot, "schedule"));
                previous_running = true;
            }
            Overlap::Skip => runs.push(skip(slot, 1, "overlap")),
            Overlap::BufferOne if buffered.is_none() => {
                buffered = Some(slot);
                runs.push(NewRun {
                    slot,
                    outcome: RunOutcome::Buffered,
                    count: 1,
                    reason: "overlap".into(),
                    execution: None,
                });
            }
            Overlap::BufferOne => runs.push(skip(slot, 1, "buffer_full")),
        }
    }
    Some(Firing {
        schedule_id: schedule.id.clone(),
        expected_revision: schedule.revision,
        next_slot: next,
        buffered_slot: buffered,
        runs,
    })
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.round(ctx));
    }
}

impl Supervised for SchedulerActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.running = false;
        self.held_until = None;
    }
}

/// Goes idle for good (a supervised actor that stopped would be restarted).
impl Handler<StopScheduler> for SchedulerActor {
    type Result = ();

    fn handle(&mut self, _: StopScheduler, _: &mut Self::Context) {
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use courier_core::{ScheduleDefinition, TaskKind, TaskSpec};
    use serde_json::json;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn schedule(every_s: u64, overlap: Overlap, next: &str) -> ScheduleRecord {
        ScheduleRecord {
            id: "s".into(),
            definition: ScheduleDefinition {
                function: "f".into(),
                args: json!(null),
                cron: None,
                every: Some(Duration::from_secs(every_s)),
                timezone: "UTC".into(),
                overlap,
                catchup_window: Duration::from_secs(60),
                jitter: Duration::ZERO,
                queue: None,
                priority: None,
            },
            paused: false,
            anchor_at: at("2026-12-05T10:00:00Z"),
            next_slot: Some(at(next)),
            buffered_slot: None,
            last_slot: None,
            last_execution_id: None,
            created_at: at("2026-12-05T10:00:00Z"),
            updated_at: at("2026-12-05T10:00:00Z"),
            revision: 4,
        }
    }

    fn new_execution(_: DateTime<Utc>) -> NewExecution {
        NewExecution::new(TaskSpec::new(TaskKind::Activity, "f", json!(null)))
    }

    fn shape(firing: &Firing) -> Vec<(String, &'static str, u32, &str)> {
        firing
            .runs
            .iter()
            .map(|r| {
                (
                    r.slot.format("%H:%M:%S").to_string(),
                    r.outcome.as_str(),
                    r.count,
                    r.reason.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn nothing_is_due_before_the_next_slot() {
        let s = schedule(10, Overlap::Allow, "2026-12-05T10:00:10Z");
        assert!(plan(&s, at("2026-12-05T10:00:09Z"), false, new_execution).is_none());
    }

    #[test]
    fn missed_slots_past_the_window_are_one_skipped_run_and_the_rest_fire_in_order() {
        let s = schedule(10, Overlap::Allow, "2026-12-05T10:00:10Z");
        // Down from 10:00:10 to 10:05:05: 30 slots; the window keeps the last minute's 6.
        let firing = plan(&s, at("2026-12-05T10:05:05Z"), false, new_execution).unwrap();
        let runs = shape(&firing);
        assert_eq!(runs[0], ("10:00:10".into(), "skipped", 24, "catchup_window"));
        assert_eq!(runs.len(), 7);
        assert!(runs[1..].iter().all(|r| r.1 == "fired"));
        assert_eq!(runs[1].0, "10:04:10");
        assert_eq!(runs[6].0, "10:05:00");
        assert_eq!(firing.next_slot, Some(at("2026-12-05T10:05:10Z")));
        assert_eq!(firing.expected_revision, 4);
        assert!(firing.runs[1].execution.is_some());
    }

    #[test]
    fn overlap_skip_fires_once_then_skips_while_it_runs() {
        let s = schedule(10, Overlap::Skip, "2026-12-05T10:00:10Z");
        let firing = plan(&s, at("2026-12-05T10:00:30Z"), false, new_execution).unwrap();
        assert_eq!(
            shape(&firing),
            [
                ("10:00:10".into(), "fired", 1, "schedule"),
                ("10:00:20".into(), "skipped", 1, "overlap"),
                ("10:00:30".into(), "skipped", 1, "overlap"),
            ]
        );
        let busy = plan(&s, at("2026-12-05T10:00:10Z"), true, new_execution).unwrap();
        assert_eq!(shape(&busy), [("10:00:10".into(), "skipped", 1, "overlap")]);
    }

    #[test]
    fn overlap_buffer_one_keeps_one_slot_until_the_previous_ends() {
        let s = schedule(10, Overlap::BufferOne, "2026-12-05T10:00:10Z");
        let firing = plan(&s, at("2026-12-05T10:00:20Z"), true, new_execution).unwrap();
        assert_eq!(
            shape(&firing),
            [
                ("10:00:10".into(), "buffered", 1, "overlap"),
                ("10:00:20".into(), "skipped", 1, "buffer_full"),
            ]
        );
        assert_eq!(firing.buffered_slot, Some(at("2026-12-05T10:00:10Z")));
        // Still running: nothing to do for the buffered slot.
        let mut waiting = s.clone();
        waiting.buffered_slot = firing.buffered_slot;
        waiting.next_slot = firing.next_slot;
        assert!(plan(&waiting, at("2026-12-05T10:00:25Z"), true, new_execution).is_none());
        // The previous ended: the buffered slot fires.
        let done = plan(&waiting, at("2026-12-05T10:00:25Z"), false, new_execution).unwrap();
        assert_eq!(shape(&done), [("10:00:10".into(), "fired", 1, "buffered")]);
        assert_eq!(done.buffered_slot, None);
    }

    #[test]
    fn jitter_puts_a_slot_off_by_the_same_amount_everywhere() {
        let mut s = schedule(3600, Overlap::Allow, "2026-12-05T11:00:00Z");
        s.definition.jitter = Duration::from_secs(30);
        let delay = jitter_of("s", at("2026-12-05T11:00:00Z"), Duration::from_secs(30));
        assert!(delay <= Duration::from_secs(30));
        let due = at("2026-12-05T11:00:00Z") + TimeDelta::from_std(delay).unwrap();
        if delay > Duration::ZERO {
            assert!(plan(&s, due - TimeDelta::milliseconds(1), false, new_execution).is_none());
        }
        assert!(plan(&s, due, false, new_execution).is_some());
    }
}
