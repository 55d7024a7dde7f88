//! Courier's own executions (webhook deliveries here) stay out of the public
//! event feeds: `GET /v1/events`, the SSE stream and WebSocket subscriptions show
//! them only when `internal=true` is asked for.

use std::time::Duration;

use crate::support::http::*;
use crate::support::receivers::Receiver;
use crate::support::*;
use courier::Courier;
use courier::core::TaskError;
use courier::http::{HttpOptions, WebhookOptions};
use courier::webhooks::destination::AllowList;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

fn is_internal(function: Option<&str>) -> bool {
    function.is_some_and(|f| f.starts_with("courier.webhook"))
}

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

async fn subscribe(s: &Server, message: Value) -> Ws {
    let (_, mut ws) = client().ws(s.at("/v1/ws")).connect().await.unwrap();
    ws.send(awc::ws::Message::Text(message.to_string().into()))
        .await
        .unwrap();
    ws
}

/// Every event envelope a WebSocket sends within `wait` of quiet.
async fn drain_ws(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let mut got = Vec::new();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(wait, ws.next()).await {
        match frame {
            awc::ws::Frame::Text(t) => got.push(serde_json::from_slice::<Value>(&t).unwrap()),
            awc::ws::Frame::Ping(p) => ws.send(awc::ws::Message::Pong(p)).await.unwrap(),
            _ => {}
        }
    }
    got
}

#[actix_rt::test]
async fn webhook_delivery_events_are_hidden_from_public_feeds_unless_asked_for() {
    let receiver = Receiver::start(Duration::ZERO).await;
    let builder = Courier::builder()
        .store(sqlite().await)
        .activity("echo", |_ctx, v: Value| async move { Ok::<_, TaskError>(v) })
        .worker(fast_worker());
    let options = HttpOptions {
        webhooks: WebhookOptions {
            poll: Duration::from_millis(100),
            // The receiver listens on loopback.
            allow_private: AllowList::parse(&["127.0.0.1/32"]).unwrap(),
            secret_keys: webhook_secret_keys(),
            ..WebhookOptions::default()
        },
        ..HttpOptions::default()
    };
    let s = Server::start(builder, options).await;
    let (status, hook) = post(
        &s.at("/v1/webhooks"),
        &json!({"url": receiver.at("/hook"), "event_types": ["execution.completed"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let open = |query: &'static str| {
        let url = s.at(&format!("/v1/events/stream?after=0{query}"));
        async move {
            let response = client().get(url).timeout(Duration::from_secs(60)).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            SseReader::new(response)
        }
    };
    let mut public_sse = open("").await;
    let mut internal_sse = open("&internal=true").await;
    let mut public_ws = subscribe(&s, json!({"type": "subscribe", "id": "p", "after": 0})).await;
    let mut internal_ws = subscribe(
        &s,
        json!({"type": "subscribe", "id": "i", "after": 0, "internal": true}),
    )
    .await;

    let id = s.http.courier().dispatch("echo", json!("hi")).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(20), "the webhook was delivered", || {
        let got = !receiver.received().is_empty();
        async move { got }
    })
    .await;
    // The delivery's own events, once it completed.
    let mut internal_events = Vec::new();
    eventually(Duration::from_secs(20), "the delivery's events are logged", || {
        let url = s.at("/v1/events?after=0&limit=1000&internal=true");
        async move {
            let (status, page) = get(&url).await;
            assert_eq!(status, 200, "{page}");
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["type"] == "execution.completed" && is_internal(e["data"]["function"].as_str()))
        }
    })
    .await;
    let (_, page) = get(&s.at("/v1/events?after=0&limit=1000&internal=true")).await;
    for e in page["events"].as_array().unwrap() {
        if is_internal(e["data"]["function"].as_str()) {
            assert_eq!(e["internal"], true, "{e}");
            internal_events.push(e["seq"].as_i64().unwrap());
        }
    }
    assert!(!internal_events.is_empty());

    let (status, page) = get(&s.at("/v1/events?after=0&limit=1000")).await;
    assert_eq!(status, 200, "{page}");
    let public: Vec<&Value> = page["events"].as_array().unwrap().iter().collect();
    assert!(public.iter().any(|e| e["execution_id"] == json!(id)), "{page}");
    for e in &public {
        assert!(
            !internal_events.contains(&e["seq"].as_i64().unwrap()),
            "internal event in the public poll: {e}"
        );
        assert!(e.get("internal").is_none(), "{e}");
    }
    // Naming the delivery's execution is asking to see it.
    let delivery_execution = page_of_internal(&s).await;
    let (_, named) = get(&s.at(&format!("/v1/events?execution_id={delivery_execution}"))).await;
    assert!(!named["events"].as_array().unwrap().is_empty(), "{named}");

    let sse_functions = |frames: Vec<SseFrame>| {
        frames
            .into_iter()
            .filter_map(|f| f.data["function"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let read_sse = async |reader: &mut SseReader<_>| {
        let mut frames = Vec::new();
        while let Some(frame) = reader.next(Duration::from_millis(1500)).await {
            frames.push(frame);
        }
        frames
    };
    let public_functions = sse_functions(read_sse(&mut public_sse).await);
    assert!(public_functions.iter().any(|f| f == "echo"), "{public_functions:?}");
    assert!(
        !public_functions.iter().any(|f| is_internal(Some(f))),
        "{public_functions:?}"
    );
    let internal_functions = sse_functions(read_sse(&mut internal_sse).await);
    assert!(
        internal_functions.iter().any(|f| is_internal(Some(f))),
        "{internal_functions:?}"
    );

    let ws_functions = |got: Vec<Value>| {
        got.into_iter()
            .filter_map(|v| v["data"]["function"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let public_functions = ws_functions(drain_ws(&mut public_ws, Duration::from_millis(1500)).await);
    assert!(public_functions.iter().any(|f| f == "echo"), "{public_functions:?}");
    assert!(
        !public_functions.iter().any(|f| is_internal(Some(f))),
        "{public_functions:?}"
    );
    let internal_functions = ws_functions(drain_ws(&mut internal_ws, Duration::from_millis(1500)).await);
    assert!(
        internal_functions.iter().any(|f| is_internal(Some(f))),
        "{internal_functions:?}"
    );
    s.stop().await;
}

/// The id of a webhook delivery's execution, from the internal poll.
async fn page_of_internal(s: &Server) -> String {
    let (_, page) = get(&s.at("/v1/events?after=0&limit=1000&internal=true")).await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| is_internal(e["data"]["function"].as_str()))
        .and_then(|e| e["execution_id"].as_str())
        .unwrap()
        .to_string()
}
