//! Pausing over HTTP: an execution paused while its first step runs keeps that
//! step's result, and its next step is written but not claimed until it is
//! resumed; a paused queue's
//! dispatches wait while other queues run; both are logged, listed and refused
//! clearly when they cannot be done. On SQLite and Postgres.

use std::sync::Arc;
use std::time::Duration;

use courier::core::{Store, TaskError};
use courier::http::HttpOptions;
use courier::{Courier, OrchestratorContext};

use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::support::http::*;
use crate::support::*;

/// A node running `two_steps` (`gated(n)` then `double`), where `gated` says it
/// started and then waits for a permit of `gate`, and `double` on its own.
async fn server(store: Arc<dyn Store>, gate: Arc<Semaphore>, started: Arc<Notify>) -> Server {
    let builder = Courier::builder()
        .store(store)
        .activity("gated", move |_ctx, n: i64| {
            let (gate, started) = (gate.clone(), started.clone());
            async move {
                started.notify_one();
                gate.acquire().await.expect("gate open").forget();
                Ok::<_, TaskError>(n + 1)
            }
        })
        .activity("double", |_ctx, n: i64| async move { Ok::<_, TaskError>(n * 2) })
        .orchestrator("two_steps", |ctx: OrchestratorContext, n: i64| async move {
            let first: i64 = ctx.call("gated", n).await?;
            let second: i64 = ctx.call("double", first).await?;
            Ok::<_, TaskError>(second)
        })
        .worker(fast_worker());
    Server::start(builder, HttpOptions::default()).await
}

async fn post_nothing(url: &str) -> (u16, Value) {
    json_of(client().post(url).send().await.unwrap()).await
}

async fn event_types(s: &Server, execution: &str) -> Vec<String> {
    let (_, page) = get(&s.at(&format!("/v1/events?execution_id={execution}&limit=1000"))).await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect()
}

async fn an_execution_paused_mid_step_finishes_the_step_and_waits(store: Arc<dyn Store>) {
    let (gate, started) = (Arc::new(Semaphore::new(0)), Arc::new(Notify::new()));
    let s = server(store, gate.clone(), started.clone()).await;
    let (status, created) = post(&s.at("/v1/executions"), &json!({"function": "two_steps", "args": 1})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    tokio::time::timeout(Duration::from_secs(15), started.notified())
        .await
        .expect("the first step started");

    let (status, paused) = post_nothing(&s.at(&format!("/v1/executions/{id}/pause"))).await;
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["changed"], true);
    let (status, again) = post_nothing(&s.at(&format!("/v1/executions/{id}/pause"))).await;
    assert_eq!((status, &again["changed"]), (200, &json!(false)), "{again}");
    assert_eq!(again["paused_at"], paused["paused_at"]);

    // The running step finishes and its result is kept; the next one waits.
    gate.add_permits(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
        assert_eq!(detail["paused_at"], paused["paused_at"], "{detail}");
        let steps = detail["steps"].as_array().unwrap();
        if steps
            .iter()
            .any(|t| t["function"] == "gated" && t["state"] == "completed")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running step did not finish: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, waiting) = get(&s.at(&format!("/v1/executions/{id}/result?wait=1500ms"))).await;
    assert_eq!(status, 202, "paused, it must not finish: {waiting}");
    let (_, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
    // The orchestrator, still running, may write its next step: it waits unclaimed.
    for step in detail["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["function"] == "double")
    {
        assert_eq!(
            (&step["state"], &step["attempt"]),
            (&json!("pending"), &json!(0)),
            "a paused execution's next step was claimed: {detail}"
        );
    }

    let (status, resumed) = post_nothing(&s.at(&format!("/v1/executions/{id}/resume"))).await;
    assert_eq!((status, &resumed["changed"]), (200, &json!(true)), "{resumed}");
    let (status, done) = get(&s.at(&format!("/v1/executions/{id}/result?wait=15s"))).await;
    assert_eq!((status, &done["result"]), (200, &json!(4)), "{done}");
    let (_, detail) = get(&s.at(&format!("/v1/executions/{id}"))).await;
    assert!(detail.get("paused_at").is_none(), "{detail}");
    let types = event_types(&s, &id).await;
    let pauses: Vec<&String> = types
        .iter()
        .filter(|t| t.starts_with("execution.") && t.contains("paused"))
        .collect();
    assert_eq!(pauses, ["execution.paused", "execution.unpaused"], "{types:?}");

    // Refusals: an ended execution, an unknown one, a malformed id.
    let (status, ended) = post_nothing(&s.at(&format!("/v1/executions/{id}/pause"))).await;
    assert_eq!(status, 409, "{ended}");
    assert_eq!(ended["detail"]["state"], "completed", "{ended}");
    let unknown = courier::core::ExecutionId::new();
    let (status, missing) = post_nothing(&s.at(&format!("/v1/executions/{unknown}/pause"))).await;
    assert_eq!(status, 404, "{missing}");
    let (status, bad) = post_nothing(&s.at("/v1/executions/not-an-id/resume")).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].is_string(), "{bad}");
    s.stop().await;
}

async fn a_paused_queue_holds_its_work_while_others_run(store: Arc<dyn Store>) {
    let s = server(store, Arc::new(Semaphore::new(0)), Arc::new(Notify::new())).await;
    let (status, paused) = post_nothing(&s.at("/v1/queues/slow/pause")).await;
    assert_eq!((status, &paused["changed"]), (200, &json!(true)), "{paused}");
    let (_, held) = post(
        &s.at("/v1/executions"),
        &json!({"function": "double", "args": 5, "queue": "slow"}),
    )
    .await;
    let (_, free) = post(&s.at("/v1/executions"), &json!({"function": "double", "args": 6})).await;
    let held = held["id"].as_str().unwrap().to_string();
    let (status, done) = get(&s.at(&format!(
        "/v1/executions/{}/result?wait=15s",
        free["id"].as_str().unwrap()
    )))
    .await;
    assert_eq!(
        (status, &done["result"]),
        (200, &json!(12)),
        "another queue runs: {done}"
    );
    let (status, waiting) = get(&s.at(&format!("/v1/executions/{held}/result?wait=1s"))).await;
    assert_eq!(status, 202, "{waiting}");

    let (_, queues) = get(&s.at("/v1/queues")).await;
    assert_eq!(queues["paused"][0]["queue"], "slow", "{queues}");
    assert_eq!(queues["paused"][0]["paused_at"], paused["paused_at"], "{queues}");
    let slow = queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "slow")
        .cloned();
    assert_eq!(slow.map(|q| q["ready"].clone()), Some(json!(1)), "{queues}");

    let (status, resumed) = post_nothing(&s.at("/v1/queues/slow/resume")).await;
    assert_eq!((status, &resumed["changed"]), (200, &json!(true)), "{resumed}");
    let (status, done) = get(&s.at(&format!("/v1/executions/{held}/result?wait=15s"))).await;
    assert_eq!((status, &done["result"]), (200, &json!(10)), "{done}");
    let (_, queues) = get(&s.at("/v1/queues")).await;
    assert_eq!(queues["paused"], json!([]), "{queues}");
    let (_, page) = get(&s.at("/v1/events?type=queue.paused,queue.resumed&limit=100")).await;
    let logged: Vec<(&str, &str)> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["data"]["queue"].as_str().unwrap()))
        .collect();
    assert_eq!(logged, [("queue.paused", "slow"), ("queue.resumed", "slow")], "{page}");

    let (status, bad) = post_nothing(&s.at(&format!("/v1/queues/{}/pause", "q".repeat(201)))).await;
    assert_eq!(status, 400, "{bad}");
    s.stop().await;
}

#[actix_rt::test]
async fn an_execution_paused_mid_step_finishes_the_step_and_waits_on_sqlite() {
    an_execution_paused_mid_step_finishes_the_step_and_waits(sqlite().await).await;
}

#[actix_rt::test]
async fn an_execution_paused_mid_step_finishes_the_step_and_waits_on_postgres() {
    an_execution_paused_mid_step_finishes_the_step_and_waits(postgres().await).await;
}

#[actix_rt::test]
async fn a_paused_queue_holds_its_work_while_others_run_on_sqlite() {
    a_paused_queue_holds_its_work_while_others_run(sqlite().await).await;
}

#[actix_rt::test]
async fn a_paused_queue_holds_its_work_while_others_run_on_postgres() {
    a_paused_queue_holds_its_work_while_others_run(postgres().await).await;
}
