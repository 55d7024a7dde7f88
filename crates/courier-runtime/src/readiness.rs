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
use std::time::{Duration, Instant};

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
    /// The lanes failing now, each with why and since when.
    failing: Arc<Mutex<BTreeMap<Lane, Failing>>>,
}

/// Why a lane fails, and since when (its first failure since it last worked).
struct Failing {
    reason: String,
    since: Instant,
}

impl Readiness {
    /// Marks `lane` failing, saying why. A lane failing already keeps the time
    /// it first failed, and takes the newer reason.
    pub(crate) fn fail(&self, lane: Lane, reason: String) {
        self.lock()
            .entry(lane)
            .and_modify(|f| f.reason.clone_from(&reason))
            .or_insert_with(|| Failing {
                reason,
                since: Instant::now(),
            });
    }

    /// Marks `lane` working again; whether it was failing.
    pub(crate) fn recover(&self, lane: Lane) -> bool {
        self.lock().remove(&lane).is_some()
    }

    /// The lanes failing for at least `after` by `now`: those a caller's call
    /// has had that long to recover, and that a probe should try. A lane that
    /// failed a moment ago is left to its callers, so that the failure is
    /// visible for a while rather than cleared by a probe that happened to be
    /// due just after it.
    pub(crate) fn failing_for(&self, after: Duration, now: Instant) -> Vec<Lane> {
        self.lock()
            .iter()
            .filter(|(_, f)| now.saturating_duration_since(f.since) >= after)
            .map(|(lane, _)| *lane)
            .collect()
    }

    /// Why the node is not ready, if it is not (every failing lane's reason).
    pub(crate) fn reason(&self) -> Option<String> {
        let failing = self.lock();
        if failing.is_empty() {
            return None;
        }
        Some(
            failing
                .values()
                .map(|f| f.reason.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Lane, Failing>> {
        // A poisoned lock still holds a meaningful value: each failing lane's
        // reason and time, written whole by every insert.
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
        assert_eq!(r.failing_for(Duration::ZERO, Instant::now()), vec![Lane::Claim]);
        assert_eq!(r.reason().as_deref(), Some("a claim panicked"));
        assert!(r.recover(Lane::Claim));
        assert_eq!(r.reason(), None);
    }

    /// A probe tries only the lanes that have failed for its whole interval:
    /// before, a probe due just after a failure cleared it at once, and
    /// `/readyz` could miss it altogether (the write-door behaviour test saw
    /// a panicking renewal leave the node ready).
    #[test]
    fn a_probe_leaves_a_fresh_failure_to_its_callers() {
        let r = Readiness::default();
        let after = Duration::from_secs(2);
        r.fail(Lane::Renewal, "a renewal panicked".into());
        let failed = Instant::now();
        assert_eq!(r.failing_for(after, failed), Vec::<Lane>::new());
        assert_eq!(r.failing_for(after, failed + after), vec![Lane::Renewal]);
        // Failing again (a probe that failed) keeps the first failure's time,
        // so the lane is probed at every interval, not every other one.
        r.fail(Lane::Renewal, "a readiness probe panicked".into());
        assert_eq!(r.failing_for(after, failed + after), vec![Lane::Renewal]);
        assert_eq!(r.reason().as_deref(), Some("a readiness probe panicked"));
        assert!(r.recover(Lane::Renewal));
        assert_eq!(r.failing_for(after, failed + after), Vec::<Lane>::new());
    }
}
