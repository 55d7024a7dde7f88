//! A public door to the notifier's way of dialling Redis, for other crates
//! (ingestion's pub/sub and stream inputs) that must reach the same Redis the
//! same way: the failover list, TLS, AUTH, SELECT and a named connection.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};

use super::config::RedisConfig;
use super::connect::{Dialer, after_handshake};

/// The response timeout of [`RedisConnector::multiplexed`] connections unless
/// [`RedisConnector::response_timeout`] says otherwise. Longer than the
/// one-second `BLOCK` of a stream read.
pub const DEFAULT_REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens named connections to the Redis a [`RedisConfig`] names, exactly as
/// [`RedisNotifier`](crate::RedisNotifier) does: the first node of the failover
/// list that answers, TLS for `rediss://`, then `AUTH`, `SELECT` and
/// `CLIENT SETNAME <client_name>` (so `CLIENT LIST` shows who is who). Cheap to
/// clone.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use courier_notify::{RedisConfig, RedisConnector};
///
/// let config = RedisConfig::parse("redis://127.0.0.1:6379/0")?;
/// let connector = RedisConnector::new(config, Duration::from_secs(5))?;
/// let mut connection = connector.multiplexed("courier-ingest-example").await?;
/// let pong: String = redis::cmd("PING").query_async(&mut connection).await?;
/// assert_eq!(pong, "PONG");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConnector {
    dialer: Arc<Dialer>,
    config: RedisConfig,
    response_timeout: Option<Duration>,
}

impl std::fmt::Debug for RedisConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnector")
            .field("config", &self.config)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisConnector {
    /// Prepares connections to `config`'s Redis; `timeout` bounds the dialling
    /// and handshake of each node. Fails only when TLS cannot be set up (an
    /// unreadable CA file, no system roots); nothing is dialled yet.
    pub fn new(config: RedisConfig, timeout: Duration) -> Result<Self, String> {
        let dialer = Dialer::new(config.clone(), timeout)?;
        Ok(RedisConnector {
            dialer: Arc::new(dialer),
            config,
            response_timeout: Some(DEFAULT_REDIS_RESPONSE_TIMEOUT),
        })
    }

    /// How long a command on a [`multiplexed`](Self::multiplexed) connection
    /// may wait for its answer (`None`: forever). Default
    /// [`DEFAULT_REDIS_RESPONSE_TIMEOUT`].
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The connection settings (`Display` masks the password).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// A multiplexed connection named `client_name` (its driver runs on a
    /// spawned task). The error says why each node of the list failed.
    pub async fn multiplexed(&self, client_name: &str) -> Result<MultiplexedConnection, String> {
        let (io, node) = self.dialer.dial(client_name).await?;
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(self.response_timeout);
        let (connection, driver) = MultiplexedConnection::new_with_config(&after_handshake(), io, config)
            .await
            .map_err(|e| format!("{node}: {e}"))?;
        tokio::spawn(driver);
        Ok(connection)
    }

    /// A pub/sub connection named `client_name`.
    pub async fn pubsub(&self, client_name: &str) -> Result<PubSub, String> {
        let (io, node) = self.dialer.dial(client_name).await?;
        PubSub::new(&after_handshake(), io)
            .await
            .map_err(|e| format!("{node}: {e}"))
    }
}
