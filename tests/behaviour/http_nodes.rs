//! `GET /v1/nodes`: every node of the cluster as it last reported in, idle or
//! busy, API-only or worker, with what it runs and holds, the streams open on
//! it and the outside workers claiming through it; a node that shuts down
//! leaves, one that stops reporting shows as gone.

use std::sync::Arc;
use std::time::Duration;

use courier::Courier;
use courier::core::{NodeReport, TaskError};
use courier::http::HttpOptions;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::http::*;
use crate::support::*;

const EVERY: Duration = Duration::from_millis(200);

/// Polls `GET /v1/nodes` on `s` until `check` holds for the list (10 s at most).
async fn nodes_until(s: &Server, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = get(&s.at("/v1/nodes")).await;
        assert_eq!(status, 200, "{body}");
        let nodes = body["nodes"].as_array().unwrap().clone();
        if check(&nodes) {
            return nodes;
        }
        assert!(tokio::time::Instant::now() < deadline, "never {what}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn node<'a>(nodes: &'a [Value], id: &str) -> Option<&'a Value> {
    nodes.iter().find(|n| n["id"] == id)
}

/// Two nodes on one Postgres: a worker running one activity and an idle
/// API-only node. Each sees both, with what each reports; the streams and the
/// outside workers of the API node show under it; the API node leaves the list
/// when it shuts down; a node that stops reporting is shown gone.
#[actix_rt::test]
async fn every_node_is_listed_with_what_it_runs_and_holds_idle_or_not() {
    let (store_a, store_b) = postgres_pair().await;
    // The activity holds its slot until the test lets it go.
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let worker = Courier::builder()
        .store(store_a.clone())
        .node_id("node-a")
        .report_every(EVERY)
        .activity("hold", move |_ctx, _: Value| {
            let held = held.clone();
            async move {
                let _permit = held.acquire().await;
                Ok::<_, TaskError>(json!("done"))
            }
        })
        .worker(fast_worker().max_concurrency(4));
    let a = Server::start(worker, HttpOptions::default()).await;
    let api_only = Courier::builder().store(store_b).node_id("node-b").report_every(EVERY);
    let b = Server::start(api_only, HttpOptions::default()).await;

    let nodes = nodes_until(&a, "both up", |n| {
        node(n, "node-a").is_some_and(|n| n["up"] == true) && node(n, "node-b").is_some_and(|n| n["up"] == true)
    })
    .await;
    assert_eq!(
        nodes.iter().map(|n| n["id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["node-a", "node-b"]
    );
    let report_a = &node(&nodes, "node-a").unwrap()["report"];
    assert_eq!(report_a["worker"], true);
    assert_eq!(report_a["capacity"], 4);
    let functions = report_a["functions"].as_array().unwrap();
    assert!(functions.contains(&json!("hold")), "{report_a}");
    assert!(
        functions.contains(&json!("courier.webhook.deliver")),
        "Courier's own are listed too"
    );
    assert_eq!(report_a["ready"], true);
    assert_eq!(report_a["interval"], "200ms");
    let report_b = &node(&nodes, "node-b").unwrap()["report"];
    assert_eq!(report_b["worker"], false, "an API-only node is listed too: {report_b}");
    assert_eq!(report_b["capacity"], 0);
    assert_eq!(report_b["running"], 0);
    assert_eq!(report_b["gauges"]["streams.events"], 0);

    // An activity running on A is counted there.
    let (status, _) = post(&b.at("/v1/executions"), &json!({"function": "hold", "args": {}})).await;
    assert_eq!(status, 201);
    nodes_until(&b, "A running one activity", |n| {
        node(n, "node-a").is_some_and(|n| n["report"]["running"] == 1)
    })
    .await;

    // A stream open on B and an outside worker asking B for work show under B.
    let stream = client()
        .get(b.at("/v1/events/stream"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let (status, claimed) = post(
        &b.at("/v1/workers/claim"),
        &json!({"worker_id": "py-1", "functions": ["thumbnail"], "queues": ["images"]}),
    )
    .await;
    assert_eq!((status, claimed), (200, json!([])));
    let nodes = nodes_until(&a, "B's stream and outside worker", |n| {
        node(n, "node-b").is_some_and(|n| {
            n["report"]["gauges"]["streams.events"] == 1
                && !n["report"]["external_workers"].as_array().unwrap().is_empty()
        })
    })
    .await;
    let worker = &node(&nodes, "node-b").unwrap()["report"]["external_workers"][0];
    assert_eq!(worker["id"], "py-1");
    assert_eq!(worker["functions"], json!(["thumbnail"]));
    assert_eq!(worker["queues"], json!(["images"]));
    assert!(worker["last_claim_at"].is_string(), "{worker}");
    drop(stream);

    // B shuts down: it leaves the list.
    b.stop().await;
    nodes_until(&a, "B gone from the list", |n| node(n, "node-b").is_none()).await;

    // A node that stops reporting without leaving (killed, or cut off from
    // the store) stays listed, shown gone after three of its intervals.
    let ghost = NodeReport {
        interval: EVERY,
        ..NodeReport::default()
    };
    store_a.join_node("node-ghost", &ghost).await.unwrap();
    let nodes = nodes_until(&a, "the ghost gone", |n| {
        node(n, "node-ghost").is_some_and(|n| n["up"] == false)
    })
    .await;
    assert_eq!(node(&nodes, "node-a").unwrap()["up"], true, "A keeps reporting");

    gate.add_permits(1);
    nodes_until(&a, "A idle again", |n| {
        node(n, "node-a").is_some_and(|n| n["report"]["running"] == 0)
    })
    .await;
    a.stop().await;
}
