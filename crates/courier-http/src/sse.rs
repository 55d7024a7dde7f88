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
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Http;
use crate::error::{ApiError, ApiResult};
use crate::events::filter_of;
use crate::follow::{Applied, Follower};
use crate::tail::{Batch, Closing, Join, Leave};
use crate::wire::EventsQuery;

/// Frames buffered towards the client before its session counts it as stalled.
const OUTBOX: usize = 256;

/// Opens an SSE stream.
pub(crate) async fn stream(
    http: web::Data<Http>,
    req: HttpRequest,
    query: web::Query<EventsQuery>,
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
    // A live stream starts at the log's head as of now, read before the client sees
    // the response: whatever it commits after that reaches it (live, or through the
    // session's gap check), and nothing from before does.
    filter.after = match resume {
        Some(after) => after,
        None => http.courier().store().last_event_seq().await?,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(OUTBOX);
    SseSession::new(http.get_ref().clone(), filter, tx).start();
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, actix_web::Error>(chunk), rx))
    });
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// One SSE connection.
pub(crate) struct SseSession {
    http: Http,
    follower: Follower,
    tx: mpsc::Sender<Bytes>,
    tail_id: Option<u64>,
    catching_up: bool,
    stalled: bool,
    last_write: Instant,
}

/// The SSE frame of an event.
pub(crate) fn frame(event: &Event) -> Bytes {
    let mut data = match &event.data {
        Value::Object(map) => map.clone(),
        other => {
            let mut map = serde_json::Map::new();
            map.insert("value".into(), other.clone());
            map
        }
    };
    data.insert("seq".into(), json!(event.seq));
    data.insert("timestamp".into(), json!(event.timestamp));
    if let Some(id) = event.execution_id {
        data.insert("execution_id".into(), json!(id));
    }
    if let Some(id) = event.task_id {
        data.insert("task_id".into(), json!(id));
    }
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq,
        event.event_type,
        Value::Object(data)
    ))
}

impl SseSession {
    fn new(http: Http, filter: courier_core::EventFilter, tx: mpsc::Sender<Bytes>) -> Self {
        let cursor = filter.after;
        SseSession {
            http,
            follower: Follower { filter, cursor },
            tx,
            tail_id: None,
            catching_up: false,
            stalled: false,
            last_write: Instant::now(),
        }
    }

    /// Queues a chunk for the client; false if it is not reading (stalled) or gone.
    fn write(&mut self, chunk: Bytes, ctx: &mut Context<Self>) -> bool {
        match self.tx.try_send(chunk) {
            Ok(()) => {
                self.last_write = Instant::now();
                true
            }
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

    /// The client is not reading: stop writing, and when it has room again tell it
    /// it lagged and catch it up from the log.
    fn stall(&mut self, ctx: &mut Context<Self>) {
        if self.stalled {
            return;
        }
        self.stalled = true;
        metrics::counter!("courier_stream_lagged_total").increment(1);
        let tx = self.tx.clone();
        async move { tx.reserve().await.is_ok() }
            .into_actor(self)
            .map(|open, act, ctx| {
                if !open {
                    ctx.stop();
                    return;
                }
                act.stalled = false;
                let notice = format!("event: lagged\ndata: {}\n\n", json!({"after": act.follower.cursor}));
                if act.write(Bytes::from(notice), ctx) {
                    let upto = act.http.tail_cursor();
                    act.catch_up(upto, ctx);
                }
            })
            .spawn(ctx);
    }

    /// Writes events in order; at the first one the client has no room for, the
    /// cursor goes back to just before it, so it is read from the log again later.
    fn emit(&mut self, events: Vec<Event>, ctx: &mut Context<Self>) {
        for event in events {
            if !self.write(frame(&event), ctx) {
                self.follower.cursor = event.seq - 1;
                return;
            }
        }
    }

    fn catch_up(&mut self, upto: i64, ctx: &mut Context<Self>) {
        if self.catching_up || self.stalled {
            return;
        }
        self.catching_up = true;
        let store = self.http.courier().store().clone();
        let mut follower = self.follower.clone();
        async move {
            let result = follower.catch_up_page(&store, upto).await;
            (follower, result)
        }
        .into_actor(self)
        .map(move |(follower, result), act, ctx| {
            act.catching_up = false;
            match result {
                Ok((events, done)) => {
                    act.follower = follower;
                    act.emit(events, ctx);
                    if !done && !act.stalled {
                        act.catch_up(upto, ctx);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "SSE catch-up failed; retrying");
                    ctx.run_later(Duration::from_millis(200), move |act, ctx| act.catch_up(upto, ctx));
                }
            }
        })
        .spawn(ctx);
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.http.options().session_mailbox);
        metrics::gauge!("courier_sse_connections").increment(1.0);
        // A first comment flushes the headers to the client at once.
        self.write(Bytes::from_static(b": connected\n\n"), ctx);
        let join = Join {
            batches: ctx.address().recipient(),
            closing: ctx.address().recipient(),
        };
        self.http
            .tail()
            .send(join)
            .into_actor(self)
            .map(|joined, act, ctx| match joined {
                Ok(crate::tail::Joined { id, cursor }) => {
                    act.tail_id = Some(id);
                    if cursor > act.follower.cursor {
                        act.catch_up(cursor, ctx);
                    }
                }
                Err(_) => ctx.stop(),
            })
            .spawn(ctx);
        let keepalive = self.http.options().sse_keepalive;
        ctx.run_interval(keepalive.min(Duration::from_secs(60)), move |act, ctx| {
            if act.tx.is_closed() {
                ctx.stop();
            } else if act.last_write.elapsed() >= keepalive && !act.stalled {
                act.write(Bytes::from_static(b": keepalive\n\n"), ctx);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::gauge!("courier_sse_connections").decrement(1.0);
        if let Some(id) = self.tail_id {
            self.http.tail().do_send(Leave(id));
        }
    }
}

/// Live events from the tail.
impl Handler<Batch> for SseSession {
    type Result = ();

    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        if self.catching_up || self.stalled || self.tail_id.is_none() {
            // Caught up later from the log.
            return;
        }
        match self.follower.apply(&batch) {
            Applied::Emit(picked) => {
                for i in picked {
                    if !self.write(batch.frames[i].clone(), ctx) {
                        self.follower.cursor = batch.events[i].seq - 1;
                        return;
                    }
                }
            }
            Applied::Gap { upto } => self.catch_up(upto, ctx),
        }
    }
}

/// Server shutdown: a final event, then close.
impl Handler<Closing> for SseSession {
    type Result = ();

    fn handle(&mut self, _: Closing, ctx: &mut Self::Context) {
        let _ = self.tx.try_send(Bytes::from(format!(
            "event: shutdown\ndata: {}\n\n",
            json!({"after": self.follower.cursor})
        )));
        ctx.stop();
    }
}
