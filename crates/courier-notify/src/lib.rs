//! Courier's notifiers: implementations of [`courier_core::Notifier`], which
//! wakes waiters (in-process `wait_for`, orchestrators, workers, SSE and
//! WebSocket sessions) when the store changes, on this node and on the others.
//!
//! - [`LocalNotifier`]: in process, the default for a single node (it lives in
//!   `courier-core`, re-exported here, so the runtime needs no transport crate).
//! - [`RedisNotifier`]: Redis pub/sub, seed 000's channels (`<prefix>:task:{id}`,
//!   `<prefix>:execution:{id}`) and JSON, plus `<prefix>:work` and `<prefix>:events`
//!   (see [`Channels`]); seed 000's connection strings (see [`RedisConfig`]),
//!   a failover list of nodes, Redis Sentinel finding the master, or a Redis
//!   Cluster (sharded pub/sub: `SPUBLISH`/`SSUBSCRIBE` per master).
//! - [`PostgresNotifier`]: LISTEN/NOTIFY on the same channel names.
//! - [`open`] picks one from a URL (`COURIER_NOTIFIER_URL`).
//!
//! Every notifier delivers to this node's subscribers through a [`Hub`]
//! (per-subscriber bounded mailboxes: a full one turns into a `Resync`, never a
//! silent drop). A cluster notifier adds one [`FanoutActor`] per node, which owns
//! the node's single subscription connection however many subscribers there are,
//! subscribes a channel when its first local subscriber arrives (and `subscribe`
//! returns only once the server confirmed it), unsubscribes lazily when the last
//! one leaves, and after a reconnection re-subscribes and tells every subscriber to
//! resync from the store. Publishing delivers locally at once, then sends the whole
//! call to the server in one round trip; each node ignores its own echoes.
//!
//! Notices only say *that* something changed; the store says what. Delivery across
//! nodes is lossy by nature, so no wake-up depends on it alone: a subscriber that
//! may have missed notices gets [`Notice::Resync`](courier_core::Notice::Resync),
//! and waiters poll as a safety net. This crate is not the event log (that lives
//! in the store) and does not deliver to the outside world (that is `courier-http`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use courier_core::{Notice, Notifier, Topic};
//! let notifier = courier_notify::open("memory", "courier").await.unwrap();
//! let mut work = notifier.subscribe(vec![Topic::Work]).await.unwrap();
//! notifier.publish(vec![Notice::Work { queue: "default".into() }]).await.unwrap();
//! assert!(matches!(work.next().await, Some(Notice::Work { .. })));
//! # }
//! ```
//!
//! Across nodes (with a Redis server at hand; `postgres://...` works the same):
//!
//! ```no_run
//! # #[actix_rt::main] async fn main() {
//! use courier_core::{Notice, Notifier, Topic};
//! let node_a = courier_notify::open("redis://127.0.0.1:6379", "courier").await.unwrap();
//! let node_b = courier_notify::open("redis://127.0.0.1:6379", "courier").await.unwrap();
//! let mut events = node_b.subscribe(vec![Topic::Events]).await.unwrap();
//! node_a.publish(vec![Notice::Events]).await.unwrap();
//! assert_eq!(events.next().await, Some(Notice::Events));
//! println!("{:?}", node_b.stats());
//! # }
//! ```
#![deny(missing_docs)]

mod channel;
mod cluster;
mod fanout;
mod open;
mod postgres;
mod redis;
mod throttle;

pub use channel::{Channels, DEFAULT_PREFIX, Decoded, LONGEST_SUFFIX, Malformed, PrefixError};
pub use cluster::ClusterOptions;
pub use fanout::{Activate, FanoutActor, Shutdown, SubscribedChannels, Sweep};
// The in-process hub and notifier live in `courier-core` (the runtime's default
// needs no transport); they are re-exported here beside the cluster notifiers.
pub use courier_core::{DEFAULT_MAILBOX, Hub, HubStats, LocalNotifier, TopicListener};
pub use open::{OpenError, open};
pub use postgres::{MAX_CHANNEL_NAME, MAX_POSTGRES_PREFIX, PostgresNotifier};
pub use redis::{
    DEFAULT_REDIS_PORT, DEFAULT_REDIS_RESPONSE_TIMEOUT, DEFAULT_SENTINEL_PORT, MasterSwitches, RedisClusterMode,
    RedisConfig, RedisConnection, RedisConnector, RedisNode, RedisNotifier, RedisSentinel, RedisTls, RedisUrlError,
    SLOTS, key_slot,
};
