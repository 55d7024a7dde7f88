//! Pauses: an execution or a queue whose tasks no claim takes, on any node or
//! outside worker, until it is resumed. Tasks already running finish; dispatches
//! and new steps are still written and wait (see [`PauseStore`](crate::PauseStore)).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::nul::{nul_refused, text_has_nul};

/// Where a pause or a resume left its target.
///
/// ```
/// use courier_core::PauseState;
///
/// let state = PauseState::running(false);
/// assert!(!state.paused() && !state.changed);
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    /// Since when it has been paused (store clock); absent when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Whether this call changed it (pausing what was already paused does not).
    pub changed: bool,
}

impl PauseState {
    /// Paused since `at`.
    pub fn paused_since(at: DateTime<Utc>, changed: bool) -> Self {
        PauseState {
            paused_at: Some(at),
            changed,
        }
    }

    /// Not paused.
    pub fn running(changed: bool) -> Self {
        PauseState {
            paused_at: None,
            changed,
        }
    }

    /// Whether it is paused.
    pub fn paused(&self) -> bool {
        self.paused_at.is_some()
    }
}

/// A paused queue.
///
/// ```
/// use courier_core::PausedQueue;
///
/// let paused = PausedQueue { queue: "email".into(), paused_at: chrono::Utc::now() };
/// assert_eq!(paused.queue, "email");
/// ```
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedQueue {
    /// The queue.
    pub queue: String,
    /// Since when (store clock).
    pub paused_at: DateTime<Utc>,
}

impl PausedQueue {
    /// Refuses a queue name no store keeps: empty, or holding a NUL.
    ///
    /// ```
    /// use courier_core::PausedQueue;
    ///
    /// assert!(PausedQueue::check_name("email").is_ok());
    /// assert!(PausedQueue::check_name("").is_err());
    /// ```
    pub fn check_name(queue: &str) -> StoreResult<()> {
        if queue.is_empty() {
            return Err(StoreError::Invalid("a queue name must not be empty".into()));
        }
        if text_has_nul(queue) {
            return Err(nul_refused("queue"));
        }
        Ok(())
    }
}
