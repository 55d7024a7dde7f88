//! Notifications for people over HTTP, on one node: every row of seed 004's mode
//! table, group replacement live and on reconnect, dismissal across two sessions
//! of one user, who may read and dismiss what (tokens, forged and expired ones,
//! other secrets, someone else's notification), the inbound webhook's status
//! codes, expiry, `?since=` and `Last-Event-ID` replay, and zero-config sessions.

use std::time::Duration;

use crate::support::http::*;
use crate::support::*;
use courier::Courier;
use courier::NotificationOptions;
use courier::core::{NotificationTtl, Target};
use courier::http::notifications::token::{self, Claims};
use courier::http::{HttpOptions, NotificationHttpOptions};
use serde_json::{Value, json};

const SECRET: &str = "test-token-secret";
const HOOK: &str = "test-webhook-secret";

async fn server_with(notifications: NotificationHttpOptions, ttl: NotificationTtl) -> Server {
    let builder = Courier::builder()
        .store(sqlite().await)
        .notifications(NotificationOptions {
            ttl,
            cleanup_interval: Duration::from_millis(200),
        })
        .maintenance(fast_maintenance())
        .worker(fast_worker());
    let options = HttpOptions {
        notifications,
        ..HttpOptions::default()
    };
    Server::start(builder, options).await
}

async fn server() -> Server {
    server_with(
        NotificationHttpOptions {
            token_secret: Some(SECRET.into()),
            webhook_secret: Some(HOOK.into()),
            ..NotificationHttpOptions::default()
        },
        NotificationTtl::default(),
    )
    .await
}

fn token_for(session: &str, user: Option<&str>, sources: &[&str]) -> String {
    token::mint(
        SECRET,
        &Claims {
            sid: session.into(),
            sub: user.map(str::to_string),
            exp: token::expiry_in(Duration::from_secs(600)),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        },
    )
    .unwrap()
}

/// A response body as the SSE reader takes it.
type Body = std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>>>>;

/// An open stream, its replay up to `sync`, and the frames seen.
struct Stream {
    reader: SseReader<Body>,
    /// The frames before `sync`.
    replay: Vec<SseFrame>,
    /// Who the server takes the connection for: the `sync` frame's data.
    viewer: Value,
}

impl Stream {
    async fn open(s: &Server, query: &str, headers: &[(&str, String)]) -> Stream {
        let mut request = client()
            .get(s.at(&format!("/notifications/stream{query}")))
            .timeout(Duration::from_secs(600));
        for (name, value) in headers {
            request = request.insert_header((*name, value.clone()));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "stream refused");
        let body: Body = Box::pin(response);
        let mut reader = SseReader::new(body);
        let mut replay = Vec::new();
        let viewer = loop {
            let frame = reader
                .next(Duration::from_secs(10))
                .await
                .expect("the replay ends with sync");
            if frame.event.as_deref() == Some("sync") {
                break frame.data;
            }
            replay.push(frame);
        };
        Stream { reader, replay, viewer }
    }

    async fn with_token(s: &Server, token: &str) -> Stream {
        Stream::open(s, &format!("?token={token}"), &[]).await
    }

    /// The next notification frame within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<SseFrame> {
        loop {
            let frame = self.reader.next(wait).await?;
            if frame.event.as_deref() == Some("notification") {
                return Some(frame);
            }
        }
    }

    /// Asserts nothing arrives for a while.
    async fn quiet(&mut self) {
        if let Some(frame) = self.next(Duration::from_millis(400)).await {
            panic!("unexpected frame: {frame:?}");
        }
    }
}

fn replayed_ids(stream: &Stream) -> Vec<String> {
    stream
        .replay
        .iter()
        .filter(|f| f.event.as_deref() == Some("notification"))
        .map(|f| f.data["id"].as_str().unwrap().to_string())
        .collect()
}

async fn send(s: &Server, body: Value) -> Value {
    let (status, answer) = post(&s.at("/v1/notifications"), &body).await;
    assert_eq!(status, 201, "{answer}");
    answer
}

async fn delete(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = client().delete(url);
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    json_of(request.send().await.unwrap()).await
}

fn generic(target: &str, key_field: &str, key: &str, mode: &str) -> Value {
    json!({"target": target, key_field: key, "type": "generic", "mode": mode,
           "payload": {"title": format!("{mode} for {key}"), "message": "hello"}})
}

#[actix_rt::test]
async fn each_mode_is_stored_replayed_and_dismissed_as_seed_004_says() {
    let s = server().await;
    let alice = token_for("s1", Some("alice"), &[]);
    let mut live = Stream::with_token(&s, &alice).await;
    assert!(live.replay.is_empty());

    let queued = send(&s, generic("user", "user_id", "alice", "queued")).await;
    let series = send(&s, generic("user", "user_id", "alice", "timeseries")).await;
    let ephemeral = send(&s, generic("user", "user_id", "alice", "ephemeral")).await;
    let broadcast = send(
        &s,
        json!({"target": "broadcast", "type": "news", "mode": "queued", "payload": {"n": 1}}),
    )
    .await;
    assert_eq!(
        broadcast["mode"], "ephemeral",
        "a broadcast is ephemeral whatever was asked"
    );
    // Live: all four, in order, with seed 004's envelope.
    for expected in [&queued, &series, &ephemeral, &broadcast] {
        let frame = live.next(Duration::from_secs(5)).await.expect("delivered live");
        assert_eq!(frame.data["id"], expected["id"]);
        assert_eq!(frame.id, expected["seq"].as_i64());
        assert!(frame.data["created_at"].is_f64());
        assert_eq!(frame.data["mode"], expected["mode"]);
    }
    drop(live);

    // Reconnect without a cursor: queued only.
    let plain = Stream::with_token(&s, &alice).await;
    assert_eq!(replayed_ids(&plain), vec![queued["id"].as_str().unwrap()]);
    // With a cursor from before them: queued, and the timeseries one after it.
    let from_start = Stream::open(
        &s,
        &format!("?token={alice}"),
        &[("Last-Event-ID", (queued["seq"].as_i64().unwrap() - 1).to_string())],
    )
    .await;
    assert_eq!(
        replayed_ids(&from_start),
        vec![queued["id"].as_str().unwrap(), series["id"].as_str().unwrap()]
    );
    let since = series["created_at"].as_f64().unwrap() - 0.5;
    let by_time = Stream::open(&s, &format!("?token={alice}&since={since}"), &[]).await;
    assert!(replayed_ids(&by_time).contains(&series["id"].as_str().unwrap().to_string()));

    // Dismissal: queued yes, timeseries 409, ephemeral and unknown 404.
    let at = |id: &Value| s.at(&format!("/notifications/{}", id.as_str().unwrap()));
    let (status, body) = delete(&at(&series["id"]), Some(&alice)).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("notification is not dismissible"))
    );
    let (status, body) = delete(&at(&ephemeral["id"]), Some(&alice)).await;
    assert_eq!((status, &body["error"]), (404, &json!("not found")));
    let (status, body) = delete(&at(&queued["id"]), Some(&alice)).await;
    assert_eq!((status, &body), (200, &json!({"dismissed": queued["id"]})));
    let after = Stream::with_token(&s, &alice).await;
    assert!(
        replayed_ids(&after).is_empty(),
        "a dismissed notification is not replayed"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_group_replaces_its_toast_live_and_on_reconnect() {
    let s = server().await;
    let bob = token_for("s1", Some("bob"), &[]);
    let mut live = Stream::with_token(&s, &bob).await;
    assert_eq!(live.viewer, json!({"session_id": "s1", "user_id": "bob"}));
    let step = |n: u32| {
        let s = &s;
        async move {
            send(
                s,
                json!({"target": "user", "user_id": "bob", "type": "generic", "group": "deploy",
                       "payload": {"title": "Deploying", "message": format!("step {n}/3")}}),
            )
            .await
        }
    };
    let first = step(1).await;
    let frame = live.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(frame.data["id"], first["id"]);
    assert_eq!(frame.data["group"], "deploy");
    // The replacement first, then the old one's dismissal: a client showing the
    // group in one place updates it there instead of removing and re-adding it.
    let second = step(2).await;
    let frame = live.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(frame.data["id"], second["id"]);
    let gone = live.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(gone.data["type"], "dismissed");
    assert_eq!(gone.data["payload"]["notification_id"], first["id"]);
    drop(live);
    let third = step(3).await;
    let again = Stream::with_token(&s, &bob).await;
    assert_eq!(replayed_ids(&again), vec![third["id"].as_str().unwrap()]);
    s.stop().await;
}

#[actix_rt::test]
async fn a_dismissal_in_one_session_of_a_user_reaches_the_other() {
    let s = server().await;
    let laptop = token_for("laptop", Some("carol"), &[]);
    let phone = token_for("phone", Some("carol"), &[]);
    let stranger = token_for("s9", Some("dave"), &[]);
    let sent = send(&s, generic("user", "user_id", "carol", "queued")).await;
    let mut on_laptop = Stream::with_token(&s, &laptop).await;
    let mut on_phone = Stream::with_token(&s, &phone).await;
    assert_eq!(replayed_ids(&on_phone), vec![sent["id"].as_str().unwrap()]);

    // Someone else cannot dismiss it (nor learn it exists).
    let url = s.at(&format!("/notifications/{}", sent["id"].as_str().unwrap()));
    assert_eq!(delete(&url, Some(&stranger)).await.0, 404);
    let (status, _) = delete(&url, Some(&laptop)).await;
    assert_eq!(status, 200);
    for stream in [&mut on_laptop, &mut on_phone] {
        let frame = stream
            .next(Duration::from_secs(5))
            .await
            .expect("the dismissal arrives");
        assert_eq!(frame.data["type"], "dismissed");
        assert_eq!(frame.data["payload"]["notification_id"], sent["id"]);
    }
    let later = Stream::with_token(&s, &phone).await;
    assert!(replayed_ids(&later).is_empty());

    // Dismiss by group.
    let grouped = send(
        &s,
        json!({"target": "user", "user_id": "carol", "type": "generic", "group": "upload", "payload": {}}),
    )
    .await;
    on_phone.next(Duration::from_secs(5)).await.unwrap();
    let (status, body) = delete(&s.at("/notifications/group/upload"), Some(&laptop)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dismissed_group"], "upload");
    let frame = on_phone.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(frame.data["payload"]["notification_id"], grouped["id"]);
    s.stop().await;
}

#[actix_rt::test]
async fn a_stream_reads_only_its_own_session_user_and_sources() {
    let s = server().await;
    let (status, _) = post(
        &s.at("/v1/notifications/subscriptions"),
        &json!({"user_id": "erin", "source": "blog:tech"}),
    )
    .await;
    assert_eq!(status, 201);
    let erin = token_for("s-erin", Some("erin"), &["news"]);
    let mut mine = Stream::with_token(&s, &erin).await;
    let mut other_session = Stream::with_token(&s, &token_for("s-other", None, &[])).await;
    let mut other_user = Stream::with_token(&s, &token_for("s-frank", Some("frank"), &[])).await;

    let expected = [
        send(&s, generic("session", "session_id", "s-erin", "queued")).await,
        send(&s, generic("user", "user_id", "erin", "queued")).await,
        send(&s, generic("source", "source", "blog:tech", "queued")).await,
        send(&s, generic("source", "source", "news", "queued")).await,
    ];
    send(&s, generic("source", "source", "sports", "queued")).await;
    for sent in &expected {
        let frame = mine.next(Duration::from_secs(5)).await.expect("erin's");
        assert_eq!(frame.data["id"], sent["id"]);
    }
    mine.quiet().await;
    other_session.quiet().await;
    other_user.quiet().await;

    // Forged, expired, and other-secret tokens, and no token, are refused.
    let forged = {
        let mut parts: Vec<String> = erin.split('.').map(str::to_string).collect();
        parts[1] = base64_url(r#"{"sid":"s-erin","sub":"admin","exp":9999999999}"#);
        parts.join(".")
    };
    let expired = token::mint(
        SECRET,
        &Claims {
            sid: "s1".into(),
            sub: None,
            exp: (chrono::Utc::now().timestamp() - 5) as u64,
            sources: Vec::new(),
        },
    )
    .unwrap();
    let other_secret = token::mint(
        "not-the-secret",
        &Claims {
            sid: "s1".into(),
            sub: Some("erin".into()),
            exp: token::expiry_in(Duration::from_secs(60)),
            sources: Vec::new(),
        },
    )
    .unwrap();
    for (what, query) in [
        ("forged", format!("?token={forged}")),
        ("expired", format!("?token={expired}")),
        ("other secret", format!("?token={other_secret}")),
        ("none", String::new()),
    ] {
        let (status, body) = get(&s.at(&format!("/notifications/stream{query}"))).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
    }
    // A token in the Authorization header or the courier_token cookie works too.
    let response = client()
        .get(s.at("/notifications/stream"))
        .insert_header(("Cookie", format!("courier_token={erin}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    s.stop().await;
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[actix_rt::test]
async fn the_inbound_webhook_authenticates_throttles_and_validates() {
    let s = server().await;
    let url = s.at("/notifications/webhook");
    let body = json!({"target": "session", "session_id": "s1", "type": "generic", "payload": {"title": "hi"}});
    let call = |auth: Option<&str>, body: Value| {
        let url = url.clone();
        let auth = auth.map(str::to_string);
        async move {
            let mut request = client().post(url);
            if let Some(auth) = auth {
                request = request.insert_header(("Authorization", auth));
            }
            let response = request.send_json(&body).await.unwrap();
            let retry_after = response
                .headers()
                .get("Retry-After")
                .map(|v| v.to_str().unwrap().to_string());
            let (status, json) = json_of(response).await;
            (status, json, retry_after)
        }
    };
    let (status, answer, _) = call(Some(&format!("Bearer {HOOK}")), body.clone()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["type"], "generic");
    let (status, answer, _) = call(Some("bearer wrong"), body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    let (status, answer, retry_after) = call(Some(&format!("Bearer {HOOK}")), body.clone()).await;
    assert_eq!(
        status, 429,
        "a failure within the window throttles the client: {answer}"
    );
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    s.stop().await;

    let s = server().await;
    let url = s.at("/notifications/webhook");
    let bad_target = json!({"target": "planet", "type": "generic", "payload": {}});
    let response = client()
        .post(url.clone())
        .insert_header(("Authorization", format!("Bearer {HOOK}")))
        .send_json(&bad_target)
        .await
        .unwrap();
    assert_eq!(json_of(response).await.0, 422);
    s.stop().await;

    let unconfigured = server_with(NotificationHttpOptions::default(), NotificationTtl::default()).await;
    let (status, _) = post(&unconfigured.at("/notifications/webhook"), &body).await;
    assert_eq!(status, 404);
    unconfigured.stop().await;
}

#[actix_rt::test]
async fn notifications_expire_at_their_ttl_and_a_stale_cursor_is_told() {
    let s = server_with(
        NotificationHttpOptions {
            token_secret: Some(SECRET.into()),
            ..NotificationHttpOptions::default()
        },
        NotificationTtl {
            queued: Duration::from_secs(1),
            timeseries: Duration::from_secs(1),
        },
    )
    .await;
    let gina = token_for("s1", Some("gina"), &[]);
    let before = s.http.courier().store().last_event_seq().await.unwrap();
    send(&s, generic("user", "user_id", "gina", "queued")).await;
    send(&s, generic("user", "user_id", "gina", "timeseries")).await;
    let fresh = Stream::open(&s, &format!("?token={gina}"), &[("Last-Event-ID", before.to_string())]).await;
    assert_eq!(replayed_ids(&fresh).len(), 2);
    // Housekeeping runs every 200 ms here and sweeps them once expired.
    eventually(Duration::from_secs(10), "expired notifications are swept", || async {
        s.http
            .courier()
            .notifications()
            .list(&courier::core::NotificationFilter {
                target: Some(Target::User("gina".into())),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let stale = Stream::open(&s, &format!("?token={gina}"), &[("Last-Event-ID", before.to_string())]).await;
    assert_eq!(
        stale.replay.first().and_then(|f| f.event.as_deref()),
        Some("reset"),
        "{:?}",
        stale.replay
    );
    assert!(replayed_ids(&stale).is_empty());
    s.stop().await;
}

#[actix_rt::test]
async fn zero_config_streams_get_an_anonymous_session_cookie() {
    let s = server_with(NotificationHttpOptions::default(), NotificationTtl::default()).await;
    let response = client()
        .get(s.at("/notifications/stream"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("an anonymous session")
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("courier_nid="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().to_string();
    let session = value
        .trim_start_matches("courier_nid=")
        .split('.')
        .next()
        .unwrap()
        .to_string();
    drop(response);

    let sent = send(&s, generic("session", "session_id", &session, "queued")).await;
    let with_cookie = Stream::open(&s, "", &[("Cookie", value.clone())]).await;
    assert_eq!(replayed_ids(&with_cookie), vec![sent["id"].as_str().unwrap()]);
    // The cookie dismisses; a tampered one is a stranger.
    let url = s.at(&format!("/notifications/{}", sent["id"].as_str().unwrap()));
    let tampered = format!("courier_nid={session}.{}", "0".repeat(64));
    let response = client()
        .delete(url.clone())
        .insert_header(("Cookie", tampered))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response).await.0, 401);
    let response = client()
        .delete(url)
        .insert_header(("Cookie", value))
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(response).await.0, 200);
    // Tokens need a secret.
    let (status, _) = get(&s.at("/notifications/stream?token=abc")).await;
    assert_eq!(status, 401);
    s.stop().await;
}

#[actix_rt::test]
async fn the_api_mints_tokens_inspects_and_refuses_bad_bodies() {
    let s = server().await;
    let (status, minted) = post(
        &s.at("/v1/notifications/tokens"),
        &json!({"session_id": "s1", "user_id": "hank", "sources": ["news"], "ttl": "10m"}),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let claims = token::verify(SECRET, minted["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub.as_deref(), Some("hank"));
    let stream = Stream::with_token(&s, minted["token"].as_str().unwrap()).await;
    assert!(stream.replay.is_empty());

    send(&s, generic("user", "user_id", "hank", "queued")).await;
    let (status, listed) = get(&s.at("/v1/notifications?target=user&user_id=hank")).await;
    assert_eq!(status, 200);
    assert_eq!(listed["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(listed["notifications"][0]["payload"]["message"], "hello");

    for (body, expected) in [
        (
            json!({"target": "user", "user_id": "hank", "type": "generic", "payload": [1]}),
            400,
        ),
        (json!({"target": "user", "type": "generic", "payload": {}}), 422),
        // An id the target does not use, or an invalid one, is refused, not ignored.
        (
            json!({"target": "user", "user_id": "hank", "source": "", "type": "generic", "payload": {}}),
            422,
        ),
        (
            json!({"target": "user", "user_id": "hank", "session_id": "s1", "type": "generic", "payload": {}}),
            422,
        ),
        (
            json!({"target": "user", "user_id": "hank", "type": "generic", "payload": {}, "extra": 1}),
            400,
        ),
        (
            json!({"target": "user", "user_id": "hank", "type": "generic",
                   "payload": {"x": "y".repeat(70_000)}}),
            413,
        ),
    ] {
        let (status, answer) = post(&s.at("/v1/notifications"), &body).await;
        assert_eq!(status, expected, "{answer}");
        assert!(answer["error"].is_string());
    }
    // A filter is never silently dropped: an id without its target, or empty, is a 400.
    for query in [
        "user_id=",
        "user_id=hank",
        "target=source&user_id=hank",
        "target=user&user_id=",
    ] {
        let (status, answer) = get(&s.at(&format!("/v1/notifications?{query}"))).await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    let (status, _) = post(
        &s.at("/v1/notifications/tokens"),
        &json!({"session_id": "s1", "ttl": "365d"}),
    )
    .await;
    assert_eq!(status, 400);
    s.stop().await;
}

/// The embedding app's own sign-in, by a header (examples/notification_identity.rs
/// does the same with a cookie).
struct ByHeader;

impl courier::http::NotificationIdentity for ByHeader {
    fn identify(&self, req: &actix_web::HttpRequest) -> Option<courier::core::Viewer> {
        let user = req.headers().get("x-app-user")?.to_str().ok()?.to_string();
        Some(courier::core::Viewer {
            user: Some(user.clone()),
            ..courier::core::Viewer::session(format!("{user}-web"))
        })
    }
}

#[actix_rt::test]
async fn an_app_can_plug_in_its_own_identity_instead_of_tokens() {
    let s = server_with(
        NotificationHttpOptions {
            // Even with a token secret, the app's identity decides.
            token_secret: Some(SECRET.into()),
            identity: Some(courier::http::IdentityProvider(std::sync::Arc::new(ByHeader))),
            ..NotificationHttpOptions::default()
        },
        NotificationTtl::default(),
    )
    .await;
    let for_ivy = send(&s, generic("user", "user_id", "ivy", "queued")).await;
    let for_jon = send(&s, generic("user", "user_id", "jon", "queued")).await;
    let ivy = Stream::open(&s, "", &[("x-app-user", "ivy".to_string())]).await;
    assert_eq!(
        replayed_ids(&ivy),
        vec![for_ivy["id"].as_str().unwrap()],
        "ivy reads only hers"
    );

    // Nobody signed in (a token does not help: the app decides) → 401.
    let response = client()
        .get(s.at(&format!(
            "/notifications/stream?token={}",
            token_for("s1", Some("ivy"), &[])
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // Ivy cannot dismiss Jon's; she can dismiss hers.
    let dismiss = |id: &Value, user: &str| {
        client()
            .delete(s.at(&format!("/notifications/{}", id.as_str().unwrap())))
            .insert_header(("x-app-user", user.to_string()))
            .send()
    };
    assert_eq!(json_of(dismiss(&for_jon["id"], "ivy").await.unwrap()).await.0, 404);
    assert_eq!(json_of(dismiss(&for_ivy["id"], "ivy").await.unwrap()).await.0, 200);
    let again = Stream::open(&s, "", &[("x-app-user", "ivy".to_string())]).await;
    assert!(replayed_ids(&again).is_empty());
    s.stop().await;
}

/// A stream opened over a bare socket, read up to its `sync` frame: the
/// answer's head and what came after it.
async fn raw_stream(s: &Server, request: &str) -> (tokio::net::TcpStream, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.url.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&seen).contains("event: sync") {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
            .await
            .expect("the stream reaches sync in time")
            .unwrap();
        assert!(n > 0, "closed before sync: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(seen).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (socket, head.to_lowercase(), body.to_string())
}

#[actix_rt::test]
async fn a_stream_whose_client_went_away_is_let_go_at_once() {
    let s = server().await;
    let token = token_for("s-gone", Some("u-gone"), &[]);
    let request = format!("GET /notifications/stream?token={token} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(raw_stream(&s, &request).await.0);
    }
    assert_eq!(s.http.notification_streams().await, 20);
    drop(sockets);
    // Long before the next keepalive (15 s by default) would find them gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let open = s.http.notification_streams().await;
        if open == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} streams still held 2 s after their clients closed them"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_stream_is_chunked_for_http_11_and_close_delimited_for_http_10() {
    let s = server().await;
    let token = token_for("s-framing", None, &[]);
    let (_socket, head, body) = raw_stream(
        &s,
        &format!("GET /notifications/stream?token={token} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    // Each frame is one chunk: its size in hex, then the frame.
    assert!(
        body.starts_with(&format!("{:x}\r\n: connected\n\n\r\n", ": connected\n\n".len())),
        "{body:?}"
    );

    let (_socket, head, body) =
        raw_stream(&s, &format!("GET /notifications/stream?token={token} HTTP/1.0\r\n\r\n")).await;
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(body.starts_with(": connected\n\nevent: sync\n"), "{body:?}");
    s.stop().await;
}

#[actix_rt::test]
async fn a_bad_stream_request_gets_the_json_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = server().await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let answer = |request: Vec<u8>| {
        let addr = addr.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
            // The server may answer (and close) before it has read everything.
            let _ = socket.write_all(&request).await;
            let mut text = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut text)).await;
            String::from_utf8_lossy(&text).into_owned()
        }
    };
    // A forged token: the app's own 401, framed by the direct path.
    let text = answer(b"GET /notifications/stream?token=forged HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"], "invalid connection token");

    let mut huge = b"GET /notifications/stream HTTP/1.1\r\nCookie: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let text = answer(huge).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"], "the request head is too large");

    let text = answer(b"GET /notifications/stream HTTP/1.1\r\nBad Header\r\n\r\n".to_vec()).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // And the rest of the API on the same port is untouched.
    let (status, _) = get(&s.at("/healthz")).await;
    assert_eq!(status, 200);
    s.stop().await;
}
