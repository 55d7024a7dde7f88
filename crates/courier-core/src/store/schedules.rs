//! Schedules and what became of their slots (see [`crate::ScheduleRecord`]).
//! Every write names the revision it read: a firing and an edit of one
//! schedule never both win, and a slot is fired once.

use async_trait::async_trait;

use crate::change::Committed;
use crate::error::StoreResult;
use crate::schedule::{Firing, ScheduleRecord, ScheduleRun};

/// Stored schedules.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Stores a new schedule as given, with `created_at` and `updated_at` from
    /// the store's clock and revision 1; the record as written. A taken id is
    /// [`StoreError::Conflict`](crate::StoreError::Conflict).
    async fn create_schedule(&self, schedule: &ScheduleRecord) -> StoreResult<ScheduleRecord>;

    /// One schedule.
    async fn get_schedule(&self, id: &str) -> StoreResult<Option<ScheduleRecord>>;

    /// Schedules by id (in byte order), at most `limit` (0: all) from `offset`.
    async fn list_schedules(&self, limit: u32, offset: u32) -> StoreResult<Vec<ScheduleRecord>>;

    /// Replaces what can change of `schedule` (definition, paused, anchor, next,
    /// buffered and last slots) if it is still at `expected_revision`: the
    /// record as written (one more revision, `updated_at` now), or `None` with
    /// nothing written (it moved on, or is gone).
    async fn update_schedule(
        &self,
        schedule: &ScheduleRecord,
        expected_revision: i64,
    ) -> StoreResult<Option<ScheduleRecord>>;

    /// Deletes a schedule and its runs; whether it existed.
    async fn delete_schedule(&self, id: &str) -> StoreResult<bool>;

    /// Schedules not paused whose next slot is due by the store's clock, or
    /// that hold a buffered slot, earliest first, at most `limit`.
    async fn due_schedules(&self, limit: u32) -> StoreResult<Vec<ScheduleRecord>>;

    /// Writes firings in one transaction, each only if its schedule is still
    /// at its `expected_revision`: moves it on (next and buffered slot; the
    /// last fired slot and its execution), dispatches each fired run's
    /// execution (exactly as a dispatch would: its idempotency key makes one
    /// execution per slot), records the runs and logs them. One result per
    /// firing, in order: the schedule as written, or `None` with nothing of
    /// that firing written (another writer came first). Changes: the
    /// dispatches', then a `ScheduleRan` per run, in order.
    async fn fire_schedules(&self, firings: &[Firing]) -> StoreResult<Committed<Vec<Option<ScheduleRecord>>>>;

    /// [`fire_schedules`](Self::fire_schedules) with one firing.
    async fn fire_schedule(&self, firing: &Firing) -> StoreResult<Committed<Option<ScheduleRecord>>> {
        let fired = self.fire_schedules(std::slice::from_ref(firing)).await?;
        let changes = fired.changes;
        Ok(Committed::new(fired.value.into_iter().next().flatten(), changes))
    }

    /// A schedule's runs, newest slot first, at most `limit` (0: all) from `offset`.
    async fn list_schedule_runs(&self, id: &str, limit: u32, offset: u32) -> StoreResult<Vec<ScheduleRun>>;
}
