//! Flow control over HTTP. Rate limits: a function's limit spaces its task
//! starts (a burst, then the rate), its tasks wait instead of failing and use
//! no attempt; with a key, each value has a bucket of its own. Concurrency
//! keys: at most `max` tasks of one key run at once, keys apart. Bad settings
//! get a clear 400. On SQLite and Postgres.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use courier::Courier;
use courier::core::{ExecutionState, FunctionSettings, RateLimit, Store, TaskError, TaskId};
use courier::http::HttpOptions;
use serde_json::{Value, json};

use crate::support::http::*;
use crate::support::*;

/// Per customer: how many `hold` tasks run now, and the most that ever did.
type Running = Arc<Mutex<HashMap<String, (usize, usize)>>>;

async fn server(store: Arc<dyn Store>) -> Server {
    server_counting(store, Running::default()).await
}

/// `send` echoes its args; `hold` runs 150 ms, counted per `customer` in `running`.
async fn server_counting(store: Arc<dyn Store>, running: Running) -> Server {
    let builder = Courier::builder()
        .store(store)
        .activity("send", |_ctx, args: Value| async move { Ok::<_, TaskError>(args) })
        .activity("hold", move |_ctx, args: Value| {
            let running = running.clone();
            async move {
                let customer = args["customer"].as_str().unwrap_or("-").to_string();
                {
                    let mut all = running.lock().unwrap();
                    let (now, most) = all.entry(customer.clone()).or_default();
                    *now += 1;
                    *most = (*most).max(*now);
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                running.lock().unwrap().get_mut(&customer).unwrap().0 -= 1;
                Ok::<_, TaskError>(args)
            }
        })
        .worker(fast_worker());
    Server::start(builder, HttpOptions::default()).await
}

async fn put(url: &str, body: &Value) -> (u16, Value) {
    json_of(client().put(url).send_json(body).await.unwrap()).await
}

/// Dispatches `send` once per args and waits for each result (which must come:
/// waiting, never failing); their starts, oldest first.
async fn run_all(s: &Server, args: Vec<Value>) -> Vec<DateTime<Utc>> {
    let mut ids = Vec::new();
    for a in &args {
        let (status, created) = post(&s.at("/v1/executions"), &json!({"function": "send", "args": a})).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    let mut starts = Vec::new();
    for (id, a) in ids.iter().zip(&args) {
        let (status, done) = get(&s.at(&format!("/v1/executions/{id}/result?wait=30s"))).await;
        assert_eq!((status, &done["result"]), (200, a), "{done}");
        let (_, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
        let step = &detail["steps"][0];
        assert_eq!(step["attempt"], 1, "waiting for a token used an attempt: {detail}");
        starts.push(serde_json::from_value(step["started_at"].clone()).unwrap());
    }
    starts.sort();
    starts
}

/// The node's `/metrics` page.
async fn metrics(s: &Server) -> String {
    let body = client()
        .get(s.at("/metrics"))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    String::from_utf8_lossy(&body).into_owned()
}

/// The most starts within any one second.
fn busiest_second(starts: &[DateTime<Utc>]) -> usize {
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .filter(|t| (**t - starts[i]).num_milliseconds() < 1_000)
                .count()
        })
        .max()
        .unwrap_or(0)
}

async fn a_rate_limit_spaces_starts_and_each_key_has_its_own(store: Arc<dyn Store>) {
    let s = server(store).await;
    for (bad, field) in [
        (json!({"per_second": 0}), "rate_limit"),
        (json!({"per_second": 5, "key": "customer"}), "rate_limit"),
        (json!({"per_second": 5, "burst": 0}), "rate_limit"),
    ] {
        let (status, refused) = put(&s.at("/v1/functions/send"), &json!({ "rate_limit": bad })).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["detail"]["field"], field, "{refused}");
    }
    let (status, refused) = put(
        &s.at("/v1/functions/send"),
        &json!({"rate_limit": {"per_second": 5, "every": 1}}),
    )
    .await;
    assert_eq!(status, 400, "an unknown field: {refused}");

    let (status, stored) = put(
        &s.at("/v1/functions/send"),
        &json!({"rate_limit": {"per_second": 10, "burst": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        stored["settings"]["rate_limit"],
        json!({"per_second": 10.0, "burst": 2})
    );

    // A burst of 2, then 10 a second: 22 starts span about 2 s.
    let starts = run_all(&s, (0..22).map(|n| json!({"n": n})).collect()).await;
    let span = (starts[21] - starts[0]).num_milliseconds();
    assert!(
        span >= 1_700,
        "22 starts at 10/s after a burst of 2 took only {span} ms"
    );
    assert!(
        busiest_second(&starts) <= 12,
        "{} starts in one second: {starts:?}",
        busiest_second(&starts)
    );

    // With a key, each customer has a bucket of its own: two customers' 22
    // starts take about as long as one customer's 11 would alone.
    put(
        &s.at("/v1/functions/send"),
        &json!({"rate_limit": {"per_second": 10, "burst": 2, "key": "/customer"}}),
    )
    .await;
    let args = (0..22)
        .map(|n| json!({"customer": if n % 2 == 0 { "acme" } else { "globex" }, "n": n}))
        .collect();
    let starts = run_all(&s, args).await;
    let span = (starts[21] - starts[0]).num_milliseconds();
    assert!(
        span < 1_600,
        "two buckets of 10/s started 22 tasks in {span} ms, as if they shared one"
    );
    assert!(
        span >= 600,
        "11 starts per customer at 10/s after a burst of 2 took only {span} ms"
    );

    assert!(
        metrics(&s)
            .await
            .contains("courier_rate_limited_total{function=\"send\"}"),
        "the waits are counted"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_rate_limit_spaces_starts_and_each_key_has_its_own_on_sqlite() {
    a_rate_limit_spaces_starts_and_each_key_has_its_own(sqlite().await).await;
}

#[actix_rt::test]
async fn a_rate_limit_spaces_starts_and_each_key_has_its_own_on_postgres() {
    a_rate_limit_spaces_starts_and_each_key_has_its_own(postgres().await).await;
}

/// A rate-limited backlog drains at the rate even when nothing else would
/// make the worker claim: its polling floor is 30 s and, once the first
/// dispatch's claim has ridden its commit, the others' claims ride theirs and
/// flow control gives their tasks back to wait for tokens. No notice says when
/// a held-back task is due, so the worker must look again by then; before it
/// did, the backlog sat out the worker's backoff (30 s here, up to 5 s by
/// default) while the bucket filled past its burst and lost the tokens.
async fn a_held_back_backlog_drains_at_the_rate_while_the_worker_idles(store: Arc<dyn Store>) {
    let courier = Courier::builder()
        .store(store)
        .activity("send", |_ctx, args: Value| async move { Ok::<_, TaskError>(args) })
        .worker(idle_worker())
        .start()
        .await
        .unwrap();
    let limited = FunctionSettings {
        rate_limit: Some(RateLimit {
            per_second: 5.0,
            burst: Some(1),
            key: None,
        }),
        ..FunctionSettings::default()
    };
    courier.set_function_settings("send", limited).await.unwrap();
    // The worker's first claim found nothing; its next rides a commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut ids = Vec::new();
    for n in 0..5u64 {
        ids.push(courier.dispatch("send", json!({ "n": n })).await.unwrap());
    }
    let mut starts = Vec::new();
    for id in ids {
        let done = courier
            .wait_for(id, Some(Duration::from_secs(5)))
            .await
            .unwrap_or_else(|e| panic!("a held-back task did not start within 5 s at 5/s: {e}"));
        assert_eq!(done.state, ExecutionState::Completed);
        let task = courier.task(TaskId::root_of(id)).await.unwrap().expect("its root task");
        assert_eq!(task.attempt, 1, "waiting for a token used an attempt");
        starts.push(task.started_at.expect("it started"));
    }
    starts.sort();
    let span = (starts[4] - starts[0]).num_milliseconds();
    assert!(span >= 700, "5 starts at 5/s after a burst of 1 took only {span} ms");
    courier.shutdown().await.unwrap();
}

#[actix_rt::test]
async fn a_held_back_backlog_drains_at_the_rate_while_the_worker_idles_on_sqlite() {
    a_held_back_backlog_drains_at_the_rate_while_the_worker_idles(sqlite().await).await;
}

#[actix_rt::test]
async fn a_held_back_backlog_drains_at_the_rate_while_the_worker_idles_on_postgres() {
    a_held_back_backlog_drains_at_the_rate_while_the_worker_idles(postgres().await).await;
}

async fn a_concurrency_key_caps_each_key_apart(store: Arc<dyn Store>) {
    let running = Running::default();
    let s = server_counting(store, running.clone()).await;
    let (status, refused) = put(
        &s.at("/v1/functions/hold"),
        &json!({"concurrency_key": {"key": "/customer", "max": 0}}),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["detail"]["field"], "concurrency_key", "{refused}");
    let (status, stored) = put(
        &s.at("/v1/functions/hold"),
        &json!({"concurrency_key": {"key": "/customer", "max": 2}}),
    )
    .await;
    assert_eq!(status, 200, "{stored}");

    let mut ids = Vec::new();
    for n in 0..16 {
        let customer = if n % 2 == 0 { "acme" } else { "globex" };
        let (status, created) = post(
            &s.at("/v1/executions"),
            &json!({"function": "hold", "args": {"customer": customer, "n": n}}),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let (status, done) = get(&s.at(&format!("/v1/executions/{id}/result?wait=30s"))).await;
        assert_eq!(status, 200, "waited, never failed: {done}");
        let (_, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
        assert_eq!(
            detail["steps"][0]["attempt"], 1,
            "waiting for a slot used an attempt: {detail}"
        );
    }
    let peaks: HashMap<String, usize> = running
        .lock()
        .unwrap()
        .iter()
        .map(|(k, (_, most))| (k.clone(), *most))
        .collect();
    assert_eq!(peaks.len(), 2, "{peaks:?}");
    for (customer, most) in &peaks {
        assert!(*most <= 2, "{most} of {customer}'s tasks ran at once under a cap of 2");
    }
    assert!(
        peaks.values().any(|m| *m == 2),
        "the cap allowed no parallelism: {peaks:?}"
    );
    assert!(
        metrics(&s)
            .await
            .contains("courier_key_limited_total{function=\"hold\"}"),
        "the waits are counted"
    );
    s.stop().await;
}

#[actix_rt::test]
async fn a_concurrency_key_caps_each_key_apart_on_sqlite() {
    a_concurrency_key_caps_each_key_apart(sqlite().await).await;
}

#[actix_rt::test]
async fn a_concurrency_key_caps_each_key_apart_on_postgres() {
    a_concurrency_key_caps_each_key_apart(postgres().await).await;
}
