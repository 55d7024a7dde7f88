//! `GET /notifications/stream`: a browser's notifications as Server-Sent Events.
//!
//! Phases: **flush** (every queued notification the viewer can see and has not
//! dismissed, and, after its cursor, the timeseries ones: oldest first, as
//! `event: notification` frames whose `id:` is the notification's sequence
//! number) → `event: sync` (its data: the viewer's `session_id` and `user_id`)
//! → **live** (new notifications, and `type: "dismissed"` envelopes when one is
//! dismissed for this subscriber or replaced by its group).
//! The cursor is `Last-Event-ID` (what `EventSource` sends on its own) or
//! `?since=<epoch seconds>`. When notifications after the cursor have expired
//! before the client came back, an `event: reset` frame comes first, so the
//! client knows the replay may be incomplete. `: keepalive` comments flow while
//! idle; `event: reconnect` asks a client that fell behind to reconnect (its
//! reconnect replays), `event: shutdown` says the server is stopping.

use std::collections::HashSet;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use courier_core::Cursor;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::hub::{GoLive, Join, Leave, NotificationHub, frame};
use super::identity::identify;
use crate::Http;
use crate::caps::Slot;
use crate::error::{ApiError, ApiResult, BadRequest, NotSignedIn, StoreError, TooManyStreams};
use crate::outbox::{Receiver, outbox};

/// Frames queued towards one client before it counts as not reading.
const OUTBOX: usize = 64;
/// Most notifications of each kind replayed on connect.
const REPLAY_LIMIT: u32 = 1000;

/// `GET /notifications/stream` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// The connection token, for clients that cannot set headers (such as `EventSource`).
    pub token: Option<String>,
    /// Replay timeseries notifications created after this (Unix seconds).
    #[param(minimum = 0, maximum = 100000000000.0)]
    pub since: Option<f64>,
}

fn cursor(req: &HttpRequest, since: Option<f64>) -> ApiResult<Option<Cursor>> {
    if let Some(value) = req.headers().get("Last-Event-ID") {
        let seq = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|v| *v >= 0)
            .ok_or_else(|| ApiError::bad_request("invalid Last-Event-ID", json!(format!("{value:?}"))))?;
        return Ok(Some(Cursor::Seq(seq)));
    }
    match since {
        None => Ok(None),
        Some(s) if (0.0..1e11).contains(&s) => {
            let micros = (s * 1_000_000.0) as i64;
            let at = chrono::DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| ApiError::bad_request("invalid since", json!(s)))?;
            Ok(Some(Cursor::Time(at)))
        }
        Some(s) => Err(ApiError::bad_request(
            "since must be Unix seconds (0 to 1e11)",
            json!(s),
        )),
    }
}

/// Opens a notification stream.
#[utoipa::path(
    get, path = "/notifications/stream", operation_id = "notificationStream", tag = "notifications",
    summary = "The caller's notifications as Server-Sent Events.",
    description = "Replays what the caller can see (queued notifications not dismissed; timeseries ones after the cursor: `Last-Event-ID` or `?since=`), sends `event: sync` (data: the caller's `session_id` and `user_id`), then streams live: `event: notification` frames whose data is the envelope (`type`, `id`, `mode`, `created_at`, `payload`, `group`) and whose `id:` is the sequence number, `type: \"dismissed\"` envelopes, `event: reset` when notifications after the cursor expired, `event: reconnect` and `event: shutdown`. Without tokens, the first connect sets an anonymous-session cookie.",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "The last sequence number received (what `EventSource` sends when it reconnects)."),
    ),
    security(("connection_token" = []), ("bearer" = []), ("anonymous_session" = [])),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = String, example = json!(": connected\n\nid: 24\nevent: order.shipped\ndata: {\"id\":\"01a243aa-8f4c-744f-b279-6093bfa71411\",\"type\":\"order.shipped\",\"payload\":{\"title\":\"Your order shipped\"}}\n\n")),
        (status = 400, response = BadRequest),
        (status = 401, response = NotSignedIn),
        (status = 500, response = StoreError),
        (status = 503, response = TooManyStreams),
    )
)]
pub(crate) async fn stream(
    http: web::Data<Http>,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> ApiResult<HttpResponse> {
    let identified = identify(&http, &req, query.token.as_deref(), true).await?;
    let cursor = cursor(&req, query.since)?;
    // Its place under `http.max_streams` (shared with the event streams), held
    // by the body until the connection ends.
    let slot = http.caps().stream()?;
    let viewer = identified.viewer;
    let notifications = http.courier().notifications();
    let user_sources = match &viewer.user {
        Some(user) => notifications.user_sources(user).await.map_err(ApiError::from)?,
        None => Vec::new(),
    };
    let (tx, rx) = outbox(OUTBOX);
    // A first comment flushes the headers to the client at once.
    let _ = tx.try_send(Bytes::from_static(b": connected\n\n"));
    let hub = http.notification_hub().clone();
    let member = hub
        .send(Join {
            viewer: viewer.clone(),
            user_sources,
            out: tx.clone(),
        })
        .await
        .map_err(|e| ApiError::unavailable("the notification hub is not running", json!(e.to_string())))?;

    // Flush, then go live; the hub buffers what arrives meanwhile.
    actix::spawn(async move {
        let replay = match notifications.replay(&viewer, cursor, REPLAY_LIMIT).await {
            Ok(replay) => replay,
            Err(e) => {
                tracing::warn!(error = %e, "could not read a notification replay; the client will reconnect");
                hub.do_send(Leave(member));
                let _ = tx
                    .send(frame(None, "reconnect", &json!({"reason": "unavailable"})))
                    .await;
                return;
            }
        };
        if replay.reset {
            let after = match cursor {
                Some(Cursor::Seq(seq)) => json!(seq),
                Some(Cursor::Time(at)) => json!(courier_core::epoch_seconds(at)),
                None => Value::Null,
            };
            let reset = json!({"reason": "notifications after the cursor expired", "after": after});
            if tx.send(frame(None, "reset", &reset)).await.is_err() {
                hub.do_send(Leave(member));
                return;
            }
        }
        let mut records: Vec<_> = replay.queued.into_iter().chain(replay.timeseries).collect();
        records.sort_by_key(|r| r.seq);
        let mut replayed = HashSet::with_capacity(records.len());
        for record in records {
            replayed.insert(record.id);
            if tx
                .send(frame(Some(record.seq), "notification", &record.envelope()))
                .await
                .is_err()
            {
                hub.do_send(Leave(member));
                return;
            }
        }
        // The sync frame tells the page who the server takes it for (its own
        // session id is otherwise hidden in an HttpOnly cookie).
        let whoami = json!({"session_id": viewer.session, "user_id": viewer.user});
        if tx.send(frame(None, "sync", &whoami)).await.is_err() {
            hub.do_send(Leave(member));
            return;
        }
        hub.do_send(GoLive { member, replayed });
    });

    let body = Outbox {
        rx,
        hub: http.notification_hub().clone(),
        member,
        _slot: slot,
    };
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"));
    if let Some(cookie) = identified.new_cookie {
        response.cookie(cookie);
    }
    Ok(response.streaming(body))
}

/// A stream's body: the frames queued for it. Dropped when the connection
/// ends, which tells the hub at once (rather than at its next keepalive) that
/// nobody reads this member any more.
struct Outbox {
    rx: Receiver,
    hub: actix::Addr<NotificationHub>,
    member: u64,
    _slot: Slot,
}

impl futures::Stream for Outbox {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.hub.do_send(Leave(self.member));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_comes_from_last_event_id_first_then_since() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Last-Event-ID", "42"))
            .to_http_request();
        assert_eq!(cursor(&req, Some(1.0)).unwrap(), Some(Cursor::Seq(42)));
        let req = actix_web::test::TestRequest::default().to_http_request();
        assert!(matches!(
            cursor(&req, Some(1_700_000_000.5)).unwrap(),
            Some(Cursor::Time(_))
        ));
        assert_eq!(cursor(&req, None).unwrap(), None);
        assert!(cursor(&req, Some(-1.0)).is_err());
        assert!(cursor(&req, Some(f64::NAN)).is_err());
        let bad = actix_web::test::TestRequest::default()
            .insert_header(("Last-Event-ID", "x"))
            .to_http_request();
        assert!(cursor(&bad, None).is_err());
    }
}
