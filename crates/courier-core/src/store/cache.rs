//! The result cache and idempotency keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreResult;
use crate::id::TaskId;

/// The answer to reserving an idempotency key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "value")]
pub enum Reservation {
    /// The caller holds the key and should run the work.
    Acquired,
    /// The work already ran; this is its result (possibly JSON `null`).
    Completed(Value),
    /// Another task holds the key and has not finished; wait for it.
    HeldBy(TaskId),
}

/// Cached results and idempotency keys. Results are recorded with the completion
/// that produced them (see [`Remember`](crate::Remember)).
#[async_trait]
pub trait CacheStore: Send + Sync {
    /// A cached result that has not expired (`Some(Value::Null)` is a cached null).
    async fn get_cached_result(&self, key: &str) -> StoreResult<Option<Value>>;

    /// Deletes expired cache entries; how many.
    async fn purge_expired_cache(&self) -> StoreResult<u64>;

    /// Reserves a key for `owner` before running its work, so that two concurrent
    /// calls run it once. Re-entrant for the same owner. A reservation whose owner
    /// task is gone or finished without recording a result is taken over.
    async fn reserve_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<Reservation>;

    /// Deletes idempotency keys whose work finished (a result was recorded)
    /// before `older_than`, in bounded chunks; how many. Reservations of work
    /// still running are kept whatever their age.
    async fn trim_idempotency_keys(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;

    /// Drops `owner`'s reservation of a key that has no result (the work failed);
    /// whether one was dropped.
    async fn release_idempotency_key(&self, key: &str, owner: TaskId) -> StoreResult<bool>;
}
