//! A client of the ingestion inputs: the TCP input, the pub/sub channel and
//! the stream, for programs (and tests) that send messages to Courier.

use std::time::Duration;

use courier_notify::{RedisConfig, RedisConnection, RedisConnector};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Why a client call failed. A refusal by Courier (an invalid message, a full
/// queue, a wrong token) is not an error: it is an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The call needs an address or URL the client was not given.
    #[error("no {0} configured on this client")]
    NotConfigured(&'static str),
    /// Connecting, writing or reading failed.
    #[error("TCP: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection before answering every message, or
    /// answered something that is not JSON.
    #[error("bad answer: {0}")]
    Answer(String),
    /// The call did not finish within the client's timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The Redis URL is not one Courier reads.
    #[error("redis URL: {0}")]
    RedisUrl(#[from] courier_notify::RedisUrlError),
    /// Redis could not be reached, or refused the command.
    #[error("redis: {0}")]
    Redis(String),
}

/// Sends messages to a Courier node's ingestion inputs.
///
/// - [`send`](Self::send) and [`send_many`](Self::send_many) go to the TCP
///   input and return the node's answer to each message, as JSON:
///   `{"id": "<execution id>", "status": "queued"}` once the execution is
///   committed, or a refusal `{"error": "...", "detail": ...}` (an invalid
///   message: `"detail": {"field": ..., "reason": ...}`; a full queue also
///   carries `"retry_after_ms"`). A refusal is `Ok`: look at `error`.
/// - [`publish`](Self::publish) sends to the pub/sub channel (best effort: it
///   returns how many subscribers received it, nodes included).
/// - [`stream`](Self::stream) adds an entry to the stream (field `message`)
///   and returns its id; it is delivered once a node consumes it.
///
/// The Redis URL takes the forms Courier's configuration does (see
/// [`RedisConfig`]); the connection is made on first use and kept.
///
/// ```no_run
/// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use courier_ingest::IngestClient;
/// use serde_json::json;
///
/// let client = IngestClient::new()
///     .tcp("127.0.0.1:8991")
///     .token("s3cret")
///     .redis("redis://127.0.0.1:6379");
/// let message = json!({"provider": "log", "recipient": ["ops@example.com"], "message": "disk full"});
/// let answer = client.send(&message).await?;
/// match answer.get("error") {
///     None => println!("queued as {}", answer["id"]),
///     Some(error) => println!("refused: {error} ({})", answer["detail"]),
/// }
/// let entry = client.stream(&message, "notifications").await?;
/// let receivers = client.publish(&message, "notifications").await?;
/// println!("entry {entry}, heard by {receivers}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct IngestClient {
    tcp: Option<String>,
    token: Option<String>,
    redis: Option<String>,
    timeout: Duration,
    connection: std::sync::Arc<tokio::sync::Mutex<Option<RedisConnection>>>,
}

impl Default for IngestClient {
    fn default() -> Self {
        Self::new()
    }
}

impl IngestClient {
    /// A client with nothing configured yet, and a 30 s timeout per call.
    pub fn new() -> Self {
        IngestClient {
            tcp: None,
            token: None,
            redis: None,
            timeout: Duration::from_secs(30),
            connection: Default::default(),
        }
    }

    /// The TCP input's address (`host:port`).
    pub fn tcp(mut self, addr: impl ToString) -> Self {
        self.tcp = Some(addr.to_string());
        self
    }

    /// The TCP token (`ingest.tcp_token`), added as `auth` to every message
    /// sent over TCP that has none.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The Redis the channel and the stream live in.
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis = Some(url.into());
        self.connection = Default::default();
        self
    }

    /// How long one call may take in all (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends one message over TCP and returns the node's answer.
    pub async fn send(&self, message: &Value) -> Result<Value, ClientError> {
        let mut answers = self.send_many(std::slice::from_ref(message)).await?;
        answers.pop().ok_or_else(|| ClientError::Answer("no answer".into()))
    }

    /// Sends messages over one TCP connection, newline-delimited, and returns
    /// the answers in the same order.
    pub async fn send_many(&self, messages: &[Value]) -> Result<Vec<Value>, ClientError> {
        let addr = self.tcp.as_deref().ok_or(ClientError::NotConfigured("TCP address"))?;
        let mut out = Vec::new();
        for message in messages {
            let mut message = message.clone();
            if let (Some(token), Value::Object(fields)) = (&self.token, &mut message) {
                fields.entry("auth").or_insert_with(|| Value::String(token.clone()));
            }
            serde_json::to_writer(&mut out, &message).map_err(|e| ClientError::Answer(e.to_string()))?;
            out.push(b'\n');
        }
        let exchange = async {
            let socket = TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            let (reader, mut writer) = socket.into_split();
            // Written while answers are read, so a long batch cannot fill both
            // directions' buffers and stall.
            let write = async {
                writer.write_all(&out).await?;
                writer.shutdown().await
            };
            let read = async {
                let mut lines = BufReader::new(reader).lines();
                let mut answers = Vec::with_capacity(messages.len());
                while answers.len() < messages.len() {
                    let Some(line) = lines.next_line().await? else {
                        break;
                    };
                    if line.trim().is_empty() {
                        continue;
                    }
                    let answer: Value =
                        serde_json::from_str(&line).map_err(|e| ClientError::Answer(format!("{e}: {line:?}")))?;
                    answers.push(answer);
                }
                Ok::<_, ClientError>(answers)
            };
            let (written, answers) = tokio::join!(write, read);
            let answers = answers?;
            if answers.len() < messages.len() {
                // The node may close early (a message too large); say what it said.
                let last = answers.last().map(Value::to_string).unwrap_or_default();
                return Err(ClientError::Answer(format!(
                    "{} answers to {} messages; the connection closed (last answer: {last})",
                    answers.len(),
                    messages.len()
                )));
            }
            written?;
            Ok(answers)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ClientError::TimedOut(self.timeout))?
    }

    /// Publishes the message on `channel`; returns how many subscribers received it.
    pub async fn publish(&self, message: &Value, channel: &str) -> Result<u64, ClientError> {
        let payload = message.to_string();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(channel).arg(payload);
        self.redis_query(cmd).await
    }

    /// Adds the message to `stream` (field `message`); returns the entry's id.
    pub async fn stream(&self, message: &Value, stream: &str) -> Result<String, ClientError> {
        let payload = message.to_string();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream).arg("*").arg("message").arg(payload);
        self.redis_query(cmd).await
    }

    async fn redis_query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, ClientError> {
        let call = async {
            let mut connection = self.redis_connection().await?;
            match cmd.query_async(&mut connection).await {
                Ok(value) => Ok(value),
                Err(e) => {
                    if RedisConnector::should_redial(&e) {
                        *self.connection.lock().await = None;
                    }
                    Err(ClientError::Redis(e.to_string()))
                }
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::TimedOut(self.timeout))?
    }

    async fn redis_connection(&self) -> Result<RedisConnection, ClientError> {
        let mut held = self.connection.lock().await;
        if let Some(connection) = &*held {
            return Ok(connection.clone());
        }
        let url = self.redis.as_deref().ok_or(ClientError::NotConfigured("Redis URL"))?;
        let config = RedisConfig::parse(url)?;
        let connector =
            RedisConnector::new(config, self.timeout.min(Duration::from_secs(10))).map_err(ClientError::Redis)?;
        let name = format!("courier-ingest-client-{}", std::process::id());
        let connection = connector.connection(&name).await.map_err(ClientError::Redis)?;
        *held = Some(connection.clone());
        Ok(connection)
    }
}
