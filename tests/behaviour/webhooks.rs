//! Webhooks end to end with a real receiver on loopback: both signatures verify,
//! retries follow the schedule and honour Retry-After, 410 disables the endpoint,
//! events skipped while it is disabled replay after enabling, exhausted
//! deliveries become dead letters that replay, and two nodes deliver each event once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::http::*;
use crate::support::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use courier::Courier;
use courier::core::{RetryPolicy, TaskError};
use courier::http::{HttpOptions, WebhookOptions};
use courier::webhooks::destination::AllowList;
use courier::webhooks::signing::{verify_seed, verify_standard};
use serde_json::{Value, json};

/// What the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer: a status, and a `Retry-After` value to send with it.
type Answer = (u16, Option<&'static str>);

/// A real HTTP receiver answering each request with the next scripted status
/// (the last one repeats), recording everything.
#[derive(Clone)]
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Vec<Answer>>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>) -> Receiver {
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(script));
        let (l, sc) = (log.clone(), script.clone());
        let server = HttpServer::new(move || {
            let (l, sc) = (l.clone(), sc.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (l, sc) = (l.clone(), sc.clone());
                async move {
                    l.lock().unwrap().push(Received {
                        headers: req
                            .headers()
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string()))
                            .collect(),
                        body: body.to_vec(),
                        at: Instant::now(),
                    });
                    let (status, retry_after) = {
                        let mut s = sc.lock().unwrap();
                        if s.len() > 1 { s.remove(0) } else { s[0] }
                    };
                    let mut response = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                    if let Some(after) = retry_after {
                        response.insert_header(("Retry-After", after));
                    }
                    response.body("receiver says hi")
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}/hook", server.addrs()[0]);
        actix_rt::spawn(server.run());
        Receiver { url, log, script }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    fn answer(&self, status: u16) {
        *self.script.lock().unwrap() = vec![(status, None)];
    }
}

fn options(schedule: &[u64]) -> HttpOptions {
    HttpOptions {
        webhooks: WebhookOptions {
            timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                schedule: schedule.iter().map(|ms| Duration::from_millis(*ms)).collect(),
                jitter: 0.0,
                ..RetryPolicy::webhook_schedule()
            },
            poll: Duration::from_millis(100),
            // The receivers listen on loopback.
            allow_private: AllowList::parse(&["127.0.0.1/32", "::1/128"]).unwrap(),
            ..WebhookOptions::default()
        },
        ..HttpOptions::default()
    }
}

async fn node(store: Arc<dyn courier::core::Store>, options: HttpOptions) -> Server {
    let builder = Courier::builder()
        .store(store)
        .activity("echo", |_ctx, v: Value| async move { Ok::<_, TaskError>(v) })
        .worker(fast_worker());
    Server::start(builder, options).await
}

async fn register(s: &Server, url: &str, types: &[&str]) -> Value {
    let (status, hook) = post(
        &s.at("/v1/webhooks"),
        &json!({"url": url, "event_types": types, "headers": {"X-Tenant": "acme"}}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"));
    hook
}

async fn deliveries(s: &Server, hook: &Value) -> Vec<Value> {
    let (status, body) = get(&s.at(&format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap()))).await;
    assert_eq!(status, 200, "{body}");
    body["deliveries"].as_array().unwrap().clone()
}

#[actix_rt::test]
async fn deliveries_carry_both_signatures_and_the_event() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let s = node(sqlite().await, options(&[100])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let secret = hook["secret"].as_str().unwrap();
    let id = s
        .http
        .courier()
        .dispatch("echo", json!({"hello": "world"}))
        .await
        .unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(20), "the receiver is called", || async {
        !receiver.received().is_empty()
    })
    .await;

    let got = &receiver.received()[0];
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["event_type"], "execution.completed");
    assert_eq!(body["execution_id"], json!(id));
    assert_eq!(body["data"]["result"], json!({"hello": "world"}));
    assert!(
        verify_seed(secret, &got.body, got.header("X-Webhook-Signature").unwrap()),
        "seed 002 signature"
    );
    let webhook_id = got.header("webhook-id").unwrap();
    let timestamp: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(
        verify_standard(
            secret,
            webhook_id,
            timestamp,
            &got.body,
            got.header("webhook-signature").unwrap()
        ),
        "Standard Webhooks signature"
    );
    assert!(!verify_seed(
        "whsec_d3Jvbmc=",
        &got.body,
        got.header("X-Webhook-Signature").unwrap()
    ));
    assert_eq!(got.header("X-Event-Type"), Some("execution.completed"));
    assert_eq!(got.header("X-Tenant"), Some("acme"), "custom headers are sent");
    assert_eq!(webhook_id, body["id"].as_str().unwrap());

    eventually(Duration::from_secs(10), "the delivery is recorded", || async {
        deliveries(&s, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    let d = &deliveries(&s, &hook).await[0];
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["attempt_log"][0]["status"], 200);
    assert_eq!(d["attempt_log"][0]["response"], "receiver says hi");
    let (_, listed) = get(&s.at("/v1/webhooks")).await;
    assert!(
        listed["webhooks"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_flaky_receiver_sees_retries_that_honour_retry_after() {
    let receiver = Receiver::start(vec![(503, Some("1")), (503, None), (200, None)]).await;
    // The unused last step makes the schedule's longest 1.5 s, the cap on Retry-After.
    let s = node(sqlite().await, options(&[50, 50, 1500])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(30), "three attempts", || async {
        receiver.received().len() == 3
    })
    .await;
    let got = receiver.received();
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(950),
        "Retry-After: 1 is honoured over the 50 ms schedule ({:?})",
        got[1].at - got[0].at
    );
    assert_eq!(
        got[0].header("webhook-id"),
        got[2].header("webhook-id"),
        "one message id across retries"
    );
    eventually(Duration::from_secs(10), "delivered", || async {
        deliveries(&s, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    let statuses: Vec<Value> = deliveries(&s, &hook).await[0]["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!(503), json!(503), json!(200)]);
    s.stop().await;
}

#[actix_rt::test]
async fn a_410_disables_the_webhook() {
    let receiver = Receiver::start(vec![(410, None)]).await;
    let s = node(sqlite().await, options(&[50, 50])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let hook_url = s.at(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()));
    eventually(Duration::from_secs(20), "the webhook is disabled", || async {
        get(&hook_url).await.1["enabled"] == false
    })
    .await;
    let (_, disabled) = get(&hook_url).await;
    assert!(disabled["disabled_reason"].as_str().unwrap().contains("410"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "a 410 is not retried");
    let d = &deliveries(&s, &hook).await[0];
    assert_eq!(d["state"], "failed");

    // Later events are not delivered to a disabled webhook: they are recorded as skipped.
    let again = s.http.courier().dispatch("echo", json!(2)).await.unwrap();
    s.http.courier().wait_for(again, WAIT).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the later event is recorded as skipped",
        || async { deliveries(&s, &hook).await.len() == 2 },
    )
    .await;
    assert_eq!(deliveries(&s, &hook).await[0]["state"], "skipped");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);
    s.stop().await;
}

/// Replays `hook`'s skipped deliveries with `body`; the answer.
async fn replay_skipped(s: &Server, hook: &Value, body: &Value) -> (u16, Value) {
    post(
        &s.at(&format!("/v1/webhooks/{}/replay", hook["id"].as_str().unwrap())),
        body,
    )
    .await
}

#[actix_rt::test]
async fn events_skipped_while_disabled_are_replayed_after_enabling() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let s = node(sqlite().await, options(&[50])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    let hook_url = s.at(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()));
    let (status, _) = post(&format!("{hook_url}/disable"), &json!(null)).await;
    assert_eq!(status, 200);

    let mut executions = Vec::new();
    for n in 0..3 {
        let id = s.http.courier().dispatch("echo", json!(n)).await.unwrap();
        s.http.courier().wait_for(id, WAIT).await.unwrap();
        executions.push(id);
        // Apart in time, so `since` can tell them apart.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually(Duration::from_secs(10), "three skipped deliveries", || async {
        let listed = deliveries(&s, &hook).await;
        listed.len() == 3 && listed.iter().all(|d| d["state"] == "skipped" && d["attempts"] == 0)
    })
    .await;
    assert!(receiver.received().is_empty(), "nothing reaches a disabled webhook");

    // Replaying while disabled would only skip them again.
    let (status, refused) = replay_skipped(&s, &hook, &json!(null)).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"], "webhook is disabled");

    let (status, enabled) = post(&format!("{hook_url}/enable"), &json!(null)).await;
    assert_eq!((status, &enabled["enabled"]), (200, &json!(true)));
    // Newest first: [2] is the oldest. From the second one on: two of three.
    let listed = deliveries(&s, &hook).await;
    let since = listed[1]["created_at"].clone();
    let (status, first) = replay_skipped(&s, &hook, &json!({"since": since})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["replayed"],
        json!([listed[1]["id"], listed[0]["id"]]),
        "oldest first"
    );
    assert_eq!(first["more"], false);
    let (_, rest) = replay_skipped(&s, &hook, &json!(null)).await;
    assert_eq!(rest["replayed"], json!([listed[2]["id"]]));
    let (_, none) = replay_skipped(&s, &hook, &json!(null)).await;
    assert_eq!(none["replayed"], json!([]), "each is replayed once");

    eventually(Duration::from_secs(20), "every replay is delivered", || async {
        deliveries(&s, &hook).await.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    let mut delivered: Vec<Value> = received
        .iter()
        .map(|got| {
            let body: Value = serde_json::from_slice(&got.body).unwrap();
            let timestamp: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
            assert!(verify_standard(
                &secret,
                got.header("webhook-id").unwrap(),
                timestamp,
                &got.body,
                got.header("webhook-signature").unwrap()
            ));
            body["execution_id"].clone()
        })
        .collect();
    delivered.sort_by_key(|v| v.to_string());
    let mut expected: Vec<Value> = executions.iter().map(|id| json!(id)).collect();
    expected.sort_by_key(|v| v.to_string());
    assert_eq!(delivered, expected, "each skipped event delivered once");
    // Each replay was made by a new execution, not the id reserved at first.
    let after = deliveries(&s, &hook).await;
    for (was, now) in listed.iter().zip(&after) {
        assert_eq!(was["id"], now["id"]);
        assert_ne!(was["execution_id"], now["execution_id"]);
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_delivery_whose_webhook_is_disabled_before_its_retry_is_skipped_not_dead() {
    let receiver = Receiver::start(vec![(500, None), (200, None)]).await;
    let s = node(sqlite().await, options(&[1500])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let hook_url = s.at(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()));
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(10), "the first attempt fails", || async {
        deliveries(&s, &hook).await.first().is_some_and(|d| d["attempts"] == 1)
    })
    .await;
    let (status, _) = post(&format!("{hook_url}/disable"), &json!(null)).await;
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(10),
        "the retry finds it disabled and skips",
        || async {
            deliveries(&s, &hook)
                .await
                .first()
                .is_some_and(|d| d["state"] == "skipped")
        },
    )
    .await;
    assert_eq!(receiver.received().len(), 1, "no attempt while disabled");
    let (_, dead) = get(&s.at("/v1/dead-letters")).await;
    assert_eq!(dead["dead_letters"], json!([]), "skipped is not a dead letter: {dead}");

    post(&format!("{hook_url}/enable"), &json!(null)).await;
    let (status, replayed) = replay_skipped(&s, &hook, &json!(null)).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"].as_array().unwrap().len(), 1);
    eventually(Duration::from_secs(20), "the replay delivers", || async {
        deliveries(&s, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(receiver.received().len(), 2);
    s.stop().await;
}

#[actix_rt::test]
async fn an_exhausted_delivery_is_a_dead_letter_that_replays() {
    let receiver = Receiver::start(vec![(500, None)]).await;
    let s = node(sqlite().await, options(&[30, 30])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(20), "the delivery fails for good", || async {
        deliveries(&s, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "failed")
    })
    .await;
    assert_eq!(receiver.received().len(), 3, "the first attempt and two retries");
    let delivery = &deliveries(&s, &hook).await[0];
    let execution: courier::core::ExecutionId = delivery["execution_id"].as_str().unwrap().parse().unwrap();
    let task = courier::core::TaskId::root_of(execution);
    let (status, dead) = get(&s.at(&format!("/v1/dead-letters/{task}"))).await;
    assert_eq!(status, 200, "{dead}");

    receiver.answer(200);
    let (status, replayed) = post(&s.at(&format!("/v1/dead-letters/{task}/replay")), &json!(null)).await;
    assert_eq!(status, 200, "{replayed}");
    eventually(Duration::from_secs(20), "the replay delivers", || async {
        deliveries(&s, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert_eq!(receiver.received().len(), 4);
    s.stop().await;
}

#[actix_rt::test]
async fn two_nodes_deliver_each_event_once() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let store = sqlite().await;
    let a = node(store.clone(), options(&[50])).await;
    let b = node(store, options(&[50])).await;
    register(&a, &receiver.url, &["execution.completed"]).await;
    for i in 0..20 {
        let via = if i % 2 == 0 { &a } else { &b };
        let id = via.http.courier().dispatch("echo", json!(i)).await.unwrap();
        via.http.courier().wait_for(id, WAIT).await.unwrap();
    }
    eventually(Duration::from_secs(30), "20 deliveries", || async {
        receiver.received().len() >= 20
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids: std::collections::BTreeSet<String> = receiver
        .received()
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["execution_id"].to_string())
        .collect();
    assert_eq!(receiver.received().len(), 20, "each event once, not once per node");
    assert_eq!(ids.len(), 20);
    a.stop().await;
    b.stop().await;
}

/// Options without the loopback allow-list: only global destinations.
fn guarded(schedule: &[u64]) -> HttpOptions {
    let mut options = options(schedule);
    options.webhooks.allow_private = AllowList::default();
    options
}

/// A raw receiver on loopback that answers every request with `head` and then,
/// if `endless`, chunks of body forever; counts requests and notes when a
/// connection was dropped by Courier mid-body.
struct RawReceiver {
    url: String,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

impl RawReceiver {
    async fn start(head: String, endless: bool) -> RawReceiver {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let hits: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let dropped: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (h, d) = (hits.clone(), dropped.clone());
        actix_rt::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (h, d, head) = (h.clone(), d.clone(), head.clone());
                actix_rt::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = socket.read(&mut buf).await;
                    h.fetch_add(1, Ordering::SeqCst);
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    if endless {
                        let chunk = format!("{:x}\r\n{}\r\n", 4096, "x".repeat(4096));
                        loop {
                            if socket.write_all(chunk.as_bytes()).await.is_err() {
                                d.store(true, Ordering::SeqCst);
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawReceiver { url, hits, dropped }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[actix_rt::test]
async fn non_global_literal_destinations_and_other_schemes_are_refused_at_registration() {
    let s = node(sqlite().await, guarded(&[50])).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.0.10/",
        "http://100.64.1.1/",
        "http://0.0.0.0/",
        "http://255.255.255.255/",
        "http://224.0.0.1/",
        "http://192.0.2.7/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://user:hunter2@example.com/",
    ] {
        let (status, body) = post(&s.at("/v1/webhooks"), &json!({ "url": url })).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["detail"]["field"], "url", "{url}: {body}");
        assert!(
            !body.to_string().contains("hunter2"),
            "credentials are redacted: {body}"
        );
    }
    let (_, listed) = get(&s.at("/v1/webhooks")).await;
    assert_eq!(listed["webhooks"], json!([]));
    // A global address and a name (checked when delivering) are accepted.
    for url in ["http://93.184.215.14/hook", "https://example.com/hook"] {
        let (status, body) = post(&s.at("/v1/webhooks"), &json!({ "url": url })).await;
        assert_eq!(status, 201, "{url}: {body}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn headers_courier_sets_cannot_be_overridden() {
    let s = node(sqlite().await, options(&[50])).await;
    for name in [
        "Host",
        "content-length",
        "Transfer-Encoding",
        "Connection",
        "webhook-id",
        "webhook-timestamp",
        "Webhook-Signature",
        "X-Webhook-Signature",
    ] {
        let (status, body) = post(
            &s.at("/v1/webhooks"),
            &json!({ "url": "http://127.0.0.1:9/hook", "headers": { name: "x" } }),
        )
        .await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["detail"]["field"], "headers", "{name}: {body}");
    }
    s.stop().await;
}

/// The failed delivery of `hook`, once its attempts are over.
async fn failed_delivery(s: &Server, hook: &Value) -> Value {
    eventually(Duration::from_secs(20), "the delivery fails", || async {
        deliveries(s, hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "failed")
    })
    .await;
    deliveries(s, hook).await[0].clone()
}

#[actix_rt::test]
async fn a_name_resolving_to_loopback_is_refused_on_delivery_without_retrying() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook")
        .to_string();
    let s = node(sqlite().await, guarded(&[50, 50])).await;
    let hook = register(
        &s,
        &format!("http://user:hunter2@localhost:{port}/hook"),
        &["execution.completed"],
    )
    .await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let delivery = failed_delivery(&s, &hook).await;
    assert_eq!(
        delivery["attempts"], 1,
        "a refused destination is not retried: {delivery}"
    );
    let error = delivery["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("non-global"), "{error}");
    assert!(!delivery.to_string().contains("hunter2"), "{delivery}");
    assert!(receiver.received().is_empty(), "nothing reached loopback");

    // The allow-list opens it.
    let s2 = node(sqlite().await, options(&[50])).await;
    let hook = register(&s2, &format!("http://localhost:{port}/hook"), &["execution.completed"]).await;
    let id = s2.http.courier().dispatch("echo", json!(2)).await.unwrap();
    s2.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(20), "delivered through the allow-list", || async {
        deliveries(&s2, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    s.stop().await;
    s2.stop().await;
}

#[actix_rt::test]
async fn redirects_are_not_followed() {
    let target = Receiver::start(vec![(200, None)]).await;
    let redirecting = RawReceiver::start(
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            target.url
        ),
        false,
    )
    .await;
    let s = node(sqlite().await, options(&[50])).await;
    let hook = register(&s, &redirecting.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let delivery = failed_delivery(&s, &hook).await;
    assert_eq!(delivery["last_status"], 307, "{delivery}");
    assert_eq!(redirecting.hits(), 2, "the first attempt and its retry");
    assert!(target.received().is_empty(), "the redirect was not followed");
    s.stop().await;
}

#[actix_rt::test]
async fn an_endless_response_body_is_cut_at_one_kibibyte() {
    let endless = RawReceiver::start(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        true,
    )
    .await;
    let s = node(sqlite().await, options(&[50])).await;
    let hook = register(&s, &endless.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let started = Instant::now();
    // Well within the 5 s attempt timeout: the body is not read to its (missing) end.
    eventually(Duration::from_secs(3), "delivered without reading on", || async {
        deliveries(&s, &hook)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(4));
    let response = deliveries(&s, &hook).await[0]["attempt_log"][0]["response"].clone();
    assert_eq!(response.as_str().map(str::len), Some(1024), "{response}");
    eventually(Duration::from_secs(5), "the connection is dropped", || async {
        endless.dropped.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    s.stop().await;
}

#[actix_rt::test]
async fn retry_after_is_capped_at_the_longest_schedule_step() {
    let receiver = Receiver::start(vec![(503, Some("3600")), (200, None)]).await;
    let s = node(sqlite().await, options(&[50, 300])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(
        Duration::from_secs(15),
        "the retry comes after 300 ms, not an hour",
        || async {
            deliveries(&s, &hook)
                .await
                .first()
                .is_some_and(|d| d["state"] == "delivered")
        },
    )
    .await;
    let got = receiver.received();
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(250),
        "{:?}",
        got[1].at - got[0].at
    );
    s.stop().await;
}

#[actix_rt::test]
async fn registrations_past_max_endpoints_answer_409() {
    let mut opts = options(&[50]);
    opts.webhooks.max_endpoints = 2;
    let s = node(sqlite().await, opts).await;
    for _ in 0..2 {
        register(&s, "http://127.0.0.1:9/hook", &[]).await;
    }
    let (status, body) = post(&s.at("/v1/webhooks"), &json!({ "url": "http://127.0.0.1:9/hook" })).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["detail"]["max_endpoints"], 2, "{body}");
    let (_, listed) = get(&s.at("/v1/webhooks")).await;
    let first = listed["webhooks"][0]["id"].as_str().unwrap().to_string();
    let deleted = client()
        .delete(s.at(&format!("/v1/webhooks/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    register(&s, "http://127.0.0.1:9/hook", &[]).await;
    s.stop().await;
}
