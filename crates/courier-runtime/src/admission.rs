//! Admission to group commit: the bound on writes waiting in the `StoreActor`.
//!
//! The `StoreActor` gathers group-commit writes (dispatches, child groups,
//! effects, completions) while a commit is in flight and puts what does not fit
//! the next one in an overflow list. Without a bound, a burst (a fan-out of
//! 100,000 children, a flood of dispatches) would grow that list without limit:
//! the mailbox bound counts messages, and one message may carry thousands of
//! writes. So a caller takes permits here, one per write, *before* it sends its
//! message, and the message carries them until the writes are answered. When
//! [`MAX_PENDING_WRITES`] are waiting, callers wait for permits: backpressure,
//! nothing refused or dropped.

use std::sync::Arc;

use courier_core::{StoreError, StoreResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store_actor::MAX_BATCH;

/// Group-commit writes admitted and not yet answered, at most: the commit in
/// flight plus three more full batches, so the store always has the next batch
/// ready while a burst's memory stays bounded on a small box.
pub(crate) const MAX_PENDING_WRITES: usize = 4 * MAX_BATCH;

/// The permits of one node's group-commit writes. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
}

/// Permits for some writes, held by their message until the writes are answered.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Released on drop, which admits the next waiting caller.
    _permits: OwnedSemaphorePermit,
}

impl Admission {
    /// At most `limit` writes admitted at once.
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Admission {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Waits until `writes` more may be pending. More than the whole bound (a
    /// huge child group) waits until nothing else is pending and then goes
    /// alone, so a big write is slowed, never refused.
    pub(crate) async fn admit(&self, writes: usize) -> StoreResult<Admitted> {
        let n = writes.clamp(1, self.limit) as u32;
        let permits = Arc::clone(&self.permits)
            .acquire_many_owned(n)
            .await
            // The semaphore is never closed; should it be, say so rather than hang.
            .map_err(|_| StoreError::Unavailable("the store actor's admission is closed".into()))?;
        Ok(Admitted { _permits: permits })
    }

    /// Writes admitted and not yet answered (a gauge, and a test's hook).
    pub(crate) fn pending(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// The bound.
    #[cfg(test)]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}
