//! The event log: every change, in one sequence.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreResult;
use crate::event::{EventFilter, EventPage};

/// Reading the log. Appending is never a call of its own: every write appends the
/// events of its changes.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events matching `filter` with `seq > filter.after`, oldest first, at most
    /// `filter.limit`, looking no further than [`EventFilter::bound`] of the
    /// log's head as the read begins (see [`EventPage`] for where to go on).
    async fn read_events(&self, filter: &EventFilter) -> StoreResult<EventPage>;

    /// The highest sequence number ever assigned (0 if none).
    async fn last_event_seq(&self) -> StoreResult<i64>;

    /// Deletes events appended before `older_than`; how many. Sequence numbers are
    /// never reused afterwards. None appended at or after `older_than` is
    /// deleted; a store may trim the log in seq order, stopping at the first
    /// event too new, so that events appended after its clock stepped back wait
    /// for the ones before the step. While any webhook is enabled, events the
    /// webhook dispatcher has not read yet (after its cursor) are kept: they
    /// still owe deliveries. Deletes in bounded chunks, each its own statement,
    /// so that a long backlog never becomes one huge transaction.
    async fn trim_events(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;
}
