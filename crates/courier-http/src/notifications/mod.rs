//! Notifications for people over HTTP: the browser's stream and dismissals
//! (`/notifications/...`, authenticated by the connection's identity), the
//! inbound webhook (`POST /notifications/webhook`, a shared secret), and the
//! application's API (`/v1/notifications...`, API tokens like the rest of `/v1`).
//!
//! | file | holds |
//! |---|---|
//! | `stream.rs` | `GET /notifications/stream`: replay, then live |
//! | `hub.rs` | the `NotificationHub` actor: one per node, fans notifications out to the streams open on it |
//! | `identity.rs` | who a connection is: an app's identity, a connection token, or an anonymous session cookie |
//! | `token.rs` | connection tokens (HS256 JWTs) |
//! | `client.rs` | the browser client (`/notifications.js`, `/notifications.mjs`) and its demo page |
//! | `mod.rs` | the other routes, their bodies and answers, and the options |

pub(crate) mod client;
pub(crate) mod hub;
pub(crate) mod identity;
pub(crate) mod stream;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use courier_core::openapi::NotificationTargetKind;
use courier_core::{
    Dismissal, NewNotification, NotificationFilter, NotificationMode, NotificationRecord, Target, check_key,
};
use courier_runtime::NotificationError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub use identity::{IdentityProvider, NotificationIdentity};

use crate::Http;
use crate::error::{
    ApiError, ApiResult, BadRequest, Conflict, NotFound, NotSignedIn, PayloadTooLarge, StoreError, TooManyRequests,
    Unavailable, Unprocessable, UnsupportedMediaType, WrongWebhookSecret,
};
use crate::params::JsonObject;
use crate::params::{duration_input, nullable};
use crate::routes::Routes;

/// Adds the notifications' routes: the application's API under `/v1`, and the
/// browser's and the inbound webhook's, which have their own security (a
/// connection token, a bearer token or the anonymous-session cookie; the
/// webhook secret) instead of the API tokens.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes
        .add(__path_create, create)
        .add(__path_list, list)
        .add(__path_mint_token, mint_token)
        .add(__path_subscribe, subscribe)
        .add(__path_subscriptions, subscriptions)
        .add(__path_unsubscribe, unsubscribe)
        .add(stream::__path_stream, stream::stream)
        .add(__path_dismiss, dismiss)
        .add(__path_dismiss_group, dismiss_group)
        .add(__path_webhook, webhook)
        .add(client::__path_script, client::script)
        .add(client::__path_module, client::module)
        .add(client::__path_demo, client::demo)
}

const _: () = assert!(
    courier_core::MAX_NOTIFICATION_KEY == 200 && courier_runtime::MAX_NOTIFICATION_PAYLOAD == 65536,
    "the schemas here spell MAX_NOTIFICATION_KEY as 200 and MAX_NOTIFICATION_PAYLOAD as 65536"
);

/// How the notification endpoints behave (`[notifications]` in the config).
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationHttpOptions {
    /// Signs connection tokens (`notifications.token_secret`,
    /// `COURIER_NOTIFICATIONS_TOKEN_SECRET`). Set: every stream and dismissal needs
    /// a valid token. Unset: anonymous sessions (cookies) only.
    pub token_secret: Option<String>,
    /// The bearer secret of `POST /notifications/webhook`
    /// (`notifications.webhook_secret`, `COURIER_NOTIFICATIONS_WEBHOOK_SECRET`);
    /// unset: the webhook answers 404.
    pub webhook_secret: Option<String>,
    /// After a failed webhook authentication, the same client gets 429 for this long
    /// (`notifications.webhook_failure_window`).
    pub webhook_failure_window: Duration,
    /// How often an idle stream gets a keepalive comment (`notifications.keepalive`).
    pub keepalive: Duration,
    /// An identity the embedding app supplies instead of tokens and cookies.
    pub identity: Option<IdentityProvider>,
}

impl Default for NotificationHttpOptions {
    fn default() -> Self {
        NotificationHttpOptions {
            token_secret: None,
            webhook_secret: None,
            webhook_failure_window: Duration::from_secs(60),
            keepalive: Duration::from_secs(15),
            identity: None,
        }
    }
}

impl From<NotificationError> for ApiError {
    fn from(e: NotificationError) -> Self {
        match e {
            NotificationError::Invalid { field, reason } => {
                ApiError::bad_request(format!("invalid {field}"), json!({ "field": field, "reason": reason }))
            }
            NotificationError::TooLarge { bytes, max, what } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "notification too large",
                json!({ "bytes": bytes, "max": max, "limit": what }),
            ),
            NotificationError::Runtime(e) => (*e).into(),
        }
    }
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not found", Value::Null)
}

/// What the webhook and `POST /v1/notifications` take (seed 004's webhook body).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(as = SendNotification, description = "A notification to send.")]
#[serde(deny_unknown_fields)]
pub(crate) struct SendBody {
    /// `session`, `user`, `source` or `broadcast`.
    #[schema(value_type = NotificationTargetKind)]
    pub target: String,
    /// The session, for `target: session`. 1 to 200 bytes, not blank, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub session_id: Option<String>,
    /// The user, for `target: user`. 1 to 200 bytes, not blank, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    /// The source, for `target: source`. 1 to 200 bytes, not blank, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub source: Option<String>,
    /// The notification's type (the browser client toasts `generic`). 1 to 200 bytes, not blank, no control characters.
    #[serde(rename = "type")]
    #[schema(min_length = 1, max_length = 200)]
    pub kind: String,
    /// How it is kept (default `queued`).
    #[serde(default)]
    pub mode: Option<NotificationMode>,
    /// A group key: a newer notification of the same target and group replaces this one. 1 to 200 bytes, not blank, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub group: Option<String>,
    /// What the browser receives (seed 004's `title`, `message`, `level`, `link`, ...): at most 65536 bytes as JSON.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// What a send answers (the schema `NotificationSent`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationSent, description = "A notification as sent.")]
pub(crate) struct SentBody {
    /// The notification's id.
    pub id: Uuid,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its effective mode.
    pub mode: NotificationMode,
    /// When it was sent (Unix seconds, with microseconds).
    #[schema(minimum = 0)]
    pub created_at: f64,
    /// Its place in the notification sequence (0 for an ephemeral one).
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// `true`, and only that.
fn always_true(description: &str) -> RefOr<Schema> {
    courier_core::openapi::schema(json!({ "type": "boolean", "enum": [true], "description": description }))
}

fn suppressed() -> RefOr<Schema> {
    always_true("A hook suppressed the notification: nothing was sent.")
}

fn suppressed_if_present() -> RefOr<Schema> {
    always_true("Present when a hook suppressed it.")
}

/// What a send answers when a hook suppressed the notification.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NotificationSuppressed)]
pub(crate) struct Suppressed {
    /// Always `true`.
    #[schema(schema_with = suppressed)]
    pub suppressed: bool,
}

/// `GET /v1/notifications` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A page of notifications, newest first.")]
pub(crate) struct NotificationList {
    /// Newest first.
    pub notifications: Vec<NotificationRecord>,
    /// The page size used.
    pub limit: u32,
    /// Pass as `before` for the next page (`null`: this page is empty).
    #[schema(minimum = 0)]
    pub next_before: Option<i64>,
}

/// `POST /v1/notifications/tokens` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A connection token for a browser.")]
pub(crate) struct ConnectionToken {
    /// An HS256 JWT for `/notifications/stream` and dismissals (`?token=`, `Authorization: Bearer`, or the `courier_token` cookie).
    pub token: String,
    /// When it expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// `/v1/notifications/subscriptions` answer to a change.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Whether a user is subscribed to a source, after a change.")]
pub(crate) struct SourceSubscriptionState {
    /// The user.
    pub user_id: String,
    /// The source.
    pub source: String,
    /// Whether the user is now subscribed.
    pub subscribed: bool,
}

/// `GET /v1/notifications/subscriptions` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "The sources a user is subscribed to.")]
pub(crate) struct SourceSubscriptions {
    /// The user.
    pub user_id: String,
    /// The sources the user is subscribed to, in byte order.
    pub sources: Vec<String>,
}

/// `DELETE /notifications/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A notification dismissed for the caller.")]
pub(crate) struct NotificationDismissed {
    /// The notification dismissed for the caller.
    pub dismissed: Uuid,
}

/// `DELETE /notifications/group/{group}` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A group's notifications dismissed for the caller.")]
pub(crate) struct NotificationGroupDismissed {
    /// The group.
    pub dismissed_group: String,
    /// The notifications it dismissed for the caller (empty if none).
    pub dismissed: Vec<Uuid>,
}

/// `POST /notifications/webhook` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "A notification accepted from the webhook.")]
pub(crate) struct NotificationAccepted {
    /// The notification's id (`null` when a hook suppressed it).
    pub id: Option<Uuid>,
    /// Its type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Present when a hook suppressed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = suppressed_if_present)]
    pub suppressed: Option<bool>,
}

/// The target named by `kind` and the id field that belongs to it. Every id field
/// given must be valid and belong to `kind`: an id the target would not use is a
/// mistake the caller should hear about, not a value quietly ignored.
fn target_of(
    kind: &str,
    session_id: Option<&str>,
    user_id: Option<&str>,
    source: Option<&str>,
) -> Result<Target, serde_json::Value> {
    let fields = [
        ("session", "session_id", session_id),
        ("user", "user_id", user_id),
        ("source", "source", source),
    ];
    for (owner, field, value) in fields {
        let Some(value) = value else { continue };
        if owner != kind {
            return Err(
                json!({ "target": kind, "field": field, "reason": format!("`{field}` is only for target `{owner}`") }),
            );
        }
        check_key(field, value).map_err(|e| json!({ "target": kind, "field": field, "reason": e.0 }))?;
    }
    let key = fields
        .iter()
        .find(|(owner, _, _)| *owner == kind)
        .and_then(|(_, _, value)| *value);
    Target::parse(kind, key).map_err(|e| json!({ "target": kind, "reason": e.0 }))
}

impl SendBody {
    /// The notification to send; 422 for a target that is not one.
    fn into_notification(self) -> ApiResult<NewNotification> {
        let target = target_of(
            &self.target,
            self.session_id.as_deref(),
            self.user_id.as_deref(),
            self.source.as_deref(),
        )
        .map_err(|detail| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid target", detail))?;
        let mut notification = NewNotification::new(target, self.kind, self.payload);
        notification.mode = self.mode.unwrap_or(NotificationMode::Queued);
        notification.group = self.group;
        Ok(notification)
    }
}

/// What a send answers.
fn sent_body(record: &NotificationRecord) -> SentBody {
    SentBody {
        id: record.id,
        kind: record.kind.clone(),
        mode: record.mode,
        created_at: courier_core::epoch_seconds(record.created_at),
        seq: record.seq,
    }
}

async fn send(http: &Http, body: SendBody) -> ApiResult<Option<NotificationRecord>> {
    let notification = body.into_notification()?;
    let sent = http.courier().notifications().send(notification).await?;
    Ok(sent.map(|s| s.notification))
}

/// `POST /v1/notifications`: sends a notification (201), or reports that a hook
/// suppressed it (200 `{"suppressed": true}`).
#[utoipa::path(
    post, path = "/v1/notifications", operation_id = "sendNotification", tag = "notifications",
    summary = "Send a notification.",
    description = "Stored (unless ephemeral), then pushed to every open stream of its target on every node. A newer notification with the same target and `group` replaces the earlier one (connected subscribers get a `dismissed` event for it). A broadcast is always ephemeral; the answer says so in `mode`.",
    request_body(content = SendBody, example = json!({"target": "user", "user_id": "ada", "type": "order.shipped", "mode": "queued", "group": "order-77", "payload": {"title": "Your order shipped", "order": 77}})),
    responses(
        (status = 201, description = "Sent.", body = SentBody, example = json!({"id": "01a243aa-8f4c-744f-b279-6093bfa71411", "type": "order.shipped", "mode": "queued", "created_at": 1796431581.00482, "seq": 24})),
        (status = 200, description = "A hook suppressed it: nothing was sent.", body = Suppressed, example = json!({"suppressed": true})),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn create(http: web::Data<Http>, body: JsonObject<SendBody>) -> ApiResult<HttpResponse> {
    match send(&http, body.into_inner()).await? {
        Some(record) => Ok(HttpResponse::Created().json(sent_body(&record))),
        None => Ok(HttpResponse::Ok().json(Suppressed { suppressed: true })),
    }
}

/// `GET /v1/notifications` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only notifications for this target kind (with its id below).
    #[param(value_type = Option<NotificationTargetKind>)]
    pub target: Option<String>,
    /// The session, with `target=session`.
    #[param(min_length = 1, max_length = 200)]
    pub session_id: Option<String>,
    /// The user, with `target=user`.
    #[param(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    /// The source, with `target=source`.
    #[param(min_length = 1, max_length = 200)]
    pub source: Option<String>,
    /// Only this mode.
    pub mode: Option<NotificationMode>,
    /// Only notifications before this sequence number (the last page's `next_before`).
    pub before: Option<i64>,
    /// Most items returned.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<u32>,
}

/// `GET /v1/notifications`: stored notifications, newest first.
#[utoipa::path(
    get, path = "/v1/notifications", operation_id = "listNotifications", tag = "notifications",
    summary = "Stored notifications, newest first.",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of notifications.", body = NotificationList, example = json!({"notifications": [{"id": "01a243aa-8f4c-744f-b279-6093bfa71411", "seq": 24, "target": {"key": "ada", "kind": "user"}, "type": "order.shipped", "mode": "queued", "group": "order-77", "payload": {"order": 77, "title": "Your order shipped"}, "created_at": "2026-12-05T00:46:21.004820Z", "expires_at": "2026-12-06T00:46:21.004820Z"}], "limit": 1, "next_before": 24})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn list(http: web::Data<Http>, query: web::Query<ListQuery>) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let ids = (
        query.session_id.as_deref(),
        query.user_id.as_deref(),
        query.source.as_deref(),
    );
    let target = match query.target.as_deref() {
        None if ids == (None, None, None) => None,
        kind => Some(
            target_of(kind.unwrap_or(""), ids.0, ids.1, ids.2)
                .map_err(|detail| ApiError::bad_request("invalid target", detail))?,
        ),
    };
    let limit = crate::params::page_limit(query.limit)?;
    let notifications = http
        .courier()
        .notifications()
        .list(&NotificationFilter {
            target,
            mode: query.mode,
            before: query.before,
            limit,
        })
        .await?;
    let next_before = notifications.last().map(|n| n.seq);
    Ok(HttpResponse::Ok().json(NotificationList {
        notifications,
        limit,
        next_before,
    }))
}

/// `POST /v1/notifications/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateConnectionToken, description = "Whom a connection token is for.")]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// The browser session the token is for. 1 to 200 bytes, not blank, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    pub session_id: String,
    /// The signed-in user, if any: the stream also carries the user's notifications and subscriptions. 1 to 200 bytes, not blank, no control characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub user_id: Option<String>,
    /// Sources the connection may read without a subscription.
    #[serde(default)]
    #[schema(schema_with = source_keys)]
    pub sources: Vec<String>,
    /// How long the token is valid, 1s to 30d (default 1h).
    #[serde(default, with = "courier_core::serde_duration::option")]
    #[schema(schema_with = token_ttl)]
    pub ttl: Option<Duration>,
}

fn source_keys() -> RefOr<Schema> {
    courier_core::openapi::schema(json!({
        "type": "array",
        "items": { "type": "string", "minLength": 1, "maxLength": courier_core::MAX_NOTIFICATION_KEY,
                   "description": "A source. 1 to 200 bytes, not blank, no control characters." },
        "description": "Sources the connection may read without a subscription.",
    }))
}

fn token_ttl() -> RefOr<Schema> {
    nullable(duration_input(
        "How long the token is valid, 1s to 30d (default 1h).",
        1,
        Some(token::MAX_TTL.as_secs()),
    ))
}

/// `POST /v1/notifications/tokens`: mints a connection token (for apps that would
/// rather not sign JWTs themselves).
#[utoipa::path(
    post, path = "/v1/notifications/tokens", operation_id = "createConnectionToken", tag = "notifications",
    summary = "Mint a connection token for a browser.",
    description = "For applications that would rather not sign JWTs themselves. 409 when `notifications.token_secret` is not set.",
    request_body(content = TokenBody, example = json!({"session_id": "sess-9f2c", "user_id": "ada", "sources": ["orders"]})),
    responses(
        (status = 201, description = "The token.", body = ConnectionToken, example = json!({"token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJzaWQiOiJzZXNzLTlmMmMiLCJzdWIiOiJhZGEiLCJleHAiOjE3OTY0MzUxODEsInNvdXJjZXMiOlsib3JkZXJzIl19.jntQoYA2hIi-rcYjyW9XP7rvVV096kn6M2k_pDvWgeI", "expires_at": "2026-12-05T01:46:21Z"})),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
    )
)]
pub(crate) async fn mint_token(http: web::Data<Http>, body: JsonObject<TokenBody>) -> ApiResult<HttpResponse> {
    let Some(secret) = &http.options().notifications.token_secret else {
        return Err(ApiError::conflict(
            "connection tokens are not enabled on this server",
            json!("set notifications.token_secret (COURIER_NOTIFICATIONS_TOKEN_SECRET)"),
        ));
    };
    let body = body.into_inner();
    let ttl = body.ttl.unwrap_or(Duration::from_secs(3600));
    if ttl.is_zero() || ttl > token::MAX_TTL {
        return Err(ApiError::bad_request(
            "ttl must be between 1s and 30d",
            json!({"ttl": courier_core::format_duration(ttl)}),
        ));
    }
    let claims = token::Claims {
        sid: body.session_id,
        sub: body.user_id,
        exp: token::expiry_in(ttl),
        sources: body.sources,
    };
    let minted = token::mint(secret, &claims)
        .map_err(|e| ApiError::bad_request("invalid token claims", json!(e.to_string())))?;
    let expires_at = chrono::DateTime::from_timestamp(claims.exp as i64, 0);
    Ok(HttpResponse::Created().json(ConnectionToken {
        token: minted,
        expires_at,
    }))
}

/// `/v1/notifications/subscriptions` body and query.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[schema(as = SourceSubscription, description = "A user and a source.")]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionBody {
    /// The user. 1 to 200 bytes, not blank, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    #[param(min_length = 1, max_length = 200)]
    pub user_id: String,
    /// The source. 1 to 200 bytes, not blank, no control characters.
    #[schema(min_length = 1, max_length = 200)]
    #[param(min_length = 1, max_length = 200)]
    pub source: String,
}

/// `POST /v1/notifications/subscriptions`: subscribes a user to a source (201 if
/// new, 200 if it already was).
#[utoipa::path(
    post, path = "/v1/notifications/subscriptions", operation_id = "subscribeSource", tag = "notifications",
    summary = "Subscribe a user to a source.",
    description = "201 when the subscription is new, 200 when it already existed. Every stream of the user receives the source's notifications from then on.",
    request_body(content = SubscriptionBody, example = json!({"user_id": "ada", "source": "orders"})),
    responses(
        (status = 201, description = "Subscribed.", body = SourceSubscriptionState, example = json!({"user_id": "ada", "source": "orders", "subscribed": true})),
        (status = 200, description = "Already subscribed.", body = SourceSubscriptionState, example = json!({"user_id": "ada", "source": "orders", "subscribed": true})),
        (status = 400, response = BadRequest),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn subscribe(http: web::Data<Http>, body: JsonObject<SubscriptionBody>) -> ApiResult<HttpResponse> {
    let added = http
        .courier()
        .notifications()
        .subscribe_source(&body.user_id, &body.source)
        .await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    let body = body.into_inner();
    Ok(HttpResponse::build(status).json(SourceSubscriptionState {
        user_id: body.user_id,
        source: body.source,
        subscribed: true,
    }))
}

/// `DELETE /v1/notifications/subscriptions?user_id=&source=`: unsubscribes (404 if
/// the user was not subscribed).
#[utoipa::path(
    delete, path = "/v1/notifications/subscriptions", operation_id = "unsubscribeSource", tag = "notifications",
    summary = "Unsubscribe a user from a source.",
    params(SubscriptionBody),
    responses(
        (status = 200, description = "Unsubscribed.", body = SourceSubscriptionState, example = json!({"user_id": "ada", "source": "orders", "subscribed": false})),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn unsubscribe(http: web::Data<Http>, query: web::Query<SubscriptionBody>) -> ApiResult<HttpResponse> {
    let removed = http
        .courier()
        .notifications()
        .unsubscribe_source(&query.user_id, &query.source)
        .await?;
    if !removed {
        return Err(ApiError::not_found(
            "subscription",
            format!("{}:{}", query.user_id, query.source),
        ));
    }
    let query = query.into_inner();
    Ok(HttpResponse::Ok().json(SourceSubscriptionState {
        user_id: query.user_id,
        source: query.source,
        subscribed: false,
    }))
}

/// `GET /v1/notifications/subscriptions?user_id=` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UserQuery {
    /// The user.
    #[param(min_length = 1, max_length = 200)]
    pub user_id: String,
}

/// `GET /v1/notifications/subscriptions?user_id=`: the sources a user is subscribed to.
#[utoipa::path(
    get, path = "/v1/notifications/subscriptions", operation_id = "listSourceSubscriptions", tag = "notifications",
    summary = "The sources a user is subscribed to.",
    params(UserQuery),
    responses(
        (status = 200, description = "The user's sources.", body = SourceSubscriptions, example = json!({"user_id": "ada", "sources": ["orders"]})),
        (status = 400, response = BadRequest),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn subscriptions(http: web::Data<Http>, query: web::Query<UserQuery>) -> ApiResult<HttpResponse> {
    check_key("user_id", &query.user_id).map_err(|e| ApiError::bad_request("invalid user_id", json!(e.0)))?;
    let sources = http.courier().notifications().user_sources(&query.user_id).await?;
    Ok(HttpResponse::Ok().json(SourceSubscriptions {
        user_id: query.into_inner().user_id,
        sources,
    }))
}

/// The token of a dismissal request (for clients that cannot set headers).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenQuery {
    /// The connection token, for clients that cannot set headers.
    pub token: Option<String>,
}

/// `DELETE /notifications/{id}`: dismisses one notification for the caller.
#[utoipa::path(
    delete, path = "/notifications/{id}", operation_id = "dismissNotification", tag = "notifications",
    summary = "Dismiss a notification for the caller.",
    description = "Hides it from the caller (the user when the connection has one, else the session) on every connection and device, and pushes a `dismissed` event to them. 404 for an unknown id, an ephemeral one, or one the caller cannot see; 409 for a timeseries one.",
    params(("id" = Uuid, Path, description = "The notification's id."), TokenQuery),
    security(("connection_token" = []), ("bearer" = []), ("anonymous_session" = [])),
    responses(
        (status = 200, description = "Dismissed.", body = NotificationDismissed, example = json!({"dismissed": "01a243aa-8f4c-744f-b279-6093bfa71411"})),
        (status = 401, response = NotSignedIn),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn dismiss(
    http: web::Data<Http>,
    req: HttpRequest,
    id: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> ApiResult<HttpResponse> {
    let viewer = identity::identify(&http, &req, query.token.as_deref(), false)
        .await?
        .viewer;
    let Ok(id) = id.parse::<Uuid>() else {
        return Err(not_found());
    };
    match http.courier().notifications().dismiss(&viewer, id).await? {
        Dismissal::Dismissed => Ok(HttpResponse::Ok().json(NotificationDismissed { dismissed: id })),
        Dismissal::NotDismissible => Err(ApiError::new(
            StatusCode::CONFLICT,
            "notification is not dismissible",
            json!({"id": id}),
        )),
        Dismissal::NotFound => Err(not_found()),
    }
}

/// `DELETE /notifications/group/{group}`: dismisses a group for the caller.
#[utoipa::path(
    delete, path = "/notifications/group/{group}", operation_id = "dismissNotificationGroup", tag = "notifications",
    summary = "Dismiss a group's notifications for the caller.",
    params(("group" = String, Path, description = "The group key.", min_length = 1, max_length = 200), TokenQuery),
    security(("connection_token" = []), ("bearer" = []), ("anonymous_session" = [])),
    responses(
        (status = 200, description = "What was dismissed.", body = NotificationGroupDismissed, example = json!({"dismissed_group": "order-77", "dismissed": ["01a243aa-8f4c-744f-b279-6093bfa71411"]})),
        (status = 400, response = BadRequest),
        (status = 401, response = NotSignedIn),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn dismiss_group(
    http: web::Data<Http>,
    req: HttpRequest,
    group: web::Path<String>,
    query: web::Query<TokenQuery>,
) -> ApiResult<HttpResponse> {
    let viewer = identity::identify(&http, &req, query.token.as_deref(), false)
        .await?
        .viewer;
    let group = group.into_inner();
    let ids = http.courier().notifications().dismiss_group(&viewer, &group).await?;
    Ok(HttpResponse::Ok().json(NotificationGroupDismissed {
        dismissed_group: group,
        dismissed: ids,
    }))
}

/// Clients whose last webhook authentication failed, and when.
#[derive(Default)]
pub(crate) struct Failures(Mutex<HashMap<IpAddr, Instant>>);

impl Failures {
    /// How long `client` must still wait, if it failed within `window`.
    fn wait(&self, client: IpAddr, window: Duration) -> Option<Duration> {
        let failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let at = failures.get(&client)?;
        window.checked_sub(at.elapsed()).filter(|left| !left.is_zero())
    }

    fn record(&self, client: IpAddr, window: Duration) {
        let mut failures = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: forget failures older than the window.
        if failures.len() > 10_000 {
            failures.retain(|_, at| at.elapsed() < window);
        }
        failures.insert(client, Instant::now());
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /notifications/webhook`: sends a notification on behalf of a backend
/// holding the webhook secret (202). 404 when no secret is configured; 401 on bad
/// authentication; 429 (with `Retry-After`) for a client whose authentication
/// failed within the window; 422 for a bad target.
#[utoipa::path(
    post, path = "/notifications/webhook", operation_id = "notificationWebhook", tag = "notifications",
    summary = "Send a notification from a backend holding the webhook secret.",
    description = "Seed 004's inbound webhook: the same body as `POST /v1/notifications`. 404 when `notifications.webhook_secret` is not set; after a failed authentication the client gets 429 for `notifications.webhook_failure_window`.",
    request_body(content = SendBody, example = json!({"target": "user", "user_id": "ada", "type": "order.shipped", "mode": "queued", "group": "order-77", "payload": {"title": "Your order shipped", "order": 77}})),
    security(("webhook_secret" = [])),
    responses(
        (status = 202, description = "Accepted.", body = NotificationAccepted, example = json!({"id": "01a243aa-8f4c-744f-b279-6093bfa71411", "type": "order.shipped", "suppressed": false})),
        (status = 400, response = BadRequest),
        (status = 401, response = WrongWebhookSecret),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 429, response = TooManyRequests),
        (status = 500, response = StoreError),
        (status = 503, response = Unavailable),
    )
)]
pub(crate) async fn webhook(http: web::Data<Http>, req: HttpRequest, body: web::Bytes) -> ApiResult<HttpResponse> {
    let options = &http.options().notifications;
    let Some(secret) = &options.webhook_secret else {
        return Err(not_found());
    };
    let client = req.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let window = options.webhook_failure_window;
    if let Some(wait) = http.webhook_failures().wait(client, window) {
        let retry_after = wait.as_secs().max(1);
        return Ok(HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", retry_after.to_string()))
            .json(json!({"error": "too many failed attempts", "detail": {"retry_after": retry_after}})));
    }
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string());
    if !presented.is_some_and(|token| !token.is_empty() && same(token.as_bytes(), secret.as_bytes())) {
        http.webhook_failures().record(client, window);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid webhook credentials",
            json!("send Authorization: Bearer <notifications.webhook_secret>"),
        ));
    }
    let body: SendBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request("invalid JSON body", json!(e.to_string())))?;
    match send(&http, body).await? {
        Some(record) => Ok(HttpResponse::Accepted().json(NotificationAccepted {
            id: Some(record.id),
            kind: Some(record.kind),
            suppressed: None,
        })),
        None => Ok(HttpResponse::Accepted().json(NotificationAccepted {
            id: None,
            kind: None,
            suppressed: Some(true),
        })),
    }
}
