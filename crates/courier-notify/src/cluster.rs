//! What the cluster notifiers (Redis, Postgres) share: their settings, and the
//! publish and subscribe paths around a transport.
//!
//! `publish` delivers to this node's hub at once, then sends every notice of the
//! call to the transport in one round trip. `subscribe` registers in the hub, then
//! asks the [`FanoutActor`] to activate the channels and waits for the server's
//! confirmation.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::Addr;
use async_trait::async_trait;
use courier_core::{Notice, NotifierStats, NotifyError, Subscription, Topic};
use tokio::sync::oneshot;

use crate::channel::{Channels, DEFAULT_PREFIX};
use crate::fanout::{Activate, Connector, Counters, FanoutActor, FanoutParts, Shutdown};
use crate::throttle::Throttle;
use courier_core::{DEFAULT_MAILBOX, Hub};

/// Settings shared by [`RedisNotifier`](crate::RedisNotifier) and
/// [`PostgresNotifier`](crate::PostgresNotifier).
///
/// ```
/// use std::time::Duration;
/// use courier_notify::ClusterOptions;
/// let options = ClusterOptions {
///     mailbox: 10_000,
///     backoff_max: Duration::from_secs(2),
///     ..ClusterOptions::with_prefix("myapp")
/// };
/// assert_eq!(options.prefix, "myapp");
/// assert_eq!(options.connect_timeout, Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Every channel name starts with this and a colon (default `courier`).
    pub prefix: String,
    /// How many notices one subscription may hold before it is told to resync.
    pub mailbox: usize,
    /// How long one connection attempt may take (per address of a failover list).
    pub connect_timeout: Duration,
    /// How long a publish, a subscription change or a ping may take before the
    /// transport is considered down.
    pub operation_timeout: Duration,
    /// The first reconnection delay (the very first retry is immediate).
    pub backoff_min: Duration,
    /// The longest reconnection delay.
    pub backoff_max: Duration,
    /// How often the subscription connection is pinged, to notice a dead peer.
    pub ping_interval: Duration,
    /// How long after a topic's last subscriber left its channel is unsubscribed
    /// (batched with every other topic that went quiet meanwhile).
    pub unsubscribe_delay: Duration,
}

impl ClusterOptions {
    /// The defaults, with channels under `prefix`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        ClusterOptions {
            prefix: prefix.into(),
            ..ClusterOptions::default()
        }
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            prefix: DEFAULT_PREFIX.into(),
            mailbox: DEFAULT_MAILBOX,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            ping_interval: Duration::from_secs(15),
            unsubscribe_delay: Duration::from_millis(200),
        }
    }
}

/// Sends encoded notices to the transport.
#[async_trait]
pub(crate) trait Publisher: Send + Sync + 'static {
    /// Sends every `(channel, payload)` in one round trip.
    async fn publish(&self, messages: Vec<(String, String)>) -> Result<(), String>;
}

/// The shared core of a cluster notifier.
pub(crate) struct Cluster {
    backend: &'static str,
    hub: Hub,
    channels: Channels,
    origin: Arc<str>,
    counters: Arc<Counters>,
    fanout: Addr<FanoutActor>,
    publisher: Box<dyn Publisher>,
    /// The most bytes one message may carry on this transport, if it limits them.
    max_payload: Option<usize>,
    operation_timeout: Duration,
    publish_log: Throttle,
    confirm_log: Throttle,
}

impl Cluster {
    /// Starts the fanout actor (waiting for its first connection) around `connector`.
    pub(crate) async fn start(
        backend: &'static str,
        channels: Channels,
        connector: Arc<dyn Connector>,
        publisher: Box<dyn Publisher>,
        origin: Arc<str>,
        options: ClusterOptions,
    ) -> Result<Cluster, String> {
        let hub = Hub::with_mailbox(options.mailbox);
        let counters = Arc::new(Counters::default());
        let operation_timeout = options.operation_timeout;
        let fanout = FanoutActor::launch(FanoutParts {
            backend,
            connector,
            hub: hub.clone(),
            channels: channels.clone(),
            origin: origin.clone(),
            counters: counters.clone(),
            options,
        })
        .await?;
        Ok(Cluster {
            backend,
            hub,
            channels,
            origin,
            counters,
            fanout,
            publisher,
            max_payload: None,
            operation_timeout,
            publish_log: Throttle::new(Duration::from_secs(10)),
            confirm_log: Throttle::new(Duration::from_secs(10)),
        })
    }

    /// Says that the transport carries at most `max` bytes per message.
    pub(crate) fn limit_payload(mut self, max: usize) -> Self {
        self.max_payload = Some(max);
        self
    }

    /// The most bytes one message may carry, if the transport limits them.
    pub(crate) fn max_payload(&self) -> Option<usize> {
        self.max_payload
    }

    pub(crate) fn fanout(&self) -> &Addr<FanoutActor> {
        &self.fanout
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Local subscribers first, then the transport, all of the call's notices in one
    /// round trip. A transport failure is counted, logged (rate-limited) and
    /// reported; local delivery has happened regardless.
    pub(crate) async fn publish(&self, notices: Vec<Notice>) -> Result<(), NotifyError> {
        self.hub.deliver(&notices);
        let messages: Vec<(String, String)> = notices
            .iter()
            .filter_map(|n| match self.max_payload {
                Some(max) => self.channels.encode_within(n, &self.origin, max),
                None => self.channels.encode(n, &self.origin),
            })
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        let count = messages.len() as u64;
        let limit = self.operation_timeout;
        let sent = match tokio::time::timeout(limit, self.publisher.publish(messages)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        match sent {
            Ok(()) => {
                self.counters.published.fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            Err(reason) => {
                self.counters.publish_failures.fetch_add(1, Ordering::Relaxed);
                if let Some(held_back) = self.publish_log.allow() {
                    tracing::warn!(
                        backend = self.backend,
                        notices = count,
                        held_back,
                        %reason,
                        "notifier could not publish to other nodes (delivered locally; they fall back to polling)"
                    );
                }
                Err(NotifyError::Unavailable(format!(
                    "{} publish failed: {reason}",
                    self.backend
                )))
            }
        }
    }

    /// Registers locally, then waits until the server confirmed the channels (or the
    /// connection is known to be down, in which case the resync after the reconnect
    /// covers this subscription).
    pub(crate) async fn subscribe(&self, topics: Vec<Topic>) -> Result<Subscription, NotifyError> {
        let subscription = self.hub.subscribe(topics.clone());
        if topics.is_empty() {
            return Ok(subscription);
        }
        let (done, confirmed) = oneshot::channel();
        self.fanout
            .send(Activate { topics, done })
            .await
            .map_err(|_| NotifyError::Closed)?;
        match tokio::time::timeout(self.operation_timeout, confirmed).await {
            Ok(Ok(())) => Ok(subscription),
            Ok(Err(_)) => Err(NotifyError::Closed),
            Err(_) => {
                // The actor treats an unconfirmed round as a lost connection and will
                // resync this subscriber after reconnecting.
                if let Some(held_back) = self.confirm_log.allow() {
                    tracing::warn!(
                        backend = self.backend,
                        held_back,
                        "the server did not confirm a subscription in time; it is registered locally and will be resynced"
                    );
                }
                Ok(subscription)
            }
        }
    }

    pub(crate) fn stats(&self) -> NotifierStats {
        self.counters.snapshot()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.fanout.do_send(Shutdown);
    }
}

/// A fresh random id for one notifier (16 hex digits), carried as `origin`.
pub(crate) fn new_origin() -> Arc<str> {
    format!("{:016x}", rand::random::<u64>()).into()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use courier_core::Notifier as _;

    use super::*;
    use crate::fanout::{Connection, Link};

    /// A transport that confirms everything and never delivers anything.
    struct Silent;

    #[async_trait]
    impl Link for Silent {
        async fn subscribe(&self, _: Vec<String>) -> Result<(), String> {
            Ok(())
        }
        async fn unsubscribe(&self, _: Vec<String>) -> Result<(), String> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), String> {
            Ok(())
        }
    }

    #[async_trait]
    impl Connector for Silent {
        async fn connect(&self) -> Result<Connection, String> {
            Ok(Connection {
                link: Arc::new(Silent),
                messages: Box::pin(futures::stream::pending()),
            })
        }
    }

    /// Records each call's batch size.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<usize>>>);

    #[async_trait]
    impl Publisher for Calls {
        async fn publish(&self, messages: Vec<(String, String)>) -> Result<(), String> {
            self.0.lock().unwrap().push(messages.len());
            Ok(())
        }
    }

    #[actix_rt::test]
    async fn one_publish_call_is_one_transport_round_trip_however_many_notices() {
        let calls = Calls::default();
        let cluster = Cluster::start(
            "test",
            Channels::default(),
            Arc::new(Silent),
            Box::new(calls.clone()),
            new_origin(),
            ClusterOptions::default(),
        )
        .await
        .unwrap();
        let burst: Vec<Notice> = (0..5000).map(|i| Notice::Work { queue: format!("q{i}") }).collect();
        cluster.publish(burst).await.unwrap();
        // A resync is local only: nothing to send, no call.
        cluster.publish(vec![Notice::Resync]).await.unwrap();
        assert_eq!(*calls.0.lock().unwrap(), vec![5000]);
        assert_eq!(cluster.stats().published, 5000);
    }

    #[actix_rt::test]
    async fn the_in_process_notifier_reports_hub_numbers() {
        let local = crate::LocalNotifier::new();
        let _sub = local.subscribe(vec![Topic::Work, Topic::Events]).await.unwrap();
        local.publish(vec![Notice::Events, Notice::Events]).await.unwrap();
        let stats = local.stats();
        assert_eq!(
            (stats.published, stats.subscribed_channels, stats.connected),
            (2, 2, true)
        );
    }
}
