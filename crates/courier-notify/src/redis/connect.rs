//! Connections to Redis: TCP (or TLS through rustls) to the first node of the
//! failover list that answers, or to the master the sentinels name (see
//! [`super::sentinel`]), then the handshake (AUTH, SELECT, CLIENT SETNAME, and
//! for a master found through Sentinel, ROLE).
//!
//! The handshake is done here, not by the `redis` crate, because its connection
//! setup cannot name a connection, and a named subscription connection is what
//! lets an operator (and the tests) find a node's one pub/sub connection in
//! `CLIENT LIST TYPE pubsub`. After the handshake the stream is handed to the crate's
//! `PubSub` (subscription side) or `MultiplexedConnection` (publishing side).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::future::BoxFuture;
use redis::RedisConnectionInfo;
use redis::aio::{MultiplexedConnection, PubSubSink};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::config::{RedisConfig, RedisNode};
use super::sentinel::{Sentinel, moved_away};
use crate::cluster::Publisher;
use crate::fanout::{Connection, Connector, Incoming, Link};

/// A byte stream to Redis: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Opens byte streams (TCP, then TLS for `rediss://`) to any node: a data node or a
/// sentinel. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Opener {
    tls: Option<TlsConnector>,
    /// Bounds each dial and handshake.
    pub(crate) timeout: Duration,
}

impl Opener {
    /// No TLS, a one-second limit.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        Opener {
            tls: None,
            timeout: Duration::from_secs(1),
        }
    }

    async fn open(&self, node: &RedisNode) -> Result<Box<dyn Io>, String> {
        let tcp = TcpStream::connect((node.host.as_str(), node.port))
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(tls) => {
                let server = ServerName::try_from(node.host.clone())
                    .map_err(|e| format!("{:?} cannot be checked against a certificate: {e}", node.host))?;
                Ok(Box::new(
                    tls.connect(server, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake failed: {e}"))?,
                ))
            }
        }
    }

    /// A stream to `node` on which `setup` has been sent and each answer checked:
    /// the commands go out in one write, and the first refusal is the error.
    /// The answers to `setup` are returned, in order.
    pub(crate) async fn open_with(
        &self,
        node: &RedisNode,
        setup: &[(&'static str, redis::Cmd)],
    ) -> Result<(Box<dyn Io>, Vec<Reply>), String> {
        let attempt = async {
            let mut io = self.open(node).await?;
            let replies = exchange(&mut io, setup).await?;
            Ok((io, replies))
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// Dials the nodes of one [`RedisConfig`]: the first of the failover list that
/// answers, or, with Sentinel, the master the sentinels name.
pub(crate) struct Dialer {
    config: RedisConfig,
    opener: Opener,
    sentinel: Option<Sentinel>,
}

impl Dialer {
    /// Prepares TLS (reading the CA file, if any) for `config`.
    pub(crate) fn new(config: RedisConfig, timeout: Duration) -> Result<Self, String> {
        let tls = match &config.tls {
            None => None,
            Some(tls) => Some(TlsConnector::from(Arc::new(client_tls(tls.ca_file.as_deref())?))),
        };
        let opener = Opener { tls, timeout };
        let sentinel = config
            .sentinel
            .as_ref()
            .map(|settings| Sentinel::new(config.nodes.clone(), settings.clone(), opener.clone()));
        Ok(Dialer {
            config,
            opener,
            sentinel,
        })
    }

    /// A named, authenticated connection to the first node that answers (or to the
    /// master the sentinels name), and which node that is. The error lists why
    /// each node (or each sentinel) failed.
    pub(crate) async fn dial(&self, name: &str) -> Result<(Box<dyn Io>, RedisNode), String> {
        if let Some(sentinel) = &self.sentinel {
            return sentinel.discover(|master| self.dial_master(master, name)).await;
        }
        let mut failures = Vec::new();
        for node in &self.config.nodes {
            match self.opener.open_with(node, &self.setup(name, false)).await {
                Ok((io, _)) => return Ok((io, node.clone())),
                Err(reason) => failures.push(format!("{node}: {reason}")),
            }
        }
        Err(failures.join("; "))
    }

    /// Asks `question` (a `CLUSTER` or `INFO` command) on a connection named
    /// `name` to the first of `nodes` that answers, then closes it: the answer
    /// and who gave it. The error lists why each node failed.
    pub(crate) async fn ask_first(
        &self,
        nodes: &[RedisNode],
        name: &str,
        step: &'static str,
        question: redis::Cmd,
    ) -> Result<(Reply, RedisNode), String> {
        debug_assert!(is_question(step));
        let mut setup = self.setup(name, false);
        setup.push((step, question));
        let mut failures = Vec::new();
        for node in nodes {
            match self.opener.open_with(node, &setup).await {
                Ok((_, mut replies)) => match replies.pop() {
                    Some(Reply::Error(error)) => failures.push(format!("{node}: {step} refused: {error}")),
                    Some(reply) => return Ok((reply, node.clone())),
                    None => failures.push(format!("{node}: no answer to {step}")),
                },
                Err(reason) => failures.push(format!("{node}: {reason}")),
            }
        }
        Err(failures.join("; "))
    }

    /// Whether the nodes are a Redis Cluster: the first that answers says
    /// `cluster_enabled:1` to `INFO cluster` (a server too old to know the
    /// section, or one with it off, is not).
    pub(crate) async fn is_cluster(&self, name: &str) -> Result<bool, String> {
        let info = redis::cmd("INFO").arg("cluster").clone();
        let (reply, node) = self.ask_first(&self.config.nodes, name, "INFO", info).await?;
        let Reply::Bulk(Some(text)) = reply else {
            return Err(format!("{node}: unexpected answer to INFO cluster: {reply:?}"));
        };
        let enabled = String::from_utf8_lossy(&text)
            .lines()
            .any(|line| line.trim() == "cluster_enabled:1");
        tracing::debug!(%node, enabled, "asked whether the Redis nodes are a cluster");
        Ok(enabled)
    }

    /// The configuration dialled.
    pub(crate) fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// The byte-stream opener (TLS settings and the dial time limit).
    pub(crate) fn timeout(&self) -> Duration {
        self.opener.timeout
    }

    /// Where the sentinels say the master has moved, each time they say it; `None`
    /// without Sentinel. The first call starts watching the sentinels' `+switch-master`
    /// on one connection named `watcher_name`.
    pub(crate) fn moves(&self, watcher_name: &str) -> Option<watch::Receiver<Option<RedisNode>>> {
        self.sentinel.as_ref().map(|sentinel| sentinel.moves(watcher_name))
    }

    /// A connection to the address a sentinel gave, which must say (`ROLE`) that
    /// it is the master: a sentinel that has not yet seen a failover names the old
    /// one, by then a replica or gone.
    async fn dial_master(&self, master: RedisNode, name: &str) -> Result<Box<dyn Io>, String> {
        self.dial_checked(&master, name, "the sentinel has not seen the failover yet?")
            .await
    }

    /// A connection to `node`, which must say (`ROLE`) that it is a master; `hint`
    /// says why it might not be. A user without the right to ask `ROLE` is
    /// taken at its word.
    async fn dial_checked(&self, node: &RedisNode, name: &str, hint: &str) -> Result<Box<dyn Io>, String> {
        let (io, replies) = self.opener.open_with(node, &self.setup(name, true)).await?;
        match replies.last() {
            Some(Reply::Array(Some(items))) => match items.first() {
                Some(Reply::Bulk(Some(role))) if role.as_slice() == b"master" => Ok(io),
                Some(Reply::Bulk(Some(role))) => Err(format!(
                    "it is not the master (ROLE: {}): {hint}",
                    String::from_utf8_lossy(role)
                )),
                other => Err(format!("unexpected answer to ROLE: {other:?}")),
            },
            Some(Reply::Error(error)) if error.starts_with("NOPERM") => {
                tracing::debug!(%node, %error, "cannot check the master's ROLE; trusting the address given");
                Ok(io)
            }
            other => Err(format!("unexpected answer to ROLE: {other:?}")),
        }
    }

    /// A connection to `node`, a master in a cluster's slot map, checked with
    /// `ROLE`: a replica takes `SSUBSCRIBE` for its master's slots without a
    /// word, so a map read from a node that has not yet heard of a failover
    /// would otherwise leave a subscription on the demoted master.
    pub(crate) async fn dial_cluster_master(&self, node: &RedisNode, name: &str) -> Result<Box<dyn Io>, String> {
        self.dial_checked(
            node,
            name,
            "the slot map was read before the failover reached every node?",
        )
        .await
        .map_err(|reason| format!("{node}: {reason}"))
    }

    /// AUTH (if a password is set), SELECT (if a database is), CLIENT SETNAME, and
    /// ROLE if `check_role`.
    fn setup(&self, name: &str, check_role: bool) -> Vec<(&'static str, redis::Cmd)> {
        let mut steps = Vec::new();
        if let Some(auth) = auth(self.config.username.as_deref(), self.config.password.as_deref()) {
            steps.push(("AUTH", auth));
        }
        if self.config.db != 0 {
            steps.push(("SELECT", redis::cmd("SELECT").arg(self.config.db).clone()));
        }
        steps.push(("CLIENT SETNAME", redis::cmd("CLIENT").arg("SETNAME").arg(name).clone()));
        if check_role {
            steps.push(("ROLE", redis::cmd("ROLE")));
        }
        steps
    }
}

/// `AUTH [user] password`, if there is a password.
pub(crate) fn auth(user: Option<&str>, password: Option<&str>) -> Option<redis::Cmd> {
    let password = password?;
    let mut auth = redis::cmd("AUTH");
    if let Some(user) = user {
        auth.arg(user);
    }
    auth.arg(password);
    Some(auth)
}

/// The rustls client configuration: the ring provider (the workspace's), and the
/// CA file's certificates or else the system's roots.
fn client_tls(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("unusable certificate in {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("the CA file {} holds no certificate", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(
                    "no system CA certificates found (install ca-certificates, or give ssl_ca_certs=/path/ca.pem)"
                        .into(),
                );
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One RESP2 answer, as read during a handshake.
#[derive(Debug)]
pub(crate) enum Reply {
    Status(#[allow(dead_code)] String),
    Error(String),
    Integer(#[allow(dead_code)] i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// The most a handshake answer may hold: bulk bytes, array items, nesting.
const MAX_BULK: usize = 64 * 1024;
const MAX_ITEMS: usize = 4096;
const MAX_DEPTH: usize = 4;

/// Sends `steps` in one write and reads one answer each. A setting (AUTH, SELECT,
/// CLIENT SETNAME) must be answered `+OK`, its refusal is the error; the answer to
/// a question (ROLE, SENTINEL) is returned as it came, for the caller to judge.
async fn exchange(io: &mut Box<dyn Io>, steps: &[(&'static str, redis::Cmd)]) -> Result<Vec<Reply>, String> {
    let mut out = Vec::new();
    for (_, cmd) in steps {
        out.extend(cmd.get_packed_command());
    }
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    let mut replies = Vec::with_capacity(steps.len());
    for (step, _) in steps {
        let reply = read_reply(io, 0).await?;
        if !is_question(step) {
            match &reply {
                Reply::Status(_) => {}
                Reply::Error(error) => return Err(format!("{step} refused: {error}")),
                other => {
                    return Err(format!(
                        "unexpected answer to {step}: {other:?} (is this a Redis server?)"
                    ));
                }
            }
        }
        replies.push(reply);
    }
    Ok(replies)
}

/// Steps whose answer is data rather than `+OK`.
fn is_question(step: &str) -> bool {
    matches!(step, "ROLE" | "SENTINEL" | "INFO" | "CLUSTER")
}

/// Reads one RESP2 value, a byte at a time for its lines so that nothing after it
/// is consumed.
fn read_reply(io: &mut Box<dyn Io>, depth: usize) -> BoxFuture<'_, Result<Reply, String>> {
    Box::pin(async move {
        let line = read_line(io).await?;
        let kind = line.chars().next().unwrap_or(' ');
        let rest = line.get(1..).unwrap_or("");
        let length = || {
            rest.parse::<i64>()
                .map_err(|_| format!("a malformed answer {line:?} (is this a Redis server?)"))
        };
        match kind {
            '+' => Ok(Reply::Status(rest.to_string())),
            '-' => Ok(Reply::Error(rest.to_string())),
            ':' => Ok(Reply::Integer(length()?)),
            '$' => {
                let n = length()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = n as usize;
                if n > MAX_BULK {
                    return Err(format!("an overlong answer ({n} bytes) during the handshake"));
                }
                let mut bytes = vec![0; n + 2];
                io.read_exact(&mut bytes).await.map_err(closed)?;
                bytes.truncate(n);
                Ok(Reply::Bulk(Some(bytes)))
            }
            '*' => {
                let n = length()?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                let n = n as usize;
                if n > MAX_ITEMS || depth >= MAX_DEPTH {
                    return Err("an overlong answer during the handshake".into());
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(read_reply(io, depth + 1).await?);
                }
                Ok(Reply::Array(Some(items)))
            }
            _ => Err(format!("unexpected answer {line:?} (is this a Redis server?)")),
        }
    })
}

fn closed(e: std::io::Error) -> String {
    format!("the server closed the connection during the handshake ({e})")
}

/// One reply line, read a byte at a time so that nothing after it is consumed.
async fn read_line(io: &mut Box<dyn Io>) -> Result<String, String> {
    let mut line = Vec::new();
    loop {
        let byte = io.read_u8().await.map_err(closed)?;
        if byte == b'\n' && line.last() == Some(&b'\r') {
            line.pop();
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(byte);
        if line.len() > 4096 {
            return Err("an overlong answer to the handshake (is this a Redis server?)".into());
        }
    }
}

/// The crate's own connection setup has nothing left to do after ours.
pub(crate) fn after_handshake() -> RedisConnectionInfo {
    RedisConnectionInfo::default().set_skip_set_lib_name()
}

// ---------------------------------------------------------------------------
// Subscription side
// ---------------------------------------------------------------------------

/// Opens the fanout actor's pub/sub connection, named `name`.
pub(crate) struct SubscriptionConnector {
    pub(crate) dialer: Arc<Dialer>,
    pub(crate) name: String,
    /// With Sentinel: the master's moves, so that a connection left on the old
    /// master ends and the actor reconnects (and resyncs) at once.
    pub(crate) moves: Option<watch::Receiver<Option<RedisNode>>>,
}

#[async_trait]
impl Connector for SubscriptionConnector {
    async fn connect(&self) -> Result<Connection, String> {
        // Taken before dialling: a move announced meanwhile still ends this connection.
        let mut moves = self.moves.clone();
        if let Some(moves) = &mut moves {
            moves.borrow_and_update();
        }
        let (io, node) = self.dialer.dial(&self.name).await?;
        let pubsub = redis::aio::PubSub::new(&after_handshake(), io)
            .await
            .map_err(|e| format!("{node}: {e}"))?;
        let (sink, stream) = pubsub.split();
        let messages = stream.map(|msg| Incoming {
            channel: msg.get_channel_name().to_string(),
            payload: msg.get_payload_bytes().to_vec(),
        });
        let messages = match moves {
            None => messages.boxed(),
            Some(moves) => messages.take_until(moved_away(moves, node.clone())).boxed(),
        };
        tracing::debug!(%node, name = %self.name, "Redis subscription connection open");
        Ok(Connection {
            link: Arc::new(SubscriptionLink { sink }),
            messages,
        })
    }
}

/// Subscribes and unsubscribes on the pub/sub connection; each call waits for the
/// server's confirmations.
struct SubscriptionLink {
    sink: PubSubSink,
}

#[async_trait]
impl Link for SubscriptionLink {
    async fn subscribe(&self, channels: Vec<String>) -> Result<(), String> {
        self.sink.clone().subscribe(channels).await.map_err(|e| e.to_string())
    }

    async fn unsubscribe(&self, channels: Vec<String>) -> Result<(), String> {
        self.sink.clone().unsubscribe(channels).await.map_err(|e| e.to_string())
    }

    async fn ping(&self) -> Result<(), String> {
        self.sink
            .clone()
            .ping::<redis::Value>()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------
// Publishing side
// ---------------------------------------------------------------------------

/// Publishes over one multiplexed connection (concurrent publish calls share it,
/// each call's PUBLISHes pipelined in one round trip), re-dialled after a failure,
/// at most once a second while Redis stays unreachable, and, with Sentinel, as
/// soon as the master has moved elsewhere: a replica takes a PUBLISH without a
/// word but only its own subscribers hear it.
pub(crate) struct RedisPublisher {
    dialer: Arc<Dialer>,
    name: String,
    response_timeout: Duration,
    state: Mutex<PublisherState>,
}

#[derive(Default)]
struct PublisherState {
    connection: Option<Dialled>,
    generation: u64,
    retry_at: Option<Instant>,
    last_error: String,
    moves: Option<watch::Receiver<Option<RedisNode>>>,
}

/// The publishing connection, its generation and the node it reaches.
struct Dialled {
    generation: u64,
    connection: MultiplexedConnection,
    node: RedisNode,
}

pub(crate) const REDIAL_EVERY: Duration = Duration::from_secs(1);

impl RedisPublisher {
    pub(crate) fn new(
        dialer: Arc<Dialer>,
        name: String,
        response_timeout: Duration,
        moves: Option<watch::Receiver<Option<RedisNode>>>,
    ) -> Self {
        RedisPublisher {
            dialer,
            name,
            response_timeout,
            state: Mutex::new(PublisherState {
                moves,
                ..PublisherState::default()
            }),
        }
    }

    /// The current connection, dialling one if there is none (or if the master it
    /// reaches is no longer the master).
    pub(crate) async fn connection(&self) -> Result<(u64, MultiplexedConnection), String> {
        let mut guard = self.state.lock().await;
        let state = &mut *guard;
        if let Some(moves) = &mut state.moves
            && moves.has_changed().unwrap_or(false)
        {
            let to = moves.borrow_and_update().clone();
            if let Some(dialled) = &state.connection
                && to.as_ref() != Some(&dialled.node)
            {
                tracing::info!(from = %dialled.node, to = ?to.map(|n| n.to_string()), name = %self.name, "Redis master moved; re-dialling the publishing connection");
                state.connection = None;
                state.retry_at = None;
            }
        }
        if let Some(dialled) = &state.connection {
            return Ok((dialled.generation, dialled.connection.clone()));
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(format!("Redis unreachable: {}", state.last_error));
        }
        let dialled = async {
            let (io, node) = self.dialer.dial(&self.name).await?;
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(self.response_timeout));
            let (connection, driver) = MultiplexedConnection::new_with_config(&after_handshake(), io, config)
                .await
                .map_err(|e| format!("{node}: {e}"))?;
            tokio::spawn(driver);
            Ok::<_, String>((connection, node))
        };
        match dialled.await {
            Ok((connection, node)) => {
                state.generation += 1;
                state.connection = Some(Dialled {
                    generation: state.generation,
                    connection: connection.clone(),
                    node,
                });
                state.retry_at = None;
                Ok((state.generation, connection))
            }
            Err(reason) => {
                state.retry_at = Some(Instant::now() + REDIAL_EVERY);
                state.last_error = reason.clone();
                Err(reason)
            }
        }
    }

    async fn forget(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.connection.as_ref().is_some_and(|d| d.generation == generation) {
            state.connection = None;
        }
    }
}

#[async_trait]
impl Publisher for RedisPublisher {
    async fn publish(&self, messages: Vec<(String, String)>) -> Result<(), String> {
        let (generation, mut connection) = self.connection().await?;
        let mut pipe = redis::pipe();
        for (channel, payload) in &messages {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        match pipe.query_async::<()>(&mut connection).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.forget(generation).await;
                Err(e.to_string())
            }
        }
    }
}
