//! Settings of the HTTP surface.

use std::time::Duration;

pub use courier_webhooks::WebhookOptions;

use crate::auth::ApiToken;
use crate::notifications::NotificationHttpOptions;

/// How the HTTP surface behaves. Every field has a `config/default.toml` key
/// (section `[api]`, `[metrics]`, `[http]`, `[streams]`, `[webhooks]`).
#[derive(Clone, Debug, PartialEq)]
pub struct HttpOptions {
    /// Bearer tokens accepted on the API, each with its scopes (`api.tokens`,
    /// `COURIER_API_TOKENS`); empty: no auth. A plain string converts to an admin token.
    pub tokens: Vec<ApiToken>,
    /// Whether `/metrics` wants a token with the `read` scope (`metrics.require_token`);
    /// it does only when `tokens` is not empty.
    pub metrics_require_token: bool,
    /// Largest request body accepted; larger ones get 413 (`http.body_limit`).
    pub body_limit: usize,
    /// Origins allowed by CORS (`http.cors_origins`); `*` allows any; empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Longest `?wait=` a result or claim long-poll may ask for (`http.max_wait`).
    pub max_wait: Duration,
    /// Most event streams open at once on this node: SSE (`/v1/events/stream`),
    /// WebSocket (`/v1/ws`) and notification streams together (`http.max_streams`).
    /// Past it a new stream is answered 503 with `Retry-After`.
    pub max_streams: usize,
    /// Most long-polls waiting at once on this node: claims and result reads
    /// with a `wait` (`http.max_waiters`). Past it such a request is answered
    /// 429 with `Retry-After`.
    pub max_waiters: usize,
    /// Most subscriptions one WebSocket connection may hold (`http.max_ws_subscriptions`).
    pub max_ws_subscriptions: usize,
    /// Largest event data, in bytes of JSON, a stream (SSE or WebSocket) sends;
    /// a larger event goes out with `data` `{"truncated": true, "bytes": n}`
    /// (read it whole from `GET /v1/events`) (`http.max_event_bytes`).
    pub max_event_bytes: usize,
    /// How often an idle SSE stream gets a keepalive comment (`streams.keepalive`).
    pub sse_keepalive: Duration,
    /// How often the server pings WebSocket peers (`streams.ws_ping`).
    pub ws_ping: Duration,
    /// A WebSocket peer silent this long is dropped (`streams.ws_timeout`).
    pub ws_timeout: Duration,
    /// Event batches a stream session may have queued before it is told it lags
    /// and catches up from the log itself (`streams.session_mailbox`).
    pub session_mailbox: usize,
    /// How often the log tail looks for events even without a notice (`streams.poll`).
    pub tail_poll: Duration,
    /// Webhook delivery settings.
    pub webhooks: WebhookOptions,
    /// Notification endpoint settings.
    pub notifications: NotificationHttpOptions,
    /// Ingestion: its inputs and providers (`[ingest]`).
    pub ingest: courier_ingest::IngestOptions,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            tokens: Vec::new(),
            metrics_require_token: false,
            body_limit: 1024 * 1024,
            cors_origins: Vec::new(),
            max_wait: Duration::from_secs(60),
            max_streams: 16_384,
            max_waiters: 1024,
            max_ws_subscriptions: 64,
            max_event_bytes: 256 * 1024,
            sse_keepalive: Duration::from_secs(15),
            ws_ping: Duration::from_secs(20),
            ws_timeout: Duration::from_secs(60),
            session_mailbox: 256,
            tail_poll: Duration::from_millis(500),
            webhooks: WebhookOptions::default(),
            notifications: NotificationHttpOptions::default(),
            ingest: courier_ingest::IngestOptions::default(),
        }
    }
}
