//! `/v1/functions`: settings stored over HTTP apply to new tasks of a function,
//! whether outside workers serve it or this node registered it, on every node
//! of the cluster; bad settings are refused with a clear 400.

use std::time::Duration;

use crate::support::http::*;
use crate::support::*;
use courier::Courier;
use courier::core::TaskError;
use courier::http::HttpOptions;
use serde_json::{Value, json};

/// A node on `store` that runs `double` (`n * 2`) itself.
pub(crate) async fn server_on(store: std::sync::Arc<dyn courier::core::Store>) -> Server {
    let builder = Courier::builder()
        .store(store)
        .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
        .worker(fast_worker());
    Server::start(builder, HttpOptions::default()).await
}

async fn put(url: &str, body: &Value) -> (u16, Value) {
    json_of(client().put(url).send_json(body).await.unwrap()).await
}

async fn delete(url: &str) -> (u16, Value) {
    json_of(client().delete(url).send().await.unwrap()).await
}

/// Dispatches `function` over HTTP; the root task as `GET /v1/executions/{id}` shows it.
async fn dispatched_task(s: &Server, function: &str) -> Value {
    let (status, created) = post(&s.at("/v1/executions"), &json!({"function": function, "args": 1})).await;
    assert_eq!(status, 201, "{created}");
    let (_, detail) = get(&s.at(&format!("/v1/executions/{}", created["id"].as_str().unwrap()))).await;
    detail["steps"][0].clone()
}

/// A function only outside workers serve gets the stored queue, priority,
/// retry policy and timeout on its new tasks, and its cap holds for outside
/// claims; deleting the settings gives new tasks the defaults again.
#[actix_rt::test]
async fn stored_settings_shape_new_tasks_of_an_outside_function_until_deleted() {
    let s = server_on(sqlite().await).await;
    let (status, before) = get(&s.at("/v1/functions/resize")).await;
    assert_eq!(status, 404, "nothing stored, not run here: {before}");
    let (status, own) = get(&s.at("/v1/functions/double")).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["settings"], Value::Null);
    assert_eq!(own["applied"]["queue"], "default");

    let settings = json!({
        "queue": "images", "priority": 7, "timeout": "45s", "max_concurrent": 1, "tags": ["gpu"],
        "retry": {"max_attempts": 9, "initial_delay": "2s", "non_retryable": ["bad_image"]}
    });
    let (status, stored) = put(&s.at("/v1/functions/resize"), &settings).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["name"], "resize");
    assert_eq!(stored["revision"], 1);
    assert_eq!(stored["settings"]["queue"], "images");
    assert_eq!(stored["applied"]["priority"], 7);
    assert_eq!(stored["applied"]["max_concurrent"], 1);
    assert_eq!(stored["applied"]["registered"], Value::Null);

    let task = dispatched_task(&s, "resize").await;
    assert_eq!(task["queue"], "images", "{task}");
    assert_eq!(task["priority"], 7);
    assert_eq!(task["tags"], json!(["gpu"]));
    assert_eq!(task["retry"]["max_attempts"], 9);
    assert_eq!(task["retry"]["non_retryable"], json!(["bad_image"]));
    dispatched_task(&s, "resize").await;

    // The cap is cluster-wide: two tasks wait, one outside claim takes one.
    let claim = json!({"worker_id": "py", "queues": ["images"], "functions": ["resize"], "max": 10, "wait": "1s"});
    let (status, claimed) = post(&s.at("/v1/workers/claim"), &claim).await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed.as_array().unwrap().len(), 1, "max_concurrent 1: {claimed}");
    let (_, again) = post(&s.at("/v1/workers/claim"), &claim).await;
    assert_eq!(
        again.as_array().unwrap().len(),
        0,
        "the cap holds while one runs: {again}"
    );

    let (status, listed) = get(&s.at("/v1/functions")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["double", "resize"], "stored ones and this node's own, by name");
    assert_eq!(listed["functions"][0]["applied"]["registered"], "activity");
    let (_, everything) = get(&s.at("/v1/functions?internal=true")).await;
    let webhook = everything["functions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "courier.webhook.deliver")
        .expect("Courier's own functions, when asked for");
    assert_eq!(webhook["applied"]["queue"], "courier.webhooks");

    let (status, _) = delete(&s.at("/v1/functions/resize")).await;
    assert_eq!(status, 204);
    let (status, missing) = delete(&s.at("/v1/functions/resize")).await;
    assert_eq!(status, 404, "{missing}");
    let (status, gone) = get(&s.at("/v1/functions/resize")).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(dispatched_task(&s, "resize").await["queue"], "default");
    s.stop().await;
}

/// Settings stored through one node apply to dispatches through another within
/// the refresh interval, and override a function the nodes register in code.
#[actix_rt::test]
async fn settings_set_through_one_node_apply_on_another() {
    let store = sqlite().await;
    let a = server_on(store.clone()).await;
    let b = server_on(store.clone()).await;
    assert_eq!(dispatched_task(&b, "double").await["priority"], 0);
    let (status, body) = put(
        &a.at("/v1/functions/double"),
        &json!({"priority": 11, "retry": {"max_attempts": 4}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The writing node applies them at once.
    assert_eq!(dispatched_task(&a, "double").await["priority"], 11);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let task = dispatched_task(&b, "double").await;
        if task["priority"] == 11 {
            assert_eq!(task["retry"]["max_attempts"], 4);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node b never applied them: {task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, seen) = get(&b.at("/v1/functions/double")).await;
    assert_eq!(seen["settings"]["priority"], 11);
    assert_eq!(seen["applied"]["registered"], "activity");
    // A node started after the write has them from its first dispatch.
    let c = server_on(store).await;
    assert_eq!(dispatched_task(&c, "double").await["priority"], 11);
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

/// Settings no task could run under, unknown fields, Courier's own functions
/// and a NUL are refused with 400 naming the field; nothing is stored.
#[actix_rt::test]
async fn bad_settings_are_refused_with_400() {
    let s = server_on(sqlite().await).await;
    let cases = [
        ("f", json!({"max_concurrent": 0}), "max_concurrent"),
        ("f", json!({"max_concurrent": 2_000_000}), "max_concurrent"),
        ("f", json!({"retry": {"max_attempts": 0}}), "retry.max_attempts"),
        ("f", json!({"retry": {"jitter": 2.0}}), "retry.jitter"),
        (
            "f",
            json!({"retry": {"initial_delay": "10m", "max_delay": "1s"}}),
            "retry.max_delay",
        ),
        ("f", json!({"timeout": "0s"}), "timeout"),
        ("f", json!({"queue": " "}), "queue"),
        ("f", json!({"queue": "q\u{0}"}), "queue"),
        ("courier.webhook.deliver", json!({"priority": 1}), "name"),
    ];
    for (name, body, field) in cases {
        let (status, error) = put(&s.at(&format!("/v1/functions/{name}")), &body).await;
        assert_eq!(status, 400, "{body} → {error}");
        assert_eq!(error["detail"]["field"], field, "{body} → {error}");
    }
    let (status, error) = put(&s.at("/v1/functions/f"), &json!({"priorty": 3})).await;
    assert_eq!(status, 400, "an unknown field: {error}");
    assert!(error["error"].is_string() && error.get("detail").is_some(), "{error}");
    let (status, error) = put(&s.at("/v1/functions/f"), &json!({"priority": "high"})).await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = put(&s.at("/v1/functions/f"), &json!([null, null])).await;
    assert_eq!(status, 400, "an array is not settings: {error}");
    let (status, error) = get(&s.at("/v1/functions?internal=maybe")).await;
    assert_eq!(status, 400, "{error}");
    let (_, listed) = get(&s.at("/v1/functions")).await;
    assert_eq!(
        listed["functions"].as_array().unwrap().len(),
        1,
        "only `double`, registered: {listed}"
    );
    s.stop().await;
}

/// A function paused by its settings is claimed by no node and no outside
/// worker (its dispatches are taken and wait); resumed, its tasks run.
#[actix_rt::test]
async fn a_paused_function_waits_until_it_is_resumed() {
    let s = server_on(sqlite().await).await;
    let (status, stored) = put(&s.at("/v1/functions/double"), &json!({"paused": true})).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["settings"]["paused"], true);
    let (status, _) = put(&s.at("/v1/functions/ext.paused"), &json!({"paused": true})).await;
    assert_eq!(status, 200);

    let (status, created) = post(&s.at("/v1/executions"), &json!({"function": "double", "args": 21})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (_, outside) = post(&s.at("/v1/executions"), &json!({"function": "ext.paused"})).await;
    let (status, claimed) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "w", "functions": ["ext.paused"], "wait": "1s"}),
    )
    .await;
    assert_eq!(
        (status, claimed),
        (200, json!([])),
        "an outside worker gets nothing of it"
    );
    let (status, waiting) = get(&s.at(&format!("/v1/executions/{id}/result?wait=1s"))).await;
    assert_eq!(status, 202, "still waiting: {waiting}");
    assert_eq!(waiting["state"], "pending");

    put(&s.at("/v1/functions/double"), &json!({"paused": false})).await;
    let (status, done) = get(&s.at(&format!("/v1/executions/{id}/result?wait=15s"))).await;
    assert_eq!((status, &done["result"]), (200, &json!(42)), "{done}");
    delete(&s.at("/v1/functions/ext.paused")).await;
    let (_, claimed) = post(
        &s.at("/v1/workers/claim"),
        &json!({"worker_id": "w", "functions": ["ext.paused"], "wait": "5s"}),
    )
    .await;
    assert_eq!(claimed[0]["execution_id"], outside["id"], "{claimed}");
    s.stop().await;
}
