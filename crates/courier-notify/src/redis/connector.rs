//! A public door to the notifier's way of dialling Redis, for other crates
//! (ingestion's pub/sub and stream inputs) that must reach the same Redis the
//! same way: the failover list, Sentinel or a Redis Cluster, TLS, AUTH, SELECT
//! and a named connection; and, with Sentinel, word of the master's moves.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, TlsCertificates, Value};
use tokio::sync::{OnceCell, watch};

use super::config::{RedisClusterMode, RedisConfig, RedisNode};
use super::connect::{Dialer, after_handshake};

/// A connection from [`RedisConnector::connection`]: one node's multiplexed
/// connection (a single server, the failover list's first that answers, or the
/// master Sentinel names), or a Redis Cluster client that sends each command to
/// the master owning its key's slot and follows `MOVED`/`ASK` and failovers by
/// itself. Either runs any command (`query_async`) keyed on one slot; a
/// pipeline or a transaction on a cluster must keep to one slot.
#[derive(Clone)]
pub enum RedisConnection {
    /// A single node.
    Single(MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Single(_) => "RedisConnection::Single",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_command(cmd),
            RedisConnection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            RedisConnection::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(connection) => connection.get_db(),
            RedisConnection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The response timeout of [`RedisConnector::multiplexed`] connections unless
/// [`RedisConnector::response_timeout`] says otherwise. Longer than the
/// one-second `BLOCK` of a stream read.
pub const DEFAULT_REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens named connections to the Redis a [`RedisConfig`] names, exactly as
/// [`RedisNotifier`](crate::RedisNotifier) does: the first node of the failover
/// list that answers, or with Sentinel the master the sentinels name (checked
/// with `ROLE`), TLS for `rediss://`, then `AUTH`, `SELECT` and
/// `CLIENT SETNAME <client_name>` (so `CLIENT LIST` shows who is who). Cheap to
/// clone; clones share one [`MasterSwitches`] watcher and what
/// [`is_cluster`](Self::is_cluster) found.
///
/// For a Redis Cluster, [`connection`](Self::connection) hands out the `redis`
/// crate's cluster client instead (keyed commands go to their slot's master),
/// and [`pubsub`](Self::pubsub) classic pub/sub on the first seed that answers;
/// callers that use [`connection`](Self::connection) need not tell the kinds apart.
///
/// A connection is not re-dialled by itself: drop it after an error for which
/// [`RedisConnector::should_redial`] says so, or when [`MasterSwitches`] says
/// the master moved, and ask for a new one.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use courier_notify::{RedisConfig, RedisConnector};
///
/// let config = RedisConfig::parse("redis+sentinel://127.0.0.1:26379/mymaster/0")?;
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
    /// Whether the nodes are a Redis Cluster, once known (shared by clones).
    cluster: Arc<OnceCell<bool>>,
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
    /// and handshake of each node (and each question to a sentinel). Fails only
    /// when TLS cannot be set up (an unreadable CA file, no system roots); nothing
    /// is dialled yet.
    pub fn new(config: RedisConfig, timeout: Duration) -> Result<Self, String> {
        let dialer = Dialer::new(config.clone(), timeout)?;
        let known = match config.cluster {
            RedisClusterMode::Cluster => OnceCell::new_with(Some(true)),
            RedisClusterMode::Standalone => OnceCell::new_with(Some(false)),
            RedisClusterMode::Detect => OnceCell::new(),
        };
        Ok(RedisConnector {
            dialer: Arc::new(dialer),
            config,
            response_timeout: Some(DEFAULT_REDIS_RESPONSE_TIMEOUT),
            cluster: Arc::new(known),
        })
    }

    /// How long a command on a [`multiplexed`](Self::multiplexed) connection
    /// may wait for its answer (`None`: forever). Default
    /// [`DEFAULT_REDIS_RESPONSE_TIMEOUT`].
    pub fn response_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The connection settings (`Display` masks the passwords).
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// A multiplexed connection named `client_name` (its driver runs on a
    /// spawned task). The error says why each node of the list (or each
    /// sentinel) failed.
    pub async fn multiplexed(&self, client_name: &str) -> Result<MultiplexedConnection, String> {
        let (io, node) = self.dialer.dial(client_name).await?;
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(self.response_timeout);
        let (connection, driver) = MultiplexedConnection::new_with_config(&after_handshake(), io, config)
            .await
            .map_err(|e| format!("{node}: {e}"))?;
        tokio::spawn(driver);
        Ok(connection)
    }

    /// Whether the nodes are a Redis Cluster: as the URL says, or for a plain
    /// comma list ([`RedisClusterMode::Detect`]) as the first node that answers
    /// `INFO cluster` says (asked once, on a connection named `client_name`; an
    /// unreachable list is an error, and asked again next time).
    pub async fn is_cluster(&self, client_name: &str) -> Result<bool, String> {
        self.cluster
            .get_or_try_init(|| self.dialer.is_cluster(client_name))
            .await
            .copied()
    }

    /// A connection for any command keyed on one slot: a [`RedisConnection::Cluster`]
    /// for a Redis Cluster (see [`is_cluster`](Self::is_cluster)), otherwise
    /// [`multiplexed`](Self::multiplexed). A cluster client is not named (the
    /// `redis` crate's cluster client cannot send `CLIENT SETNAME`) and reads
    /// the slot map from the seeds (any that answers) itself.
    pub async fn connection(&self, client_name: &str) -> Result<RedisConnection, String> {
        if !self.is_cluster(client_name).await? {
            return self.multiplexed(client_name).await.map(RedisConnection::Single);
        }
        let scheme = if self.config.tls.is_some() { "rediss" } else { "redis" };
        let seeds: Vec<String> = self
            .config
            .nodes
            .iter()
            .map(|node| format!("{scheme}://{node}"))
            .collect();
        let mut builder = ClusterClientBuilder::new(seeds).connection_timeout(self.dialer.timeout());
        if let Some(timeout) = self.response_timeout {
            builder = builder.response_timeout(timeout);
        }
        if let Some(user) = &self.config.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.config.password {
            builder = builder.password(password);
        }
        if let Some(ca) = self.config.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
            builder = builder.certs(TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            });
        }
        let client = builder
            .build()
            .map_err(|e| format!("Redis Cluster {}: {e}", self.config))?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(|e| format!("Redis Cluster {}: {e}", self.config))?;
        Ok(RedisConnection::Cluster(connection))
    }

    /// A pub/sub connection named `client_name`. On a Redis Cluster this is
    /// classic pub/sub on the first seed that answers: a `PUBLISH` on any node
    /// reaches every node's subscribers.
    pub async fn pubsub(&self, client_name: &str) -> Result<PubSub, String> {
        let (io, node) = self.dialer.dial(client_name).await?;
        PubSub::new(&after_handshake(), io)
            .await
            .map_err(|e| format!("{node}: {e}"))
    }

    /// Word of the master's moves, for a Sentinel config (for any other, a
    /// [`MasterSwitches`] that never fires). The first call, on any clone, starts
    /// watching the sentinels' `+switch-master` on one connection named
    /// `watcher_name`; it must be made inside a Tokio runtime, which runs the
    /// watching task until the last clone of this connector is dropped.
    ///
    /// Take it before dialling: a move announced meanwhile is then not missed.
    pub fn master_switches(&self, watcher_name: &str) -> MasterSwitches {
        MasterSwitches {
            moves: self.dialer.moves(watcher_name),
        }
    }

    /// Whether a connection that gave `error` should be dropped and dialled
    /// afresh: no answer came (an I/O error, a timeout, a closed connection), so
    /// the connection is suspect; or the server answered that it is no longer
    /// the master (`READONLY`: a replica, such as a master demoted by a
    /// failover; `MASTERDOWN`), so the next dial must find the one that is.
    /// Any other answer (a wrong type, a missing group) leaves the connection
    /// good.
    ///
    /// ```
    /// use courier_notify::RedisConnector;
    /// use redis::{ErrorKind, RedisError, ServerErrorKind};
    /// let replica = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
    /// assert!(RedisConnector::should_redial(&replica));
    /// let gone = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    /// assert!(RedisConnector::should_redial(&gone));
    /// let refused = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "wrong arguments"));
    /// assert!(!RedisConnector::should_redial(&refused));
    /// ```
    pub fn should_redial(error: &RedisError) -> bool {
        match error.code() {
            None => true,
            Some("READONLY" | "MASTERDOWN") => true,
            // A transaction aborted because a replica refused its writes.
            Some("EXECABORT") => error.to_string().contains("READONLY"),
            Some(_) => false,
        }
    }
}

/// Hears when Redis Sentinel moves the master a [`RedisConnector`] dials (the
/// sentinels' `+switch-master`), so that a connection still open to the old one
/// (alive, but by now a replica) is dropped and dialled again. Made by
/// [`RedisConnector::master_switches`]; without Sentinel it never fires.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use courier_notify::{RedisConfig, RedisConnector};
///
/// let config = RedisConfig::parse("redis+sentinel://127.0.0.1:26379/mymaster")?;
/// let connector = RedisConnector::new(config, Duration::from_secs(5))?;
/// let mut switches = connector.master_switches("courier-example-sentinel");
/// let mut connection = connector.multiplexed("courier-example").await?;
/// loop {
///     if switches.switched() {
///         connection = connector.multiplexed("courier-example").await?;
///     }
///     let _: () = redis::cmd("XADD").arg("s").arg("*").arg("k").arg("v").query_async(&mut connection).await?;
///     # break;
/// }
/// // Or wait for the next move:
/// let moved_to = switches.next().await;
/// println!("the master is now {moved_to}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MasterSwitches {
    moves: Option<watch::Receiver<Option<RedisNode>>>,
}

impl MasterSwitches {
    /// Whether the master moved since this was made (or cloned from one that had
    /// seen as much) or since this last said so.
    pub fn switched(&mut self) -> bool {
        match &mut self.moves {
            Some(moves) if moves.has_changed().unwrap_or(false) => {
                moves.borrow_and_update();
                true
            }
            _ => false,
        }
    }

    /// Resolves at the master's next move, with its new address; never without
    /// Sentinel, or once the connector is gone.
    pub async fn next(&mut self) -> RedisNode {
        if let Some(moves) = &mut self.moves {
            while moves.changed().await.is_ok() {
                if let Some(to) = moves.borrow_and_update().clone() {
                    return to;
                }
            }
        }
        std::future::pending().await
    }
}
