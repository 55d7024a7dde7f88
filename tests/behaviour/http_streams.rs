//! The event log streamed: SSE resumes with Last-Event-ID without missing an
//! event, a stalled SSE client never delays another, WebSocket subscribe /
//! resume / ping, and streams end with a final event on shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::http::*;
use crate::support::*;
use courier::Courier;
use courier::core::{Notice, TaskError};
use courier::http::HttpOptions;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

async fn server() -> Server {
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity("echo", |_ctx, v: Value| async move { Ok::<_, TaskError>(v) })
        .worker(fast_worker().max_concurrency(512));
    Server::start(builder, HttpOptions::default()).await
}

/// Appends `n` events with `size` bytes of data each, and announces them.
async fn append(s: &Server, n: usize, size: usize) -> i64 {
    let last = append_silently(s.http.courier().store(), n, size).await;
    s.http.courier().notifier().publish(vec![Notice::Events]).await.unwrap();
    last
}

async fn open_sse(
    url: String,
    last_event_id: Option<i64>,
) -> SseReader<impl futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin> {
    let mut request = client().get(url).timeout(Duration::from_secs(600));
    if let Some(id) = last_event_id {
        request = request.insert_header(("Last-Event-ID", id.to_string()));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("content-type").unwrap(), "text/event-stream");
    SseReader::new(response)
}

#[actix_rt::test]
async fn sse_reconnect_with_last_event_id_misses_none_of_1000_events() {
    let s = server().await;
    let mut first = open_sse(s.at("/v1/events/stream?after=0"), None).await;
    // Work starts while the client is connected: executions, their tasks, their events.
    let ids: Vec<_> = (0..200)
        .map(|i| s.http.courier().new_execution("echo", json!(i), &Default::default()))
        .collect();
    s.http.courier().dispatch_many(ids).await.unwrap();
    let mut seen = BTreeSet::new();
    let mut last = 0;
    while seen.len() < 300 {
        let frame = first.next(Duration::from_secs(20)).await.expect("events flow");
        // A frame without an id is a notice (`lagged` if this reader fell behind the burst).
        let Some(id) = frame.id else { continue };
        assert!(seen.insert(id), "event {id} delivered twice");
        last = id;
    }
    drop(first);
    // Events keep coming while the client is away.
    append(&s, 400, 10).await;
    let mut second = open_sse(s.at("/v1/events/stream"), Some(last)).await;
    let head = loop {
        let head = s.http.courier().store().last_event_seq().await.unwrap();
        let all_done = s
            .http
            .courier()
            .store()
            .count_executions(Some(courier::core::ExecutionState::Completed))
            .await
            .unwrap()
            == 200;
        if all_done {
            break head;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(head >= 1000, "at least 1000 events in the test: {head}");
    while seen.len() < head as usize {
        let frame = second.next(Duration::from_secs(20)).await.expect("the rest arrives");
        let Some(id) = frame.id else { continue };
        assert!(seen.insert(id), "event {id} delivered twice");
        assert!(frame.event.is_some());
    }
    assert_eq!(
        seen,
        (1..=head).collect::<BTreeSet<i64>>(),
        "no gap across the reconnect"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_stalled_sse_client_does_not_delay_another() {
    let s = server().await;
    // The stalled client connects and never reads.
    let stalled = client()
        .get(s.at("/v1/events/stream"))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    let mut reader = open_sse(s.at("/v1/events/stream"), None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Far more than the stalled client's socket buffers and mailbox can hold.
    let start = s.http.courier().store().last_event_seq().await.unwrap();
    let head = append(&s, 8000, 4000).await;
    let mut got = BTreeSet::new();
    loop {
        let frame = reader
            .next(Duration::from_secs(30))
            .await
            .expect("the reading client keeps getting events");
        if let Some(id) = frame.id {
            assert!(got.insert(id), "no duplicates");
        }
        if frame.id == Some(head) {
            break;
        }
    }
    assert_eq!(
        got,
        ((start + 1)..=head).collect::<BTreeSet<i64>>(),
        "the reading client got every event while the other stalled"
    );
    assert!(got.len() >= 8000);

    // The stalled client reads at last: it is told it lagged and catches up without a gap.
    let mut late = SseReader::new(stalled);
    let mut ids = Vec::new();
    let mut lagged = false;
    while ids.last() != Some(&head) {
        let frame = late
            .next(Duration::from_secs(60))
            .await
            .expect("the stalled client catches up");
        match frame.id {
            Some(id) => ids.push(id),
            None if frame.event.as_deref() == Some("lagged") => lagged = true,
            None => {}
        }
    }
    assert!(lagged, "the stalled client was told it lagged");
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no duplicates");
    assert_eq!(unique, ((start + 1)..=head).collect::<BTreeSet<i64>>(), "no gap");
    s.stop().await;
}

#[actix_rt::test]
async fn websocket_subscribe_resume_unsubscribe_and_ping() {
    let s = server().await;
    let id = s.http.courier().dispatch("echo", json!("hi")).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let (_, mut ws) = client().ws(s.at("/v1/ws")).connect().await.unwrap();
    let send = |v: Value| awc::ws::Message::Text(v.to_string().into());
    let next_json = async |ws: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>| loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        match frame {
            awc::ws::Frame::Text(t) => return serde_json::from_slice::<Value>(&t).unwrap(),
            awc::ws::Frame::Ping(p) => ws.send(awc::ws::Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    };

    ws.send(send(json!({"type": "ping"}))).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}));

    ws.send(send(
        json!({"type": "subscribe", "id": "mine", "execution_id": id, "after": 0}),
    ))
    .await
    .unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed");
    let mut types = Vec::new();
    let mut last_seq = 0;
    while types.last() != Some(&"execution.completed".to_string()) {
        let event = next_json(&mut ws).await;
        assert_eq!(event["subscription"], "mine");
        assert_eq!(event["execution_id"], json!(id));
        assert!(event["seq"].as_i64().unwrap() > last_seq, "in order");
        last_seq = event["seq"].as_i64().unwrap();
        types.push(event["type"].as_str().unwrap().to_string());
    }
    assert_eq!(types.first().map(String::as_str), Some("execution.created"));

    // Resume after a sequence number: only what came later.
    ws.send(send(json!({"type": "unsubscribe", "id": "mine"})))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    ws.send(send(
        json!({"type": "subscribe", "id": "again", "execution_id": id, "after": last_seq - 1}),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let replayed = next_json(&mut ws).await;
    assert_eq!(replayed["seq"], last_seq);
    assert_eq!(replayed["type"], "execution.completed");

    // Live events arrive on a subscription without a cursor.
    ws.send(send(
        json!({"type": "subscribe", "id": "live", "types": ["execution.completed"]}),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let other = s.http.courier().dispatch("echo", json!(2)).await.unwrap();
    let live = next_json(&mut ws).await;
    assert_eq!(live["subscription"], "live", "{live}");
    assert_eq!(live["execution_id"], json!(other));

    ws.send(send(json!({"type": "nonsense"}))).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");

    // Shutdown: a final message and a close frame.
    let http = s.http.clone();
    actix_rt::spawn(async move { http.shutdown().await });
    let mut closed = false;
    let mut shutdown_seen = false;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        match frame {
            awc::ws::Frame::Text(t) => {
                let v: Value = serde_json::from_slice(&t).unwrap();
                shutdown_seen |= v["type"] == "shutdown";
            }
            awc::ws::Frame::Close(_) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(shutdown_seen && closed, "shutdown message and close frame");
}

#[actix_rt::test]
async fn sse_streams_end_with_a_final_event_on_shutdown() {
    let s = server().await;
    let mut reader = open_sse(s.at("/v1/events/stream"), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let http = s.http.clone();
    actix_rt::spawn(async move { http.shutdown().await });
    let frame = reader.next(Duration::from_secs(10)).await.expect("a final event");
    assert_eq!(frame.event.as_deref(), Some("shutdown"));
    assert!(
        reader.next(Duration::from_secs(5)).await.is_none(),
        "then the stream ends"
    );
}

#[actix_rt::test]
async fn a_live_stream_starts_at_the_log_head_not_at_the_tails_position() {
    let s = server().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Committed without a notice: the tail has not read these yet.
    let before = append_silently(s.http.courier().store(), 1, 0).await;
    let mut reader = open_sse(s.at("/v1/events/stream"), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Now the tail reads the old event and hands it to every session it has.
    s.http.courier().notifier().publish(vec![Notice::Events]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let id = s.http.courier().dispatch("echo", json!("new")).await.unwrap();
    let first = reader.next(Duration::from_secs(10)).await.expect("an event");
    assert!(
        first.id.unwrap() > before,
        "an event from before the stream opened was sent: {first:?}"
    );
    assert_eq!(first.data["execution_id"], json!(id));
    s.stop().await;
}

#[actix_rt::test]
async fn a_websocket_from_a_foreign_page_is_refused() {
    let builder = Courier::builder().store(sqlite().await).worker(fast_worker());
    let s = Server::start(
        builder,
        HttpOptions {
            cors_origins: vec!["https://app.example".into()],
            ..HttpOptions::default()
        },
    )
    .await;
    let open = |origin: Option<String>| {
        let mut request = client().ws(s.at("/v1/ws"));
        if let Some(origin) = origin {
            request = request.origin(origin.as_str());
        }
        request.connect()
    };
    match open(Some("https://evil.example".into())).await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status.as_u16(), 403),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(_) => panic!("a foreign origin opened a WebSocket"),
    }
    let own = s.url.clone();
    for origin in [None, Some(own), Some("https://app.example".to_string())] {
        let (response, _) = open(origin.clone()).await.unwrap_or_else(|e| panic!("{origin:?}: {e}"));
        assert_eq!(response.status().as_u16(), 101, "{origin:?}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_fragmented_websocket_message_is_put_together() {
    use actix_http::ws::Item;
    use awc::ws::{Frame, Message};
    let s = server().await;
    let (_, mut ws) = client().ws(s.at("/v1/ws")).connect().await.unwrap();
    ws.send(Message::Continuation(Item::FirstText(bytes::Bytes::from_static(
        b"{\"type\":",
    ))))
    .await
    .unwrap();
    ws.send(Message::Continuation(Item::Continue(bytes::Bytes::from_static(b" "))))
        .await
        .unwrap();
    ws.send(Message::Continuation(Item::Last(bytes::Bytes::from_static(
        b"\"ping\"}",
    ))))
    .await
    .unwrap();
    let answer = loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer to the fragmented message")
            .unwrap()
            .unwrap();
        if let Frame::Text(text) = frame {
            break serde_json::from_slice::<Value>(&text).unwrap();
        }
    };
    assert_eq!(answer["type"], "pong", "{answer}");
    s.stop().await;
}

/// A database that lost commits it had acknowledged hands their sequence
/// numbers out again. The tail's cursor was past them, so the new events were
/// skipped as already seen; now the streams are told `reset` and the events
/// that reuse those numbers arrive.
#[actix_rt::test]
async fn when_the_logs_head_goes_back_streams_reset_and_miss_nothing_after() {
    let (store, schema) = postgres_in_schema().await;
    let builder = Courier::builder().store(store.clone()).worker(fast_worker());
    let s = Server::start(
        builder,
        HttpOptions {
            tail_poll: Duration::from_millis(100),
            ..HttpOptions::default()
        },
    )
    .await;
    let mut stream = open_sse(s.at("/v1/events/stream"), None).await;
    let head = append(&s, 10, 1).await;
    let mut last = 0;
    while last < head {
        let frame = stream
            .next(Duration::from_secs(10))
            .await
            .expect("the first events arrive");
        last = frame.id.unwrap_or(last);
    }
    // The database loses its last five commits' worth of events.
    let lost = head - 5;
    crate::support::cluster::psql(
        &postgres_url(),
        &format!(
            "UPDATE {schema}.courier_event_head SET last = {lost}; DELETE FROM {schema}.events WHERE seq > {lost};"
        ),
    );
    let reset = stream.next(Duration::from_secs(10)).await.expect("a reset is sent");
    assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
    assert_eq!(reset.data["seq"], lost);
    // New events take the lost numbers again, and arrive.
    let new_head = append(&s, 3, 1).await;
    assert!(
        new_head > lost && new_head <= head,
        "the numbers after {lost} are issued again: {new_head}"
    );
    let mut again = Vec::new();
    while again.last().copied().unwrap_or(0) < new_head {
        let frame = stream
            .next(Duration::from_secs(10))
            .await
            .expect("the reissued numbers arrive");
        again.extend(frame.id);
    }
    assert_eq!(again.first().copied(), Some(lost + 1), "{again:?}");
    let (_, metrics) = json_of(client().get(s.at("/metrics")).send().await.unwrap()).await;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("courier_event_log_resets_total 1")
    );
    s.stop().await;
}

/// Opens `/v1/events/stream` on a bare socket and reads until the stream's
/// first comment (`: connected`), checking it answered 200.
async fn open_raw_stream(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(": connected") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .expect("the stream opens")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
    socket
}

/// A stream whose client went away while it was still joining the log tail
/// (after its first bytes, before the tail's answer reached it) left its place
/// in the tail behind: the session stopped without knowing its id, so it never
/// left, and the place was held until the next event was broadcast.
#[actix_rt::test]
async fn an_sse_stream_closed_while_it_joins_leaves_nothing_behind() {
    let s = server().await;
    let addr = s.url.trim_start_matches("http://").to_string();
    for _ in 0..100 {
        // Gone at once, without waiting for the session to join.
        drop(open_raw_stream(&addr).await);
    }
    eventually(Duration::from_secs(5), "every stream has left the tail", || async {
        s.http.event_streams().await == 0
    })
    .await;
    s.stop().await;
}

/// An SSE stream whose client closed it was held (its socket and its session)
/// until the next keepalive found it gone, 15 s or more; thousands of quick
/// open/close cycles ran the node out of descriptors. Now it is let go at once.
#[actix_rt::test]
async fn an_sse_stream_whose_client_went_away_is_let_go_at_once() {
    let s = server().await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(open_raw_stream(&addr).await);
    }
    eventually(Duration::from_secs(5), "the streams have joined", || async {
        s.http.event_streams().await == 20
    })
    .await;
    drop(sockets);
    // Well before the next keepalive (15 s) would find them gone; 5 s leaves
    // room for a loaded test machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let open = s.http.event_streams().await;
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} SSE streams still held 5 s after their clients closed them"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

/// A poll or a stream by type over a long stretch of the log without a match
/// pages past it: the poll's empty page moves its cursor and says that more
/// follows, and the stream finds the match behind the stretch by itself.
#[actix_rt::test]
async fn a_read_by_type_pages_past_a_long_stretch_without_a_match() {
    let s = server().await;
    let stretch = 10_500;
    let after = append(&s, stretch, 10).await - stretch as i64;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    let poll = |after: i64| s.at(&format!("/v1/events?after={after}&type=execution.created&limit=10"));

    let (status, first) = get(&poll(after)).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["events"], json!([]), "{first}");
    assert_eq!(first["next"], json!(after + 10_000), "{first}");
    assert_eq!(first["has_more"], json!(true), "{first}");
    let (_, second) = get(&poll(after + 10_000)).await;
    let events = second["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{second}");
    assert_eq!(events[0]["execution_id"], json!(id), "{second}");
    assert!(second["next"].as_i64() >= events[0]["seq"].as_i64(), "{second}");
    assert_eq!(second["has_more"], json!(false), "{second}");

    let mut stream = open_sse(
        s.at(&format!("/v1/events/stream?after={after}&type=execution.created")),
        None,
    )
    .await;
    let frame = loop {
        let frame = stream
            .next(Duration::from_secs(20))
            .await
            .expect("the match is streamed");
        if frame.id.is_some() {
            break frame;
        }
    };
    assert_eq!(frame.id, events[0]["seq"].as_i64());
    assert_eq!(frame.data["execution_id"], json!(id), "{:?}", frame.data);
    s.stop().await;
}
