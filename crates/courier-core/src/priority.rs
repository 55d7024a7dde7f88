//! Priority ageing: how claims weigh a task's priority against how long it has
//! been due.
//!
//! Claims take due work in *claim order*: the due time (`scheduled_for`) minus
//! `priority × ageing`, earliest first; on a tie, higher priority, then due
//! time, then creation. Each priority level is thus worth `ageing` of waiting.
//!
//! **The bound.** A task of priority `p` due at `t` is claimed before every task
//! of priority `q > p` that became due at or after `t + (q − p) × ageing`
//! (and, like before, before every task of its own or lower priority that became
//! due later). So a steady flood of higher-priority work overtakes it only with
//! tasks that became due less than `Δpriority × ageing` after it: once that
//! window has passed, it is next in line as soon as the work already ahead of it
//! (due within the window) has been claimed. Within the window, priority is
//! strict, as it was before ageing.
//!
//! Both stores keep the claim order in a generated column (`claim_at`, µs) that
//! their claim indexes are ordered by, so no write path can forget it and a
//! claim still reads its candidates in order from an index. The ageing is
//! therefore fixed per store: it is part of the column's expression, rewritten
//! when a store is opened with a different setting.

use std::time::Duration;

use chrono::{DateTime, Utc};
use thiserror::Error;

/// What one priority level is worth in waiting (`store.priority_aging`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PriorityAgeing(Duration);

/// Why an ageing setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("priority ageing {given:?} is longer than the {max:?} the claim order can hold for every i32 priority")]
pub struct PriorityAgeingError {
    /// The setting given.
    pub given: Duration,
    /// The longest accepted.
    pub max: Duration,
}

impl PriorityAgeing {
    /// A priority level is worth a minute of waiting unless told otherwise.
    pub const DEFAULT: PriorityAgeing = PriorityAgeing(Duration::from_secs(60));

    /// The longest ageing accepted: `i32::MIN × ageing` (in µs) plus any due time
    /// must fit the 64-bit claim order, and an hour per level does.
    pub const MAX: Duration = Duration::from_secs(3600);

    /// `ageing` per priority level; zero orders by due time alone (priority only
    /// breaks ties). Refused above [`MAX`](Self::MAX). Sub-microsecond parts are dropped.
    pub fn new(ageing: Duration) -> Result<Self, PriorityAgeingError> {
        if ageing > Self::MAX {
            return Err(PriorityAgeingError {
                given: ageing,
                max: Self::MAX,
            });
        }
        Ok(PriorityAgeing(Duration::from_micros(ageing.as_micros() as u64)))
    }

    /// The ageing per priority level.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// The ageing per priority level in microseconds (the unit of the claim order).
    pub fn micros(self) -> i64 {
        // At most an hour, by construction.
        self.0.as_micros() as i64
    }

    /// A task's claim order, in µs since the epoch: its due time minus
    /// `priority × ageing`. The stores compute the same value in SQL.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chrono::{TimeZone, Utc};
    /// use courier_core::PriorityAgeing;
    ///
    /// let ageing = PriorityAgeing::new(Duration::from_secs(60)).unwrap();
    /// let due = Utc.timestamp_opt(1_000_000, 0).unwrap();
    /// // Priority 2 due two minutes later ties with priority 0 due now.
    /// assert_eq!(
    ///     ageing.claim_at(2, due + chrono::Duration::minutes(2)),
    ///     ageing.claim_at(0, due)
    /// );
    /// ```
    pub fn claim_at(self, priority: i32, scheduled_for: DateTime<Utc>) -> i64 {
        scheduled_for.timestamp_micros() - i64::from(priority) * self.micros()
    }
}

impl Default for PriorityAgeing {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extremes_fit_the_claim_order() {
        let max = PriorityAgeing::new(PriorityAgeing::MAX).unwrap();
        let late = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap(); // 9999-12-31
        assert!(max.claim_at(i32::MIN, late) > 0);
        assert!(max.claim_at(i32::MAX, DateTime::<Utc>::UNIX_EPOCH) < 0);
        assert!(PriorityAgeing::new(PriorityAgeing::MAX + Duration::from_micros(1)).is_err());
    }

    #[test]
    fn each_level_is_worth_the_ageing() {
        let ageing = PriorityAgeing::new(Duration::from_secs(10)).unwrap();
        let t = DateTime::<Utc>::from_timestamp(1_000, 0).unwrap();
        let within = t + chrono::Duration::seconds(9);
        let beyond = t + chrono::Duration::seconds(11);
        // A priority-1 task due 9 s after a priority-0 one goes first; 11 s after, it does not.
        assert!(ageing.claim_at(1, within) < ageing.claim_at(0, t));
        assert!(ageing.claim_at(1, beyond) > ageing.claim_at(0, t));
    }
}
