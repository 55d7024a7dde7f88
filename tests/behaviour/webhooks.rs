//! Webhooks end to end with a real receiver on loopback: both signatures verify,
//! retries follow the schedule and honour Retry-After, 410 disables the endpoint,
//! exhausted deliveries become dead letters that replay, and two nodes deliver
//! each event once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::http::*;
use crate::support::*;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use courier::Courier;
use courier::core::{RetryPolicy, TaskError};
use courier::http::{HttpOptions, WebhookOptions};
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
    let s = node(sqlite().await, options(&[50, 50, 50])).await;
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

    // Later events are not delivered to a disabled webhook.
    let again = s.http.courier().dispatch("echo", json!(2)).await.unwrap();
    s.http.courier().wait_for(again, WAIT).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(deliveries(&s, &hook).await.len(), 1);
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
