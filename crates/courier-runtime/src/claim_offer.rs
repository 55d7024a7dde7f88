//! An idle worker's standing claim, which the next group commit that makes work
//! for it runs in the commit's transaction.
//!
//! Without it, a node whose worker waits for work learns of a dispatch from the
//! commit's notice and then claims the work in a transaction of its own: one
//! execution at a time, that is a third of the store's work between a dispatch
//! and its result. Instead, whenever a claim leaves the worker with free slots,
//! the worker *offers* its next claim here. The `StoreActor` puts the offer on
//! the next group commit whose dispatches or children it would claim
//! ([`ClaimRequest::would_claim`]), and the commit's claimed tasks go back to
//! the worker. The claim is the store's own ([`WriteBatch::claim`]: claim order,
//! limits, pauses), run last in the commit's transaction, so the worker gets
//! what its own claim would have got just after the commit; and since those
//! tasks are started by the write that made them, that write wakes no worker
//! for them.
//!
//! At most one claim for the worker is in flight: it withdraws its offer before
//! any claim of its own, and an offer a commit has taken is answered exactly
//! once, with what was claimed or with the commit's failure (the worker then
//! claims for itself). Should the worker stop, its side of the answer is
//! dropped, and no commit takes the offer any more.
//!
//! ```text
//! WorkerActor --offer(request)--> ClaimOffer <--take_for(batch)-- StoreActor
//!      ^                                                              |
//!      +------------- answer: the tasks the commit claimed -----------+
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use courier_core::{ClaimRequest, Claimed, StoreResult, WriteBatch};
use tokio::sync::oneshot;

use crate::options::FunctionTable;

/// Where a taken offer's claimed tasks (or the commit's failure) are sent.
pub(crate) type OfferAnswer = oneshot::Sender<StoreResult<Vec<Claimed>>>;

/// The worker's side of an offer: resolves when a commit that took it answers,
/// or with an error once the offer is gone unanswered (withdrawn, or the store
/// actor stopped).
pub(crate) type OfferReceipt = oneshot::Receiver<StoreResult<Vec<Claimed>>>;

/// The node's one standing claim (see the module documentation). Cheap to
/// clone; clones share the offer.
#[derive(Clone)]
pub(crate) struct ClaimOffer {
    state: Arc<Mutex<State>>,
    /// The node's functions, for their limits and pauses as they are when a
    /// commit takes the offer: an offer can stand for a while.
    functions: FunctionTable,
}

enum State {
    /// The worker claims for itself, or is not running.
    Closed,
    /// The worker waits; the next commit that makes work it would claim takes this.
    Open {
        // Boxed: the lock holds this state whatever the variant.
        request: Box<ClaimRequest>,
        answer: OfferAnswer,
    },
    /// A commit carries the claim; its answer is on the way.
    Taken,
}

impl ClaimOffer {
    pub(crate) fn new(functions: FunctionTable) -> Self {
        ClaimOffer {
            state: Arc::new(Mutex::new(State::Closed)),
            functions,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one is still sound.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers `request` (replacing any offer); what a commit claims with it
    /// arrives on the receipt.
    pub(crate) fn offer(&self, request: ClaimRequest) -> OfferReceipt {
        let (answer, receipt) = oneshot::channel();
        *self.state() = State::Open {
            request: Box::new(request),
            answer,
        };
        receipt
    }

    /// Withdraws the offer before the worker claims for itself. `false` if a
    /// commit has taken it: its answer is on the way, and claiming now would
    /// put two claims for one worker in flight.
    pub(crate) fn withdraw(&self) -> bool {
        let mut state = self.state();
        match *state {
            State::Taken => false,
            _ => {
                *state = State::Closed;
                true
            }
        }
    }

    /// The worker has its answer to a taken offer: it may claim or offer again.
    pub(crate) fn answered(&self) {
        let mut state = self.state();
        if matches!(*state, State::Taken) {
            *state = State::Closed;
        }
    }

    /// Forgets the offer whatever its state (the worker restarts: a taken
    /// offer's answer would reach no one, and its tasks come back when their
    /// leases expire).
    pub(crate) fn reset(&self) {
        *self.state() = State::Closed;
    }

    /// For the `StoreActor`, when a commit starts: takes the open offer if
    /// `batch` makes work it would claim, with the functions' limits and pauses
    /// as they are now.
    pub(crate) fn take_for(&self, batch: &WriteBatch) -> Option<(ClaimRequest, OfferAnswer)> {
        let mut state = self.state();
        let State::Open { request, answer } = &*state else {
            return None;
        };
        if answer.is_closed() {
            // The worker stopped without withdrawing.
            *state = State::Closed;
            return None;
        }
        let makes_work = batch.dispatches.iter().any(|new| request.would_claim(&new.spec))
            || batch
                .children
                .iter()
                .flat_map(|group| &group.tasks)
                .any(|task| request.would_claim(&task.spec));
        if !makes_work {
            return None;
        }
        let State::Open { request, answer } = std::mem::replace(&mut *state, State::Taken) else {
            unreachable!("matched above, under the same lock");
        };
        let mut request = *request;
        request.limits = self.functions.limits();
        request.exclude_functions = self.functions.paused();
        Some((request, answer))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use courier_core::{NewExecution, TaskKind, TaskSpec};
    use serde_json::json;

    use super::*;

    fn dispatching(queue: &str) -> WriteBatch {
        WriteBatch {
            dispatches: vec![NewExecution::new(TaskSpec {
                queue: queue.into(),
                ..TaskSpec::new(TaskKind::Activity, "f", json!(null))
            })],
            ..WriteBatch::default()
        }
    }

    fn request() -> ClaimRequest {
        ClaimRequest::new("w", 4, Duration::from_secs(30)).queues(["mine"])
    }

    #[test]
    fn an_offer_is_taken_once_and_only_by_a_commit_that_makes_work_for_it() {
        let offer = ClaimOffer::new(FunctionTable::default());
        assert!(offer.take_for(&dispatching("mine")).is_none(), "nothing offered");
        let _receipt = offer.offer(request());
        assert!(
            offer.take_for(&dispatching("theirs")).is_none(),
            "work it would not claim"
        );
        assert!(offer.take_for(&WriteBatch::default()).is_none(), "no work at all");
        let (taken, _answer) = offer.take_for(&dispatching("mine")).expect("work it would claim");
        assert_eq!(taken.queues, request().queues);
        assert!(offer.take_for(&dispatching("mine")).is_none(), "taken once");
        assert!(!offer.withdraw(), "a taken offer cannot be withdrawn");
        offer.answered();
        assert!(offer.withdraw());
    }

    #[tokio::test]
    async fn a_withdrawn_offer_answers_its_receipt_with_nothing_and_is_not_taken() {
        let offer = ClaimOffer::new(FunctionTable::default());
        let receipt = offer.offer(request());
        assert!(offer.withdraw());
        assert!(receipt.await.is_err(), "the receipt learns the offer is gone");
        assert!(offer.take_for(&dispatching("mine")).is_none());
    }

    #[test]
    fn an_offer_whose_worker_is_gone_is_not_taken() {
        let offer = ClaimOffer::new(FunctionTable::default());
        drop(offer.offer(request()));
        assert!(offer.take_for(&dispatching("mine")).is_none());
        assert!(offer.withdraw());
    }
}
