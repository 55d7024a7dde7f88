//! Whether this node's write door works: what `/readyz` asks besides the store.
//!
//! The `StoreActor` marks the node not ready when a group commit panics (its
//! callers are answered with an error and the actor restarts), and ready again
//! once the restarted actor has committed a group: until then the node says so
//! instead of answering 200 while its writes fail.

use std::sync::{Arc, Mutex};

/// The node's readiness as far as its writes go. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    /// Why the node is not ready, if it is not.
    not_ready: Arc<Mutex<Option<String>>>,
}

impl Readiness {
    /// Marks the node not ready, saying why.
    pub(crate) fn fail(&self, reason: String) {
        *self.lock() = Some(reason);
    }

    /// Marks the node ready again; whether it was not.
    pub(crate) fn recover(&self) -> bool {
        self.lock().take().is_some()
    }

    /// Why the node is not ready, if it is not.
    pub(crate) fn reason(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A poisoned lock still holds a meaningful value: an Option<String>.
        self.not_ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
