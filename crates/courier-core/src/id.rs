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
    /// A fresh, time-ordered id: executions created later sort later, which
    /// keeps the store's indexes append-mostly. It is laid out as a UUIDv7
    /// (milliseconds, then random bits) but says version 8, which marks the
    /// executions whose step ids sort by step (see [`TaskId::for_step`]).
    ///
    /// ```
    /// use courier_core::ExecutionId;
    /// assert_eq!(ExecutionId::new().0.get_version_num(), 8);
    /// ```
    pub fn new() -> Self {
        let mut bytes = *Uuid::now_v7().as_bytes();
        bytes[6] = (bytes[6] & 0x0f) | (STEPS_IN_ORDER << 4);
        ExecutionId(Uuid::from_bytes(bytes))
    }

    /// The id of the execution an orchestrator starts at `step` of `parent` (a
    /// child, or its successor when it continues as new): a pure function of the
    /// two, so a replay names the same execution without asking the store.
    ///
    /// ```
    /// use courier_core::{ExecutionId, TaskId};
    /// let parent = ExecutionId::new();
    /// assert_eq!(ExecutionId::started_at(parent, 2), ExecutionId::started_at(parent, 2));
    /// assert_ne!(ExecutionId::started_at(parent, 2), ExecutionId::started_at(parent, 3));
    /// assert_ne!(ExecutionId::started_at(parent, 2).0, TaskId::for_step(parent, 2).0);
    /// let grandchild = ExecutionId::started_at(ExecutionId::started_at(parent, 1), 1);
    /// assert_ne!(grandchild, parent);
    /// ```
    pub fn started_at(parent: ExecutionId, step: i64) -> Self {
        let bytes = parent.0.as_bytes();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&bytes[..8]);
        let low = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
        // Mixed after the XOR, not only XORed: a child's child at the same step
        // would otherwise XOR the same value back out and get its grandparent's id.
        out[8..].copy_from_slice(&mix(low ^ mix(step as u64 ^ CHILD_SALT)).to_be_bytes());
        ExecutionId(Uuid::from_bytes(out))
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
    /// The id of the task at `step` of `execution`.
    ///
    /// The first 8 bytes are the execution's (whose id is time-ordered), so a
    /// task's id sorts with its execution and indexes keyed by task id grow at
    /// their end instead of taking random inserts. The last 8 bytes are the
    /// execution's last 8, salted, plus the step, so two steps of one
    /// execution never share an id and an execution's steps sort by step: a
    /// fan-out's tasks go in at the end of their execution's stretch of each
    /// index rather than all over it, a stretch as long as the fan-out.
    ///
    /// An execution whose id does not say version 8 (made before
    /// [`ExecutionId::new`] did, or given by a client) keeps the scheme it
    /// began with, since a replay computes the ids of the steps it has taken:
    /// the last 8 bytes are its last 8 XOR a bijective mix of the step.
    ///
    /// ```
    /// use courier_core::{ExecutionId, TaskId};
    /// let exec = ExecutionId::new();
    /// assert!(TaskId::for_step(exec, 1) < TaskId::for_step(exec, 2));
    /// ```
    pub fn for_step(execution: ExecutionId, step: i64) -> Self {
        let bytes = execution.0.as_bytes();
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&bytes[..8]);
        let low = u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes"));
        let tail = if execution.0.get_version_num() == usize::from(STEPS_IN_ORDER) {
            // Wraps at most once over an execution's steps, so they sort by
            // step but for one place, in a small fraction of executions.
            (low ^ STEP_SALT).wrapping_add(step as u64)
        } else {
            low ^ mix(step as u64 ^ STEP_SALT)
        };
        out[8..].copy_from_slice(&tail.to_be_bytes());
        TaskId(Uuid::from_bytes(out))
    }

    /// The id of an execution's root task (step 0).
    pub fn root_of(execution: ExecutionId) -> Self {
        Self::for_step(execution, 0)
    }
}

/// Keeps a root task's id (step 0) different from its execution's id.
const STEP_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// The UUID version [`ExecutionId::new`] writes: its executions' step ids sort
/// by step. A child execution's id keeps its parent's first 8 bytes, version
/// included, so a family shares one scheme.
const STEPS_IN_ORDER: u8 = 8;

/// Keeps a started execution's id different from the task id at the same step.
const CHILD_SALT: u64 = 0xd1b5_4a32_d192_ed03;

/// SplitMix64's finaliser: a bijection on u64 that spreads consecutive steps over all bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn steps_of_one_execution_never_share_an_id() {
        let execution = ExecutionId::new();
        let ids: HashSet<TaskId> = (0..200_000).map(|s| TaskId::for_step(execution, s)).collect();
        assert_eq!(ids.len(), 200_000);
    }

    /// Step 3 of `019af7a2-5b3c-7d4e-8f60-123456789abc` under the first scheme.
    const OLD_STEP_3: &str = "019af7a2-5b3c-7d4e-1e6a-3fd8df7ac67d";

    #[test]
    fn an_execution_made_before_steps_sorted_keeps_its_step_ids() {
        // What `for_step` gave a UUIDv7 execution before version 8 marked the
        // ordered scheme: a replay of it must name the same steps.
        let before: ExecutionId = "019af7a2-5b3c-7d4e-8f60-123456789abc".parse().unwrap();
        assert_eq!(
            TaskId::for_step(before, 3).to_string(),
            OLD_STEP_3,
            "a step id of an execution in flight across an upgrade changed"
        );
        let ordered = ExecutionId::new();
        let steps: Vec<TaskId> = (0..1_000).map(|s| TaskId::for_step(ordered, s)).collect();
        let wrapped = steps.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(wrapped <= 1, "{wrapped} places out of step order");
        let child = ExecutionId::started_at(ordered, 4);
        assert_eq!(child.0.get_version_num(), 8, "a child shares its parent's scheme");
        assert_ne!(TaskId::root_of(child).0, child.0);
        assert_ne!(TaskId::root_of(ordered).0, ordered.0);
    }

    #[test]
    fn task_ids_sort_with_their_execution() {
        let first = ExecutionId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = ExecutionId::new();
        assert!(TaskId::for_step(first, 99_999) < TaskId::for_step(second, 0));
        assert_ne!(
            TaskId::root_of(first),
            TaskId(first.0),
            "a task id is not its execution's id"
        );
    }
}
