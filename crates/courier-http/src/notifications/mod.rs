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
//! | `mod.rs` | the other routes, their bodies, and the options |

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
use courier_core::{
    Dismissal, NewNotification, NotificationFilter, NotificationMode, NotificationRecord, Target, check_key,
};
use courier_runtime::NotificationError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

pub use identity::{IdentityProvider, NotificationIdentity};

use crate::Http;
use crate::error::{ApiError, ApiResult};

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
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendBody {
    /// `session`, `user`, `source` or `broadcast`.
    pub target: String,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// The notification's type (`generic` toasts in the browser client).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub mode: Option<NotificationMode>,
    #[serde(default)]
    pub group: Option<String>,
    /// A JSON object.
    pub payload: Value,
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
fn sent_body(record: &NotificationRecord) -> Value {
    json!({
        "id": record.id,
        "type": record.kind,
        "mode": record.mode,
        "created_at": courier_core::epoch_seconds(record.created_at),
        "seq": record.seq,
    })
}

async fn send(http: &Http, body: SendBody) -> ApiResult<Option<NotificationRecord>> {
    let notification = body.into_notification()?;
    let sent = http.courier().notifications().send(notification).await?;
    Ok(sent.map(|s| s.notification))
}

/// `POST /v1/notifications`: sends a notification (201), or reports that a hook
/// suppressed it (200 `{"suppressed": true}`).
pub(crate) async fn create(http: web::Data<Http>, body: web::Json<SendBody>) -> ApiResult<HttpResponse> {
    match send(&http, body.into_inner()).await? {
        Some(record) => Ok(HttpResponse::Created().json(sent_body(&record))),
        None => Ok(HttpResponse::Ok().json(json!({"suppressed": true}))),
    }
}

/// `GET /v1/notifications` query.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    pub target: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub source: Option<String>,
    pub mode: Option<NotificationMode>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

/// `GET /v1/notifications`: stored notifications, newest first.
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
    let next = notifications.last().map(|n| n.seq);
    Ok(HttpResponse::Ok().json(json!({"notifications": notifications, "limit": limit, "next_before": next})))
}

/// `POST /v1/notifications/tokens` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    pub session_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default, with = "courier_core::serde_duration::option")]
    pub ttl: Option<Duration>,
}

/// `POST /v1/notifications/tokens`: mints a connection token (for apps that would
/// rather not sign JWTs themselves).
pub(crate) async fn mint_token(http: web::Data<Http>, body: web::Json<TokenBody>) -> ApiResult<HttpResponse> {
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
    Ok(HttpResponse::Created().json(json!({"token": minted, "expires_at": expires_at})))
}

/// `/v1/notifications/subscriptions` body and query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriptionBody {
    pub user_id: String,
    pub source: String,
}

/// `POST /v1/notifications/subscriptions`: subscribes a user to a source (201 if
/// new, 200 if it already was).
pub(crate) async fn subscribe(http: web::Data<Http>, body: web::Json<SubscriptionBody>) -> ApiResult<HttpResponse> {
    let added = http
        .courier()
        .notifications()
        .subscribe_source(&body.user_id, &body.source)
        .await?;
    let status = if added { StatusCode::CREATED } else { StatusCode::OK };
    Ok(HttpResponse::build(status).json(json!({"user_id": body.user_id, "source": body.source, "subscribed": true})))
}

/// `DELETE /v1/notifications/subscriptions?user_id=&source=`: unsubscribes (404 if
/// the user was not subscribed).
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
    Ok(HttpResponse::Ok().json(json!({"user_id": query.user_id, "source": query.source, "subscribed": false})))
}

/// `GET /v1/notifications/subscriptions?user_id=` query.
#[derive(Debug, Deserialize)]
pub(crate) struct UserQuery {
    pub user_id: String,
}

/// `GET /v1/notifications/subscriptions?user_id=`: the sources a user is subscribed to.
pub(crate) async fn subscriptions(http: web::Data<Http>, query: web::Query<UserQuery>) -> ApiResult<HttpResponse> {
    check_key("user_id", &query.user_id).map_err(|e| ApiError::bad_request("invalid user_id", json!(e.0)))?;
    let sources = http.courier().notifications().user_sources(&query.user_id).await?;
    Ok(HttpResponse::Ok().json(json!({"user_id": query.user_id, "sources": sources})))
}

/// The token of a dismissal request (for clients that cannot set headers).
#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    pub token: Option<String>,
}

/// `DELETE /notifications/{id}`: dismisses one notification for the caller.
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
        Dismissal::Dismissed => Ok(HttpResponse::Ok().json(json!({"dismissed": id}))),
        Dismissal::NotDismissible => Err(ApiError::new(
            StatusCode::CONFLICT,
            "notification is not dismissible",
            json!({"id": id}),
        )),
        Dismissal::NotFound => Err(not_found()),
    }
}

/// `DELETE /notifications/group/{group}`: dismisses a group for the caller.
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
    Ok(HttpResponse::Ok().json(json!({"dismissed_group": group, "dismissed": ids})))
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
        Some(record) => Ok(HttpResponse::Accepted().json(json!({"id": record.id, "type": record.kind}))),
        None => Ok(HttpResponse::Accepted().json(json!({"id": null, "suppressed": true}))),
    }
}
