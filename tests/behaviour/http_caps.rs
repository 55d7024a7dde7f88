//! The HTTP surface's caps: open streams (`http.max_streams`), waiting
//! long-polls (`http.max_waiters`), subscriptions per WebSocket
//! (`http.max_ws_subscriptions`) and streamed event size
//! (`http.max_event_bytes`). Past a cap a request is refused with `Retry-After`
//! (never queued), the place comes back when the stream or wait ends, and every
//! refusal is counted on `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::http::*;
use crate::support::*;
use courier::Courier;
use courier::core::TaskError;
use courier::http::HttpOptions;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn server(options: HttpOptions) -> Server {
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity("echo", |_ctx, v: Value| async move { Ok::<_, TaskError>(v) })
        .worker(fast_worker());
    Server::start(builder, options).await
}

/// `courier_http_refused_total{reason}` as `/metrics` shows it (0 before the first).
async fn refused(s: &Server, reason: &str) -> f64 {
    let (status, text) = json_of(client().get(s.at("/metrics")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    let prefix = format!("courier_http_refused_total{{reason=\"{reason}\"}} ");
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Asserts a refusal: its status, a `Retry-After` of at least a second, and the JSON error body.
async fn assert_refused(
    response: awc::ClientResponse<impl futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin>,
    status: u16,
) -> Value {
    // Checked before the body is read: a stream let in would never end.
    assert_eq!(response.status().as_u16(), status);
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let (got, body) = json_of(response).await;
    assert_eq!(got, status, "{body}");
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {retry_after:?}");
    assert!(body["error"].is_string() && body.get("detail").is_some(), "{body}");
    body
}

async fn open_sse(
    s: &Server,
) -> awc::ClientResponse<impl futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin> {
    client()
        .get(s.at("/v1/events/stream"))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn streams_past_max_streams_get_503_with_retry_after_and_a_closed_one_makes_room() {
    let s = server(HttpOptions {
        max_streams: 3,
        sse_keepalive: Duration::from_millis(100),
        ..HttpOptions::default()
    })
    .await;
    let before = refused(&s, "streams").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = open_sse(&s).await;
        assert_eq!(response.status().as_u16(), 200);
        open.push(response);
    }
    let body = assert_refused(open_sse(&s).await, 503).await;
    assert_eq!(body["detail"]["limit"], 3, "{body}");
    // WebSockets and notification streams count in the same cap.
    match client().ws(s.at("/v1/ws")).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status.as_u16(), 503),
        other => panic!("a WebSocket past the cap: {:?}", other.map(|(r, _)| r.status())),
    }
    assert_refused(client().get(s.at("/notifications/stream")).send().await.unwrap(), 503).await;
    assert!(refused(&s, "streams").await >= before + 3.0);

    // Closing one stream gives its place back.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        let response = open_sse(&s).await;
        if response.status().as_u16() == 200 {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a closed stream's place comes back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_refused(open_sse(&s).await, 503).await;
    drop(open);
    drop(again);
    s.stop().await;
}

#[actix_rt::test]
async fn long_polls_past_max_waiters_get_429_with_retry_after_until_one_is_answered() {
    let s = server(HttpOptions {
        max_waiters: 2,
        ..HttpOptions::default()
    })
    .await;
    let before = refused(&s, "waiters").await;
    let claim = |wait: &str| json!({"worker_id": "w", "queues": ["nothing-here"], "wait": wait});
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (s.at("/v1/workers/claim"), claim("4s"));
            actix_rt::spawn(async move { post(&url, &body).await })
        })
        .collect();
    // Once both hogs wait, a third long-poll is refused at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refusal = client()
        .post(s.at("/v1/workers/claim"))
        .send_json(&claim("1s"))
        .await
        .unwrap();
    let body = assert_refused(refusal, 429).await;
    assert_eq!(body["detail"]["limit"], 2, "{body}");
    // A result's wait shares the cap; a claim without a wait does not wait, so passes.
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    assert_refused(
        client()
            .get(s.at(&format!("/v1/executions/{id}/result?wait=5s")))
            .send()
            .await
            .unwrap(),
        429,
    )
    .await;
    let (status, tasks) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "w", "queues": ["nothing-here"]}),
    )
    .await;
    assert_eq!((status, tasks), (200, json!([])));
    assert!(refused(&s, "waiters").await >= before + 2.0);

    // The hogs are answered when their wait runs out, and their places come back.
    for hog in hogs {
        assert_eq!(hog.await.unwrap(), (200, json!([])));
    }
    let (status, body) = post(&s.at("/v1/workers/claim"), &claim("100ms")).await;
    assert_eq!((status, body), (200, json!([])));
    s.stop().await;
}

async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(wait, ws.next()).await.ok()??.unwrap();
        match frame {
            awc::ws::Frame::Text(t) => return Some(serde_json::from_slice::<Value>(&t).unwrap()),
            awc::ws::Frame::Ping(p) => ws.send(awc::ws::Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
}

fn text(v: Value) -> awc::ws::Message {
    awc::ws::Message::Text(v.to_string().into())
}

#[actix_rt::test]
async fn a_flood_of_websocket_subscribes_never_exceeds_the_cap() {
    let s = server(HttpOptions::default()).await;
    let max = HttpOptions::default().max_ws_subscriptions;
    let before = refused(&s, "ws_subscriptions").await;
    let (_, mut ws) = client().ws(s.at("/v1/ws")).connect().await.unwrap();
    // Live subscribes (their starting point is read from the store) sent as
    // fast as the socket takes them, half with ids, half without.
    let flood = 3 * max;
    for i in 0..flood {
        let message = if i % 2 == 0 {
            json!({"type": "subscribe", "id": format!("sub-{i}")})
        } else {
            json!({"type": "subscribe"})
        };
        ws.send(text(message)).await.unwrap();
    }
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..flood {
        let answer = next_json(&mut ws, Duration::from_secs(10))
            .await
            .expect("every subscribe is answered");
        let kind = match answer["type"].as_str().unwrap() {
            "error" => answer["error"].as_str().unwrap().to_string(),
            other => other.to_string(),
        };
        *answers.entry(kind).or_default() += 1;
    }
    assert_eq!(answers.get("subscribed"), Some(&max), "{answers:?}");
    assert_eq!(
        answers.get("too many subscriptions"),
        Some(&(flood - max)),
        "{answers:?}"
    );
    assert!(refused(&s, "ws_subscriptions").await >= before + (flood - max) as f64);
    // Unsubscribing one makes room for exactly one more.
    ws.send(text(json!({"type": "unsubscribe", "id": "sub-0"})))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(10)).await.unwrap()["existed"],
        true
    );
    ws.send(text(json!({"type": "subscribe", "id": "late-1"})))
        .await
        .unwrap();
    ws.send(text(json!({"type": "subscribe", "id": "late-2"})))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(10)).await.unwrap()["type"],
        "subscribed"
    );
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(10)).await.unwrap()["error"],
        "too many subscriptions"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn resubscribing_one_id_runs_one_catch_up() {
    let s = server(HttpOptions::default()).await;
    let id = s.http.courier().dispatch("echo", json!("hi")).await.unwrap();
    s.http
        .courier()
        .wait_for(id, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let (_, mut ws) = client().ws(s.at("/v1/ws")).connect().await.unwrap();
    // The same id three times, replaying from the start, before any answer.
    for _ in 0..3 {
        ws.send(text(
            json!({"type": "subscribe", "id": "x", "execution_id": id, "after": 0}),
        ))
        .await
        .unwrap();
    }
    // And a live one twice.
    for _ in 0..2 {
        ws.send(text(
            json!({"type": "subscribe", "id": "live", "types": ["execution.completed"]}),
        ))
        .await
        .unwrap();
    }
    let mut acks = Vec::new();
    let mut already = Vec::new();
    let mut seqs = Vec::new();
    while let Some(message) = next_json(&mut ws, Duration::from_secs(2)).await {
        match message["type"].as_str().unwrap() {
            "subscribed" => acks.push(message["id"].as_str().unwrap().to_string()),
            "error" => {
                assert_eq!(message["error"], "already subscribed", "{message}");
                already.push(message["id"].as_str().unwrap().to_string());
            }
            _ => {
                assert_eq!(message["subscription"], "x", "{message}");
                seqs.push(message["seq"].as_i64().unwrap());
            }
        }
    }
    acks.sort();
    already.sort();
    assert_eq!(acks, ["live", "x"]);
    assert_eq!(already, ["live", "x", "x"]);
    let mut unique = seqs.clone();
    unique.dedup();
    assert_eq!(seqs, unique, "each event once, in order");
    assert!(seqs.len() >= 4, "the execution's events: {seqs:?}");
    s.stop().await;
}

#[actix_rt::test]
async fn events_larger_than_max_event_bytes_are_streamed_without_their_data() {
    let s = server(HttpOptions {
        max_event_bytes: 1000,
        ..HttpOptions::default()
    })
    .await;
    let before = refused(&s, "event_bytes").await;
    let last = append_silently(s.http.courier().store(), 2, 5000).await;
    let response = client()
        .get(s.at("/v1/events/stream?after=0"))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut reader = SseReader::new(response);
    let mut big = 0;
    loop {
        let frame = reader.next(Duration::from_secs(10)).await.expect("the events");
        if frame.event.as_deref() == Some("task.progress") {
            assert_eq!(frame.data["truncated"], true, "{}", frame.data);
            assert!(frame.data["bytes"].as_u64().unwrap() > 5000);
            big += 1;
        }
        if frame.id == Some(last) {
            break;
        }
    }
    assert_eq!(big, 2);
    assert!(refused(&s, "event_bytes").await >= before + 2.0);
    // The log keeps them whole.
    let (status, page) = get(&s.at(&format!("/v1/events?after={}", last - 1))).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.to_string().contains(&"x".repeat(5000)));
    s.stop().await;
}
