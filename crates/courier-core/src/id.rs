//! Identifiers. Executions get time-ordered ids; task ids are derived from
//! `(execution, step)` so that a replaying orchestrator can name its children
//! without asking the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of one execution (a dispatched durable function and everything it starts).
///
/// ```
/// use courier_core::ExecutionId;
/// let id = ExecutionId::new();
/// let parsed: ExecutionId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(pub Uuid);

impl ExecutionId {
    /// A fresh, time-ordered (UUIDv7) id: executions created later sort later,
    /// which keeps the store's indexes append-mostly.
    pub fn new() -> Self {
        ExecutionId(Uuid::now_v7())
    }
}

impl Default for ExecutionId {
    fn default() -> Self {
        Self::new()
    }
}

/// The id of one task: an orchestrator run, an activity call, a timer or a signal wait.
///
/// Every task belongs to an execution and sits at a step of it (the root is step 0);
/// its id is a pure function of the two, so replay finds children by computing ids.
///
/// ```
/// use courier_core::{ExecutionId, TaskId};
/// let exec = ExecutionId::new();
/// assert_eq!(TaskId::for_step(exec, 3), TaskId::for_step(exec, 3));
/// assert_ne!(TaskId::for_step(exec, 3), TaskId::for_step(exec, 4));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// The id of the task at `step` of `execution` (UUIDv5 in the execution's namespace).
    pub fn for_step(execution: ExecutionId, step: i64) -> Self {
        TaskId(Uuid::new_v5(&execution.0, &step.to_be_bytes()))
    }

    /// The id of an execution's root task (step 0).
    pub fn root_of(execution: ExecutionId) -> Self {
        Self::for_step(execution, 0)
    }
}

/// A proof of one claim of one task: written into the task row when it is claimed
/// and required by every later write of that claim (heartbeat, completion, failure).
/// A new claim of the same task gets a new token, so a stale owner's write is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub Uuid);

impl LeaseToken {
    /// A fresh random token.
    pub fn new() -> Self {
        LeaseToken(Uuid::new_v4())
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! uuid_id_traits {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $ty {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($ty)
            }
        }

        impl From<Uuid> for $ty {
            fn from(id: Uuid) -> Self {
                $ty(id)
            }
        }
    )*};
}

uuid_id_traits!(ExecutionId, TaskId, LeaseToken);
