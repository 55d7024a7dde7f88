//! How webhooks are delivered (`[webhooks]` in the config).

use std::time::Duration;

use courier_core::RetryPolicy;

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
    /// Most deliveries attempted at once by one node (`webhooks.concurrency`).
    pub concurrency: u32,
    /// How often the dispatcher looks for new events without a notice (`webhooks.poll`).
    pub poll: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::webhook_schedule(),
            queue: "courier.webhooks".into(),
            concurrency: 64,
            poll: Duration::from_secs(1),
        }
    }
}
