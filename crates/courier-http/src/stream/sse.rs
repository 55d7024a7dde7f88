//! `GET /v1/events/stream`: the event log as Server-Sent Events, and the
//! `SseSession` actor behind each connection.
//!
//! Frames follow seed 002: `id:` is the event's sequence number, `event:` its
//! type, `data:` its data with `task_id`, `execution_id`, `seq` and `timestamp`
//! added. `Last-Event-ID` (or `?after=`) replays what was missed, then the
//! stream goes live; without either it starts live. Keepalive comments flow
//! while idle. A client that stops reading is not waited for: its session stops
//! writing, and when the client reads again it is sent `event: lagged` and
//! caught up from the log. On shutdown the stream ends with `event: shutdown`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use courier_core::Event;
use courier_core::metric;
use futures::FutureExt;
use futures::future::LocalBoxFuture;
use serde_json::json;

use super::follow::Follower;
use super::session::{self, Core, Sent, Session};
use super::tail::{Batch, Closing};
use crate::Http;
use crate::caps::Slot;
use crate::error::{ApiError, ApiResult, BadRequest, TooManyStreams};
use crate::events::{EventFilters, filter_of};
use crate::outbox::{Receiver, Refused, Sender, outbox};
use crate::routes::Routes;

/// Frames buffered towards the client before its session counts it as stalled.
const OUTBOX: usize = 256;

/// The one feed of an SSE session.
const FEED: &str = "";

/// Adds the stream's route.
pub(crate) fn routes(routes: Routes) -> Routes {
    routes.add(__path_stream, stream)
}

/// Opens an SSE stream.
#[utoipa::path(
    get, path = "/v1/events/stream", operation_id = "streamEvents", tag = "events",
    summary = "The event log as Server-Sent Events.",
    description = "Frames: `id:` the sequence number, `event:` the type, `data:` the event's data with `seq`, `timestamp`, `execution_id`, `task_id` added. `Last-Event-ID` (or `after`) replays what was missed first; without either the stream starts live. Also `event: lagged` (the client fell behind and is caught up from the log) and `event: shutdown`.",
    params(
        EventFilters,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "Resume after this sequence number (overrides `after`)."),
    ),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = String, example = json!(": connected\n\nid: 7\nevent: execution.completed\ndata: {\"seq\":7,\"type\":\"execution.completed\",\"execution_id\":\"01a243aa-51ed-7100-ab64-49fdd32a4484\",\"timestamp\":\"2026-12-05T00:46:05.301Z\",\"data\":{}}\n\n")),
        (status = 400, response = BadRequest),
        (status = 503, response = TooManyStreams),
    )
)]
pub(crate) async fn stream(
    http: web::Data<Http>,
    req: HttpRequest,
    query: web::Query<EventFilters>,
) -> ApiResult<HttpResponse> {
    let mut filter = filter_of(&query)?;
    let resume = match req.headers().get("Last-Event-ID") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| ApiError::bad_request("invalid Last-Event-ID", json!(format!("{value:?}"))))?,
        ),
        None => query.after,
    };
    // The stream's place under `http.max_streams`, held by the response body: it
    // is given back when the connection ends.
    let slot = http.caps().stream()?;
    // A live stream starts at the log's head as of now, read before the client sees
    // the response: whatever it commits after that reaches it (live, or through the
    // session's gap check), and nothing from before does.
    filter.after = match resume {
        Some(after) => after,
        None => http.courier().store().last_event_seq().await?,
    };
    let (tx, rx) = outbox(OUTBOX);
    SseSession::new(http.get_ref().clone(), filter, tx).start();
    let body = Body { rx, _slot: slot };
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// A stream's body: the frames its session queued. Dropped when the connection
/// ends, which the session hears at once (its outbox closes), and which gives
/// the stream's place under `http.max_streams` back.
struct Body {
    rx: Receiver,
    _slot: Slot,
}

impl futures::Stream for Body {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

/// One SSE connection.
pub(crate) struct SseSession {
    core: Core,
    /// Where the feed starts (moved into the core when the session starts).
    start: Option<Follower>,
    tx: Sender,
    last_write: Instant,
}

impl SseSession {
    fn new(http: Http, filter: courier_core::EventFilter, tx: Sender) -> Self {
        let cursor = filter.after;
        SseSession {
            core: Core::new(http),
            start: Some(Follower { filter, cursor }),
            tx,
            last_write: Instant::now(),
        }
    }

    fn write(&mut self, chunk: Bytes) -> Sent {
        match self.tx.try_send(chunk) {
            Ok(()) => {
                self.last_write = Instant::now();
                Sent::Queued
            }
            Err(Refused::Full) => Sent::Full,
            Err(Refused::Closed) => Sent::Gone,
        }
    }
}

impl Session for SseSession {
    fn core(&mut self) -> &mut Core {
        &mut self.core
    }

    fn send_event(&mut self, _: &str, event: &Event, rendered: Option<&Bytes>) -> Sent {
        let frame = rendered.cloned().unwrap_or_else(|| super::frame::sse(event));
        self.write(frame)
    }

    fn send_lagged(&mut self, after: i64) -> Sent {
        self.write(Bytes::from(format!(
            "event: lagged\ndata: {}\n\n",
            json!({"after": after})
        )))
    }

    fn send_reset(&mut self, head: i64) -> Sent {
        self.write(Bytes::from(format!("event: reset\ndata: {}\n\n", json!({"seq": head}))))
    }

    fn room(&self) -> LocalBoxFuture<'static, bool> {
        let tx = self.tx.clone();
        async move { tx.room().await }.boxed_local()
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.http().options().session_mailbox);
        metrics::gauge!(metric::SSE_CONNECTIONS).increment(1.0);
        // The body is dropped as soon as the client goes away (the listener
        // watches the socket): stop then, not at the next keepalive.
        let tx = self.tx.clone();
        async move { tx.closed().await }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop())
            .spawn(ctx);
        // A first comment flushes the headers to the client at once.
        let sent = self.write(Bytes::from_static(b": connected\n\n"));
        session::settle(self, sent, ctx);
        if let Some(follower) = self.start.take() {
            session::add_feed(self, FEED.to_string(), follower, ctx);
        }
        session::join(self, ctx);
        let keepalive = self.core.http().options().sse_keepalive;
        ctx.run_interval(keepalive.min(Duration::from_secs(60)), move |act, ctx| {
            if act.tx.is_closed() {
                ctx.stop();
            } else if act.last_write.elapsed() >= keepalive && !act.core.stalled() {
                let sent = act.write(Bytes::from_static(b": keepalive\n\n"));
                session::settle(act, sent, ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::gauge!(metric::SSE_CONNECTIONS).decrement(1.0);
        session::leave(self);
    }
}

/// Live events from the tail.
impl Handler<Batch> for SseSession {
    type Result = ();

    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        session::on_batch(self, batch, ctx);
    }
}

/// Server shutdown: a final event, then close.
impl Handler<Closing> for SseSession {
    type Result = ();

    fn handle(&mut self, _: Closing, ctx: &mut Self::Context) {
        let after = self.core.cursor(FEED).unwrap_or(0);
        let _ = self.write(Bytes::from(format!(
            "event: shutdown\ndata: {}\n\n",
            json!({"after": after})
        )));
        ctx.stop();
    }
}
