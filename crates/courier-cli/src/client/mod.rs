//! The client commands: `exec`, `signal`, `dlq`, `cleanup`, `functions`, `webhooks` and `notify`, each a
//! few requests to a node's REST API (`courier serve`).
//!
//! Every command prints a table or a short sentence, or with `--json` the API's
//! answer as it came. API errors print as `courier: <error> (<detail>)` and exit 1;
//! `exec wait` exits 2 when the execution failed, timed out or was cancelled, and
//! 3 when its `--timeout` ran out first.

use std::time::Duration;

use clap::Args;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub mod dlq;
pub mod exec;
pub mod functions;
pub mod ingest;
pub mod notify;
pub mod progress;
pub mod queues;
pub mod render;
pub mod schedules;
pub mod webhooks;

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// The node's base URL.
    #[arg(long, global = true, env = "COURIER_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An API token, sent as `Authorization: Bearer <token>`.
    #[arg(long, global = true, env = "COURIER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Why a client command failed, and the exit code it ends with.
#[derive(Debug)]
pub enum ClientError {
    /// The API answered with an error status.
    Api {
        /// The `error` of the body (or the status' reason for a non-JSON body).
        error: String,
        /// The `detail` of the body.
        detail: Value,
    },
    /// The node could not be reached.
    Unreachable {
        /// The URL that was asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// Anything else: a bad argument, an unreadable answer.
    Other(String),
    /// The outcome was already printed; exit with this code.
    Exit(i32),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Exit(code) => *code,
            _ => 1,
        }
    }
}

/// Renders an error's `detail`: a string as is, an object as `key: value` pairs.
fn detail_text(detail: &Value) -> Option<String> {
    match detail {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Object(map) if map.is_empty() => None,
        Value::Object(map) => Some(
            map.iter()
                .map(|(k, v)| format!("{k}: {}", render::scalar(v)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => Some(other.to_string()),
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Api { error, detail, .. } => match detail_text(detail) {
                Some(detail) => write!(f, "{error} ({detail})"),
                None => f.write_str(error),
            },
            ClientError::Unreachable { url, reason } => write!(f, "could not reach {url}: {reason}"),
            ClientError::Other(message) => f.write_str(message),
            ClientError::Exit(code) => write!(f, "exit status {code}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Shorthand for command results.
pub type ClientResult<T> = Result<T, ClientError>;

/// The innermost cause of a transport error, which says what actually happened
/// ("Connection refused (os error 111)") where reqwest's own message does not.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A connection to one node's API.
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
    /// Whether answers are printed as JSON.
    pub json: bool,
}

impl Client {
    /// A client for `args.url`.
    pub fn new(args: &ClientArgs) -> ClientResult<Client> {
        // reqwest is built without a default TLS provider; https needs one installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base =
            Url::parse(&args.url).map_err(|e| ClientError::Other(format!("invalid --url {:?}: {e}", args.url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ClientError::Other(format!(
                "invalid --url {:?}: expected http(s)://host[:port]",
                args.url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("courier-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            base,
            token: args.token.clone().filter(|t| !t.is_empty()),
            http,
            json: args.json,
        })
    }

    /// The URL of `segments` under the base URL, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the token set.
    pub fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends `request`, turning transport failures into [`ClientError::Unreachable`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> ClientResult<reqwest::Response> {
        request.send().await.map_err(|e| self.transport_error(e))
    }

    /// A transport error, naming the node.
    pub fn transport_error(&self, e: reqwest::Error) -> ClientError {
        let reason = if e.is_timeout() {
            "timed out".to_string()
        } else {
            root_cause(&e)
        };
        ClientError::Unreachable {
            url: self.base.as_str().trim_end_matches('/').to_string(),
            reason,
        }
    }

    /// Reads an answer: its JSON body on success (null when empty), an [`ClientError::Api`] otherwise.
    pub async fn answer(&self, response: reqwest::Response) -> ClientResult<Value> {
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            if body.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&body)
                .map_err(|e| ClientError::Other(format!("the server's answer is not JSON ({status}): {e}")));
        }
        Err(api_error(status, &body))
    }

    /// One JSON request: `body` is sent as JSON when given.
    pub async fn call(&self, method: Method, url: Url, body: Option<&Value>) -> ClientResult<Value> {
        let mut request = self.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request).await?;
        self.answer(response).await
    }

    /// `GET` of `segments` with `query` pairs (those with a value).
    pub async fn get(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> ClientResult<Value> {
        let mut url = self.url(segments);
        let pairs: Vec<_> = query.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v))).collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        self.call(Method::GET, url, None).await
    }

    /// `POST` of `body` (or nothing) to `segments`.
    pub async fn post(&self, segments: &[&str], body: Option<&Value>) -> ClientResult<Value> {
        self.call(Method::POST, self.url(segments), body).await
    }

    /// `DELETE` of `segments`.
    pub async fn delete(&self, segments: &[&str]) -> ClientResult<Value> {
        self.call(Method::DELETE, self.url(segments), None).await
    }
}

/// The error an API answered: `{"error","detail"}`, or the status with the start of
/// the body when the answer is not Courier's JSON (a proxy's page, say).
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
        && let Some(Value::String(error)) = map.get("error")
    {
        return ClientError::Api {
            error: error.clone(),
            detail: map.get("detail").cloned().unwrap_or(Value::Null),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().take(200).collect();
    ClientError::Api {
        error: format!("HTTP {status}"),
        detail: Value::String(text),
    }
}

/// Reads a typed record out of an answer.
pub fn decode<T: DeserializeOwned>(value: Value) -> ClientResult<T> {
    serde_json::from_value(value).map_err(|e| ClientError::Other(format!("unexpected answer from the server: {e}")))
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// Checks an id argument is a UUID, so a typo is caught before a request.
pub fn check_id(what: &str, id: &str) -> ClientResult<()> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ClientError::Other(format!("invalid {what} id {id:?} (expected a UUID)")))
}

/// `courier signal`.
#[derive(Args, Debug)]
pub struct SignalArgs {
    /// The execution to signal.
    pub execution_id: String,
    /// The signal's name.
    pub name: String,
    /// The payload, as JSON (none: null).
    pub payload: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Sends a signal to an execution.
pub async fn signal(args: SignalArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    check_id("execution", &args.execution_id)?;
    let payload = match &args.payload {
        Some(text) => Some(
            serde_json::from_str::<Value>(text)
                .map_err(|e| ClientError::Other(format!("the payload is not valid JSON: {e}")))?,
        ),
        None => None,
    };
    let answer = client
        .post(
            &["v1", "executions", &args.execution_id, "signals", &args.name],
            payload.as_ref(),
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let sent: courier_core::SignalSent = decode(answer)?;
    match sent.delivered_to {
        Some(task) => println!(
            "sent signal {:?} to execution {} (signal {}; delivered to waiting task {task})",
            args.name, args.execution_id, sent.signal_id
        ),
        None => println!(
            "sent signal {:?} to execution {} (signal {}; kept until the execution waits for it)",
            args.name, args.execution_id, sent.signal_id
        ),
    }
    Ok(())
}

/// `courier cleanup`.
#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Delete finished executions and dead letters older than this ("7d", "12h", "30m").
    #[arg(long, value_name = "DURATION")]
    pub older_than: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Deletes old history.
pub async fn cleanup(args: CleanupArgs) -> ClientResult<()> {
    let client = Client::new(&args.client)?;
    courier_core::parse_duration(&args.older_than).map_err(|e| ClientError::Other(format!("--older-than: {e}")))?;
    let answer = client
        .post(
            &["v1", "cleanup"],
            Some(&serde_json::json!({"older_than": args.older_than})),
        )
        .await?;
    if client.json {
        print_json(&answer);
        return Ok(());
    }
    let count = |key: &str| answer.get(key).and_then(Value::as_u64).unwrap_or(0);
    println!(
        "deleted {} finished execution(s) and {} dead letter(s) older than {}",
        count("executions"),
        count("dead_letters"),
        args.older_than.trim()
    );
    Ok(())
}
