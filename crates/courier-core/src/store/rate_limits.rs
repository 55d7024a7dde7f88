//! Rate-limit buckets, held in the store so that every node and outside
//! worker draws from one bucket per function (or key).

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::rate_limit::TokenGrant;

/// Token buckets for rate limits (see [`RateLimit`](crate::RateLimit)).
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Refills `bucket` at `per_second` up to `burst` since it was last taken
    /// from (by the store's clock; a new bucket starts full), then takes up to
    /// `want` whole tokens. Concurrent takes from one bucket never grant more
    /// than it holds. No change.
    async fn take_tokens(&self, bucket: &str, per_second: f64, burst: f64, want: u32) -> StoreResult<TokenGrant>;
}
