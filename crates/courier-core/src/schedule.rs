//! Schedules: a function started on a cron expression (with seconds, in a time
//! zone) or at a fixed interval, once per slot for the whole cluster.
//!
//! A schedule's slots are the instants its expression names. Each slot fires at
//! most once: the node holding the scheduler role moves the schedule's
//! `next_slot` on with a compare-and-set of its `revision` in the same
//! transaction that dispatches the slot's execution (whose idempotency key is
//! the schedule and the slot, see [`slot_key`]), so a slot is neither fired
//! twice nor lost when that node dies. What each slot came to is kept as a
//! [`ScheduleRun`] and logged as `schedule.fired` / `schedule.skipped`.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::duration::serde_duration;
use crate::id::ExecutionId;
use crate::state::string_enum;

/// The shortest interval a schedule may have.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

string_enum! {
    /// What a slot does while the schedule's previous execution still runs
    /// (Temporal's names).
    ///
    /// ```
    /// use courier_core::Overlap;
    /// assert_eq!("buffer_one".parse::<Overlap>().unwrap(), Overlap::BufferOne);
    /// ```
    Overlap {
        /// The slot is skipped (recorded as such).
        Skip => "skip",
        /// The slot waits for the previous execution to end, then fires; at most
        /// one waits, later ones are skipped.
        BufferOne => "buffer_one",
        /// The slot fires anyway: executions may run side by side.
        Allow => "allow",
    }
}

string_enum! {
    /// What became of a slot.
    ///
    /// ```
    /// use courier_core::RunOutcome;
    /// assert_eq!(RunOutcome::Fired.as_str(), "fired");
    /// ```
    RunOutcome {
        /// Its execution was dispatched.
        Fired => "fired",
        /// Nothing ran for it (missed past the catch-up window, overlap, or
        /// another slot already waiting).
        Skipped => "skipped",
        /// It waits for the previous execution to end (overlap `buffer_one`).
        Buffered => "buffered",
    }
}

/// When a schedule's slots are: a cron expression in a time zone, or every
/// fixed interval from an anchor.
///
/// ```
/// use courier_core::ScheduleSpec;
/// use chrono::{DateTime, Utc};
///
/// let nightly = ScheduleSpec::cron("0 30 2 * * *", "Europe/Paris").unwrap();
/// let after: DateTime<Utc> = "2026-07-01T00:00:00Z".parse().unwrap();
/// // 02:30 in Paris is 00:30 UTC in summer.
/// assert_eq!(nightly.next_after(after).unwrap().to_rfc3339(), "2026-07-01T00:30:00+00:00");
///
/// let anchor: DateTime<Utc> = "2026-07-01T00:00:00Z".parse().unwrap();
/// let every = ScheduleSpec::every(std::time::Duration::from_secs(90), anchor).unwrap();
/// assert_eq!(every.next_after(anchor).unwrap().to_rfc3339(), "2026-07-01T00:01:30+00:00");
/// ```
#[derive(Clone, Debug)]
pub enum ScheduleSpec {
    /// A cron expression (5 fields, or 6 with seconds first), in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<croner::Cron>,
        /// Its time zone.
        timezone: chrono_tz::Tz,
    },
    /// Every `every` from `anchor`.
    Every {
        /// The interval.
        every: Duration,
        /// The first slot.
        anchor: DateTime<Utc>,
    },
}

/// Why a schedule's definition was refused.
#[derive(Debug, Error, PartialEq)]
pub enum ScheduleError {
    /// Neither or both of `cron` and `every` were given.
    #[error("give exactly one of cron and every")]
    NoSpec,
    /// The cron expression does not parse.
    #[error("cron expression {cron:?} is not valid: {reason}")]
    Cron {
        /// The expression.
        cron: String,
        /// What the parser said.
        reason: String,
    },
    /// The time zone is not in the IANA database.
    #[error("time zone {0:?} is not an IANA name (like \"Europe/Paris\" or \"UTC\")")]
    TimeZone(String),
    /// The interval is shorter than [`MIN_EVERY`].
    #[error("every must be at least 1s")]
    TooFrequent,
}

impl ScheduleSpec {
    /// A cron expression in `timezone` (an IANA name).
    pub fn cron(expression: &str, timezone: &str) -> Result<ScheduleSpec, ScheduleError> {
        let timezone = chrono_tz::Tz::from_str(timezone).map_err(|_| ScheduleError::TimeZone(timezone.to_string()))?;
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| ScheduleError::Cron {
                cron: expression.to_string(),
                reason: e.to_string(),
            })?;
        Ok(ScheduleSpec::Cron {
            cron: Box::new(cron),
            timezone,
        })
    }

    /// Every `every` (at least [`MIN_EVERY`]), the first slot at `anchor`.
    pub fn every(every: Duration, anchor: DateTime<Utc>) -> Result<ScheduleSpec, ScheduleError> {
        if every < MIN_EVERY {
            return Err(ScheduleError::TooFrequent);
        }
        Ok(ScheduleSpec::Every { every, anchor })
    }

    /// The spec a schedule's fields describe.
    pub fn of(schedule: &ScheduleDefinition, anchor: DateTime<Utc>) -> Result<ScheduleSpec, ScheduleError> {
        match (&schedule.cron, schedule.every) {
            (Some(cron), None) => ScheduleSpec::cron(cron, &schedule.timezone),
            (None, Some(every)) => {
                // A time zone means nothing to an interval, but a bad one is still a mistake.
                chrono_tz::Tz::from_str(&schedule.timezone)
                    .map_err(|_| ScheduleError::TimeZone(schedule.timezone.clone()))?;
                ScheduleSpec::every(every, anchor)
            }
            _ => Err(ScheduleError::NoSpec),
        }
    }

    /// The first slot strictly after `after` (`None`: there is none, as for
    /// `0 0 30 2 *`, the 30th of February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            ScheduleSpec::Cron { cron, timezone } => cron
                .find_next_occurrence(&after.with_timezone(timezone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            ScheduleSpec::Every { every, anchor } => {
                if after < *anchor {
                    return Some(*anchor);
                }
                let step = TimeDelta::from_std(*every).ok()?;
                let step_us = step.num_microseconds()?.max(1);
                let since = (after - *anchor).num_microseconds()?;
                let k = since / step_us + 1;
                anchor.checked_add_signed(TimeDelta::microseconds(k.checked_mul(step_us)?))
            }
        }
    }
}

/// The idempotency key of the execution a schedule's slot starts: the same on
/// every node, so a slot makes one execution however often it is fired.
///
/// ```
/// let slot = "2026-12-05T10:00:00Z".parse().unwrap();
/// assert_eq!(courier_core::slot_key("nightly", slot), "courier.schedule:nightly:2026-12-05T10:00:00.000000Z");
/// ```
pub fn slot_key(schedule: &str, slot: DateTime<Utc>) -> String {
    format!(
        "courier.schedule:{schedule}:{}",
        slot.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// How far a slot's firing is put off by `jitter`: the same on every node (a
/// hash of the schedule and the slot), from zero up to `jitter`.
pub fn jitter_of(schedule: &str, slot: DateTime<Utc>, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return Duration::ZERO;
    }
    // FNV-1a: stable across builds and platforms, which `DefaultHasher` is not.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schedule.as_bytes().iter().chain(&slot.timestamp_micros().to_le_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let span = jitter.as_micros().min(u128::from(u64::MAX)) as u64;
    Duration::from_micros(hash % (span + 1))
}

/// What a schedule is, as its owner defines it.
///
/// ```
/// use courier_core::ScheduleDefinition;
///
/// let def: ScheduleDefinition = serde_json::from_str(
///     r#"{"function": "report", "cron": "0 0 9 * * MON-FRI", "timezone": "America/New_York"}"#,
/// ).unwrap();
/// assert_eq!(def.overlap, courier_core::Overlap::Skip);
/// assert!(def.check(chrono::Utc::now()).is_ok());
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDefinition {
    /// The function each slot starts.
    pub function: String,
    /// Its arguments (the same for every slot).
    #[serde(default)]
    pub args: Value,
    /// A cron expression: 5 fields, or 6 with seconds first (`*/10 * * * * *`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A fixed interval instead of `cron` (at least 1s).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_duration::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::DurationText>))]
    pub every: Option<Duration>,
    /// The IANA time zone `cron` is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// What a slot does while the previous execution still runs.
    #[serde(default = "skip")]
    pub overlap: Overlap,
    /// After downtime, slots missed within this long before now still fire
    /// (once each, in order); older ones are recorded as skipped.
    #[serde(default = "minute", with = "serde_duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DurationText))]
    pub catchup_window: Duration,
    /// Each slot fires up to this much late, the same amount on every node.
    #[serde(default, with = "serde_duration")]
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::DurationText))]
    pub jitter: Duration,
    /// The queue of the executions it starts (default: the function's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Their priority (default: the function's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

fn utc() -> String {
    "UTC".into()
}

fn skip() -> Overlap {
    Overlap::Skip
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

impl ScheduleDefinition {
    /// Whether its spec is valid (an interval anchored at `anchor`).
    pub fn check(&self, anchor: DateTime<Utc>) -> Result<ScheduleSpec, ScheduleError> {
        ScheduleSpec::of(self, anchor)
    }
}

/// A schedule as stored.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Its id (1 to 200 bytes).
    pub id: String,
    /// What it is.
    #[serde(flatten)]
    pub definition: ScheduleDefinition,
    /// Whether it is paused (no slot fires; slots passed while paused are not caught up).
    pub paused: bool,
    /// The first slot of an interval.
    pub anchor_at: DateTime<Utc>,
    /// The next slot to fire (`null`: the expression names no further instant).
    pub next_slot: Option<DateTime<Utc>>,
    /// A slot waiting for the previous execution to end (overlap `buffer_one`).
    pub buffered_slot: Option<DateTime<Utc>>,
    /// The last slot fired.
    pub last_slot: Option<DateTime<Utc>>,
    /// The execution the last fired slot started.
    pub last_execution_id: Option<ExecutionId>,
    /// When it was created (the store's clock).
    pub created_at: DateTime<Utc>,
    /// When it was last written (the store's clock).
    pub updated_at: DateTime<Utc>,
    /// Counts its writes; every write names the revision it read, so two
    /// writers (a firing and an edit) never both win.
    pub revision: i64,
}

impl ScheduleRecord {
    /// Its spec.
    pub fn spec(&self) -> Result<ScheduleSpec, ScheduleError> {
        ScheduleSpec::of(&self.definition, self.anchor_at)
    }
}

/// What became of one slot (or, for `count` > 1, of a run of skipped slots
/// from `slot` on).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// The schedule.
    pub schedule_id: String,
    /// The slot (the first of the run, when `count` > 1).
    pub slot: DateTime<Utc>,
    /// What became of it.
    pub outcome: RunOutcome,
    /// How many slots this run stands for (skipped slots past the catch-up
    /// window are recorded as one run).
    pub count: u32,
    /// The execution it started (`fired`).
    pub execution_id: Option<ExecutionId>,
    /// Why (`skipped`: `catchup_window`, `overlap`, `buffer_full`; `fired`:
    /// `schedule`, `trigger`, `buffered`).
    pub reason: String,
    /// When it was recorded (the store's clock).
    pub recorded_at: DateTime<Utc>,
}

/// One slot's outcome, as a firing writes it.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The slot (the first, for a run of skipped slots).
    pub slot: DateTime<Utc>,
    /// What became of it.
    pub outcome: RunOutcome,
    /// How many slots it stands for.
    pub count: u32,
    /// Why.
    pub reason: String,
    /// The execution to dispatch (`fired` only), with the slot's idempotency key.
    pub execution: Option<crate::execution::NewExecution>,
}

/// A firing: the runs of some slots and the schedule's new position, written
/// together only if the schedule is still at `expected_revision`.
#[derive(Clone, Debug)]
pub struct Firing {
    /// The schedule.
    pub schedule_id: String,
    /// The revision read; anything else means another writer came first.
    pub expected_revision: i64,
    /// Its next slot after this firing.
    pub next_slot: Option<DateTime<Utc>>,
    /// The slot left waiting (overlap `buffer_one`), if any.
    pub buffered_slot: Option<DateTime<Utc>>,
    /// The runs, in slot order.
    pub runs: Vec<NewRun>,
}
