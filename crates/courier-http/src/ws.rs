//! `GET /v1/ws`: the event log over WebSocket, and the `WsSession` actor that
//! owns each connection's actix-ws session.
//!
//! Client messages (JSON text): `{"type":"subscribe","id"?,"execution_id"?,
//! "task_id"?,"types"?,"after"?}` (with `after`, what was missed is replayed
//! first), `{"type":"unsubscribe","id"}`, `{"type":"ping"}` (→ `pong`). Events
//! arrive in seed 002's envelope `{"type","task_id","timestamp","data"}` plus
//! `seq`, `execution_id` and the `subscription` they match. The server pings
//! every `ws_ping` and drops a peer silent for `ws_timeout`. A client that stops
//! reading is sent `{"type":"lagged"}` once it reads again, and caught up from the
//! log; on shutdown it gets `{"type":"shutdown"}` and a close frame.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, ProtocolError};
use bytes::Bytes;
use courier_core::{Event, EventFilter, ExecutionId, TaskId};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Http;
use crate::error::ApiResult;
use crate::events::parse_types;
use crate::follow::{Applied, Follower};
use crate::tail::{Batch, Closing, Join, Leave};

/// Messages buffered towards the client before it counts as stalled.
const OUTBOX: usize = 256;
/// Largest frame accepted from a client.
const MAX_FRAME: usize = 64 * 1024;
/// Most subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 64;

/// Upgrades to a WebSocket.
pub(crate) async fn upgrade(http: web::Data<Http>, req: HttpRequest, body: web::Payload) -> ApiResult<HttpResponse> {
    let (response, session, messages) = actix_ws::handle(&req, body)
        .map_err(|e| crate::error::ApiError::bad_request("not a WebSocket handshake", json!(e.to_string())))?;
    let (out, rx) = mpsc::channel(OUTBOX);
    actix::spawn(write_loop(session.clone(), rx));
    let actor = WsSession {
        http: http.get_ref().clone(),
        session: Some(session),
        out,
        subs: HashMap::new(),
        next_sub: 0,
        tail_id: None,
        last_heard: Instant::now(),
        stalled: false,
    };
    let messages = messages.max_frame_size(MAX_FRAME);
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
    },
    Unsubscribe {
        id: String,
    },
    Ping,
}

struct Subscription {
    follower: Follower,
    catching_up: bool,
}

/// One WebSocket connection.
pub(crate) struct WsSession {
    http: Http,
    session: Option<actix_ws::Session>,
    out: mpsc::Sender<Outgoing>,
    subs: HashMap<String, Subscription>,
    next_sub: u64,
    tail_id: Option<u64>,
    last_heard: Instant,
    stalled: bool,
}

fn envelope(subscription: &str, event: &Event) -> String {
    json!({
        "type": event.event_type,
        "seq": event.seq,
        "subscription": subscription,
        "execution_id": event.execution_id,
        "task_id": event.task_id,
        "timestamp": event.timestamp,
        "data": event.data,
    })
    .to_string()
}

impl WsSession {
    fn send(&mut self, message: Outgoing, ctx: &mut Context<Self>) -> bool {
        match self.out.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stall(ctx);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                ctx.stop();
                false
            }
        }
    }

    fn reply(&mut self, value: Value, ctx: &mut Context<Self>) {
        self.send(Outgoing::Text(value.to_string()), ctx);
    }

    fn stall(&mut self, ctx: &mut Context<Self>) {
        if self.stalled {
            return;
        }
        self.stalled = true;
        metrics::counter!("courier_stream_lagged_total").increment(1);
        let out = self.out.clone();
        async move { out.reserve().await.map(drop).is_ok() }
            .into_actor(self)
            .map(|open, act, ctx| {
                if !open {
                    ctx.stop();
                    return;
                }
                act.stalled = false;
                act.reply(json!({"type": "lagged"}), ctx);
                let upto = act.http.tail_cursor();
                let ids: Vec<String> = act.subs.keys().cloned().collect();
                for id in ids {
                    act.catch_up(id, upto, ctx);
                }
            })
            .spawn(ctx);
    }

    /// Sends a subscription's events; at the first the client has no room for, its
    /// cursor goes back to just before it.
    fn emit(&mut self, id: &str, events: Vec<Event>, ctx: &mut Context<Self>) {
        for event in events {
            if !self.send(Outgoing::Text(envelope(id, &event)), ctx) {
                if let Some(sub) = self.subs.get_mut(id) {
                    sub.follower.cursor = event.seq - 1;
                }
                return;
            }
        }
    }

    fn catch_up(&mut self, id: String, upto: i64, ctx: &mut Context<Self>) {
        let Some(sub) = self.subs.get_mut(&id) else { return };
        if sub.catching_up || self.stalled {
            return;
        }
        sub.catching_up = true;
        let mut follower = sub.follower.clone();
        let store = self.http.courier().store().clone();
        async move {
            let result = follower.catch_up_page(&store, upto).await;
            (follower, result)
        }
        .into_actor(self)
        .map(move |(follower, result), act, ctx| {
            let Some(sub) = act.subs.get_mut(&id) else { return };
            sub.catching_up = false;
            match result {
                Ok((events, done)) => {
                    sub.follower = follower;
                    act.emit(&id, events, ctx);
                    if !done {
                        act.catch_up(id, upto, ctx);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "WebSocket catch-up failed; retrying");
                    ctx.run_later(Duration::from_millis(200), move |act, ctx| act.catch_up(id, upto, ctx));
                }
            }
        })
        .spawn(ctx);
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
                let existed = self.subs.remove(&id).is_some();
                self.reply(json!({"type": "unsubscribed", "id": id, "existed": existed}), ctx);
            }
            ClientMessage::Subscribe {
                id,
                execution_id,
                task_id,
                types,
                after,
            } => {
                let types = match parse_types(types.map(|t| t.join(",")).as_deref()) {
                    Ok(t) => t,
                    Err(e) => {
                        self.reply(json!({"type": "error", "error": e.error, "detail": e.detail}), ctx);
                        return;
                    }
                };
                if after.is_some_and(|a| a < 0)
                    || (self.subs.len() >= MAX_SUBSCRIPTIONS && id.as_ref().is_none_or(|i| !self.subs.contains_key(i)))
                {
                    self.reply(
                        json!({"type": "error", "error": "invalid subscription", "detail": "after must not be negative; at most 64 subscriptions"}),
                        ctx,
                    );
                    return;
                }
                let id = id.unwrap_or_else(|| {
                    self.next_sub += 1;
                    format!("s{}", self.next_sub)
                });
                let filter = EventFilter {
                    execution_id,
                    task_id,
                    types,
                    after: 0,
                    limit: 0,
                };
                match after {
                    Some(cursor) => self.start_subscription(id, filter, cursor, ctx),
                    // Live: from the log's head as of now (the tail may not have read it yet).
                    None => {
                        let store = self.http.courier().store().clone();
                        async move { store.last_event_seq().await }
                            .into_actor(self)
                            .map(move |head, act, ctx| match head {
                                Ok(head) => act.start_subscription(id, filter, head, ctx),
                                Err(e) => act.reply(
                                    json!({"type": "error", "error": "store unavailable", "detail": e.to_string()}),
                                    ctx,
                                ),
                            })
                            .spawn(ctx);
                    }
                }
            }
        }
    }

    /// Closes after what is queued; if the queue is full, at once.
    /// Adds a subscription at `cursor`, acknowledges it, and catches it up to the tail.
    fn start_subscription(&mut self, id: String, filter: EventFilter, cursor: i64, ctx: &mut Context<Self>) {
        self.subs.insert(
            id.clone(),
            Subscription {
                follower: Follower { filter, cursor },
                catching_up: false,
            },
        );
        self.reply(json!({"type": "subscribed", "id": id, "after": cursor}), ctx);
        let upto = self.http.tail_cursor();
        if upto > cursor {
            self.catch_up(id, upto, ctx);
        }
    }

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

impl Actor for WsSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.http.options().session_mailbox);
        metrics::gauge!("courier_ws_connections").increment(1.0);
        let join = Join {
            batches: ctx.address().recipient(),
            closing: ctx.address().recipient(),
        };
        self.http
            .tail()
            .send(join)
            .into_actor(self)
            .map(|joined, act, ctx| match joined {
                Ok(crate::tail::Joined { id, .. }) => act.tail_id = Some(id),
                Err(_) => ctx.stop(),
            })
            .spawn(ctx);
        let (ping, timeout) = (self.http.options().ws_ping, self.http.options().ws_timeout);
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
        metrics::gauge!("courier_ws_connections").decrement(1.0);
        if let Some(id) = self.tail_id {
            self.http.tail().do_send(Leave(id));
        }
    }
}

/// A frame from the client.
impl StreamHandler<Result<Message, ProtocolError>> for WsSession {
    fn handle(&mut self, frame: Result<Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match frame {
            Ok(Message::Text(text)) => self.on_text(&text, ctx),
            Ok(Message::Ping(bytes)) => {
                self.send(Outgoing::Pong(bytes), ctx);
            }
            Ok(Message::Pong(_)) | Ok(Message::Nop) | Ok(Message::Continuation(_)) => {}
            Ok(Message::Binary(_)) => self.reply(
                json!({"type": "error", "error": "binary frames are not supported", "detail": null}),
                ctx,
            ),
            Ok(Message::Close(_)) => self.close(None, ctx),
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
        if self.stalled {
            return;
        }
        let ids: Vec<String> = self.subs.keys().cloned().collect();
        for id in ids {
            if self.stalled {
                // Later subscriptions keep their cursors and catch up after the stall.
                return;
            }
            let Some(sub) = self.subs.get_mut(&id) else { continue };
            if sub.catching_up {
                continue;
            }
            match sub.follower.apply(&batch) {
                Applied::Emit(picked) => {
                    let events = picked.into_iter().map(|i| batch.events[i].clone()).collect();
                    self.emit(&id, events, ctx)
                }
                Applied::Gap { upto } => self.catch_up(id, upto, ctx),
            }
        }
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
