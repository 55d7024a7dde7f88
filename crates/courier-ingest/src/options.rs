//! Ingestion's settings: the `[ingest]` section of a node's configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::provider::ProviderConfig;

/// What a node takes in and how it delivers it. Every input is off until
/// configured; HTTP (`POST /v1/notify`) is on wherever the HTTP API is.
///
/// ```
/// use courier_ingest::{IngestOptions, ProviderConfig};
/// let mut options = IngestOptions::default();
/// options.tcp_addr = Some("127.0.0.1:8991".parse().unwrap());
/// options.providers.insert("log".into(), ProviderConfig::default());
/// assert_eq!(options.group, "NotifyWorkerGroup");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct IngestOptions {
    /// Where the TCP input listens (seed 001's port is 8991); off when `None`.
    pub tcp_addr: Option<SocketAddr>,
    /// When set, every TCP message must carry `"auth": "<token>"`, and the
    /// listener may bind a non-loopback address.
    pub tcp_token: Option<String>,
    /// Most TCP connections open at once.
    pub tcp_max_connections: usize,
    /// A TCP connection idle this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Largest message accepted on any input, in bytes.
    pub max_message_bytes: usize,
    /// The Redis the pub/sub and stream inputs read (seed 001's `NOTIFY_REDIS`),
    /// in any form [`courier_notify::RedisConfig`] reads: one server, a failover
    /// list, or Redis Sentinel (`redis+sentinel://s1:26379,s2:26379/mymaster`).
    pub redis_url: Option<String>,
    /// The pub/sub channel read; off when `None`.
    pub channel: Option<String>,
    /// The stream read through a consumer group; off when `None`.
    pub stream: Option<String>,
    /// The consumer group.
    pub group: String,
    /// Most messages accepted but not yet committed to the store; past it,
    /// senders are told "queue full" and the stream consumer stops reading.
    pub queue_size: usize,
    /// A stream entry pending this long on its consumer is taken over.
    pub reclaim_after: Duration,
    /// An entry delivered more often than this is dead-lettered.
    pub max_deliveries: u32,
    /// Entries older than this are trimmed from the stream.
    pub stream_max_age: Option<Duration>,
    /// The stream is also trimmed to about this many entries.
    pub stream_max_len: Option<u64>,
    /// Where named templates are read from.
    pub template_dir: Option<PathBuf>,
    /// The providers, by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// When set, every recipient result is also POSTed here, signed with
    /// `callback_secret` like Courier's webhooks.
    pub callback_url: Option<String>,
    /// The callback's signing secret (`whsec_...` or any string).
    pub callback_secret: Option<String>,
    /// The queue delivery tasks run on.
    pub queue: String,
}

/// The queue ingestion's tasks run on by default.
pub const INGEST_QUEUE: &str = "courier.ingest";

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            tcp_addr: None,
            tcp_token: None,
            tcp_max_connections: 1024,
            tcp_idle_timeout: Duration::from_secs(60),
            max_message_bytes: 256 * 1024,
            redis_url: None,
            channel: None,
            stream: None,
            group: "NotifyWorkerGroup".into(),
            queue_size: 1024,
            reclaim_after: Duration::from_secs(60),
            max_deliveries: 5,
            stream_max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            stream_max_len: None,
            template_dir: None,
            providers: BTreeMap::from([("log".to_string(), ProviderConfig::default())]),
            callback_url: None,
            callback_secret: None,
            queue: INGEST_QUEUE.into(),
        }
    }
}
