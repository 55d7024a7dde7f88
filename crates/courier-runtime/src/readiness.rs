//! Whether this node's store lanes work: what `/readyz` asks besides the store.
//!
//! The `StoreActor` runs three kinds of store call: group commits, claims and
//! lease renewals. When one of them panics (in the runtime's code, or in the
//! store's own, which answers [`StoreError::Panicked`](courier_core::StoreError::Panicked)),
//! its lane is marked failing and the node is not ready. A lane recovers only
//! through a call of its own kind that succeeds (a caller's, or the actor's
//! probe when no caller comes): a working commit says nothing about claims.
//! Until every lane works the node says so instead of answering 200 while its
//! writes or claims fail.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A kind of store call the `StoreActor` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Lane {
    /// Group commits (dispatches, children, effects, completions).
    Commit,
    /// Claims of tasks (in-process and external workers).
    Claim,
    /// Lease renewals.
    Renewal,
}

impl Lane {
    /// The lane's name, as metrics label it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Lane::Commit => "commit",
            Lane::Claim => "claim",
            Lane::Renewal => "renewal",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The node's readiness as far as its store calls go. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Readiness {
    /// The lanes failing now, each with why.
    failing: Arc<Mutex<BTreeMap<Lane, String>>>,
}

impl Readiness {
    /// Marks `lane` failing, saying why.
    pub(crate) fn fail(&self, lane: Lane, reason: String) {
        self.lock().insert(lane, reason);
    }

    /// Marks `lane` working again; whether it was failing.
    pub(crate) fn recover(&self, lane: Lane) -> bool {
        self.lock().remove(&lane).is_some()
    }

    /// Whether `lane` is failing.
    pub(crate) fn failing(&self, lane: Lane) -> bool {
        self.lock().contains_key(&lane)
    }

    /// Why the node is not ready, if it is not (every failing lane's reason).
    pub(crate) fn reason(&self) -> Option<String> {
        let failing = self.lock();
        if failing.is_empty() {
            return None;
        }
        Some(failing.values().cloned().collect::<Vec<_>>().join("; "))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Lane, String>> {
        // A poisoned lock still holds a meaningful value: a map of strings.
        self.failing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_recovers_only_by_itself() {
        let r = Readiness::default();
        assert_eq!(r.reason(), None);
        r.fail(Lane::Claim, "a claim panicked".into());
        r.fail(Lane::Commit, "a group commit panicked".into());
        assert_eq!(r.reason().as_deref(), Some("a group commit panicked; a claim panicked"));
        assert!(r.recover(Lane::Commit));
        assert!(!r.recover(Lane::Commit), "already working");
        assert!(r.failing(Lane::Claim));
        assert_eq!(r.reason().as_deref(), Some("a claim panicked"));
        assert!(r.recover(Lane::Claim));
        assert_eq!(r.reason(), None);
    }
}
