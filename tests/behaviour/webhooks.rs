//! Webhooks end to end with a real receiver on loopback: both signatures verify,
//! retries follow the schedule and honour Retry-After, 410 disables the endpoint,
//! events skipped while it is disabled replay after enabling, exhausted
//! deliveries become dead letters that replay, and two nodes deliver each event
//! once. Secrets are sealed in the store (a look behind it finds none), rotate
//! with a grace period during which deliveries carry both signatures, and no
//! error text repeats a URL's credentials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::http::*;
use crate::support::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use courier::Courier;
use courier::core::{RetryPolicy, TaskError, WebhookRecord};
use courier::http::{HttpOptions, WebhookOptions};
use courier::webhooks::destination::AllowList;
use courier::webhooks::sealing::SecretKeys;
use courier::webhooks::signing::{new_secret, verify_seed, verify_standard};
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
            secret_keys: webhook_secret_keys(),
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

/// Waits up to `within` for `hook`'s newest delivery to be in `state`.
async fn newest_reaches(s: &Server, hook: &Value, state: &str, within: Duration, what: &str) {
    eventually(within, what, || async {
        deliveries(s, hook).await.first().is_some_and(|d| d["state"] == state)
    })
    .await;
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
    // `type` as in the events API and streams; `event_type`, the earlier name, too.
    assert_eq!(body["type"], "execution.completed");
    assert_eq!(body["event_type"], "execution.completed");
    let (_, log) = get(&s.at("/v1/events?after=0&limit=1000")).await;
    let logged = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["seq"] == body["seq"])
        .unwrap();
    assert_eq!(logged["type"], body["type"], "one name for the event type everywhere");
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

    newest_reaches(
        &s,
        &hook,
        "delivered",
        Duration::from_secs(10),
        "the delivery is recorded",
    )
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
    newest_reaches(&s, &hook, "delivered", Duration::from_secs(10), "delivered").await;
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
    newest_reaches(
        &s,
        &hook,
        "skipped",
        Duration::from_secs(10),
        "the retry finds it disabled and skips",
    )
    .await;
    assert_eq!(receiver.received().len(), 1, "no attempt while disabled");
    let (_, dead) = get(&s.at("/v1/dead-letters")).await;
    assert_eq!(dead["dead_letters"], json!([]), "skipped is not a dead letter: {dead}");

    post(&format!("{hook_url}/enable"), &json!(null)).await;
    let (status, replayed) = replay_skipped(&s, &hook, &json!(null)).await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"].as_array().unwrap().len(), 1);
    newest_reaches(&s, &hook, "delivered", Duration::from_secs(20), "the replay delivers").await;
    assert_eq!(receiver.received().len(), 2);
    s.stop().await;
}

/// A delivery whose event was trimmed from the log before its retry fails for
/// good, with no further POST: its dead letter says the event is gone.
#[actix_rt::test]
async fn a_delivery_whose_event_was_trimmed_before_its_retry_fails_for_good() {
    let receiver = Receiver::start(vec![(500, None)]).await;
    let s = node(sqlite().await, options(&[1500, 1500])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(10), "the first attempt fails", || async {
        deliveries(&s, &hook).await.first().is_some_and(|d| d["attempts"] == 1)
    })
    .await;
    let delivery = deliveries(&s, &hook).await.remove(0);
    let trimmed = s
        .http
        .courier()
        .store()
        .trim_events(chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(trimmed > 0, "the delivered event was trimmed");

    let execution: courier::core::ExecutionId = delivery["execution_id"].as_str().unwrap().parse().unwrap();
    let task = courier::core::TaskId::root_of(execution);
    let dead_letter = s.at(&format!("/v1/dead-letters/{task}"));
    eventually(Duration::from_secs(10), "the retry fails for good", || async {
        get(&dead_letter).await.0 == 200
    })
    .await;
    let (_, dead) = get(&dead_letter).await;
    assert_eq!(dead["task"]["error"]["kind"], "event_trimmed", "{dead}");
    assert_eq!(dead["task"]["attempt"], 2, "the first retry is the last: {dead}");
    assert_eq!(receiver.received().len(), 1, "no POST without its event");
    s.stop().await;
}

#[actix_rt::test]
async fn an_exhausted_delivery_is_a_dead_letter_that_replays() {
    let receiver = Receiver::start(vec![(500, None)]).await;
    let s = node(sqlite().await, options(&[30, 30])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    newest_reaches(
        &s,
        &hook,
        "failed",
        Duration::from_secs(20),
        "the delivery fails for good",
    )
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
    newest_reaches(&s, &hook, "delivered", Duration::from_secs(20), "the replay delivers").await;
    assert_eq!(receiver.received().len(), 4);
    s.stop().await;
}

/// After an outage of its endpoint, a webhook's failed deliveries are tried
/// again in one call (those since a time, oldest first, then the rest), each
/// once however often the call is made, and refused while it is disabled.
#[actix_rt::test]
async fn failed_deliveries_since_a_time_are_recovered_once_each() {
    let receiver = Receiver::start(vec![(503, None)]).await;
    let s = node(sqlite().await, options(&[20, 20])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let hook_url = s.at(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()));
    for n in 0..3 {
        let id = s.http.courier().dispatch("echo", json!(n)).await.unwrap();
        s.http.courier().wait_for(id, WAIT).await.unwrap();
        // Apart in time, so `since` can tell them apart.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    eventually(Duration::from_secs(20), "three failed deliveries", || async {
        let listed = deliveries(&s, &hook).await;
        listed.len() == 3 && listed.iter().all(|d| d["state"] == "failed")
    })
    .await;
    assert_eq!(receiver.received().len(), 9, "three attempts each");

    let (status, _) = post(&format!("{hook_url}/disable"), &json!(null)).await;
    assert_eq!(status, 200);
    let (status, refused) = post(&format!("{hook_url}/recover"), &json!(null)).await;
    assert_eq!(status, 409, "a disabled webhook recovers nothing: {refused}");
    post(&format!("{hook_url}/enable"), &json!(null)).await;
    let (status, bad) = post(&format!("{hook_url}/recover"), &json!({"since": "yesterday"})).await;
    assert_eq!(status, 400, "{bad}");

    receiver.answer(200);
    // Newest first: [2] is the oldest. From the second one on: two of three.
    let listed = deliveries(&s, &hook).await;
    let since = listed[1]["created_at"].clone();
    let (status, first) = post(&format!("{hook_url}/recover"), &json!({"since": since})).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first["replayed"],
        json!([listed[1]["id"], listed[0]["id"]]),
        "oldest first"
    );
    assert_eq!(first["more"], false);
    let (_, again) = post(&format!("{hook_url}/recover"), &json!({"since": since})).await;
    assert_eq!(again["replayed"], json!([]), "each is recovered once: {again}");
    let (_, rest) = post(&format!("{hook_url}/recover"), &json!(null)).await;
    assert_eq!(rest["replayed"], json!([listed[2]["id"]]));

    eventually(
        Duration::from_secs(20),
        "every recovered delivery delivered",
        || async { deliveries(&s, &hook).await.iter().all(|d| d["state"] == "delivered") },
    )
    .await;
    assert_eq!(receiver.received().len(), 12, "one more attempt each");
    let after = deliveries(&s, &hook).await;
    for (was, now) in listed.iter().zip(&after) {
        assert_eq!(
            was["execution_id"], now["execution_id"],
            "tried again by its own execution"
        );
    }
    let (_, dead) = get(&s.at("/v1/dead-letters")).await;
    assert_eq!(dead["dead_letters"], json!([]), "no dead letter left behind: {dead}");
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
    newest_reaches(
        &s,
        &hook,
        "delivered",
        Duration::from_secs(3),
        "delivered without reading on",
    )
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

/// A receiver's answer is kept as text whatever its bytes: a NUL (which
/// Postgres cannot store) becomes U+FFFD, and the attempt is recorded as
/// delivered instead of failing to be recorded and retrying for ever.
#[actix_rt::test]
async fn a_response_holding_a_nul_is_recorded_on_postgres() {
    let receiver = RawReceiver::start(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nbad\0body!".into(),
        false,
    )
    .await;
    let s = node(postgres().await, options(&[50, 50, 50])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    newest_reaches(&s, &hook, "delivered", Duration::from_secs(10), "delivered").await;
    let delivery = deliveries(&s, &hook).await[0].clone();
    assert_eq!(delivery["attempts"], 1, "{delivery}");
    assert_eq!(delivery["attempt_log"][0]["response"], "bad\u{FFFD}body!", "{delivery}");
    assert_eq!(receiver.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    s.stop().await;
}

#[actix_rt::test]
async fn retry_after_is_capped_at_the_longest_schedule_step() {
    let receiver = Receiver::start(vec![(503, Some("3600")), (200, None)]).await;
    let s = node(sqlite().await, options(&[50, 300])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    newest_reaches(
        &s,
        &hook,
        "delivered",
        Duration::from_secs(15),
        "the retry comes after 300 ms, not an hour",
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

/// The Standard Webhooks signature header of `got`, and whether it verifies
/// with `secret`.
fn standard_verifies(got: &Received, secret: &str) -> bool {
    let timestamp: i64 = got.header("webhook-timestamp").unwrap().parse().unwrap();
    verify_standard(
        secret,
        got.header("webhook-id").unwrap(),
        timestamp,
        &got.body,
        got.header("webhook-signature").unwrap(),
    )
}

/// Dispatches one `echo` and waits until the receiver has one more request; that request.
async fn deliver_one(s: &Server, receiver: &Receiver) -> Received {
    let before = receiver.received().len();
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    eventually(Duration::from_secs(20), "the receiver is called", || async {
        receiver.received().len() > before
    })
    .await;
    receiver.received()[before].clone()
}

/// Every byte of the SQLite files in `dir` (the database and its WAL), as text.
fn sqlite_files(dir: &std::path::Path) -> String {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// A webhook record as a version before sealing wrote it: its secret in the open.
async fn legacy_webhook(store: &Arc<dyn courier::core::Store>, url: &str, secret: &str) -> WebhookRecord {
    let hook = webhook_record(store, url, secret).await;
    store.create_webhook(&hook).await.unwrap();
    hook
}

/// A webhook record for `url` stored with `secret`, not yet created.
async fn webhook_record(store: &Arc<dyn courier::core::Store>, url: &str, secret: &str) -> WebhookRecord {
    let now = store.now().await.unwrap();
    WebhookRecord {
        id: uuid::Uuid::now_v7(),
        url: url.into(),
        event_types: vec![courier::core::EventType::ExecutionCompleted],
        execution_id: None,
        task_id: None,
        headers: Default::default(),
        secret: secret.into(),
        previous_secret: None,
        previous_secret_until: None,
        description: None,
        enabled: true,
        disabled_reason: None,
        created_at: now,
        updated_at: now,
    }
}

#[actix_rt::test]
async fn a_copy_of_the_database_does_not_reveal_webhook_secrets() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    // SQLite: every byte of its files.
    let (store, dir) = sqlite_in_dir().await;
    let s = node(store.clone(), options(&[50])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let secret = hook["secret"].as_str().unwrap().to_string();
    let (_, rotated) = post(
        &s.at(&format!("/v1/webhooks/{}/rotate-secret", hook["id"].as_str().unwrap())),
        &json!({"grace_period": "1h"}),
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_string();
    // Both still sign: the store has what it takes, only sealed.
    let got = deliver_one(&s, &receiver).await;
    assert!(standard_verifies(&got, &secret) && standard_verifies(&got, &new));
    let stored = store
        .get_webhook(hook["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(stored.secret.starts_with("sealed:v1:"), "{}", stored.secret);
    assert!(stored.previous_secret.as_deref().unwrap().starts_with("sealed:v1:"));
    s.stop().await;
    let files = sqlite_files(&dir);
    assert!(files.contains("sealed:v1:"), "the row is in the files");
    for plain in [&secret, &new] {
        let encoded = plain.strip_prefix("whsec_").unwrap();
        assert!(!files.contains(encoded), "{plain} is in the SQLite files");
    }

    // Postgres: the row as the database shows it.
    let (store, schema) = postgres_in_schema().await;
    let s = node(store, options(&[50])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let secret = hook["secret"].as_str().unwrap();
    let row =
        crate::support::cluster::psql_output(&postgres_url(), &format!("SELECT w::text FROM {schema}.webhooks w"));
    assert!(
        row.contains(hook["id"].as_str().unwrap()) && row.contains("sealed:v1:"),
        "{row}"
    );
    assert!(
        !row.contains(secret.strip_prefix("whsec_").unwrap()),
        "the secret is in the row: {row}"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn without_a_secret_key_webhooks_are_not_registered_and_legacy_ones_still_deliver() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let store = sqlite().await;
    let mut keyless = options(&[50]);
    keyless.webhooks.secret_keys = SecretKeys::default();
    // One registered by a version before sealing, its secret in the open.
    let legacy_secret = new_secret();
    let legacy = legacy_webhook(&store, &receiver.url, &legacy_secret).await;
    let s = node(store.clone(), keyless).await;

    let (status, body) = post(&s.at("/v1/webhooks"), &json!({"url": receiver.url})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("webhooks.secret_key"),
        "{body}"
    );
    assert_eq!(body["detail"]["setting"], "webhooks.secret_key", "{body}");
    assert_eq!(body["detail"]["env"], "COURIER_WEBHOOKS_SECRET_KEY", "{body}");
    assert!(
        body["detail"]["hint"]
            .as_str()
            .unwrap()
            .contains("openssl rand -base64 32"),
        "{body}"
    );
    let (status, body) = post(
        &s.at(&format!("/v1/webhooks/{}/rotate-secret", legacy.id)),
        &json!(null),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["detail"]["setting"], "webhooks.secret_key", "{body}");
    let (_, listed) = get(&s.at("/v1/webhooks")).await;
    assert_eq!(
        listed["webhooks"].as_array().unwrap().len(),
        1,
        "nothing was registered"
    );

    let got = deliver_one(&s, &receiver).await;
    assert!(standard_verifies(&got, &legacy_secret));
    assert!(verify_seed(
        &legacy_secret,
        &got.body,
        got.header("X-Webhook-Signature").unwrap()
    ));
    // Nothing to seal it with: it stays as it was.
    assert_eq!(
        store.get_webhook(legacy.id).await.unwrap().unwrap().secret,
        legacy_secret
    );
    s.stop().await;
}

#[actix_rt::test]
async fn during_a_rotations_grace_period_deliveries_verify_with_the_old_and_the_new_secret() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let s = node(sqlite().await, options(&[50])).await;
    let hook = register(&s, &receiver.url, &["execution.completed"]).await;
    let id = hook["id"].as_str().unwrap();
    let old = hook["secret"].as_str().unwrap().to_string();
    let rotate = s.at(&format!("/v1/webhooks/{id}/rotate-secret"));

    let (status, rotated) = post(&rotate, &json!({"grace_period": "1h"})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(rotated["id"], hook["id"]);
    assert!(rotated.get("previous_secret").is_none(), "{rotated}");
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");
    let (_, shown) = get(&s.at(&format!("/v1/webhooks/{id}"))).await;
    assert!(
        shown.get("secret").is_none() && shown.get("previous_secret").is_none(),
        "{shown}"
    );
    assert_eq!(shown["previous_secret_until"], rotated["previous_secret_until"]);

    let got = deliver_one(&s, &receiver).await;
    let header = got.header("webhook-signature").unwrap();
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(header.split(' ').all(|sig| sig.starts_with("v1,")), "{header}");
    assert!(standard_verifies(&got, &new), "the new secret verifies");
    assert!(
        standard_verifies(&got, &old),
        "the old secret verifies during the grace period"
    );
    let seed = got.header("X-Webhook-Signature").unwrap();
    assert!(
        verify_seed(&new, &got.body, seed),
        "X-Webhook-Signature: the new secret"
    );
    assert!(!verify_seed(&old, &got.body, seed));

    // A short grace period runs out: then only the newest secret signs.
    let (status, rotated) = post(&rotate, &json!({"grace_period": "1s"})).await;
    assert_eq!(status, 200, "{rotated}");
    let newest = rotated["secret"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = deliver_one(&s, &receiver).await;
    assert_eq!(got.header("webhook-signature").unwrap().split(' ').count(), 1);
    assert!(standard_verifies(&got, &newest));
    assert!(!standard_verifies(&got, &new), "the grace period is over");
    assert!(!standard_verifies(&got, &old), "a secret rotated away twice is gone");

    // No body: the default grace period; bounds and ids are checked.
    let response = client().post(&rotate).send().await.unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}");
    let until: chrono::DateTime<chrono::Utc> = body["previous_secret_until"].as_str().unwrap().parse().unwrap();
    let hours = (until - chrono::Utc::now()).num_minutes() as f64 / 60.0;
    assert!((23.9..=24.1).contains(&hours), "24h by default: {until}");
    let (status, body) = post(&rotate, &json!({"grace_period": "8d"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["detail"]["field"], "grace_period", "{body}");
    let (status, body) = post(&rotate, &json!({"grace_period": "soon"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(&rotate, &json!({"grace": "1h"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(
        &s.at(&format!("/v1/webhooks/{}/rotate-secret", uuid::Uuid::new_v4())),
        &json!(null),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    s.stop().await;
}

#[actix_rt::test]
async fn secrets_stored_in_the_open_are_sealed_at_start_and_still_deliver() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let store = sqlite().await;
    let (secret, previous) = (new_secret(), new_secret());
    let mut legacy = legacy_webhook(&store, &receiver.url, &secret).await;
    // A version before sealing could not rotate; a previous secret in the open
    // is sealed all the same.
    store.delete_webhook(legacy.id).await.unwrap();
    legacy.previous_secret = Some(previous.clone());
    legacy.previous_secret_until = Some(store.now().await.unwrap() + chrono::Duration::hours(1));
    store.create_webhook(&legacy).await.unwrap();

    let s = node(store.clone(), options(&[50])).await;
    eventually(Duration::from_secs(10), "the secrets are sealed", || async {
        let stored = store.get_webhook(legacy.id).await.unwrap().unwrap();
        stored.secret.starts_with("sealed:v1:") && stored.previous_secret.is_some_and(|p| p.starts_with("sealed:v1:"))
    })
    .await;
    let stored = store.get_webhook(legacy.id).await.unwrap().unwrap();
    assert_eq!(
        stored.updated_at, legacy.updated_at,
        "sealing is not a change of the webhook"
    );
    let got = deliver_one(&s, &receiver).await;
    assert!(standard_verifies(&got, &secret), "the same secret, now sealed");
    assert!(standard_verifies(&got, &previous));
    assert!(verify_seed(
        &secret,
        &got.body,
        got.header("X-Webhook-Signature").unwrap()
    ));
    s.stop().await;
}

#[actix_rt::test]
async fn a_secret_no_key_opens_fails_its_delivery_for_good_and_replays_once_the_key_is_back() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let store = sqlite().await;
    // Sealed under a key this node is not given.
    let other = SecretKeys::parse("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=", &[] as &[&str]).unwrap();
    let secret = new_secret();
    let mut hook = legacy_webhook(&store, &receiver.url, &secret).await;
    assert!(
        store
            .replace_webhook_secret(hook.id, &secret, &other.seal(hook.id, &secret).unwrap())
            .await
            .unwrap()
    );
    hook = store.get_webhook(hook.id).await.unwrap().unwrap();
    let hook_json = json!({"id": hook.id});

    let s = node(store.clone(), options(&[30, 30])).await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let delivery = failed_delivery(&s, &hook_json).await;
    assert_eq!(delivery["attempts"], 1, "not retried: {delivery}");
    let error = delivery["last_error"].as_str().unwrap();
    assert!(
        error.contains(&hook.id.to_string()) && error.contains("retired_secret_keys"),
        "{error}"
    );
    assert!(receiver.received().is_empty(), "nothing is sent unsigned");
    let execution: courier::core::ExecutionId = delivery["execution_id"].as_str().unwrap().parse().unwrap();
    let task = courier::core::TaskId::root_of(execution);
    let (status, dead) = get(&s.at(&format!("/v1/dead-letters/{task}"))).await;
    assert_eq!(status, 200, "{dead}");
    assert_eq!(dead["task"]["error"]["kind"], "secret_unreadable", "{dead}");
    for text in [dead.to_string(), delivery.to_string()] {
        assert!(!text.contains(secret.strip_prefix("whsec_").unwrap()), "{text}");
        assert!(!text.contains("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"), "{text}");
    }
    s.stop().await;

    // The operator gives the node the old key as retired: the replay delivers.
    let mut fixed = options(&[30, 30]);
    fixed.webhooks.secret_keys =
        SecretKeys::parse(WEBHOOK_SECRET_KEY, &["ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="]).unwrap();
    let s = node(store.clone(), fixed).await;
    let (status, replayed) = post(&s.at(&format!("/v1/dead-letters/{task}/replay")), &json!(null)).await;
    assert_eq!(status, 200, "{replayed}");
    eventually(Duration::from_secs(20), "the replay delivers", || async {
        deliveries(&s, &hook_json)
            .await
            .first()
            .is_some_and(|d| d["state"] == "delivered")
    })
    .await;
    assert!(standard_verifies(&receiver.received()[0], &secret));
    // And the start re-sealed it under the current key.
    let stored = store.get_webhook(hook.id).await.unwrap().unwrap();
    assert_eq!(
        courier::webhooks::sealing::sealed_under(&stored.secret),
        webhook_secret_keys().current().map(|k| k.id())
    );
    s.stop().await;
}

#[actix_rt::test]
async fn credentials_in_a_webhook_url_appear_in_no_error_event_or_listing() {
    // A port nothing listens on: every attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = node(sqlite().await, options(&[30, 30])).await;
    let hook = register(
        &s,
        &format!("http://user:hunter2@127.0.0.1:{port}/x"),
        &["execution.completed"],
    )
    .await;
    let id = s.http.courier().dispatch("echo", json!(1)).await.unwrap();
    s.http.courier().wait_for(id, WAIT).await.unwrap();
    let delivery = failed_delivery(&s, &hook).await;
    assert_eq!(delivery["attempts"], 3, "{delivery}");
    let errors: Vec<&str> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["error"].as_str().unwrap())
        .collect();
    assert!(errors.iter().all(|e| !e.is_empty()), "{delivery}");
    let execution = delivery["execution_id"].as_str().unwrap().to_string();
    let task = courier::core::TaskId::root_of(execution.parse().unwrap());
    let mut seen = vec![delivery.to_string()];
    for path in [
        format!("/v1/dead-letters/{task}"),
        format!("/v1/tasks/{task}"),
        format!("/v1/executions/{execution}"),
        "/v1/dead-letters".to_string(),
        "/v1/events?after=0&limit=1000&internal=true".to_string(),
        "/v1/events?after=0&limit=1000".to_string(),
        // Listings show the URL without its credentials.
        "/v1/webhooks".to_string(),
        format!("/v1/webhooks/{}", hook["id"].as_str().unwrap()),
        format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap()),
    ] {
        let (status, body) = get(&s.at(&path)).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push(body.to_string());
    }
    let (_, dead) = get(&s.at(&format!("/v1/dead-letters/{task}"))).await;
    assert_eq!(dead["task"]["error"]["kind"], "transport", "{dead}");
    let (_, events) = get(&s.at("/v1/events?after=0&limit=1000&internal=true")).await;
    assert!(
        events.to_string().contains("task.failed") || events.to_string().contains("execution.failed"),
        "the failures are in the log: {events}"
    );
    for text in &seen {
        assert!(!text.contains("hunter2"), "credentials leaked: {text}");
    }
    s.stop().await;
}

#[actix_rt::test]
async fn a_previous_secret_no_key_opens_only_loses_its_signature() {
    let receiver = Receiver::start(vec![(200, None)]).await;
    let store = sqlite().await;
    let other = SecretKeys::parse("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=", &[] as &[&str]).unwrap();
    let (secret, previous) = (new_secret(), new_secret());
    // In its grace period, the old secret sealed under a key this node lacks.
    let mut hook = webhook_record(&store, &receiver.url, "").await;
    hook.secret = webhook_secret_keys().seal(hook.id, &secret).unwrap();
    hook.previous_secret = Some(other.seal(hook.id, &previous).unwrap());
    hook.previous_secret_until = Some(hook.created_at + chrono::Duration::hours(1));
    store.create_webhook(&hook).await.unwrap();

    let s = node(store, options(&[50])).await;
    let got = deliver_one(&s, &receiver).await;
    assert_eq!(got.header("webhook-signature").unwrap().split(' ').count(), 1);
    assert!(standard_verifies(&got, &secret), "the current secret still signs");
    assert!(!standard_verifies(&got, &previous));
    s.stop().await;
}

/// An attempt an activity attaches (`ActivityContext::record_delivery_attempt`)
/// is written in the commit that ends its task, whatever the outcome: with a
/// success, and with a failure that ends the task for good, since the attempt
/// happened either way. By the time the execution has ended, its attempt and
/// the delivery's new state are there.
#[actix_rt::test]
async fn an_attached_delivery_attempt_is_written_with_its_tasks_outcome() {
    use courier::core::{
        DeliveryAttempt, DeliveryState, ExecutionState, NewDelivery, NewExecution, TaskKind, TaskSpec,
    };

    let store = sqlite().await;
    let hook = webhook_record(&store, "https://example.com/hook", &new_secret()).await;
    store.create_webhook(&hook).await.unwrap();
    // Deliveries as a webhook dispatcher queues them, by a function nobody runs here.
    let deliveries: Vec<NewDelivery> = (1..=2)
        .map(|seq| NewDelivery {
            id: uuid::Uuid::now_v7(),
            webhook_id: hook.id,
            event_seq: seq,
            event_type: courier::core::EventType::ExecutionCompleted,
            execution: NewExecution::new(TaskSpec::new(TaskKind::Activity, "nobody", Value::Null)),
            skipped: false,
        })
        .collect();
    assert!(store.enqueue_deliveries(0, 2, deliveries.clone()).await.unwrap().value);

    let courier = Courier::builder()
        .store(store.clone())
        .activity(
            "attaching",
            |ctx: courier::ActivityContext, (delivery, ok): (uuid::Uuid, bool)| async move {
                let status = if ok { 200 } else { 500 };
                ctx.record_delivery_attempt(
                    DeliveryAttempt {
                        delivery_id: delivery,
                        attempt: ctx.attempt(),
                        status: Some(status),
                        latency_ms: 7,
                        response: Some(format!("answered {status}")),
                        error: (!ok).then(|| "the endpoint answered 500".to_string()),
                        at: chrono::Utc::now(),
                    },
                    if ok {
                        DeliveryState::Delivered
                    } else {
                        DeliveryState::Failed
                    },
                );
                if ok {
                    Ok(())
                } else {
                    Err(TaskError::non_retryable("http_500", "the endpoint answered 500"))
                }
            },
        )
        .worker(fast_worker())
        .start()
        .await
        .unwrap();

    for (delivery, ok) in [(&deliveries[0], true), (&deliveries[1], false)] {
        let id = courier.dispatch("attaching", (delivery.id, ok)).await.unwrap();
        let ended = courier.wait_for(id, Some(Duration::from_secs(10))).await.unwrap();
        let expected = if ok {
            ExecutionState::Completed
        } else {
            ExecutionState::Failed
        };
        assert_eq!(ended.state, expected);

        let attempts = store.list_delivery_attempts(delivery.id).await.unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].status, Some(if ok { 200 } else { 500 }));
        assert_eq!(attempts[0].latency_ms, 7);
        let record = store.get_delivery(delivery.id).await.unwrap().unwrap();
        let state = if ok {
            DeliveryState::Delivered
        } else {
            DeliveryState::Failed
        };
        assert_eq!((record.state, record.attempts), (state, 1), "{record:?}");
    }
}
