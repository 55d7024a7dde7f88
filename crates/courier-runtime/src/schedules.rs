//! Schedules through the runtime: create, read, edit, pause, resume, trigger
//! and delete them, and read their runs. The `SchedulerActor` (on the node
//! holding the scheduler role) fires them; see `courier_core::ScheduleRecord`.

use chrono::{DateTime, Utc};
use courier_core::{
    Firing, NewRun, RunOutcome, ScheduleDefinition, ScheduleRecord, ScheduleRun, ScheduleSpec, StoreError,
};

use crate::error::RuntimeError;
use crate::handle::Courier;
use crate::scheduler::slot_execution;
use crate::store_actor::{CreateSchedule, DeleteSchedule, FireSchedules, UpdateSchedule};

/// The longest schedule id.
pub const MAX_SCHEDULE_ID: usize = 200;
/// The most slots one backfill starts.
pub const MAX_BACKFILL: usize = 1000;
/// How often an edit is tried again when a firing moved the schedule on meanwhile.
const EDIT_TRIES: usize = 20;

fn check_id(id: &str) -> Result<(), RuntimeError> {
    if id.trim().is_empty() || id.len() > MAX_SCHEDULE_ID || id.chars().any(char::is_control) {
        return Err(RuntimeError::Invalid(format!(
            "a schedule id is 1 to {MAX_SCHEDULE_ID} bytes, not blank, without control characters"
        )));
    }
    Ok(())
}

fn check(definition: &ScheduleDefinition, anchor: DateTime<Utc>) -> Result<ScheduleSpec, RuntimeError> {
    if definition.function.trim().is_empty() {
        return Err(RuntimeError::Invalid("a schedule needs a function".into()));
    }
    definition
        .check(anchor)
        .map_err(|e| RuntimeError::Invalid(e.to_string()))
}

impl Courier {
    /// Creates a schedule (`id`: a new one's if `None`), its first slot the
    /// first its spec names after now (the store's clock); an interval's slots
    /// count from now. A taken id is refused (`Store(Conflict)`).
    ///
    /// ```no_run
    /// # async fn example(courier: courier_runtime::Courier) -> Result<(), courier_runtime::RuntimeError> {
    /// use courier_core::ScheduleDefinition;
    ///
    /// let nightly: ScheduleDefinition = serde_json::from_value(serde_json::json!({
    ///     "function": "rollup", "cron": "0 30 2 * * *", "timezone": "Europe/Paris"
    /// }))?;
    /// let created = courier.create_schedule(Some("nightly-rollup".into()), nightly, false).await?;
    /// println!("first run at {:?}", created.next_slot);
    /// # Ok(()) }
    /// ```
    pub async fn create_schedule(
        &self,
        id: Option<String>,
        definition: ScheduleDefinition,
        paused: bool,
    ) -> Result<ScheduleRecord, RuntimeError> {
        let id = id.unwrap_or_else(|| format!("schedule-{}", uuid::Uuid::now_v7().simple()));
        check_id(&id)?;
        let now = self.store().now().await?;
        let spec = check(&definition, now)?;
        let record = ScheduleRecord {
            id,
            definition,
            paused,
            anchor_at: now,
            next_slot: spec.next_after(now),
            buffered_slot: None,
            last_slot: None,
            last_execution_id: None,
            created_at: now,
            updated_at: now,
            revision: 0,
        };
        Ok(self.node.writes().send(CreateSchedule(record)).await??)
    }

    /// One schedule.
    pub async fn schedule(&self, id: &str) -> Result<ScheduleRecord, RuntimeError> {
        self.store()
            .get_schedule(id)
            .await?
            .ok_or_else(|| RuntimeError::ScheduleNotFound(id.to_string()))
    }

    /// Schedules by id, at most `limit` (0: all) from `offset`.
    pub async fn schedules(&self, limit: u32, offset: u32) -> Result<Vec<ScheduleRecord>, RuntimeError> {
        Ok(self.store().list_schedules(limit, offset).await?)
    }

    /// A schedule's runs, newest slot first.
    pub async fn schedule_runs(&self, id: &str, limit: u32, offset: u32) -> Result<Vec<ScheduleRun>, RuntimeError> {
        self.schedule(id).await?;
        Ok(self.store().list_schedule_runs(id, limit, offset).await?)
    }

    /// Replaces a schedule's definition. If its timing changed (cron, interval,
    /// time zone), its next slot is the first the new spec names after now (an
    /// interval counting from now); slots already fired stay fired.
    pub async fn replace_schedule(
        &self,
        id: &str,
        definition: ScheduleDefinition,
    ) -> Result<ScheduleRecord, RuntimeError> {
        self.edit_schedule(id, |record, now| {
            let timing = |d: &ScheduleDefinition| (d.cron.clone(), d.every, d.timezone.clone());
            let retimed = timing(&record.definition) != timing(&definition);
            let anchor = if retimed && definition.every.is_some() {
                now
            } else {
                record.anchor_at
            };
            let spec = check(&definition, anchor)?;
            if retimed {
                record.anchor_at = anchor;
                record.next_slot = spec.next_after(now);
            }
            record.definition = definition.clone();
            Ok(())
        })
        .await
    }

    /// Pauses a schedule: no slot fires until it is resumed.
    pub async fn pause_schedule(&self, id: &str) -> Result<ScheduleRecord, RuntimeError> {
        self.edit_schedule(id, |record, _| {
            record.paused = true;
            Ok(())
        })
        .await
    }

    /// Resumes a paused schedule from the first slot after now: the slots that
    /// passed while it was paused are not caught up.
    pub async fn resume_schedule(&self, id: &str) -> Result<ScheduleRecord, RuntimeError> {
        self.edit_schedule(id, |record, now| {
            if record.paused {
                record.paused = false;
                record.next_slot = check(&record.definition, record.anchor_at)?.next_after(now);
            }
            Ok(())
        })
        .await
    }

    /// Starts the schedule's function now, outside its slots (paused or not):
    /// the run is recorded (`reason: "trigger"`) and logged like any slot's.
    pub async fn trigger_schedule(&self, id: &str) -> Result<ScheduleRun, RuntimeError> {
        for _ in 0..EDIT_TRIES {
            let record = self.schedule(id).await?;
            let now = self.store().now().await?;
            let firing = Firing {
                schedule_id: record.id.clone(),
                expected_revision: record.revision,
                next_slot: record.next_slot,
                buffered_slot: record.buffered_slot,
                runs: vec![NewRun {
                    slot: now,
                    outcome: RunOutcome::Fired,
                    count: 1,
                    reason: "trigger".into(),
                    execution: Some(slot_execution(&self.node, &record, now)),
                }],
            };
            if let Some(fired) = self.fire(firing).await? {
                return Ok(ScheduleRun {
                    schedule_id: fired.id,
                    slot: now,
                    outcome: RunOutcome::Fired,
                    count: 1,
                    execution_id: fired.last_execution_id,
                    reason: "trigger".into(),
                    recorded_at: fired.updated_at,
                });
            }
        }
        Err(busy(id))
    }

    /// Starts the schedule's slots from `from` to `to` (both included; at most
    /// [`MAX_BACKFILL`]), as if they had fired (`reason: "backfill"`), paused
    /// or not and whatever its catch-up window. Each slot's idempotency key is
    /// the one its firing uses, so a slot that already fired keeps its one
    /// execution (its run points at it). The runs, newest slot first.
    pub async fn backfill_schedule(
        &self,
        id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ScheduleRun>, RuntimeError> {
        if to < from {
            return Err(RuntimeError::Invalid("a backfill's `to` is before its `from`".into()));
        }
        for _ in 0..EDIT_TRIES {
            let record = self.schedule(id).await?;
            let spec = check(&record.definition, record.anchor_at)?;
            let mut slots = Vec::new();
            let mut next = from
                .checked_sub_signed(chrono::TimeDelta::microseconds(1))
                .and_then(|before| spec.next_after(before));
            while let Some(slot) = next.filter(|slot| *slot <= to) {
                if slots.len() == MAX_BACKFILL {
                    return Err(RuntimeError::Invalid(format!(
                        "the range holds more than {MAX_BACKFILL} slots; backfill it in parts"
                    )));
                }
                slots.push(slot);
                next = spec.next_after(slot);
            }
            if slots.is_empty() {
                return Ok(Vec::new());
            }
            let runs = slots
                .iter()
                .map(|&slot| NewRun {
                    slot,
                    outcome: RunOutcome::Fired,
                    count: 1,
                    reason: "backfill".into(),
                    execution: Some(slot_execution(&self.node, &record, slot)),
                })
                .collect();
            let firing = Firing {
                schedule_id: record.id.clone(),
                expected_revision: record.revision,
                next_slot: record.next_slot,
                buffered_slot: record.buffered_slot,
                runs,
            };
            if self.fire(firing).await?.is_some() {
                let recorded = self.store().list_schedule_runs(id, 0, 0).await?;
                // Newest first: each slot's first run listed is this backfill's.
                let mut seen = std::collections::HashSet::new();
                let runs = recorded
                    .into_iter()
                    .filter(|r| r.reason == "backfill" && slots.contains(&r.slot) && seen.insert(r.slot))
                    .collect();
                return Ok(runs);
            }
        }
        Err(busy(id))
    }

    /// Deletes a schedule and its runs (executions it started are left alone).
    pub async fn delete_schedule(&self, id: &str) -> Result<bool, RuntimeError> {
        Ok(self.node.writes().send(DeleteSchedule(id.to_string())).await??)
    }

    /// Writes one firing; the schedule as written, or `None` if it moved on.
    async fn fire(&self, firing: Firing) -> Result<Option<ScheduleRecord>, RuntimeError> {
        let fired = self.node.writes().send(FireSchedules(vec![firing])).await??;
        Ok(fired.into_iter().next().flatten())
    }

    /// Reads, changes and writes a schedule at the revision read, again if a
    /// firing moved it on meanwhile.
    async fn edit_schedule(
        &self,
        id: &str,
        edit: impl Fn(&mut ScheduleRecord, DateTime<Utc>) -> Result<(), RuntimeError>,
    ) -> Result<ScheduleRecord, RuntimeError> {
        for _ in 0..EDIT_TRIES {
            let mut record = self.schedule(id).await?;
            let now = self.store().now().await?;
            let read = record.revision;
            edit(&mut record, now)?;
            let write = UpdateSchedule {
                schedule: record,
                expected_revision: read,
            };
            if let Some(written) = self.node.writes().send(write).await?? {
                return Ok(written);
            }
        }
        Err(busy(id))
    }
}

fn busy(id: &str) -> RuntimeError {
    RuntimeError::Store(StoreError::Conflict {
        id: id.to_string(),
        detail: "the schedule kept changing under this write; try again".into(),
    })
}
