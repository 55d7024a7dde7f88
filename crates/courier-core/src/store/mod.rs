//! The `Store` contract: everything Courier persists, so the runtime never sees
//! SQL. `courier-store-sqlite` and `courier-store-postgres` implement it, and one
//! conformance suite (`courier-store-conformance`) holds both to what is written here.
//!
//! The contract is cut by concern, one trait per group of tables; [`Store`] is all
//! of them plus the lifecycle and the group commit:
//!
//! | trait | holds |
//! |---|---|
//! | [`ExecutionStore`] | executions: read, list, cancel, time out, clean up |
//! | [`TaskStore`] | tasks, claims and leases: read, claim, renew, heartbeat, checkpoint, release, suspend, stuck detection |
//! | [`EventStore`] | the event log: read after a cursor, head, trim |
//! | [`DeadLetterStore`] | dead letters: list, read, discard, replay, clean up |
//! | [`WebhookStore`] | webhook registrations, deliveries and their attempts |
//! | [`FunctionStore`] | functions' settings, as operators set them over the API |
//! | [`CacheStore`] | the result cache and idempotency keys |
//! | [`ContextStore`] | an execution's context: signals, progress, counters, state values |
//! | [`NodeStore`] | the cluster's nodes as they report themselves: join, report, leave, list, forget |
//! | [`PauseStore`] | pauses of executions and queues, which claims honour |
//! | [`RateLimitStore`] | rate-limit token buckets, one per function or key |
//! | [`ScheduleStore`] | schedules and their runs: create, read, update and fire with a compare-and-set of their revision |
//! | [`NotificationStore`] | notifications for people: send, dismiss, replay, subscriptions to sources, expiry |
//! | [`SeedRecords`] | seed 003's record-level operations (raw inserts and updates), kept for parity; the runtime never calls them |
//!
//! Which to reach for: writes that run many times a second (dispatches, children,
//! effects, completions) go through [`Store::commit`] as a [`WriteBatch`], so many
//! of them share one transaction; every other write is one method. Either way the
//! answer carries the [`Change`]s the write made (see [`crate::change`]), from
//! which the caller learns whom to wake.
//!
//! # Conventions every implementation follows
//!
//! * **Clock.** Every time the store writes or compares (`created_at`, lease
//!   expiry, `scheduled_for`, cache TTLs, deadlines) comes from the store's own
//!   clock: the database's `now()` on Postgres, so nodes with skewed clocks agree.
//! * **Changes and events.** A write reports its changes in the order it made
//!   them, and appends each change's [`event`](Change::event) to the event log *in
//!   the same transaction* as the change. Seed-parity record writes change nothing.
//! * **Event sequence.** `seq` is assigned in commit order, without gaps between
//!   committed events and never reused, so a reader that has seen `seq = n` has
//!   seen everything committed before it.
//! * **Fencing.** Writes made on behalf of a claim carry its [`LeaseKey`]. If the
//!   task is not `running` under that token the write is refused with
//!   [`StoreError::LeaseLost`](crate::StoreError::LeaseLost) and changes nothing. A
//!   lease that has expired but whose task was not claimed again is still honoured.
//! * **Batches.** Batch methods return one result per input item, in input order.
//!   A refused item (fencing, a missing row) does not fail its neighbours; an error
//!   of the whole call (connection lost) means nothing was written.

mod batch;
mod cache;
mod context;
mod dead_letters;
mod event_log;
mod executions;
mod functions;
mod nodes;
mod notifications;
mod pauses;
mod rate_limits;
mod schedules;
mod seed;
mod tasks;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use batch::{AttemptWrite, ChildGroup, Effect, EffectApplied, EffectWrite, Release, WriteBatch, WriteResults};
pub use cache::{CacheStore, Reservation};
pub use context::ContextStore;
pub use dead_letters::DeadLetterStore;
pub use event_log::EventStore;
pub use executions::ExecutionStore;
pub use functions::FunctionStore;
pub use nodes::NodeStore;
pub use notifications::NotificationStore;
pub use pauses::PauseStore;
pub use rate_limits::RateLimitStore;
pub use schedules::ScheduleStore;
pub use seed::SeedRecords;
pub use tasks::TaskStore;
pub use webhooks::WebhookStore;

use crate::change::Committed;
use crate::error::StoreResult;
use crate::execution::{Dispatched, NewExecution};

#[cfg(doc)]
use crate::{change::Change, task::LeaseKey};

/// Everything Courier persists: every concern's trait, the lifecycle, the group
/// commit and the cluster's roles.
#[async_trait]
pub trait Store:
    ExecutionStore
    + TaskStore
    + EventStore
    + DeadLetterStore
    + WebhookStore
    + FunctionStore
    + NodeStore
    + PauseStore
    + RateLimitStore
    + ScheduleStore
    + CacheStore
    + ContextStore
    + NotificationStore
    + SeedRecords
    + Send
    + Sync
    + 'static
{
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// Creates or migrates the schema. Idempotent, and safe when several nodes
    /// call it at once.
    async fn init(&self) -> StoreResult<()>;

    /// Releases connections. Later calls fail with [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    async fn close(&self);

    /// The store's clock.
    async fn now(&self) -> StoreResult<DateTime<Utc>>;

    /// Refreshes the query planner's statistics (after a burst into an emptied table
    /// a stale plan can cost a hundredfold).
    async fn analyze(&self) -> StoreResult<()>;

    /// Applies `batch` in one transaction and reports per item, with the changes of
    /// the whole batch. The batch is shared, not consumed, so the caller can still
    /// read it to route the results.
    async fn commit(&self, batch: Arc<WriteBatch>) -> StoreResult<WriteResults>;

    /// Takes or keeps the named cluster-wide role (housekeeping, the webhook
    /// dispatcher, ...) for `ttl`: true if `owner` holds it now (it was free,
    /// expired, or already `owner`'s).
    async fn try_acquire_singleton(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool>;

    /// A value every node of the cluster agrees on: the one stored under `name`,
    /// or `candidate` if there is none yet (stored then). Used for keys nodes
    /// generate and must share (the anonymous-session cookie key).
    async fn cluster_value(&self, name: &str, candidate: &str) -> StoreResult<String>;

    /// [`commit`](Store::commit) with dispatches only: creates each execution with
    /// its root task (see [`WriteBatch::dispatches`]).
    async fn dispatch(&self, batch: Vec<NewExecution>) -> StoreResult<Committed<Vec<Dispatched>>> {
        let n = batch.len();
        let results = self
            .commit(Arc::new(WriteBatch {
                dispatches: batch,
                ..WriteBatch::default()
            }))
            .await?;
        debug_assert_eq!(results.dispatches.len(), n);
        let dispatched = results.dispatches.into_iter().collect::<StoreResult<Vec<_>>>()?;
        Ok(Committed::new(dispatched, results.changes))
    }
}
