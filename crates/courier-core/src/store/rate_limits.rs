//! Rate-limit buckets and concurrency-key slots, held in the store so that
//! every node and outside worker draws from the same ones.

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::id::{LeaseToken, TaskId};
use crate::rate_limit::TokenGrant;

/// Token buckets for rate limits (see [`RateLimit`](crate::RateLimit)) and
/// slots for concurrency keys (see [`ConcurrencyKey`](crate::ConcurrencyKey)).
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Refills `bucket` at `per_second` up to `burst` since it was last taken
    /// from (by the store's clock; a new bucket starts full), then takes up to
    /// `want` whole tokens. Concurrent takes from one bucket never grant more
    /// than it holds. No change.
    async fn take_tokens(&self, bucket: &str, per_second: f64, burst: f64, want: u32) -> StoreResult<TokenGrant>;

    /// Gives slots of `bucket` to `holders` (claimed tasks, each under its
    /// lease), in order, while fewer than `max` live holders have one: a slot
    /// is live while its task runs under the lease it was given with and that
    /// lease has not expired, so a finished, failed or lost task frees its slot
    /// without being told. Returns how many of `holders` (from the first) got
    /// one. Concurrent calls for one bucket never give out more than `max`. No
    /// change.
    async fn take_slots(&self, bucket: &str, max: u32, holders: &[(TaskId, LeaseToken)]) -> StoreResult<u32>;
}
