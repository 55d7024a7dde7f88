//! How webhooks are delivered (`[webhooks]` in the config).

use std::time::Duration;

use courier_core::RetryPolicy;

use crate::destination::AllowList;
use crate::sealing::SecretKeys;

/// How webhooks are delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookOptions {
    /// A delivery attempt must answer 2xx within this (`webhooks.timeout`).
    pub timeout: Duration,
    /// Retry schedule (`webhooks.schedule`; default: immediately, then 5s, 5m,
    /// 30m, 2h, 5h, 10h, 10h, with jitter).
    pub retry: RetryPolicy,
    /// The queue deliveries run on (`webhooks.queue`).
    pub queue: String,
    /// Most deliveries attempted at once across the cluster
    /// (`webhooks.concurrency`: a cluster-wide cap on the delivery activity).
    pub concurrency: u32,
    /// How often the dispatcher looks for new events without a notice (`webhooks.poll`).
    pub poll: Duration,
    /// Non-global addresses deliveries may go to anyway (`webhooks.allow_private`):
    /// by default only global unicast addresses are reachable, so a webhook can't
    /// be aimed at loopback, the private network or a cloud metadata service.
    pub allow_private: AllowList,
    /// Most webhooks registered at once (`webhooks.max_endpoints`).
    pub max_endpoints: u32,
    /// The keys signing secrets are sealed under in the store
    /// (`webhooks.secret_key`, `webhooks.retired_secret_keys`). Without a
    /// current key webhooks can't be registered or rotated; see
    /// [`crate::sealing`].
    pub secret_keys: SecretKeys,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::webhook_schedule(),
            queue: "courier.webhooks".into(),
            concurrency: 64,
            poll: Duration::from_secs(1),
            allow_private: AllowList::default(),
            max_endpoints: 1000,
            secret_keys: SecretKeys::default(),
        }
    }
}

impl WebhookOptions {
    /// The longest wait the retry schedule has between two attempts: a
    /// receiver's `Retry-After` is capped at it, so it can't park a delivery
    /// for longer than the schedule ever would.
    pub fn longest_retry_step(&self) -> Duration {
        self.retry
            .schedule
            .iter()
            .copied()
            .max()
            .unwrap_or(self.retry.max_delay)
    }
}
