//! Notifications for people across real `courier serve` processes: sent on A,
//! streamed on B and C, dismissed on C and gone from every stream of that user;
//! with Redis and with Postgres LISTEN/NOTIFY as the notifier. And a node killed
//! with `kill -9` while streaming: its clients reconnect to another node and miss
//! no stored notification.
//!
//! Stream polling does not exist for notifications (the hub is woken only by the
//! notifier), so a frame arriving on another node proves the notice crossed.

mod support;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use courier::http::notifications::token::{self, Claims};
use serde_json::{Value, json};
use support::cluster::*;
use support::http::*;

const SECRET: &str = "cluster-notification-secret";

fn redis() -> Notifier {
    Notifier::Redis(std::env::var("COURIER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
}

const ENV: &[(&str, &str)] = &[
    ("COURIER_NOTIFICATIONS_TOKEN_SECRET", SECRET),
    ("COURIER_NOTIFICATIONS_KEEPALIVE", "1s"),
];

fn token_for(session: &str, user: &str) -> String {
    token::mint(
        SECRET,
        &Claims {
            sid: session.into(),
            sub: Some(user.into()),
            exp: token::expiry_in(Duration::from_secs(600)),
            sources: Vec::new(),
        },
    )
    .expect("a token")
}

type Body = Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>>>;

/// An open notification stream and the ids it replayed before `sync`.
struct Stream {
    reader: SseReader<Body>,
    replayed: Vec<String>,
}

impl Stream {
    async fn open(node: &Node, token: &str) -> Stream {
        let response = client()
            .get(node.at(&format!("/notifications/stream?token={token}")))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("the stream opens");
        assert_eq!(response.status().as_u16(), 200, "{} refused the stream", node.name);
        let mut reader = SseReader::new(Box::pin(response) as Body);
        let mut replayed = Vec::new();
        loop {
            let frame = reader
                .next(Duration::from_secs(10))
                .await
                .expect("the replay ends with sync");
            match frame.event.as_deref() {
                Some("sync") => break,
                Some("notification") => replayed.push(frame.data["id"].as_str().expect("an id").to_string()),
                _ => {}
            }
        }
        Stream { reader, replayed }
    }

    /// The next notification envelope within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let frame = self.reader.next(wait).await?;
            if frame.event.as_deref() == Some("notification") {
                return Some(frame.data);
            }
        }
    }
}

async fn send(node: &Node, user: &str, message: &str) -> String {
    let (status, answer) = post(
        &node.at("/v1/notifications"),
        &json!({"target": "user", "user_id": user, "type": "generic",
                "payload": {"title": "Build", "message": message}}),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().expect("an id").to_string()
}

async fn sent_on_a_streamed_on_b_and_c_dismissed_on_c(notifier: Notifier) {
    let cluster = Cluster::start(&["a", "b", "c"], notifier, ENV, |_| Vec::new()).await;
    let (a, b, c) = (cluster.node("a"), cluster.node("b"), cluster.node("c"));
    // One user on three devices, each connected to a different node.
    let mut on_a = Stream::open(a, &token_for("phone", "ada")).await;
    let mut on_b = Stream::open(b, &token_for("laptop", "ada")).await;
    let phone_c = token_for("tablet", "ada");
    let mut on_c = Stream::open(c, &phone_c).await;
    // Someone else, who must see none of it.
    let mut other = Stream::open(b, &token_for("other", "bob")).await;

    let id = send(a, "ada", "deployed").await;
    for (name, stream) in [("a", &mut on_a), ("b", &mut on_b), ("c", &mut on_c)] {
        let envelope = stream
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the stream on {name} got nothing"));
        assert_eq!(envelope["id"], id, "on {name}");
        assert_eq!(envelope["payload"]["message"], "deployed");
    }

    let response = client()
        .delete(c.at(&format!("/notifications/{id}")))
        .insert_header(("Authorization", format!("Bearer {phone_c}")))
        .send()
        .await
        .expect("the dismissal answers");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    for (name, stream) in [("a", &mut on_a), ("b", &mut on_b), ("c", &mut on_c)] {
        let envelope = stream
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("the stream on {name} was not told of the dismissal"));
        assert_eq!(envelope["type"], "dismissed", "on {name}: {envelope}");
        assert_eq!(envelope["payload"]["notification_id"], id, "on {name}");
    }
    assert!(
        other.next(Duration::from_millis(500)).await.is_none(),
        "another user's stream sees nothing of it"
    );
    // Gone for every device of the user, on every node.
    for node in [a, b, c] {
        let again = Stream::open(node, &token_for("desktop", "ada")).await;
        assert!(
            again.replayed.is_empty(),
            "{} replays a dismissed notification",
            node.name
        );
    }
}

#[actix_rt::test]
async fn with_redis_a_notification_sent_on_a_reaches_b_and_c_and_a_dismissal_on_c_reaches_all() {
    sent_on_a_streamed_on_b_and_c_dismissed_on_c(redis()).await;
}

#[actix_rt::test]
async fn with_postgres_notify_a_notification_sent_on_a_reaches_b_and_c_and_a_dismissal_on_c_reaches_all() {
    sent_on_a_streamed_on_b_and_c_dismissed_on_c(Notifier::Postgres).await;
}

#[actix_rt::test]
async fn a_node_killed_while_streaming_loses_no_queued_notification() {
    let mut cluster = Cluster::start(&["a", "b", "c"], redis(), ENV, |_| Vec::new()).await;
    let token = token_for("laptop", "grace");
    let mut sent = BTreeSet::new();
    let mut seen = BTreeSet::new();
    {
        let mut on_b = Stream::open(cluster.node("b"), &token).await;
        for i in 0..5 {
            sent.insert(send(cluster.node("a"), "grace", &format!("before {i}")).await);
        }
        for _ in 0..5 {
            let envelope = on_b.next(Duration::from_secs(10)).await.expect("live on b");
            seen.insert(envelope["id"].as_str().expect("an id").to_string());
        }
        assert_eq!(seen, sent, "b streamed every notification live");
        cluster.node_mut("b").kill9();
    }
    // Sent while the client is between nodes.
    for i in 0..5 {
        sent.insert(send(cluster.node("a"), "grace", &format!("after {i}")).await);
    }
    let on_c = Stream::open(cluster.node("c"), &token).await;
    let replayed: BTreeSet<String> = on_c.replayed.iter().cloned().collect();
    assert_eq!(
        replayed, sent,
        "the reconnect to c replays everything stored and not dismissed"
    );
}
