//! The Redis notifier: seed 000's pub/sub channels and JSON messages, with one
//! subscription connection per node (owned by a [`FanoutActor`]) and one
//! multiplexed publishing connection; with Sentinel, one more connection to a
//! sentinel, hearing when the master moves.
//!
//! `config` reads connection strings, `connect` dials and shakes hands,
//! `sentinel` finds the master and watches it move, `cluster` speaks sharded
//! pub/sub to a Redis Cluster, `connector` opens the same connections for other
//! crates.

mod cluster;
mod config;
mod connect;
mod connector;
mod sentinel;

pub use cluster::{SLOTS, key_slot};
pub(crate) use config::mask_password;
pub use config::{
    DEFAULT_REDIS_PORT, DEFAULT_SENTINEL_PORT, RedisClusterMode, RedisConfig, RedisNode, RedisSentinel, RedisTls,
    RedisUrlError,
};
pub use connector::{DEFAULT_REDIS_RESPONSE_TIMEOUT, MasterSwitches, RedisConnection, RedisConnector};

use std::sync::Arc;

use actix::Addr;
use async_trait::async_trait;
use courier_core::{Notice, Notifier, NotifierStats, NotifyError, Subscription, Topic};

use crate::channel::Channels;
use crate::cluster::{Cluster, ClusterOptions, new_origin};
use crate::fanout::{FanoutActor, SubscribedChannels};
use crate::open::OpenError;
use cluster::{ClusterPublisher, ClusterSubscriptionConnector};
use connect::{Dialer, RedisPublisher, SubscriptionConnector};

/// Notifies across nodes over Redis pub/sub.
///
/// Channels are `<prefix>:task:{id}`, `<prefix>:execution:{id}`, `<prefix>:work` and
/// `<prefix>:events` (see [`Channels`]). Every node holds exactly one subscription
/// connection, named `courier-sub-<origin>` (`CLIENT LIST TYPE pubsub` shows it),
/// and one publishing connection, `courier-pub-<origin>`. A publish call goes out
/// as one pipeline; a node ignores its own messages when they come back, having
/// delivered them locally when it published.
///
/// If Redis goes away, `publish` still delivers to this node's subscribers and
/// returns [`NotifyError::Unavailable`]; `subscribe` still registers (and returns);
/// the subscription connection comes back by itself, re-subscribes, and tells every
/// subscriber to resync from the store.
///
/// With Redis Sentinel (`redis+sentinel://...`, see [`RedisConfig`]) every
/// (re)connection asks the sentinels for the master, so a failover is followed
/// without a restart; a third connection, `courier-sentinel-<origin>` on a
/// sentinel, hears `+switch-master`, and a move of the master closes the
/// subscription and publishing connections to the old one at once (the
/// subscription comes back on the new master, and subscribers resync as after
/// any reconnection).
///
/// With Redis Cluster (`redis+cluster://...`, or a plain `redis://a,b,c` whose
/// nodes say they are one) the notifier uses sharded pub/sub: each notice is
/// sent with `SPUBLISH` to the master owning its channel's slot (one pipeline
/// per master), and the subscription is one `SSUBSCRIBE` connection per master
/// owning a subscribed channel, all named `courier-sub-<origin>`, so a message
/// reaches only its shard's subscribers instead of every node of the cluster. A
/// lost master connection, a stale slot map (`MOVED`) or a channel the server
/// unsubscribes by itself (its slot migrated, or a failover) ends the whole
/// subscription; it is made again from a fresh slot map, and subscribers resync.
///
/// Must be created inside an actix system to run its actor there; outside one it
/// runs the actor on a thread of its own.
///
/// ```no_run
/// # #[actix_rt::main] async fn main() {
/// use courier_core::{Notifier, TaskId, TaskState, ExecutionId};
/// use courier_notify::RedisNotifier;
///
/// let node_a = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// let node_b = RedisNotifier::connect("redis://127.0.0.1:6379", "courier").await.unwrap();
/// let task = TaskId::root_of(ExecutionId::new());
/// let mut sub = node_b.subscribe_to_task(task, None).await.unwrap();
/// node_a.notify_task_completed(task).await.unwrap();
/// assert!(sub.next().await.is_some());
/// # }
/// ```
pub struct RedisNotifier {
    cluster: Cluster,
    config: RedisConfig,
    /// Talking to a Redis Cluster (sharded pub/sub).
    sharded: bool,
}

impl std::fmt::Debug for RedisNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNotifier")
            .field("config", &self.config)
            .field("prefix", &self.cluster.channels().prefix())
            .field("origin", &self.cluster.origin())
            .field("sharded", &self.sharded)
            .finish()
    }
}

impl RedisNotifier {
    /// Connects to the Redis that `url` names (see [`RedisConfig`] for the forms),
    /// with channels under `prefix` and default settings otherwise.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, OpenError> {
        let config = RedisConfig::parse(url)?;
        Self::connect_with(config, ClusterOptions::with_prefix(prefix)).await
    }

    /// Connects with explicit settings. Both connections are made before this
    /// returns; an error says why each node of the list (or each sentinel) could
    /// not be reached.
    pub async fn connect_with(config: RedisConfig, options: ClusterOptions) -> Result<Self, OpenError> {
        let channels = Channels::new(&options.prefix)?;
        let origin = new_origin();
        let dialer = Arc::new(Dialer::new(config.clone(), options.connect_timeout).map_err(OpenError::Tls)?);
        let connect_error = |reason: String| OpenError::Connect {
            backend: "redis",
            target: config.to_string(),
            reason,
        };
        let cluster = match config.cluster {
            RedisClusterMode::Cluster => true,
            RedisClusterMode::Standalone => false,
            RedisClusterMode::Detect => dialer
                .is_cluster(&format!("courier-probe-{origin}"))
                .await
                .map_err(connect_error)?,
        };
        if cluster {
            let publisher = ClusterPublisher::new(
                dialer.clone(),
                format!("courier-pub-{origin}"),
                options.operation_timeout,
            );
            publisher.ready().await.map_err(connect_error)?;
            let connector = Arc::new(ClusterSubscriptionConnector {
                dialer,
                name: format!("courier-sub-{origin}"),
                operation_timeout: options.operation_timeout,
                known: Default::default(),
            });
            let cluster = Cluster::start("redis", channels, connector, Box::new(publisher), origin, options)
                .await
                .map_err(connect_error)?;
            return Ok(RedisNotifier {
                cluster,
                config,
                sharded: true,
            });
        }
        // Watched from before the first dial, so that no move is missed.
        let moves = dialer.moves(&format!("courier-sentinel-{origin}"));
        let publisher = RedisPublisher::new(
            dialer.clone(),
            format!("courier-pub-{origin}"),
            options.operation_timeout,
            moves.clone(),
        );
        publisher.connection().await.map_err(connect_error)?;
        let connector = Arc::new(SubscriptionConnector {
            dialer,
            name: format!("courier-sub-{origin}"),
            moves,
        });
        let cluster = Cluster::start("redis", channels, connector, Box::new(publisher), origin, options)
            .await
            .map_err(connect_error)?;
        Ok(RedisNotifier {
            cluster,
            config,
            sharded: false,
        })
    }

    /// This notifier's random id, sent as `origin` in every message.
    pub fn origin(&self) -> &str {
        self.cluster.origin()
    }

    /// The name of the subscription connection (`CLIENT LIST TYPE pubsub` shows it).
    pub fn subscription_client_name(&self) -> String {
        format!("courier-sub-{}", self.cluster.origin())
    }

    /// The name of the publishing connection.
    pub fn publisher_client_name(&self) -> String {
        format!("courier-pub-{}", self.cluster.origin())
    }

    /// The name of the connection to a sentinel that hears `+switch-master`
    /// (with Sentinel only).
    pub fn sentinel_client_name(&self) -> String {
        format!("courier-sentinel-{}", self.cluster.origin())
    }

    /// The connection settings (`Display` masks the passwords).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether this notifier talks to a Redis Cluster (sharded pub/sub), as the
    /// URL said or, for a plain comma list, as its nodes answered.
    pub fn is_cluster(&self) -> bool {
        self.sharded
    }

    /// The channel names in use.
    pub fn channels(&self) -> &Channels {
        self.cluster.channels()
    }

    /// The actor holding the subscription connection.
    pub fn fanout(&self) -> &Addr<FanoutActor> {
        self.cluster.fanout()
    }

    /// The channels Redis has confirmed for this node, sorted (empty once closed).
    pub async fn subscribed_channels(&self) -> Vec<String> {
        self.cluster.fanout().send(SubscribedChannels).await.unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for RedisNotifier {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn publish(&self, notices: Vec<Notice>) -> Result<(), NotifyError> {
        self.cluster.publish(notices).await
    }

    async fn subscribe(&self, topics: Vec<Topic>) -> Result<Subscription, NotifyError> {
        self.cluster.subscribe(topics).await
    }

    fn stats(&self) -> NotifierStats {
        self.cluster.stats()
    }
}
