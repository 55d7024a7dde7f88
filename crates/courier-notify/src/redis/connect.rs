//! Connections to Redis: TCP (or TLS through rustls) to the first node of the
//! failover list that answers, then the handshake (AUTH, SELECT, CLIENT SETNAME).
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
use redis::RedisConnectionInfo;
use redis::aio::{MultiplexedConnection, PubSubSink};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::config::{RedisConfig, RedisNode};
use crate::cluster::Publisher;
use crate::fanout::{Connection, Connector, Incoming, Link};

/// A byte stream to Redis: plain TCP or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Dials the nodes of one [`RedisConfig`].
pub(crate) struct Dialer {
    config: RedisConfig,
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl Dialer {
    /// Prepares TLS (reading the CA file, if any) for `config`.
    pub(crate) fn new(config: RedisConfig, timeout: Duration) -> Result<Self, String> {
        let tls = match &config.tls {
            None => None,
            Some(tls) => Some(TlsConnector::from(Arc::new(client_tls(tls.ca_file.as_deref())?))),
        };
        Ok(Dialer { config, tls, timeout })
    }

    /// A named, authenticated connection to the first node that answers, and which
    /// node that was. The error lists why each node failed.
    pub(crate) async fn dial(&self, name: &str) -> Result<(Box<dyn Io>, &RedisNode), String> {
        let mut failures = Vec::new();
        for node in &self.config.nodes {
            match tokio::time::timeout(self.timeout, self.dial_one(node, name)).await {
                Ok(Ok(io)) => return Ok((io, node)),
                Ok(Err(reason)) => failures.push(format!("{node}: {reason}")),
                Err(_) => failures.push(format!("{node}: no answer within {:?}", self.timeout)),
            }
        }
        Err(failures.join("; "))
    }

    async fn dial_one(&self, node: &RedisNode, name: &str) -> Result<Box<dyn Io>, String> {
        let tcp = TcpStream::connect((node.host.as_str(), node.port))
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let server = ServerName::try_from(node.host.clone())
                    .map_err(|e| format!("{:?} cannot be checked against a certificate: {e}", node.host))?;
                Box::new(
                    tls.connect(server, tcp)
                        .await
                        .map_err(|e| format!("TLS handshake failed: {e}"))?,
                )
            }
        };
        handshake(&mut io, &self.config, name).await?;
        Ok(io)
    }
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

/// AUTH (if a password is set), SELECT (if a database is), CLIENT SETNAME; sent in
/// one write, answered by one line each.
async fn handshake(io: &mut Box<dyn Io>, config: &RedisConfig, name: &str) -> Result<(), String> {
    let mut out = Vec::new();
    let mut steps = Vec::new();
    if let Some(password) = &config.password {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = &config.username {
            auth.arg(user);
        }
        auth.arg(password);
        out.extend(auth.get_packed_command());
        steps.push("AUTH");
    }
    if config.db != 0 {
        out.extend(redis::cmd("SELECT").arg(config.db).get_packed_command());
        steps.push("SELECT");
    }
    out.extend(redis::cmd("CLIENT").arg("SETNAME").arg(name).get_packed_command());
    steps.push("CLIENT SETNAME");
    io.write_all(&out).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())?;
    for step in steps {
        let line = read_line(io).await?;
        if let Some(error) = line.strip_prefix('-') {
            return Err(format!("{step} refused: {error}"));
        }
        if !line.starts_with('+') {
            return Err(format!(
                "unexpected answer to {step}: {line:?} (is this a Redis server?)"
            ));
        }
    }
    Ok(())
}

/// One reply line, read a byte at a time so that nothing after it is consumed.
async fn read_line(io: &mut Box<dyn Io>) -> Result<String, String> {
    let mut line = Vec::new();
    loop {
        let byte = io
            .read_u8()
            .await
            .map_err(|e| format!("the server closed the connection during the handshake ({e})"))?;
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
pub(super) fn after_handshake() -> RedisConnectionInfo {
    RedisConnectionInfo::default().set_skip_set_lib_name()
}

// ---------------------------------------------------------------------------
// Subscription side
// ---------------------------------------------------------------------------

/// Opens the fanout actor's pub/sub connection, named `name`.
pub(crate) struct SubscriptionConnector {
    pub(crate) dialer: Arc<Dialer>,
    pub(crate) name: String,
}

#[async_trait]
impl Connector for SubscriptionConnector {
    async fn connect(&self) -> Result<Connection, String> {
        let (io, node) = self.dialer.dial(&self.name).await?;
        let pubsub = redis::aio::PubSub::new(&after_handshake(), io)
            .await
            .map_err(|e| format!("{node}: {e}"))?;
        let (sink, stream) = pubsub.split();
        let messages = stream
            .map(|msg| Incoming {
                channel: msg.get_channel_name().to_string(),
                payload: msg.get_payload_bytes().to_vec(),
            })
            .boxed();
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
/// at most once a second while Redis stays unreachable.
pub(crate) struct RedisPublisher {
    dialer: Arc<Dialer>,
    name: String,
    response_timeout: Duration,
    state: Mutex<PublisherState>,
}

#[derive(Default)]
struct PublisherState {
    connection: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    retry_at: Option<Instant>,
    last_error: String,
}

const REDIAL_EVERY: Duration = Duration::from_secs(1);

impl RedisPublisher {
    pub(crate) fn new(dialer: Arc<Dialer>, name: String, response_timeout: Duration) -> Self {
        RedisPublisher {
            dialer,
            name,
            response_timeout,
            state: Mutex::default(),
        }
    }

    /// The current connection, dialling one if there is none.
    pub(crate) async fn connection(&self) -> Result<(u64, MultiplexedConnection), String> {
        let mut state = self.state.lock().await;
        if let Some((generation, connection)) = &state.connection {
            return Ok((*generation, connection.clone()));
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
            Ok::<_, String>(connection)
        };
        match dialled.await {
            Ok(connection) => {
                state.generation += 1;
                state.connection = Some((state.generation, connection.clone()));
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
        if state.connection.as_ref().is_some_and(|(g, _)| *g == generation) {
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
