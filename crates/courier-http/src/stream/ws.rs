//! `GET /v1/ws`: the event log over WebSocket, and the `WsSession` actor that
//! owns each connection's actix-ws session.
//!
//! Client messages (JSON text): `{"type":"subscribe","id"?,"execution_id"?,
//! "task_id"?,"types"?,"after"?,"internal"?}` (with `after`, what was missed is
//! replayed first; `internal` as for `GET /v1/events`), `{"type":"unsubscribe","id"}`, `{"type":"ping"}` (→ `pong`).
//! A connection holds at most `http.max_ws_subscriptions` subscriptions, counted
//! the moment a subscribe is read (before its starting point is looked up); an
//! id already in use is answered `already subscribed` and keeps its one feed. Events
//! arrive in seed 002's envelope `{"type","task_id","timestamp","data"}` plus
//! `seq`, `execution_id` and the `subscription` they match. The server pings
//! every `ws_ping` and drops a peer silent for `ws_timeout`. A client that stops
//! reading is sent `{"type":"lagged"}` once it reads again, and caught up from the
//! log; on shutdown it gets `{"type":"shutdown"}` and a close frame.

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use bytes::Bytes;
use courier_core::metric;
use courier_core::{Event, EventFilter, ExecutionId, TaskId};
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::follow::Follower;
use super::session::{self, Core, Sent, Session};
use super::tail::{Batch, Closing};
use crate::Http;
use crate::caps::{Slot, refused};
use crate::error::{ApiResult, BadRequest, Forbidden, TooManyStreams};
use crate::events::parse_types;
use crate::routes::Routes;

/// Messages buffered towards the client before it counts as stalled.
const OUTBOX: usize = 256;
/// Largest frame accepted from a client.
const MAX_FRAME: usize = 64 * 1024;

/// Adds the WebSocket's route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_upgrade, upgrade)
}

/// A browser opens a WebSocket to any site and sends its cookies along, and
/// CORS does not apply to WebSockets: the `Origin` is the only defence. Allowed:
/// no `Origin` (not a browser), this node's own origin (the `Host` asked for),
/// or one listed in `http.cors_origins` (`*`: any).
fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), crate::error::ApiError> {
    let Some(origin) = req.headers().get(actix_web::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
    let host = req.connection_info().host().to_string();
    let same_site = origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host));
    if same_site
        || allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return Ok(());
    }
    Err(crate::error::ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "origin not allowed",
        json!({"origin": origin, "hint": "add it to http.cors_origins"}),
    ))
}

/// Upgrades to a WebSocket.
#[utoipa::path(
    get, path = "/v1/ws", operation_id = "eventsWebSocket", tag = "events",
    summary = "The event log over a WebSocket.",
    description = "Client messages: `{\"type\":\"subscribe\",\"id\"?,\"execution_id\"?,\"task_id\"?,\"types\"?,\"after\"?}`, `{\"type\":\"unsubscribe\",\"id\"}`, `{\"type\":\"ping\"}`. Server messages: events (`type`, `seq`, `execution_id`, `task_id`, `timestamp`, `data`, `subscription`), `pong`, `lagged`, `shutdown`, `error` (`too many subscriptions` past `http.max_ws_subscriptions`, `already subscribed` for an id in use).",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol."),
        (status = 400, response = BadRequest),
        (status = 403, response = Forbidden),
        (status = 503, response = TooManyStreams),
    )
)]
pub(crate) async fn upgrade(http: web::Data<Http>, req: HttpRequest, body: web::Payload) -> ApiResult<HttpResponse> {
    check_origin(&req, &http.options().cors_origins)?;
    // The connection's place under `http.max_streams`, held by its session actor.
    let slot = http.caps().stream()?;
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| crate::error::ApiError::bad_request("not a WebSocket handshake", json!(e.to_string())))?;
    let (out, rx) = mpsc::channel(OUTBOX);
    actix::spawn(write_loop(session.clone(), rx));
    let actor = WsSession {
        core: Core::new(http.get_ref().clone()),
        session: Some(session),
        out,
        next_sub: 0,
        pending: HashMap::new(),
        last_heard: Instant::now(),
        _slot: slot,
    };
    // A message may come in fragments (continuation frames): they are put
    // together, up to the same bound as one frame.
    let messages = messages
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME);
    WsSession::create(move |ctx| {
        ctx.add_stream(messages);
        actor
    });
    Ok(response)
}

/// What the writer sends to the peer.
enum Outgoing {
    Text(String),
    Pong(Bytes),
    Ping,
    /// Close after everything queued before it.
    Close(Option<CloseReason>),
}

/// Writes queued messages to the peer, in order, until it goes away.
async fn write_loop(mut session: actix_ws::Session, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(message) = rx.recv().await {
        let sent = match message {
            Outgoing::Text(text) => session.text(text).await,
            Outgoing::Pong(bytes) => session.pong(&bytes).await,
            Outgoing::Ping => session.ping(b"courier").await,
            Outgoing::Close(reason) => {
                let _ = session.close(reason).await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// A message from the client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        execution_id: Option<ExecutionId>,
        #[serde(default)]
        task_id: Option<TaskId>,
        #[serde(default)]
        types: Option<Vec<String>>,
        #[serde(default)]
        after: Option<i64>,
        #[serde(default)]
        internal: Option<bool>,
    },
    Unsubscribe {
        id: String,
    },
    Ping,
}

/// One WebSocket connection; each subscription is a feed of its session core.
pub(crate) struct WsSession {
    core: Core,
    session: Option<actix_ws::Session>,
    out: mpsc::Sender<Outgoing>,
    next_sub: u64,
    /// Subscriptions accepted whose starting point (the log's head) is still
    /// being read, each with its own number (an id unsubscribed and subscribed
    /// again meanwhile starts only its newest subscription): they count towards
    /// the cap and their ids are taken.
    pending: HashMap<String, u64>,
    last_heard: Instant,
    _slot: Slot,
}

impl WsSession {
    fn queue(&mut self, message: Outgoing) -> Sent {
        match self.out.try_send(message) {
            Ok(()) => Sent::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Sent::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
        }
    }

    fn send(&mut self, message: Outgoing, ctx: &mut Context<Self>) -> bool {
        let sent = self.queue(message);
        session::settle(self, sent, ctx)
    }

    fn reply(&mut self, value: Value, ctx: &mut Context<Self>) {
        self.send(Outgoing::Text(value.to_string()), ctx);
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                self.reply(
                    json!({"type": "error", "error": "invalid message", "detail": e.to_string()}),
                    ctx,
                );
                return;
            }
        };
        match message {
            ClientMessage::Ping => self.reply(json!({"type": "pong"}), ctx),
            ClientMessage::Unsubscribe { id } => {
                // A pending one is dropped too: its head, once read, starts nothing.
                let existed = self.core.remove_feed(&id) | self.pending.remove(&id).is_some();
                self.reply(json!({"type": "unsubscribed", "id": id, "existed": existed}), ctx);
            }
            ClientMessage::Subscribe {
                id,
                execution_id,
                task_id,
                types,
                after,
                internal,
            } => {
                let types = match parse_types(types.map(|t| t.join(",")).as_deref()) {
                    Ok(t) => t,
                    Err(e) => {
                        self.reply(json!({"type": "error", "error": e.error, "detail": e.detail}), ctx);
                        return;
                    }
                };
                if after.is_some_and(|a| a < 0) {
                    self.reply(
                        json!({"type": "error", "error": "invalid subscription", "detail": "after must not be negative"}),
                        ctx,
                    );
                    return;
                }
                // Checked and reserved here, synchronously, before anything is
                // awaited: a flood of subscribes cannot slip past the cap while
                // earlier ones wait for the log's head, and an id is never
                // started twice (which would run two catch-ups of one feed).
                if let Some(id) = &id
                    && self.taken(id)
                {
                    self.reply(
                        json!({"type": "error", "error": "already subscribed", "id": id, "detail": "unsubscribe it first to change its filter or cursor"}),
                        ctx,
                    );
                    return;
                }
                let max = self.core.http().options().max_ws_subscriptions;
                if self.core.feed_count() + self.pending.len() >= max {
                    refused("ws_subscriptions");
                    self.reply(
                        json!({"type": "error", "error": "too many subscriptions", "id": id, "detail": {"limit": max, "setting": "http.max_ws_subscriptions"}}),
                        ctx,
                    );
                    return;
                }
                let id = match id {
                    Some(id) => id,
                    None => loop {
                        self.next_sub += 1;
                        let id = format!("s{}", self.next_sub);
                        if !self.taken(&id) {
                            break id;
                        }
                    },
                };
                let filter = EventFilter {
                    execution_id,
                    task_id,
                    types,
                    after: 0,
                    limit: 0,
                    include_internal: internal.unwrap_or(execution_id.is_some() || task_id.is_some()),
                };
                match after {
                    Some(cursor) => self.start_subscription(id, filter, cursor, ctx),
                    // Live: from the log's head as of now (the tail may not have read it yet).
                    None => {
                        self.next_sub += 1;
                        let ticket = self.next_sub;
                        self.pending.insert(id.clone(), ticket);
                        let store = self.core.http().courier().store().clone();
                        async move { store.last_event_seq().await }
                            .into_actor(self)
                            .map(move |head, act, ctx| match head {
                                // Unless it was unsubscribed meanwhile.
                                Ok(head) if act.pending.get(&id) == Some(&ticket) => {
                                    act.pending.remove(&id);
                                    act.start_subscription(id, filter, head, ctx)
                                }
                                Ok(_) => {}
                                Err(_) if act.pending.get(&id) != Some(&ticket) => {}
                                Err(e) => {
                                    act.pending.remove(&id);
                                    act.reply(
                                        json!({"type": "error", "error": "store unavailable", "id": id, "detail": e.to_string()}),
                                        ctx,
                                    )
                                }
                            })
                            .spawn(ctx);
                    }
                }
            }
        }
    }

    /// Whether a subscription has this id (or is about to).
    fn taken(&self, id: &str) -> bool {
        self.core.has_feed(id) || self.pending.contains_key(id)
    }

    /// Adds a subscription at `cursor`, acknowledges it, and catches it up to the tail.
    fn start_subscription(&mut self, id: String, filter: EventFilter, cursor: i64, ctx: &mut Context<Self>) {
        self.reply(json!({"type": "subscribed", "id": id, "after": cursor}), ctx);
        session::add_feed(self, id, Follower { filter, cursor }, ctx);
    }

    /// Closes after what is queued; if the queue is full, at once.
    fn close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        if let Err(e) = self.out.try_send(Outgoing::Close(reason))
            && let (mpsc::error::TrySendError::Full(Outgoing::Close(reason)), Some(session)) = (e, self.session.take())
        {
            actix::spawn(async move {
                let _ = session.close(reason).await;
            });
        }
        ctx.stop();
    }
}

impl Session for WsSession {
    fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    fn send_event(&mut self, feed: &str, event: &Event, _: Option<&Bytes>) -> Sent {
        self.queue(Outgoing::Text(super::frame::ws(feed, event)))
    }

    fn send_lagged(&mut self, after: i64) -> Sent {
        self.queue(Outgoing::Text(json!({"type": "lagged", "after": after}).to_string()))
    }

    fn send_reset(&mut self, head: i64) -> Sent {
        self.queue(Outgoing::Text(json!({"type": "reset", "seq": head}).to_string()))
    }

    fn room(&self) -> LocalBoxFuture<'static, bool> {
        let out = self.out.clone();
        async move { out.reserve().await.map(drop).is_ok() }.boxed_local()
    }
}

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.http().options().session_mailbox);
        metrics::gauge!(metric::WS_CONNECTIONS).increment(1.0);
        session::join(self, ctx);
        let (ping, timeout) = (
            self.core.http().options().ws_ping,
            self.core.http().options().ws_timeout,
        );
        ctx.run_interval(ping, move |act, ctx| {
            if act.last_heard.elapsed() > timeout {
                tracing::debug!("dropping a silent WebSocket peer");
                act.close(Some(CloseReason::from((CloseCode::Away, "no pong"))), ctx);
            } else {
                act.send(Outgoing::Ping, ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::gauge!(metric::WS_CONNECTIONS).decrement(1.0);
        session::leave(self);
    }
}

/// A frame from the client.
impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, frame: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match frame {
            Ok(AggregatedMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(AggregatedMessage::Ping(bytes)) => {
                self.send(Outgoing::Pong(bytes), ctx);
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Binary(_)) => self.reply(
                json!({"type": "error", "error": "binary frames are not supported", "detail": null}),
                ctx,
            ),
            Ok(AggregatedMessage::Close(_)) => self.close(None, ctx),
            Err(ProtocolError::Io(e)) if e.to_string().contains("continuation size") => {
                // Said in the close frame, so the client knows why.
                self.close(
                    Some(CloseReason::from((CloseCode::Size, "message larger than 64 KiB"))),
                    ctx,
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket protocol error");
                self.close(Some(CloseReason::from((CloseCode::Protocol, "protocol error"))), ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Live events from the tail, for every subscription.
impl Handler<Batch> for WsSession {
    type Result = ();

    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        session::on_batch(self, batch, ctx);
    }
}

/// Server shutdown: a final message, then a close frame.
impl Handler<Closing> for WsSession {
    type Result = ();

    fn handle(&mut self, _: Closing, ctx: &mut Self::Context) {
        self.reply(json!({"type": "shutdown"}), ctx);
        self.close(
            Some(CloseReason::from((CloseCode::Restart, "server shutting down"))),
            ctx,
        );
    }
}
